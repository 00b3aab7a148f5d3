"""What a DCR share reads on real rows that no model saw: the share's null, on one scale (the score
stage's: every numeric column over its range in the training rows) and on each side's own range
(SDMetrics' DCROverfittingProtection).

    python benchmarks/dcr_scale.py [--tables adult default shoppers magic tips gapminder breast_cancer wine]
                                   [--splits 0 1 2] [--data ../shared/data]

Each table is ingested as the benchmarks ingest it (the suite's splits for Adult, Default, Shoppers
and Magic: ``suite.py --split seeded``; plotly's and scikit-learn's bundled tables: ``model_frontier.py``, a seeded
holdout). Its training rows are then cut at random into two halves, A and B (one cut a
``--splits`` seed), and B is scored as if it were a release made from A: against A (the
training rows) and the holdout. B's rows are real rows drawn like A's, so a share that measures
copying reads 0.5 on them, whatever the table; what it reads instead is the measurement's bias.
Last, ``marginals``: on one scale, the share of rows that know only each column's distribution in
the whole training set (``privacy.marginal_rows``; the score stage's ``privacy.dcr_share_marginals``),
one draw per seed. Prints a table and, last, one JSON line
``{"<table>": {"train": [mean, sd], "reference": [mean, sd], "marginals": [mean, sd]}}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from model_frontier import DATASETS, source_of  # noqa: E402
from suite import TABLES, dataset_entry  # noqa: E402

from pipeline.artifacts import StagePaths, load_prepared  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.metrics.privacy import marginal_rows, score_dcr  # noqa: E402
from pipeline.stages import run_stage  # noqa: E402

NAMES = list(dict.fromkeys([*TABLES, *DATASETS]))  # Adult once: the suite's (its official files)
SCALES = {"train": "one scale (training rows' ranges)", "reference": "each side's own range (SDMetrics)"}
COLUMNS = {**SCALES, "marginals": "marginals' rows, one scale"}


def prepared(table: str, data: Path, folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, object]:
    """The table's training and holdout rows and schema, ingested by the pipeline into ``folder``."""
    # The seeded split, on which this script's and precision_recall.py's figures were measured (suite.py's
    # default became the papers' own split later).
    entry = dataset_entry(table, data, folder / "data", split="seeded") if table in TABLES else source_of(table, folder)
    cfg = load_config(REPO / "params.yaml", {"seed": 0, "work_dir": str(folder / "work"),
                                             "metrics_dir": str(folder / "metrics"),
                                             "publish.release_root": str(folder / "releases"),
                                             "datasets": {table: entry}})
    run_stage("ingest", cfg, table)
    train, holdout, schema, _ = load_prepared(StagePaths.of(str(folder / "work"), table))
    return train, holdout, schema


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", nargs="+", default=NAMES, choices=NAMES,
                    help="suite tables and the bundled ones (default: all)")
    ap.add_argument("--splits", type=int, nargs="+", default=[0, 1, 2], help="seeds of the A/B cut")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                    help="the folder holding suite/ (the suite tables' files)")
    ap.add_argument("--rows", type=int, default=5_000, help="B's rows scored (score.privacy_rows)")
    args = ap.parse_args(argv)
    out: dict[str, dict[str, list[float]]] = {}
    print(f"{'table':14s} {'train':>7s} {'holdout':>8s}  " + "  ".join(f"{v:>36s}" for v in COLUMNS.values()))
    for table in args.tables:
        with tempfile.TemporaryDirectory(prefix=f"dcr-scale-{table}-") as tmp:
            train, holdout, schema = prepared(table, args.data, Path(tmp))
        shares: dict[str, list[float]] = {s: [] for s in COLUMNS}
        for split in args.splits:
            order = np.random.default_rng(split).permutation(len(train))
            a, b = train.iloc[order[: len(train) // 2]], train.iloc[order[len(train) // 2:]]
            for scale in SCALES:
                shares[scale].append(score_dcr(a, holdout, b, schema, rows=args.rows, seed=split, scale=scale,
                                               marginals=False).dcr_share)
            marg = marginal_rows(train, schema, args.rows, seed=split)
            shares["marginals"].append(score_dcr(train, holdout, marg, schema, rows=args.rows, seed=split,
                                                 marginals=False).dcr_share)
        out[table] = {s: [round(float(np.mean(v)), 4), round(float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, 4)]
                      for s, v in shares.items()}
        cells = "  ".join(f"{out[table][s][0]:>28.3f} ± {out[table][s][1]:.3f}" for s in COLUMNS)
        print(f"{table:14s} {len(train) // 2:>7,d} {len(holdout):>8,d}  {cells}", flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
