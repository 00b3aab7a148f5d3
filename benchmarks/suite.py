"""The published benchmark suite: our default model (and any --models) on Adult, Default, Shoppers
and Magic with the papers' splits, several seeds, a training budget per table, next to the rows
TabSyn, TabDiff and TabPC publish for the same tables (issue 28, item 1).

    python benchmarks/suite.py [--tables adult default shoppers magic] [--models diffusion ...]
                               [--seeds 0 1 2] [--budget-seconds 600] [--data ../shared/data]
                               [--protection both|default] [--set key=value ...]
                               [--split papers|seeded] [--papers-mle [--xgb-python PATH]]

Data (``--data``, default ``../shared/data`` beside the repo): ``suite/`` holds Default, Shoppers
and Magic as UCI ships them and a README whose table of published figures is read here at run time
(TabPC's five-seed re-evaluation, ``april-tools/tabpc``). Adult is the repo's ``data/adult``
Parquet pair: the official adult.data / adult.test split. Ingest reads the suite files as they are
(Shoppers' semicolons and TRUE/FALSE, Magic's headerless file); what the papers assume about them
is declared in ``TABLES`` below as dataset entries (Default's coded integers categorical, Magic's
column names), never in the pipeline. The papers split the three 90/10 at random; ``--split papers``
(the default) makes their very split, TabSyn's ``process_dataset.py`` (seed 1234, reshuffled until
every category is among the training rows; Magic without its first line, which their pandas read as
a header), so our rows are scored on the test rows the published figures were; ``--split seeded``
is a permutation seeded ``SPLIT_SEED`` (the split before). Either is made once, the same for every
run seed (as Adult's files are), as a training and a test file of the source's own bytes (header and line endings
kept), declared as ``source`` and ``holdout_source``.

Each (table, model, seed) runs ``python -m pipeline`` ingest, train, generate and score in a
temporary folder, with params.yaml's settings plus: the seed, ``model.name`` and that model's recipe
(``model_frontier.RECIPES``), ``train.budget_seconds`` (``--budget-seconds``), no report and no
gate, no membership or anonymeter attacks unless ``--attacks`` (the papers report none;
``score.privacy_min_holdout`` above any holdout skips them, the DCR share is still scored), then any
--set. Generate makes as many rows as the training split (params.yaml's default). Then (``--protection
both``, the default) generate and score run again from the same model with
``generate.value_protection=false``: a second row, ``<model> unprotected``. The papers release every
value as drawn, and SDMetrics' pair trends cut each side's numbers into 10 bins of that side's own
range, so clipping the extremes (value protection) moves every bin edge of the synthetic side:
the unprotected row is the like-for-like comparison, the protected one what a release holds.

Prints a line per run, then per table our mean ± sample sd over the seeds next to the three
published rows: shape and trend error % (100 x (1 - score)); the trend error over every pair,
which is the published rows' trend error: they were scored with SDMetrics 0.24.0 (TabPC's
requirements.txt; TabSyn used 0.11.1), whose QualityReport averaged every pair, while since January
2026 (sdv-dev/SDMetrics#826) it counts only the pairs whose real |r| > 0.5 or Cramer's V > 0.3, as
our ``quality.column_pair_trends`` does (shown too, with no published counterpart); the same every-pair
error with each number cut on the real side's 10 bins on both sides ("real-bin", ours only: the
QualityReport cuts each side on its own range, so a synthetic extreme a little off the real one
moves every edge; the gap between the two is that effect); TSTR ROC AUC;
detection AUC (the papers' C2ST score c as AUC = 1 - c / 2); alpha-precision; beta-recall; DCR
share; training seconds (ours: the train stage's wall time; the papers': what TabPC reports, Adult
only, on a GPU). The scorers differ: ours judge TSTR and detection with scikit-learn's histogram
gradient boosting, the papers with XGBoost, and our shapes and trends are our fidelity scorer's
(``vs_sdmetrics.py`` compares it with SDMetrics'). A metric our score stage does not write shows
n/a. A line per run also gives its epochs and each stage's seconds.

``--papers-mle`` scores TSTR the papers' way too ("MLE xgb"): ``_mle_runner.py``, run by a Python
with xgboost (``--xgb-python``; default $XGB_PYTHON, else /work/venvs/xgb/bin/python), fits XGBoost
over TabSyn's grid of 36 settings on eight ninths of the rows, keeps the one with the best ROC AUC on
the other ninth and reports its ROC AUC on the real test split; the same on the real training split
("TRTR xgb"), which should read as the papers' own train-on-real figures if the protocol is theirs.

Last, one JSON line like ``model_frontier.py``'s, scores as the score stage writes them (``shapes``
and ``trends`` are scores, not error %): ``{"<table>": {"<model>": {"shapes": [mean, sd], "trends":
.., "trends_all": .., "trends_real_bins": .., "tstr": .., "tstr_xgb": .., "trtr_xgb": .., "detection_auc": ..,
"alpha_precision": .., "beta_recall": .., "dcr_share": .., "train_s": ..}}}``, null where absent.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from model_frontier import RECIPES, summary  # noqa: E402

from pipeline.artifacts import StagePaths  # noqa: E402
from pipeline.config import load_config, parse_overrides  # noqa: E402

PARAMS = REPO / "params.yaml"
DATA = REPO.parent / "shared" / "data"
SPLIT_SEED = 0  # --split seeded: one fixed 90/10 split per table (the rows vs_mostly.py splits off too)
TEST_SHARE = 0.1
# --split papers (the default): TabSyn's process_dataset.py split (papers_split); each table's categorical
# columns it checks are those of their data/Info/<table>.json (the target not among them).
PAPERS_SEED = 1234
PAPERS_TRIES = 1000
NO_ATTACKS = 10**12  # score.privacy_min_holdout above any holdout: the privacy attacks are skipped, not DCR
MAGIC_NAMES = ["fLength", "fWidth", "fSize", "fConc", "fConc1", "fAsym", "fM3Long", "fM3Trans", "fAlpha", "fDist",
               "class"]
PAY = ["PAY_0", "PAY_2", "PAY_3", "PAY_4", "PAY_5", "PAY_6"]
# Each table as a dataset entry of params.yaml (file names under --data for the suite tables).
# ``title`` is its name in the README's table of published rows.
TABLES = {
    "adult": {"title": "Adult", "entry": {"source": str(REPO / "data/adult/train.parquet"),
                                          "holdout_source": str(REPO / "data/adult/test.parquet"),
                                          "target": "income"}},
    "default": {"title": "Default", "file": "suite/default.csv",
                "papers": {"categorical": ["SEX", "EDUCATION", "MARRIAGE", *PAY]}, "entry": {
        "target": "default.payment.next.month",
        "drop_columns": ["ID"],  # a row id: the papers leave it out
        # coded integers (sex, schooling, marriage, months of delay) and the 0/1 target: categories in the papers
        "column_types": {c: "categorical" for c in ["SEX", "EDUCATION", "MARRIAGE", *PAY,
                                                    "default.payment.next.month"]}}},
    "shoppers": {"title": "Shoppers", "file": "suite/shoppers.csv",
                 "papers": {"categorical": ["Month", "OperatingSystems", "Browser", "Region", "TrafficType",
                                            "VisitorType", "Weekend"]}, "entry": {
        "target": "Revenue",
        "column_types": {c: "categorical" for c in ["OperatingSystems", "Browser", "Region", "TrafficType"]}}},
    # The papers read the headerless file with pandas' header="infer": its first line became column
    # names, so their Magic has 19,019 rows; --split papers leaves that line out too.
    "magic": {"title": "Magic", "file": "suite/magic04.data", "papers": {"categorical": [], "drop_first_line": True},
              "entry": {
        "target": "class", "csv": {"names": MAGIC_NAMES}}},  # UCI's magic04.names, in its order
}
# Our figure -> the metric key the score stage writes.
METRICS = {"shapes": "quality.column_shapes", "trends": "quality.column_pair_trends",
           "trends_all": "quality.column_pair_trends_all", "tstr": "utility.tstr_score",
           "detection_auc": "detection.auc", "alpha_precision": "quality.alpha_precision",
           "beta_recall": "quality.beta_recall", "dcr_share": "privacy.dcr_share"}
# Ours only: every-pair trends with the synthetic numbers cut on the real side's bins (real_bin_trends).
REAL_BINS = "trends_real_bins"
# With --papers-mle: TSTR by the papers' own protocol (``_mle_runner.py``: XGBoost over their grid of 36
# settings) on each row set, and train-on-real by it (the real training split in place of the rows).
PAPERS_MLE = ["tstr_xgb", "trtr_xgb"]
KEYS = [*METRICS, REAL_BINS, *PAPERS_MLE, "train_s"]
# The README's column headers (lower case, a word each holds) -> our figure.
PUBLISHED_COLUMNS = {"shape": "shapes", "trend": "trends_all", "mle": "tstr", "c2st": "detection_auc",
                     "alpha": "alpha_precision", "beta": "beta_recall", "dcr": "dcr_share"}
# The printed columns: header, figure, how ours is shown from its score.
COLUMNS = [("shape err %", "shapes"), ("trend err %", "trends"), ("all-pair err %", "trends_all"),
           ("real-bin err %", REAL_BINS), ("TSTR AUC", "tstr"), ("MLE xgb", "tstr_xgb"), ("TRTR xgb", "trtr_xgb"),
           ("detect AUC", "detection_auc"), ("alpha-prec", "alpha_precision"), ("beta-rec", "beta_recall"),
           ("DCR share", "dcr_share"), ("train s", "train_s")]
ERROR_PCT = {"shapes", "trends", "trends_all", REAL_BINS}
UNPROTECTED = " unprotected"  # the name of a model's rows scored again without value protection
MLE_RUNNER = REPO / "benchmarks" / "_mle_runner.py"
DEFAULT_XGB = "/work/venvs/xgb/bin/python"
XGB_INSTALL = ("python3.11 -m venv /work/venvs/xgb && /work/venvs/xgb/bin/pip install xgboost-cpu scikit-learn "
               "pandas pyarrow")


def published(readme: Path) -> dict[str, dict[str, dict[str, float | None]]]:
    """The README's published rows: {table: {model: {figure: value}}}, shapes and trends as error
    %, detection as AUC, training seconds where the README gives them (else None)."""
    text = readme.read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines()]
    try:
        start = next(i for i, line in enumerate(lines)
                     if line.startswith("|") and [c.strip().lower() for c in line.strip("|").split("|")][:2]
                     == ["table", "model"])
    except StopIteration:
        raise SystemExit(f"{readme}: no table of published rows (a '| table | model | ...' header)") from None
    header = [c.strip().lower() for c in lines[start].strip("|").split("|")]
    figures = {}
    for j, cell in enumerate(header[2:], 2):
        found = [f for word, f in PUBLISHED_COLUMNS.items() if word in cell]
        if found:
            figures[j] = found[0]
    if set(figures.values()) != set(PUBLISHED_COLUMNS.values()):
        missing = sorted(set(PUBLISHED_COLUMNS.values()) - set(figures.values()))
        raise SystemExit(f"{readme}: the published table has no column for {', '.join(missing)}")
    rows: dict = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        row = {}
        for j, fig in figures.items():
            try:
                row[fig] = float(cells[j].replace(",", ""))
            except (IndexError, ValueError):
                row[fig] = None
        if row["detection_auc"] is not None:
            row["detection_auc"] = 1 - row["detection_auc"] / 2  # C2ST = 2 - 2 AUC for an AUC >= 0.5
        row["tstr_xgb"] = row["tstr"]  # the papers' MLE is their XGBoost protocol's TSTR
        rows.setdefault(cells[0], {})[cells[1]] = {**row, "trtr_xgb": None, "train_s": None}
    # "Train-on-real MLE in the papers: Adult .927, Default .770, ..." (the same protocol on real rows)
    said = re.search(r"Train-on-real MLE in the papers:([^\n]*)", text)
    for table, value in re.findall(r"(\w+) (\d*\.\d+|\d+)", said.group(1) if said else ""):
        for model in rows.get(table, {}).values():
            model["trtr_xgb"] = float(value)
    # "TabPC also reports training seconds on a GPU (Adult: TabDiff 11,605 s, TabSyn 3,083 s, ...)"
    for table, models in rows.items():
        said = re.search(rf"training seconds[^(]*\({re.escape(table)}:([^)]*)\)", text)
        for model, seconds in re.findall(r"(\w+) ([\d,.]+) s\b", said.group(1) if said else ""):
            if model in models:
                models[model]["train_s"] = float(seconds.replace(",", ""))
    return rows


def papers_split(body: list[bytes], positions: list[int], sep: bytes) -> tuple[np.ndarray, np.ndarray]:
    """TabSyn's ``train_val_test_split`` on a file's data lines: (training, test) line numbers. One index
    array shuffled in place by numpy's legacy generator seeded ``PAPERS_SEED``, then ``+ 1``, ... until
    the first ``int(0.9 n)`` of it hold every value of each column at ``positions`` (the fields of a
    line split on ``sep``, compared as written: pandas would parse them alike); the test rows are the
    last ``n - int(0.9 n)``."""
    n = len(body)
    n_train = int(n * 0.9)  # theirs, as written
    fields = [line.rstrip(b"\r\n").split(sep) for line in body]
    columns = [[f[p] for f in fields] for p in positions]
    every = [set(c) for c in columns]
    idx = np.arange(n)
    for seed in range(PAPERS_SEED, PAPERS_SEED + PAPERS_TRIES):
        np.random.RandomState(seed).shuffle(idx)  # np.random.seed(seed); np.random.shuffle(idx), as theirs
        train = idx[:n_train]
        if all({c[i] for i in train} == values for c, values in zip(columns, every)):
            return train.copy(), idx[n_train:].copy()
    raise SystemExit(f"no split in {PAPERS_TRIES} shuffles holds every category among the training rows; "
                     "pass --split seeded")


def split_lines(source: Path, folder: Path, header: bool, papers: dict | None = None) -> tuple[Path, Path]:
    """The source's data lines split 90/10 into ``train`` and ``test`` files of its own bytes (the
    header line, if any, atop both; each side's lines in the file's order); blank lines are left out.
    ``papers`` (a table's ``TABLES`` entry ``papers``): TabSyn's split (``papers_split``) of the lines,
    its first data line left out if ``drop_first_line``; else a permutation seeded ``SPLIT_SEED``."""
    lines = source.read_bytes().splitlines(keepends=True)
    head, body = (lines[:1], lines[1:]) if header else ([], lines)
    body = [line for line in body if line.strip()]
    ending = b"\r\n" if lines[0].endswith(b"\r\n") else b"\n"
    body[-1] = body[-1] if body[-1].endswith((b"\n", b"\r")) else body[-1] + ending
    if papers is not None:
        if papers.get("drop_first_line"):
            body = body[1:]
        sep = b";" if head and head[0].count(b";") > head[0].count(b",") else b","
        names = [c.strip().strip(b'"').decode() for c in head[0].rstrip(b"\r\n").split(sep)] if head else []
        missing = [c for c in papers["categorical"] if c not in names]
        if missing:
            raise SystemExit(f"{source}: no column {missing[0]!r} in its header line; the papers' split checks it")
        train_at, test_at = papers_split(body, [names.index(c) for c in papers["categorical"]], sep)
    else:
        order = np.random.default_rng(SPLIT_SEED).permutation(len(body))
        cut = int(len(body) * TEST_SHARE)
        train_at, test_at = order[cut:], order[:cut]
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, picked in (("train", train_at), ("test", test_at)):
        path = folder / f"{name}{source.suffix}"
        path.write_bytes(b"".join(head + [body[i] for i in np.sort(picked)]))
        out.append(path)
    return out[0], out[1]


def dataset_entry(table: str, data: Path, folder: Path, split: str = "papers") -> dict:
    """The table's dataset entry, its suite file split into ``folder`` (``split``: papers or seeded)."""
    spec = TABLES[table]
    entry = json.loads(json.dumps(spec["entry"]))
    if "file" in spec:
        train, test = split_lines(data / spec["file"], folder / table, header="names" not in entry.get("csv", {}),
                                  papers=spec["papers"] if split == "papers" else None)
        entry.update(source=str(train), holdout_source=str(test))
    return entry


def run_one(table: str, model: str, seed: int, args, overrides: dict, unprotected: bool = False) -> dict:
    """ingest -> train -> generate -> score through the CLI in a temporary folder: {model: our figures};
    ``unprotected``: then generate and score again from the same model with value protection off,
    under ``model + UNPROTECTED``."""
    with tempfile.TemporaryDirectory(prefix=f"suite-{table}-") as tmp:
        folder = Path(tmp)
        params = yaml.safe_load(PARAMS.read_text())
        params.update(seed=seed, work_dir=str(folder / "work"), metrics_dir=str(folder / "metrics"),
                      datasets={table: dataset_entry(table, args.data, folder / "data", args.split)})
        params["publish"]["release_root"] = str(folder / "releases")
        params["score"].update(report=False, thresholds={})
        if not args.attacks:
            params["score"]["privacy_min_holdout"] = NO_ATTACKS
        (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        sets = {"model.name": model, **RECIPES.get(model, {}), "train.budget_seconds": args.budget_seconds,
                **overrides}
        load_config(folder / "params.yaml", sets)  # a bad --set fails here in one line, before any stage
        cli = [f"--set={k}={json.dumps(v)}" for k, v in sets.items()]
        log = folder / "stages.log"

        def stage(name: str, *more: str) -> None:
            with open(log, "a") as out:
                done = subprocess.run([sys.executable, "-m", "pipeline", name, "--dataset", table, "--params",
                                       str(folder / "params.yaml"), *cli, *more], cwd=REPO, stdout=out, stderr=out)
            if done.returncode != 0:
                tail = log.read_text().strip().splitlines()[-15:]
                print("\n".join(tail), file=sys.stderr)
                raise SystemExit(f"{table} {model} seed {seed}: `pipeline {name}` failed (exit {done.returncode}; "
                                 "its last lines are above)")

        paths = StagePaths.of(folder / "work", table)

        def mle(rows: Path) -> float | None:
            """The papers' MLE of ``rows`` (the stage's own Parquet) against the prepared holdout."""
            return papers_mle(rows, paths.holdout_data, table, seed, args, overrides) if args.papers_mle else None

        def figures() -> dict:
            metrics = json.loads((folder / "metrics" / f"{table}.json").read_text())
            return {**{k: metrics.get(key) for k, key in METRICS.items()},
                    REAL_BINS: real_bin_trends(folder / "work", table), "tstr_xgb": mle(paths.synthetic)}

        for name in ("ingest", "train", "generate", "score"):
            stage(name)
        work = folder / "work" / table
        epochs = json.loads((work / "model" / "model.json").read_text()).get("epochs")
        stages = json.loads((work / "stage_seconds.json").read_text())
        trained = {"train_s": stages["train"], "epochs": epochs,  # one training for both rows
                   "trtr_xgb": mle(paths.train_data)}
        runs = {model: {**figures(), **trained, "stage_s": stages}}
        if unprotected:  # the same model's rows as drawn, every value released: what the papers score
            for name in ("generate", "score"):
                stage(name, "--set=generate.value_protection=false")
            runs[model + UNPROTECTED] = {**figures(), **trained, "stage_s": {}}
    return runs


def papers_mle(train: Path, test: Path, table: str, seed: int, args, overrides: dict) -> float:
    """The papers' MLE (``_mle_runner.py`` in xgboost's environment, ``--xgb-python``): XGBoost over
    their grid, chosen on a ninth of ``train``, its ROC AUC on the real ``test`` rows. Threads:
    ``--set runtime.threads`` if given, else xgboost's own."""
    cmd = [str(args.xgb_python), str(MLE_RUNNER), "--train", str(train), "--test", str(test),
           "--target", TABLES[table]["entry"]["target"], "--seed", str(seed)]
    if overrides.get("runtime.threads"):
        cmd += ["--threads", str(overrides["runtime.threads"])]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"{table} seed {seed}: _mle_runner.py failed (exit {done.returncode}): {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])["auc"]


def real_bin_trends(work: Path, table: str) -> float:
    """The every-pair trend score of the rows just generated with each number of a mixed pair cut on
    the real side's 10 bins, both sides (SDMetrics 0.32's ContingencySimilarity), where the
    published figure (the QualityReport's, ``trends_all``) cuts each side on its own range: there a
    synthetic minimum or maximum a little off the real one moves every edge, and with them rows
    between bins in a column's dense middle. The gap between the two is that effect of the extremes."""
    from pipeline.artifacts import load_prepared, read_synthetic
    from pipeline.metrics.fidelity import score_fidelity

    paths = StagePaths.of(work, table)
    train, _, schema, _ = load_prepared(paths)
    return score_fidelity(train, read_synthetic(paths.synthetic), schema, bins="real").column_pair_trends_all


def shown(figure: str, value: float | None) -> str:
    """A figure as printed: error % with 2 decimals, seconds whole, the rest with 3."""
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if figure == "train_s" else f"{value:.2f}" if figure in ERROR_PCT else f"{value:.3f}"


def ours_cell(figure: str, mean: float | None, sd: float | None) -> str:
    """Our mean ± sd; a score of shapes or trends as its error % (the spread scales by 100)."""
    if mean is None:
        return "n/a"
    if figure in ERROR_PCT:
        mean, sd = 100 * (1 - mean), 100 * sd
    return f"{shown(figure, mean)} ± {shown(figure, sd)}"


def table_lines(result: dict, papers: dict) -> list[str]:
    """Per table: a row per model of ours (mean ± sd), then the published rows."""
    width = 16
    lines = [f"{'table':9} {'model':26} " + " ".join(f"{h:>{width}}" for h, _ in COLUMNS)]
    for table, models in result.items():
        for model, row in models.items():
            cells = [ours_cell(fig, *row[fig]) for _, fig in COLUMNS]
            lines.append(f"{table:9} {'ours ' + model:26} " + " ".join(f"{c:>{width}}" for c in cells))
        for name, row in papers.get(TABLES[table]["title"], {}).items():
            lines.append(f"{table:9} {name + ' (pub.)':26} "
                         + " ".join(f"{shown(fig, row.get(fig)):>{width}}" for _, fig in COLUMNS))
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    ap.add_argument("--models", nargs="+", default=None, choices=sorted(RECIPES),
                    help="default: params.yaml's model.name")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--budget-seconds", type=float, default=600.0,
                    help="train.budget_seconds of every run (default: %(default)s)")
    ap.add_argument("--data", type=Path, default=DATA,
                    help="the folder holding suite/ (default: ../shared/data beside the repo)")
    ap.add_argument("--attacks", action="store_true",
                    help="also run the membership and anonymeter attacks (params.yaml's score section)")
    ap.add_argument("--protection", choices=["both", "default"], default="both",
                    help="both (default): each run's model also scored with generate.value_protection=false, a row "
                         "'<model> unprotected' (the papers release every value as drawn), unless --set "
                         "generate.value_protection=false makes every run unprotected; default: params.yaml's "
                         "setting only")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="a setting of every run, as the CLI's --set")
    ap.add_argument("--split", choices=["papers", "seeded"], default="papers",
                    help="papers (default): TabSyn's 90/10 split of Default, Shoppers and Magic, the test rows the "
                         "published figures were scored on; seeded: a 90/10 permutation seeded 0 (this script's "
                         "split before 2026-12-07)")
    ap.add_argument("--papers-mle", action="store_true",
                    help="also score TSTR by the papers' protocol (XGBoost over their grid, _mle_runner.py) on every "
                         "row set, and train-on-real by it: columns 'MLE xgb' and 'TRTR xgb'")
    ap.add_argument("--xgb-python", default=os.environ.get("XGB_PYTHON", DEFAULT_XGB),
                    help="a Python with xgboost, scikit-learn, pandas and pyarrow, for --papers-mle "
                         "(default: $XGB_PYTHON, else %(default)s)")
    args = ap.parse_args(argv)
    readme = args.data / "suite" / "README.md"
    if not readme.is_file():
        raise SystemExit(f"--data {args.data}: no suite/README.md there; pass --data with the folder that holds "
                         "suite/ (default.csv, shoppers.csv, magic04.data and the README of published rows)")
    for table in args.tables:
        if "file" in TABLES[table] and not (args.data / TABLES[table]["file"]).is_file():
            raise SystemExit(f"--data {args.data}: {TABLES[table]['file']} not found")
    if args.papers_mle and not Path(args.xgb_python).is_file():
        raise SystemExit(f"--xgb-python {args.xgb_python}: not found; make it with `{XGB_INSTALL}`, pass "
                         "--xgb-python, or leave out --papers-mle")
    papers = published(readme)
    overrides = parse_overrides(args.overrides)
    models = args.models or [load_config(PARAMS).model.name]
    # A second, unprotected pass, unless every run is unprotected already.
    unprotected = args.protection == "both" and overrides.get("generate.value_protection") is not False
    t0 = time.perf_counter()
    result: dict = {}
    for table in args.tables:
        for model in models:
            runs: dict[str, list[dict]] = {}
            for seed in args.seeds:
                for name, r in run_one(table, model, seed, args, overrides, unprotected).items():
                    runs.setdefault(name, []).append(r)
                    figures = ", ".join(f"{k} {r[k]:.4g}" for k in [*KEYS, "epochs"]
                                        if isinstance(r.get(k), (int, float)))
                    stages = ", ".join(f"{k} {v:.0f}" for k, v in r["stage_s"].items())
                    print(f"{table} {name} seed {seed}: {figures}" + (f" (stage seconds: {stages})" if stages else ""),
                          flush=True)
            for name, rs in runs.items():
                result.setdefault(table, {})[name] = {k: summary([r.get(k) for r in rs]) for k in KEYS}
    print("\n".join(table_lines(result, papers)))
    print(f"(seeds {args.seeds}; ours: mean ± sample sd, train.budget_seconds {args.budget_seconds:g}, train s on "
          f"this machine; pub.: TabPC's five-seed figures from {readme}, train s on a GPU; "
          f"{time.perf_counter() - t0:,.0f} s in all)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
