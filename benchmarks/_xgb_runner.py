"""The C2ST protocol of the tabular-synthesis papers, for ``detectors.py``: run with a Python that has
xgboost (its own virtual environment), never imported by the pipeline.

    /work/venvs/xgb/bin/python benchmarks/_xgb_runner.py --real REAL.parquet --syn SYN.parquet
        [--rows N] [--seed S] [--folds 5] [--threads T]

As a new user would run it: an ``XGBClassifier`` with xgboost's default settings; every text,
category or boolean column ordinal-coded (codes shared by both sides, a missing value its own
category), numbers as they are (xgboost routes their missing values itself); equal rows per side (the
smaller side's count, or --rows if fewer, seeded samples); the mean ROC AUC of stratified,
shuffled k-fold cross-validation. Prints one JSON line: ``auc``, the per-fold AUCs, rows per side,
seconds and the xgboost version.
"""

from __future__ import annotations

import argparse
import json
import time

MISSING = "\x00missing"  # a category no real value spells


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", required=True, help="real rows (Parquet)")
    ap.add_argument("--syn", required=True, help="the release's rows (Parquet), the same columns")
    ap.add_argument("--rows", type=int, default=None, help="rows per side at most (default: the smaller side)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="xgboost's n_jobs (default: xgboost's)")
    args = ap.parse_args()

    import numpy as np
    import pandas as pd
    import xgboost
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    real, syn = pd.read_parquet(args.real), pd.read_parquet(args.syn)
    syn = syn[list(real.columns)]
    n = min(len(real), len(syn), args.rows or len(real))
    real = real.sample(n=n, random_state=args.seed) if len(real) > n else real
    syn = syn.sample(n=n, random_state=args.seed) if len(syn) > n else syn
    both = pd.concat([real, syn], ignore_index=True)
    x = pd.DataFrame(index=both.index)
    for name in both.columns:
        col = both[name]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            x[name] = col.astype("float64")
        else:
            text = col.astype("object").where(col.notna(), MISSING).astype(str)
            x[name] = pd.Categorical(text, categories=sorted(text.unique())).codes.astype("float64")
    y = np.r_[np.zeros(n), np.ones(n)]

    t0 = time.perf_counter()
    aucs = []
    extra = {} if args.threads is None else {"n_jobs": args.threads}
    for fit_idx, test_idx in StratifiedKFold(args.folds, shuffle=True, random_state=args.seed).split(x, y):
        model = xgboost.XGBClassifier(random_state=args.seed, **extra)
        model.fit(x.iloc[fit_idx], y[fit_idx])
        aucs.append(float(roc_auc_score(y[test_idx], model.predict_proba(x.iloc[test_idx])[:, 1])))
    print(json.dumps({"auc": float(np.mean(aucs)), "fold_aucs": aucs, "rows_per_side": n, "folds": args.folds,
                      "seconds": round(time.perf_counter() - t0, 2), "xgboost": xgboost.__version__}))


if __name__ == "__main__":
    main()
