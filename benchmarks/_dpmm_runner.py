"""AIM (``dpmm``'s ``AIMPipeline``) on one table, for ``dp_frontier.py``: run with the peer's own Python
(its virtual environment), never imported by the pipeline.

    /work/venvs/dpmm/bin/python benchmarks/_dpmm_runner.py --train TRAIN.parquet --out SYN.parquet
        --rows N --seed S --epsilon E --delta D --threads T
        [--preprocessing-share 0.1] [--max-model-size 80] [--iters 1000] [--public-bounds]

The budget: ``--epsilon`` is the whole (epsilon, delta) of the run. dpmm's own preprocessing (its
PrivTree binner, the default) spends ``preprocessing_share`` of epsilon, split evenly over the numeric
columns; with no bounds given, each column spends half its share on private bounds
(``approx_bounds``: a noisy histogram of powers of two) and half on the tree, so the data's min/max
are never read (with ``--public-bounds`` they are given instead, and each column's share goes to the
tree: an advantage to this side, which dp_frontier's --quick takes, as 2,000 rows are too few for
private bounds at epsilon 1). AIM spends the rest (zCDP, converted to (epsilon, delta) with ``delta``; all of
delta, as the binner is pure epsilon-DP). The two add up (sequential composition).
Categories are given as a public domain: each categorical column's values as the training rows have
them (without it dpmm reads them from the rows anyway, with a "PrivacyLeakage" warning). That is an
advantage to this side: our DP run estimates its category lists privately and may drop rare ones.
dpmm also decides from the rows, outside the budget, which columns have missing values (a column
``<name>_NaN`` per such column) and which are constant.

Prints one JSON line: seconds of fit (``fit_s``: binning and AIM) and of generation, the rows, the
epsilon each part was given and the binner's spent epsilon per column, and AIM's settings.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True, help="the training rows (Parquet)")
    ap.add_argument("--out", required=True, help="where the synthetic rows go (Parquet)")
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epsilon", type=float, required=True, help="the whole budget: preprocessing + AIM")
    ap.add_argument("--delta", type=float, required=True)
    ap.add_argument("--preprocessing-share", type=float, default=0.1,
                    help="the share of epsilon dpmm's binner spends (default: %(default)s, as ours)")
    ap.add_argument("--max-model-size", type=float, default=80.0,
                    help="AIM's max_model_size in MB (default: %(default)s, the AIM paper's; smaller is faster)")
    ap.add_argument("--iters", type=int, default=1000,
                    help="AIM's n_iters: Private-PGM's iterations after each measured marginal (default: %(default)s, "
                         "dpmm's; fewer is faster, the budget and what is measured stay the same)")
    ap.add_argument("--public-bounds", action="store_true",
                    help="give each numeric column's min and max from the rows as public bounds (an advantage to "
                         "this side: no budget spent on them, and the true extremes known)")
    ap.add_argument("--threads", type=int, required=True, help="AIM's worker processes (n_jobs)")
    args = ap.parse_args()

    import pandas as pd
    from dpmm.pipelines import AIMPipeline

    train = pd.read_parquet(args.train)
    # Categorical columns: their categories as a declared (public) domain; numbers get no bounds.
    domain = {col: {"categories": sorted(v for v in train[col].dropna().unique().tolist())}
              for col in train.columns if train[col].dtype.kind not in "Mmfiu"}
    if args.public_bounds:
        domain.update({col: {"lower": train[col].min(), "upper": train[col].max()}
                       for col in train.columns if train[col].dtype.kind in "fiu"})
    proc_eps = args.epsilon * args.preprocessing_share
    gen_eps = args.epsilon - proc_eps
    model = AIMPipeline(epsilon=gen_eps, delta=args.delta, proc_epsilon=proc_eps, n_jobs=args.threads,
                        max_model_size=args.max_model_size, gen_kwargs={"n_iters": args.iters})

    t0 = time.perf_counter()
    try:
        model.fit(train, domain, random_state=args.seed)
    except TypeError as exc:  # dpmm's approx_bounds found no bounds (None) in its noisy histogram
        if "NoneType" not in str(exc):
            raise
        raise SystemExit(f"dpmm found no private bounds for a numeric column at epsilon {args.epsilon:g} on "
                         f"{len(train):,} rows (its approx_bounds returned none: {exc}); pass --public-bounds "
                         "(dp_frontier.py: --aim-bounds public)") from None
    t1 = time.perf_counter()
    syn = model.generate(n_records=args.rows, random_state=args.seed)
    t2 = time.perf_counter()

    syn[list(train.columns)].to_parquet(args.out, index=False)
    spent = {col: eps for col, eps in model.proc.spent_epsilon.items() if eps is not None}
    print(json.dumps({"fit_s": round(t1 - t0, 3), "generate_s": round(t2 - t1, 3), "rows": len(syn),
                      "epsilon": args.epsilon, "delta": args.delta, "aim_epsilon": gen_eps,
                      "preprocessing_epsilon": proc_eps, "binner_spent": spent,
                      "epsilon_spent": round(gen_eps + sum(spent.values()), 6),
                      "max_model_size": args.max_model_size, "iters": args.iters,
                      "public_bounds": args.public_bounds,
                      "n_bins": model.proc.n_bins}))


if __name__ == "__main__":
    main()
