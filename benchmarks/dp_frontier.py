"""Differential privacy on Adult: our DP-SGD run against MOSTLY AI's engine with its DP setting and AIM
(``dpmm``) at the same (epsilon, delta), several seeds, every side's rows judged by our score stage
(issue 29, item 4).

    python benchmarks/dp_frontier.py [--epsilons 1 3 10 off] [--seeds 0 1 2] [--delta 1e-5]
        [--sides ours mostly aim] [--budget-seconds 600] [--quick] [--mostly-python PATH]
        [--dpmm-python PATH] [--peer-preprocessing-share 0.1] [--aim-max-model-size 80] [--aim-iters 1000]
        [--aim-bounds private|public] [--our-bounds params|estimated|rows] [--our-categories declared|private]
        [--keep-work DIR]
        [--set key=value ...]

Each seed runs in a temporary folder: our ingest of Adult once (its official train/test files), then
for each epsilon (``off``: no differential privacy) and side:
- ``ours``: train -> generate -> score with params.yaml's defaults plus ``train.privacy.epsilon``
  (null at ``off``), ``train.privacy.delta`` (``--delta``) and ``train.budget_seconds``
  (``--budget-seconds``), then any --set. The epsilon spent is model.json's ``privacy.dp.epsilon``.
  What params.yaml's Adult entry declares as public knowledge is declared here too, as in the
  default DP run: the documented ranges (``datasets.adult.bounds``; ``--our-bounds estimated``: every
  range estimated privately instead; ``--our-bounds rows``: every numeric column's min and max from the
  rows, the knowledge ``--aim-bounds public`` gives AIM, for a like-for-like look) and category lists
  (``datasets.adult.categories``: the values the rows hold, the domain AIM is given;
  ``--our-categories private``: listed privately instead).
- ``mostly``: MOSTLY AI's engine (``_mostly_runner.py``, in its own virtual environment) on our
  prepared training rows with its ``DifferentialPrivacyConfig``: ``max_epsilon`` = epsilon, ``delta``,
  ``value_protection_epsilon`` = ``--peer-preprocessing-share`` x epsilon (the engine's default, 1.0,
  would take all of epsilon 1), its other defaults; at ``off`` its plain defaults (value protection on).
- ``aim``: AIM from dpmm (``_dpmm_runner.py``, its own virtual environment) with its own private
  binning (``--peer-preprocessing-share`` of epsilon; bounds estimated privately unless
  ``--aim-bounds public``) and the categories given as a public domain; not run at ``off`` (AIM is
  a DP mechanism).
A peer's rows are cast to our prepared schema and scored by the same score stage as ours
(``vs_mostly.score_rows``), as many rows as the training rows. Training seconds: our train stage's
wall time; the engine's split + analyze + encode + train; dpmm's binning + AIM fit.

``--quick``: a smoke test, not a result: 2,000 training and 2,000 held-out rows (a seeded sample of
Adult's files), our model 2 epochs, the engine 1 epoch, AIM with max_model_size 1, 20 iterations
and public bounds for every side (too few rows for private bounds at epsilon 1).

Prints a line per run, then a table (mean ± sample sd over the seeds, per epsilon and side; ``spent``
is the epsilon each side reports it spent) and, last, one JSON line ``{"table": "adult", "rows": N,
"delta": D, "seeds": [..], "results": {"<epsilon>": {"<side>": {"train_s": [mean, sd], "epsilon_spent":
.., "shapes": .., "trends": .., "tstr": .., "detection_auc": .., "mia_auc": ..}}}}``, null where absent.
"""

from __future__ import annotations

import argparse
import contextlib
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
from vs_mostly import cell, score_rows  # noqa: E402

from pipeline.artifacts import StagePaths, load_prepared  # noqa: E402
from pipeline.config import load_config, parse_overrides  # noqa: E402
from pipeline.files import read_json  # noqa: E402
from pipeline.runtime import threads_available  # noqa: E402
from pipeline.stages import run_stage  # noqa: E402

PARAMS = REPO / "params.yaml"
TABLE = "adult"
SIDES = ("ours", "mostly", "aim")
EPSILONS = ["1", "3", "10", "off"]
PEERS = {  # side -> its runner, the flag naming its Python, the default, the module it needs, what installs it
    "mostly": {"runner": "_mostly_runner.py", "flag": "--mostly-python", "env": "MOSTLY_PYTHON",
               "default": "/work/venvs/mostly/bin/python", "module": "mostlyai.engine",
               "install": "pip install torch==2.13.0 mostlyai-engine==2.7.3"},
    "aim": {"runner": "_dpmm_runner.py", "flag": "--dpmm-python", "env": "DPMM_PYTHON",
            "default": "/work/venvs/dpmm/bin/python", "module": "dpmm",
            "install": "pip install dpmm==0.1.9 'pyarrow<21'"},
}
METRICS = {"shapes": "quality.column_shapes", "trends": "quality.column_pair_trends", "tstr": "utility.tstr_score",
           "detection_auc": "detection.auc", "mia_auc": "privacy.mia_auc"}
COLUMNS = ["train_s", "epsilon_spent", *METRICS]
QUICK_ROWS = 2000
QUICK = {"ours_epochs": 2, "mostly_epochs": 1, "aim_max_model_size": 1.0, "aim_iters": 20}
SPLIT_SEED = 0  # the quick sample: the same rows for every run seed


def epsilon_of(label: str) -> float | None:
    """An ``--epsilons`` entry as a number (None for ``off``); one line for anything else."""
    if label == "off":
        return None
    try:
        value = float(label)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise SystemExit(f"--epsilons {label!r}: expected a positive number or off")
    return value


def quick_entry(folder: Path) -> dict:
    """Adult's dataset entry on a seeded sample of QUICK_ROWS training and QUICK_ROWS held-out rows."""
    import pandas as pd

    entry = dict(DATASETS[TABLE])
    folder.mkdir(parents=True, exist_ok=True)
    for key, name in (("source", "train"), ("holdout_source", "test")):
        frame = pd.read_parquet(entry[key])
        frame = frame.sample(n=min(QUICK_ROWS, len(frame)), random_state=SPLIT_SEED).sort_index()
        frame.to_parquet(folder / f"{name}.parquet", index=False)
        entry[key] = str(folder / f"{name}.parquet")
    return entry


def ours(cfg) -> dict:
    """Our train -> generate -> score on the prepared data in ``cfg.work_dir``; refuses a run asked
    for an epsilon whose model.json records no DP (a pipeline without DP-SGD would train without it)."""
    paths = StagePaths.of(cfg.work_dir, TABLE)
    shutil.rmtree(paths.checkpoints, ignore_errors=True)  # a fresh model each time, never a resumed one
    run_stage("train", cfg, TABLE)
    train_s = read_json(paths.stage_seconds)["train"]
    model = read_json(paths.model / "model.json")
    spent = ((model.get("privacy") or {}).get("dp") or {}).get("epsilon")
    epsilon = cfg.train.privacy.epsilon
    if epsilon is not None and spent is None:
        raise SystemExit(f"ours at epsilon {epsilon:g}: {paths.model / 'model.json'} has no privacy.dp record, so the "
                         "train stage did not train with DP-SGD; run this on a pipeline with train.privacy "
                         "(issue 29), or leave ours out of --sides")
    run_stage("generate", cfg, TABLE)
    metrics = run_stage("score", cfg, TABLE).metrics
    return {"train_s": train_s, "epsilon_spent": spent, "epochs": model.get("epochs"),
            **{k: metrics.get(key) for k, key in METRICS.items()}}


def peer_command(side: str, epsilon: float | None, args, files: dict, rows: int, seed: int, threads: int) -> list:
    """The runner's command line for ``side`` at ``epsilon`` (None: no DP)."""
    spec = PEERS[side]
    cmd = [getattr(args, spec["flag"][2:].replace("-", "_")), str(REPO / "benchmarks" / spec["runner"]),
           "--train", str(files["train"]), "--out", str(files["out"]), "--rows", str(rows), "--seed", str(seed),
           "--threads", str(threads)]
    share = args.peer_preprocessing_share
    if side == "mostly":
        cmd += ["--workspace", str(files["workspace"])]
        if epsilon is not None:
            cmd += ["--max-epsilon", repr(epsilon), "--delta", repr(args.delta),
                    "--value-protection-epsilon", repr(share * epsilon)]
        if args.quick:
            cmd += ["--max-epochs", str(QUICK["mostly_epochs"])]
    else:
        size = QUICK["aim_max_model_size"] if args.quick else args.aim_max_model_size
        iters = QUICK["aim_iters"] if args.quick else args.aim_iters
        cmd += ["--epsilon", repr(epsilon), "--delta", repr(args.delta), "--preprocessing-share", repr(share),
                "--max-model-size", repr(size), "--iters", str(iters)]
        if args.quick or args.aim_bounds == "public":
            cmd.append("--public-bounds")
    return cmd


def peer(side: str, cfg, epsilon: float | None, rows: int, seed: int, args, folder: Path) -> dict:
    """A peer on our prepared training rows, its rows scored by our score stage."""
    threads = threads_available(cfg)
    files = {"train": folder / "peer_train.parquet", "out": folder / f"{side}_synthetic.parquet",
             "workspace": folder / f"{side}_ws"}
    shutil.rmtree(files["workspace"], ignore_errors=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **{
        v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
    cmd = peer_command(side, epsilon, args, files, rows, seed, threads)
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)  # its warnings show on our stderr
    if done.returncode != 0:
        raise SystemExit(f"{side} epsilon {epsilon} seed {seed}: its runner failed (exit {done.returncode}; "
                         "its output is above)")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    metrics = score_rows(cfg, TABLE, files["out"], seed, {"mostly": "mostlyai-engine TabularARGN",
                                                          "aim": "dpmm AIM"}[side])
    return {"train_s": record["fit_s"], "epsilon_spent": record.get("epsilon_spent"), "peer": record,
            **{k: metrics.get(key) for k, key in METRICS.items()}}


def seed_folder(seed: int, keep: str | None):
    """The folder one seed runs in: a temporary one, or ``KEEP/seed-<seed>`` (``--keep-work``), which
    stays for a look at the last run's work (model, rows, scores); one line if it is not empty."""
    if keep is None:
        return tempfile.TemporaryDirectory(prefix="dp-frontier-")
    path = Path(keep) / f"seed-{seed}"
    if path.exists() and any(path.iterdir()):
        raise SystemExit(f"--keep-work {keep}: {path} is not empty; name another folder")
    path.mkdir(parents=True, exist_ok=True)
    return contextlib.nullcontext(str(path))


def run_seed(seed: int, args, overrides: dict) -> dict[str, dict[str, dict]]:
    """Every epsilon and side on one seed, in its folder: {epsilon label: {side: figures}}."""
    out: dict[str, dict[str, dict]] = {}
    with seed_folder(seed, args.keep_work) as tmp:
        folder = Path(tmp)
        entry = quick_entry(folder / "data") if args.quick else dict(DATASETS[TABLE])
        # Value links are exact value pairs of the real rows, outside any budget: a DP run refuses them,
        # so every side here (the "off" run too) trains on the same prepared rows without them.
        entry["keep_links"] = False
        sets = {"seed": seed, "work_dir": str(folder / "work"), "metrics_dir": str(folder / "metrics"),
                "publish.release_root": str(folder / "releases"), "datasets": {TABLE: entry},
                "score.report": False, "score.thresholds": {}, "train.budget_seconds": args.budget_seconds,
                "train.privacy.delta": args.delta, **({"train.epochs": QUICK["ours_epochs"]} if args.quick else {}),
                **overrides}
        cfg = load_config(PARAMS, sets)
        run_stage("ingest", cfg, TABLE)
        train, _, schema, _ = load_prepared(StagePaths.of(cfg.work_dir, TABLE))
        sets["generate.rows"] = len(train)
        # --quick: 2,000 rows are too few to estimate ranges privately: public bounds, as AIM's in --quick.
        rows_bounds = {c.name: [float(train[c.name].min()), float(train[c.name].max())]
                       for c in schema.modeled if c.kind in ("continuous", "integer")}
        if args.quick:
            entry = {**entry, "bounds": rows_bounds}
        entry = {**entry, **our_public(args, rows_bounds)}
        sets["datasets"] = {TABLE: entry}
        train[schema.names].to_parquet(folder / "peer_train.parquet", index=False)
        args.rows = len(train)
        for label in args.epsilons:
            epsilon = epsilon_of(label)
            cfg = load_config(PARAMS, {**sets, "train.privacy.epsilon": epsilon})
            for side in args.sides:
                if side == "aim" and epsilon is None:
                    continue  # AIM is a DP mechanism: no run without a budget
                got = ours(cfg) if side == "ours" else peer(side, cfg, epsilon, len(train), seed, args, folder)
                out.setdefault(label, {})[side] = got
                report(label, seed, side, got)
    return out


def our_public(args, rows_bounds: dict[str, list[float]]) -> dict:
    """What ours declares as public knowledge: params.yaml's ``datasets.adult.column_types``,
    ``bounds`` and ``categories`` (the default DP run's), less what ``--our-bounds estimated`` and
    ``--our-categories private`` leave to be estimated; ``--our-bounds rows``: ``rows_bounds`` (each
    numeric column's min and max in the rows, as AIM's public bounds). --quick's sample keeps its own."""
    declared = load_config(PARAMS).dataset(TABLE)
    out: dict = {"column_types": dict(declared.column_types)}
    if args.our_bounds == "params" and not args.quick:
        out["bounds"] = {name: list(value) for name, value in declared.bounds.items()}
    elif args.our_bounds == "rows" and not args.quick:
        out["bounds"] = dict(rows_bounds)
    if args.our_categories == "declared":
        out["categories"] = {name: list(values) for name, values in declared.categories.items()}
    return out


def report(label: str, seed: int, side: str, r: dict) -> None:
    figures = ", ".join(f"{k} {r[k]:.4g}" for k in [*COLUMNS, "epochs"] if isinstance(r.get(k), (int, float)))
    print(f"epsilon {label} seed {seed} {side}: {figures}", flush=True)


def summarize(runs: list[dict[str, dict[str, dict]]]) -> dict:
    """[one run per seed: {epsilon: {side: figures}}] -> {epsilon: {side: {column: [mean, sd]}}}, the
    epsilons in the order first run, the sides in SIDES order, a side only where some seed ran it."""
    result: dict = {}
    for label in dict.fromkeys(label for run in runs for label in run):
        for side in SIDES:
            got = [run[label][side] for run in runs if side in run.get(label, {})]
            if got:
                result.setdefault(label, {})[side] = {c: summary([r.get(c) for r in got]) for c in COLUMNS}
    return result


def table_lines(result: dict) -> list[str]:
    """The printed table: a row per epsilon and side, each column ``mean ± sd``."""
    heads = {"train_s": "train s", "epsilon_spent": "spent", "shapes": "shapes", "trends": "trends", "tstr": "TSTR",
             "detection_auc": "detection AUC", "mia_auc": "MIA AUC"}
    width = 17
    lines = [f"{'epsilon':8} {'side':7} " + " ".join(f"{heads[c]:>{width}}" for c in COLUMNS)]
    for label, sides in result.items():
        for side, row in sides.items():
            cells = [cell(row[c], 1 if c == "train_s" else 2 if c == "epsilon_spent" else 3) for c in COLUMNS]
            lines.append(f"{label:8} {side:7} " + " ".join(f"{cell:>{width}}" for cell in cells))
    return lines


def check_python(side: str, python: str) -> None:
    """Exits in one line when a peer's Python, or its package there, is missing."""
    spec = PEERS[side]
    fix = f"make a virtual environment with `{spec['install']}` and pass its python (or set {spec['env']})"
    if not Path(python).is_file():
        raise SystemExit(f"{spec['flag']} {python}: not found; {fix}, or leave {side} out of --sides")
    done = subprocess.run([python, "-c", f"import {spec['module']}"], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise SystemExit(f"{spec['flag']} {python}: cannot import {spec['module']}; {fix}, "
                         f"or leave {side} out of --sides")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epsilons", nargs="+", default=EPSILONS, help="numbers or off (default: %(default)s)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--delta", type=float, default=1e-5, help="every side's delta (default: %(default)s)")
    ap.add_argument("--sides", nargs="+", default=list(SIDES), choices=SIDES)
    ap.add_argument("--budget-seconds", type=float, default=600.0,
                    help="our train.budget_seconds (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="a smoke test: 2,000 rows, a few epochs, a small AIM")
    ap.add_argument("--keep-work", metavar="DIR", help="run each seed in DIR/seed-<seed> and keep it (the last "
                                                       "run's model, rows and scores), not in a temporary folder")
    for side, spec in PEERS.items():
        ap.add_argument(spec["flag"], default=os.environ.get(spec["env"]) or spec["default"],
                        help=f"the Python with {spec['module']} (default: ${spec['env']}, else {spec['default']})")
    ap.add_argument("--peer-preprocessing-share", type=float, default=0.1,
                    help="the share of epsilon the peers' preprocessing spends: the engine's value protection, "
                         "dpmm's binning (default: %(default)s; they add it up with the rest, "
                         "sequential composition)")
    ap.add_argument("--aim-max-model-size", type=float, default=80.0,
                    help="AIM's max_model_size in MB (default: %(default)s, the AIM paper's)")
    ap.add_argument("--aim-bounds", choices=["private", "public"], default="private",
                    help="numeric bounds for dpmm's binning: estimated privately from the rows (default), or the "
                         "rows' min and max given as public (an advantage to AIM; --quick uses it)")
    ap.add_argument("--our-bounds", choices=["params", "estimated", "rows"], default="params",
                    help="ours: the numeric ranges params.yaml's Adult entry declares (datasets.adult.bounds, the "
                         "default DP run's), every range estimated privately from the rows, or (rows) each "
                         "numeric column's min and max in the rows, given as public as --aim-bounds public gives "
                         "them to AIM (like for like; not the default DP run)")
    ap.add_argument("--our-categories", choices=["declared", "private"], default="declared",
                    help="ours: the categorical columns' values declared as params.yaml's Adult entry lists them "
                         "(datasets.adult.categories: the domain AIM is given, the default), or listed privately "
                         "from the rows")
    ap.add_argument("--aim-iters", type=int, default=1000, help="AIM's n_iters (default: %(default)s, dpmm's)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting of our side, as the CLI's --set")
    args = ap.parse_args(argv)
    args.epsilons = list(dict.fromkeys(args.epsilons))
    args.sides = list(dict.fromkeys(args.sides))
    for label in args.epsilons:
        epsilon_of(label)
    if not 0 < args.delta < 1:
        raise SystemExit(f"--delta {args.delta}: expected a number between 0 and 1 (exclusive)")
    if not 0 < args.peer_preprocessing_share < 1:
        raise SystemExit(f"--peer-preprocessing-share {args.peer_preprocessing_share}: expected a share between 0 "
                         "and 1 (exclusive)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides = parse_overrides(args.overrides)
    for side in PEERS:
        if side in args.sides:
            check_python(side, getattr(args, PEERS[side]["flag"][2:].replace("-", "_")))
    # Imported before any clock runs, as the peers' runners import their libraries first.
    import torch  # noqa: F401

    import pipeline.models  # noqa: F401
    import pipeline.sampling  # noqa: F401
    runs = [run_seed(seed, args, overrides) for seed in args.seeds]
    result = summarize(runs)
    print("\n".join(table_lines(result)))
    print(f"(Adult, {args.rows:,} training rows, delta {args.delta:g}, seeds {args.seeds}; mean ± sample sd; "
          f"scores by our score stage{'; --quick: a smoke test, not a result' if args.quick else ''})")
    print(json.dumps({"table": TABLE, "rows": args.rows, "delta": args.delta, "seeds": args.seeds,
                      "quick": args.quick, "results": result}))


if __name__ == "__main__":
    main()
