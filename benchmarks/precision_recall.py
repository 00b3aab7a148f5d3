"""What alpha-precision, beta-recall and authenticity read on real data: a dataset's training rows
scored against a copy of themselves, against its real holdout rows (what real data scores) and
against independent marginals (each training column shuffled on its own), at one or more sample
sizes, with the seconds each took.

    python -m pipeline ingest --dataset adult
    python benchmarks/precision_recall.py --dataset adult --rows 5000 10000

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

from pipeline.artifacts import StagePaths, load_prepared
from pipeline.config import load_config
from pipeline.metrics.precision_recall import score_precision_recall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="adult")
    ap.add_argument("--rows", type=int, nargs="+", default=None, help="rows per side (default: the setting)")
    args = ap.parse_args()
    cfg = load_config("params.yaml")
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
