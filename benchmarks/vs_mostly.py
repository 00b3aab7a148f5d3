"""Our default model against MOSTLY AI's engine (``mostlyai-engine``, TabularARGN, with its defaults)
on the same training rows, both judged by our score stage: training seconds, sampling rows/s,
shapes, pair trends, TSTR and detection AUC; then ours again with ``train.budget_seconds`` set to the
peer's training time (issue 27).

    python benchmarks/vs_mostly.py [--tables adult | all | adult default shoppers magic] [--seeds 0 1 2]
        [--peer-python PATH] [--no-budget-match] [--skip-peer] [--epochs E] [--peer-max-epochs E]
        [--rows N] [--set key=value ...]

The peer runs in its own virtual environment (``--peer-python``; default: $MOSTLY_PYTHON, else
/work/venvs/mostly/bin/python) through ``_mostly_runner.py``, on as many torch/OpenMP threads as
our stages use (``runtime.threads``; 0 = the usable cores) and offline (HF_HUB_OFFLINE=1).

Each (table, seed) runs in a temporary folder: our ingest once, then
- ``ours``: train -> generate -> score with params.yaml's defaults (plus --epochs, --set);
- ``mostly``: the engine trained on our prepared training rows (split, analyze, encode, train:
  ``fit_s``), then as many rows as ours generated; its rows are cast to our prepared schema, put
  where our generate stage puts its shards (``<work>/<table>/synthetic/``) and scored by the same
  score stage;
- ``ours_budget``: ours again with ``train.budget_seconds`` = the peer's ``fit_s`` of that seed (a
  budget only cuts epochs: if the peer took longer than our recipe needs, this is ``ours`` again).
Training seconds: our train stage's wall time (rows read, transformer fitted, model saved) and the
peer's split + analyze + encode + train. Rows/s: rows generated (the training rows, or --rows) over
the seconds of the generation call alone (our generate stage after its model is loaded; the peer's
second generate call, after a first one on 100 rows that pays its start-up); both write Parquet.

Tables: Adult (the embedded train/test files) and the suite tables of ``../shared/data/suite``
(``--suite-dir``; Default, Shoppers, Magic). Until ingest reads those files as they are (issue 28),
each is copied here to Parquet first: Default without its row id ``ID``, its amounts written as
5.00E+05 as integers, its coded integers (SEX, EDUCATION, MARRIAGE, PAY_*) and its target as text;
Shoppers read with ``;`` (TRUE/FALSE as booleans), its coded OperatingSystems, Browser, Region and
TrafficType as text; Magic given its column names.
The coded columns are declared categorical (``column_types``), as the papers treat them, and each
table is split 90/10 at random with a fixed seed (``SPLIT_SEED``: the same split for every model
seed, as Adult's files are).

Prints a line per run, then a table (mean ± sample standard deviation over the seeds, per table and
side) and, last, one JSON line ``{"<table>": {"ours": {"train_s": [mean, sd], "rows_per_s": ..,
"shapes": .., "trends": .., "tstr": .., "detection_auc": .., "epochs": ..}, "mostly": {..},
"ours_budget": {..}}}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from model_frontier import DATASETS, summary  # noqa: E402

from pipeline.artifacts import StagePaths, load_prepared, shard_name  # noqa: E402
from pipeline.config import load_config, parse_overrides  # noqa: E402
from pipeline.files import atomic_dir, read_json, sha256_files, write_json  # noqa: E402
from pipeline.runtime import threads_available  # noqa: E402
from pipeline.stages import run_stage  # noqa: E402

PARAMS = REPO / "params.yaml"
RUNNER = REPO / "benchmarks" / "_mostly_runner.py"
DEFAULT_PEER = "/work/venvs/mostly/bin/python"
PEER_VERSION = "2.7.3"  # the engine version these figures are for (the runner reports what it ran)
SUITE_DIR = REPO.parent / "shared" / "data" / "suite"
SPLIT_SEED = 0
SIDES = ("ours", "mostly", "ours_budget")
METRICS = {"shapes": "quality.column_shapes", "trends": "quality.column_pair_trends", "tstr": "utility.tstr_score",
           "detection_auc": "detection.auc"}
COLUMNS = ["train_s", "rows_per_s", "shapes", "trends", "tstr", "detection_auc", "epochs"]

MAGIC_COLUMNS = ["fLength", "fWidth", "fSize", "fConc", "fConc1", "fAsym", "fM3Long", "fM3Trans", "fAlpha", "fDist",
                 "class"]
# How to read each suite table (pandas.read_csv keywords), what to drop, its target, and its coded
# integer columns (categorical in the papers): written as text and declared categorical.
SUITE = {
    "default": {"file": "default.csv", "read": {}, "drop": ["ID"], "target": "default.payment.next.month",
                "coded": ["SEX", "EDUCATION", "MARRIAGE", "PAY_0", "PAY_2", "PAY_3", "PAY_4", "PAY_5", "PAY_6",
                          "default.payment.next.month"]},
    "shoppers": {"file": "shoppers.csv", "read": {"sep": ";"}, "drop": [], "target": "Revenue",
                 "coded": ["OperatingSystems", "Browser", "Region", "TrafficType"]},
    "magic": {"file": "magic04.data", "read": {"header": None, "names": MAGIC_COLUMNS}, "drop": [], "target": "class",
              "coded": []},
}
TABLES = ["adult", *SUITE]


def suite_copy(name: str, suite_dir: Path, folder: Path) -> dict:
    """A suite table as Parquet train/test files in ``folder`` (a seeded 90/10 split) and the dataset
    entry that reads them."""
    import numpy as np
    import pandas as pd

    spec = SUITE[name]
    path = suite_dir / spec["file"]
    if not path.is_file():
        raise SystemExit(f"{path}: not found; pass --suite-dir with the folder of the suite tables "
                         f"({', '.join(s['file'] for s in SUITE.values())})")
    frame = pd.read_csv(path, **spec["read"]).drop(columns=spec["drop"])
    for col in frame.columns:  # whole numbers written as 5.00E+05 (Default's amounts) as the integers they are
        values = frame[col]
        if values.dtype.kind == "f" and values.notna().all() and (values == values.round()).all():
            frame[col] = values.astype("int64")
    for col in spec["coded"]:
        frame[col] = frame[col].astype(str)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(frame))
    cut = len(frame) // 10
    test, train = frame.iloc[np.sort(order[:cut])], frame.iloc[np.sort(order[cut:])]
    folder.mkdir(parents=True, exist_ok=True)
    train.to_parquet(folder / "train.parquet", index=False)
    test.to_parquet(folder / "test.parquet", index=False)
    return {"source": str(folder / "train.parquet"), "holdout_source": str(folder / "test.parquet"),
            "target": spec["target"], "column_types": {col: "categorical" for col in spec["coded"]}}


def dataset_entry(name: str, suite_dir: Path, folder: Path) -> dict:
    return dict(DATASETS["adult"]) if name == "adult" else suite_copy(name, suite_dir, folder / name)


def ours(cfg, table: str) -> dict:
    """Our train -> generate -> score on the prepared data in ``cfg.work_dir``."""
    paths = StagePaths.of(cfg.work_dir, table)
    shutil.rmtree(paths.checkpoints, ignore_errors=True)  # a fresh model each time, never a resumed one
    run_stage("train", cfg, table)
    train_s = read_json(paths.stage_seconds)["train"]
    epochs = read_json(paths.model / "model.json")["epochs"]
    gen = run_stage("generate", cfg, table)
    metrics = run_stage("score", cfg, table).metrics
    return {"train_s": train_s, "rows_per_s": gen.rows / gen.seconds, "epochs": epochs,
            **{k: metrics.get(key) for k, key in METRICS.items()}}


def peer(cfg, table: str, rows: int, seed: int, args, folder: Path) -> dict:
    """MOSTLY AI's engine on our prepared training rows, its rows scored by our score stage."""
    paths = StagePaths.of(cfg.work_dir, table)
    train, _, schema, _ = load_prepared(paths)
    ids = [c.name for c in schema.columns if c.kind == "id"]
    if ids:  # the engine would learn them as values; none of the tables here has one (Default's is dropped)
        raise SystemExit(f"{table}: id column(s) {ids}: drop them from the source (datasets.{table}.drop_columns)")
    train_file, out_file = folder / "peer_train.parquet", folder / "peer_synthetic.parquet"
    train[schema.names].to_parquet(train_file, index=False)
    threads = str(threads_available(cfg))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": threads,
           "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
    cmd = [args.peer_python, str(RUNNER), "--train", str(train_file), "--out", str(out_file),
           "--workspace", str(folder / "peer_ws"), "--rows", str(rows), "--seed", str(seed), "--threads", threads]
    if args.peer_max_epochs is not None:
        cmd += ["--max-epochs", str(args.peer_max_epochs)]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)  # its warnings show on our stderr
    if done.returncode != 0:
        raise SystemExit(f"{table} seed {seed}: the peer runner failed (exit {done.returncode}; its output is above)")
    timing = json.loads(done.stdout.strip().splitlines()[-1])
    metrics = score_rows(cfg, table, out_file, seed, "mostlyai-engine TabularARGN")
    return {"train_s": timing["fit_s"], "rows_per_s": timing["rows"] / timing["generate_s"],
            "epochs": timing["epochs"], "peer": timing, **{k: metrics.get(key) for k, key in METRICS.items()}}


def score_rows(cfg, table: str, syn_file: Path, seed: int, model: str) -> dict:
    """A peer's rows (Parquet) cast to our prepared schema, released where our generate stage puts
    its shards (``<work>/<table>/synthetic/``), and scored by our score stage: its metrics."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.typed import conform

    paths = StagePaths.of(cfg.work_dir, table)
    schema = load_prepared(paths)[2]
    syn = conform(pd.read_parquet(syn_file), syn_file, schema, cfg.dataset(table))
    with atomic_dir(paths.synthetic) as tmp:
        shard = tmp / shard_name(0)
        pq.write_table(schema.to_release(pa.Table.from_pandas(syn, schema=schema.arrow(), preserve_index=False)),
                       shard)
        write_json(tmp / paths.generated.name, {"dataset": table, "rows": len(syn), "shards": 1, "seed": seed,
                                                "model": model, "data_hash": sha256_files([shard])})
    return run_stage("score", cfg, table).metrics


def run_table(table: str, seed: int, args, overrides: dict) -> dict[str, dict]:
    """Every side on one table and seed, in a temporary folder."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sets = {"seed": seed, "work_dir": str(folder / "work"), "metrics_dir": str(folder / "metrics"),
                "publish.release_root": str(folder / "releases"),
                "datasets": {table: dataset_entry(table, args.suite_dir, folder / "data")},
                "score.report": False, "score.thresholds": {}, **overrides}
        cfg = load_config(PARAMS, sets)
        run_stage("ingest", cfg, table)
        train, _, _, _ = load_prepared(StagePaths.of(cfg.work_dir, table))
        rows = min(args.rows or len(train), len(train))
        sets["generate.rows"] = rows
        out = {"ours": ours(load_config(PARAMS, sets), table)}
        report(table, seed, "ours", out["ours"])
        if not args.skip_peer:
            out["mostly"] = peer(load_config(PARAMS, sets), table, rows, seed, args, folder)
            report(table, seed, "mostly", out["mostly"])
            if args.budget_match:
                budget = {**sets, "train.budget_seconds": out["mostly"]["train_s"]}
                out["ours_budget"] = ours(load_config(PARAMS, budget), table)
                report(table, seed, "ours_budget", out["ours_budget"])
    return out


def report(table: str, seed: int, side: str, r: dict) -> None:
    figures = ", ".join(f"{k} {r[k]:.4g}" for k in COLUMNS if isinstance(r.get(k), (int, float)))
    print(f"{table} seed {seed} {side}: {figures}", flush=True)


def summarize(runs: dict[str, list[dict[str, dict]]]) -> dict:
    """{table: [one run per seed: {side: figures}]} -> {table: {side: {column: [mean, sd]}}}, the
    sides in SIDES order, a side only where some seed ran it."""
    result: dict = {}
    for table, seeds in runs.items():
        for side in SIDES:
            got = [run[side] for run in seeds if side in run]
            if got:
                result.setdefault(table, {})[side] = {c: summary([r.get(c) for r in got]) for c in COLUMNS}
    return result


def cell(figure: list, digits: int) -> str:
    """A [mean, sd] pair as printed: ``mean ± sd`` to ``digits`` decimals, n/a without a mean."""
    mean, sd = figure
    return "n/a" if mean is None else f"{mean:,.{digits}f} ± {sd:,.{digits}f}"


def table_lines(result: dict) -> list[str]:
    """The printed table: a row per table and side, each column ``mean ± sd``."""
    widths = {c: 19 for c in COLUMNS}
    lines = [f"{'table':9} {'side':12} " + " ".join(f"{c:>{widths[c]}}" for c in COLUMNS)]
    for table, sides in result.items():
        for side, row in sides.items():
            cells = [cell(row[c], 1 if c in ("train_s", "rows_per_s", "epochs") else 3) for c in COLUMNS]
            lines.append(f"{table:9} {side:12} " + " ".join(f"{cell:>{widths[c]}}" for c, cell in zip(COLUMNS, cells)))
    return lines


def check_peer(python: str) -> str:
    """The peer's engine version; exits in one line when its Python or the engine is missing."""
    if not Path(python).is_file():
        raise SystemExit(f"--peer-python {python}: not found; make a virtual environment with "
                         f"`pip install mostlyai-engine=={PEER_VERSION}` and pass its python (or set MOSTLY_PYTHON), "
                         "or --skip-peer")
    done = subprocess.run([python, "-c", "import mostlyai.engine as e; print(e.__version__)"], capture_output=True,
                          text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise SystemExit(f"--peer-python {python}: cannot import mostlyai.engine; run "
                         f"`{python} -m pip install mostlyai-engine=={PEER_VERSION}`, or --skip-peer")
    return done.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", nargs="+", default=["adult"], choices=[*TABLES, "all"],
                    help="all = adult and the suite tables")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--peer-python", default=os.environ.get("MOSTLY_PYTHON") or DEFAULT_PEER,
                    help="the Python of the environment with mostlyai-engine (default: $MOSTLY_PYTHON, else "
                         f"{DEFAULT_PEER})")
    ap.add_argument("--budget-match", action=argparse.BooleanOptionalAction, default=True,
                    help="train ours again with train.budget_seconds = the peer's training seconds")
    ap.add_argument("--skip-peer", action="store_true", help="ours only (no peer, no budget match)")
    ap.add_argument("--epochs", type=int, default=None, help="our train.epochs (default: params.yaml's)")
    ap.add_argument("--peer-max-epochs", type=float, default=None, help="the engine's max_epochs (default: its 100)")
    ap.add_argument("--rows", type=int, default=None,
                    help="generate at most this many rows (default: as many as the training rows)")
    ap.add_argument("--suite-dir", type=Path, default=SUITE_DIR, help=f"the suite tables (default: {SUITE_DIR})")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting of our side, as the CLI's --set")
    args = ap.parse_args()
    tables = TABLES if "all" in args.tables else list(dict.fromkeys(args.tables))
    overrides = parse_overrides(args.overrides)
    if args.epochs is not None:
        overrides["train.epochs"] = args.epochs
    version = None if args.skip_peer else check_peer(args.peer_python)
    # Imported before any clock runs, as the peer's runner imports torch and its engine first.
    import torch  # noqa: F401

    import pipeline.models  # noqa: F401
    import pipeline.sampling  # noqa: F401
    if version:
        print(f"peer: mostlyai-engine {version} ({args.peer_python})", flush=True)
    runs = {table: [run_table(table, seed, args, overrides) for seed in args.seeds] for table in tables}
    result = summarize(runs)
    print("\n".join(table_lines(result)))
    print(f"(seeds {args.seeds}; mean ± sample sd; scores by our score stage)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
