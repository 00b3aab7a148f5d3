"""What alpha-precision, beta-recall and authenticity read on real data: a dataset's training rows
scored against a copy of themselves, against its real holdout rows (what real data scores) and
against independent marginals (each training column shuffled on its own), at one or more sample
sizes, with the seconds each took.

    python -m pipeline ingest --dataset adult
    python benchmarks/precision_recall.py --dataset adult --rows 5000 10000

``--tables adult default shoppers magic`` (the suite's tables, ingested as ``suite.py --split seeded`` ingests them,
in a temporary folder; ``--data`` holds ``suite/``) scores instead, per table, its holdout and
``halves``: the training rows cut at random into halves A and B (``--splits`` seeds), B scored as if
it were a release made from A, so both sides are real rows of the same size, as a release and its
training sample are in the suite. Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from dcr_scale import prepared  # the suite's tables, ingested as the benchmarks ingest them
from suite import DATA, TABLES

from pipeline.artifacts import StagePaths, load_prepared
from pipeline.config import load_config
from pipeline.metrics.precision_recall import score_precision_recall

REPO = Path(__file__).resolve().parent.parent


def suite_tables(args, cfg) -> None:
    """Per suite table: its holdout and the halves of its training rows scored against them."""
    n = (args.rows or [cfg.score.precision_recall_rows])[0]
    out: dict = {}
    print(f"{'table':9} {'case':<8} {'rows':>7} {'alpha-prec':>10} {'beta-rec':>9} {'authentic':>9}")
    for table in args.tables:
        with tempfile.TemporaryDirectory(prefix="precision-recall-") as tmp:
            train, holdout, schema = prepared(table, args.data, Path(tmp))
        target = TABLES[table]["entry"].get("target")
        runs = [("holdout", train, holdout)]
        for split in args.splits:
            order = np.random.default_rng([split, 23]).permutation(len(train))
            half = len(train) // 2
            runs.append(("halves", train.iloc[order[:half]], train.iloc[order[half:2 * half]]))
        for case, real, other in runs:
            r = score_precision_recall(real, other, schema, target, rows=n, seed=cfg.seed)
            row = {"rows": r.rows_per_side, "alpha_precision": round(r.alpha_precision, 4),
                   "beta_recall": round(r.beta_recall, 4), "authenticity": round(r.authenticity, 4)}
            out.setdefault(table, {}).setdefault(case, []).append(row)
            print(f"{table:9} {case:<8} {row['rows']:>7,} {row['alpha_precision']:>10.4f} {row['beta_recall']:>9.4f} "
                  f"{row['authenticity']:>9.4f}", flush=True)
    print(json.dumps({"seed": cfg.seed, "splits": args.splits, "results": out}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="adult")
    ap.add_argument("--rows", type=int, nargs="+", default=None, help="rows per side (default: the setting)")
    ap.add_argument("--tables", nargs="+", default=None, choices=list(TABLES),
                    help="the suite's tables, ingested here (in place of --dataset)")
    ap.add_argument("--splits", nargs="+", type=int, default=[0, 1, 2], help="--tables: the halves' seeds")
    ap.add_argument("--data", type=Path, default=DATA,
                    help="--tables: the folder holding suite/ (default: ../shared/data beside the repo)")
    args = ap.parse_args()
    cfg = load_config(REPO / "params.yaml")
    if args.tables:
        return suite_tables(args, cfg)
    train, holdout, schema, _ = load_prepared(StagePaths.of(cfg.work_dir, args.dataset))
    target = cfg.dataset(args.dataset).target
    rng = np.random.default_rng(cfg.seed)
    shuffled = pd.DataFrame({c: rng.permutation(train[c].to_numpy()) for c in train.columns})
    cases = {"copy": train.copy(), "holdout": holdout, "independent marginals": shuffled}
    rows = []
    for n in args.rows or [cfg.score.precision_recall_rows]:
        for case, other in cases.items():
            t0 = time.perf_counter()
            r = score_precision_recall(train, other, schema, target, rows=n, seed=cfg.seed)
            rows.append({"rows": r.rows_per_side, "case": case, "alpha_precision": round(r.alpha_precision, 4),
                         "beta_recall": round(r.beta_recall, 4), "authenticity": round(r.authenticity, 4),
                         "seconds": round(time.perf_counter() - t0, 1)})
    print(f"{'rows':>7}  {'case':<22} {'alpha-prec':>10} {'beta-rec':>9} {'authentic':>9} {'seconds':>7}")
    for r in rows:
        print(f"{r['rows']:>7,}  {r['case']:<22} {r['alpha_precision']:>10.4f} {r['beta_recall']:>9.4f} "
              f"{r['authenticity']:>9.4f} {r['seconds']:>7.1f}")
    print(json.dumps({"dataset": args.dataset, "seed": cfg.seed, "results": rows}))


if __name__ == "__main__":
    main()
