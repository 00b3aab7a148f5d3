"""What the private transformer alone costs a DP run: Adult's training rows sent through a transform
fitted from private estimates (``train.privacy``'s preprocessing part) and back, with no model in
between, scored by the score stage's fidelity (shapes, pair trends). A DP run's model cannot score
above this ceiling by much; a model near it is limited by the transformer, not by DP-SGD.

    python benchmarks/dp_transformer.py [--epsilon 3] [--share 0.1] [--fits 3] [--declared-bounds]
                                        [--rows N] [--source PATH]

``--epsilon`` is the run's whole budget and ``--share`` its ``preprocessing_share`` (the transform
spends epsilon x share, split over the columns as in a run; delta as ``delta: auto``). Each fit
draws fresh noise (seeds 0, 1, ...). ``--declared-bounds``: the numeric ranges of Adult's codebook
declared (``ADULT_BOUNDS``), as ``datasets.adult.bounds`` would. Prints a line per fit (the columns
scoring under 0.97, the three lowest counted pairs, each numeric column's range against the real
one), then one JSON line ``{"epsilon": .., "share": .., "fits": [{"shapes": .., "trends": ..}],
"shapes": [mean, sd], "trends": [mean, sd]}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.metrics.fidelity import score_fidelity  # noqa: E402
from pipeline.models.private_stats import Privacy  # noqa: E402
from pipeline.models.transformer import TableTransformer  # noqa: E402
from pipeline.schema import NUMERIC_KINDS, TableSchema, describe, infer_kind  # noqa: E402
from pipeline.settings import dp_delta  # noqa: E402

# Adult's codebook ranges (the census top-codes age at 90, hours at 99, capital-gain at 99,999;
# education-num is 16 codes); fnlwgt's and capital-loss' are round figures above the real maxima.
ADULT_BOUNDS = {"age": [17, 90], "fnlwgt": [0, 1_500_000], "education-num": [1, 16], "capital-gain": [0, 99_999],
                "capital-loss": [0, 5_000], "hours-per-week": [1, 99]}


def ceiling(real: pd.DataFrame, schema: TableSchema, epsilon: float, share: float, seed: int,
            bounds: dict | None = None, knots: int = 1001) -> dict:
    """The real rows through a transform fitted privately at ``epsilon`` x ``share`` and back, scored."""
    privacy = Privacy(epsilon=epsilon * share, delta=dp_delta("auto", len(real)) * share, seed=seed,
                      bounds=bounds or {})
    tf = TableTransformer(schema, knots=knots).fit(real, privacy)
    back = tf.inverse_transform(tf.transform(real, np.random.default_rng(0)), np.random.default_rng(1))
    fid = score_fidelity(real, back, schema)
    counted = sorted((p for p in fid.pairs if p.get("counted")), key=lambda p: p["score"])
    numeric = [c.name for c in schema.columns if c.kind in NUMERIC_KINDS and c.name in back]
    return {"shapes": fid.column_shapes, "trends": fid.column_pair_trends,
            "low_columns": {k: round(v["score"], 3) for k, v in fid.columns.items() if v["score"] < 0.97},
            "low_pairs": [(" x ".join(p["columns"]), round(p["score"], 3)) for p in counted[:3]],
            "ranges": {c: [[float(real[c].min()), float(real[c].max())], [float(back[c].min()), float(back[c].max())]]
                       for c in numeric}}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epsilon", type=float, default=3.0)
    ap.add_argument("--share", type=float, default=0.3,
                    help="train.privacy.preprocessing_share (default: %(default)s, as params.yaml)")
    ap.add_argument("--fits", type=int, default=3)
    ap.add_argument("--declared-bounds", action="store_true", help="Adult's codebook ranges declared")
    ap.add_argument("--rows", type=int, help="a seeded sample of this many training rows")
    ap.add_argument("--source", default=str(REPO / "data/adult/train.parquet"))
    args = ap.parse_args(argv)
    real = pd.read_parquet(args.source)
    if args.rows:
        real = real.sample(n=min(args.rows, len(real)), random_state=0).reset_index(drop=True)
    schema = TableSchema([describe(real[c], infer_kind(real[c])) for c in real.columns])
    bounds = {k: v for k, v in ADULT_BOUNDS.items() if k in real} if args.declared_bounds else None
    fits = []
    for seed in range(args.fits):
        r = ceiling(real, schema, args.epsilon, args.share, seed, bounds)
        fits.append(r)
        cut = {c: v[1] for c, v in r["ranges"].items() if v[0] != v[1]}
        print(f"fit {seed}: shapes {r['shapes']:.3f} trends {r['trends']:.3f}; under 0.97: {r['low_columns']}; "
              f"lowest pairs: {r['low_pairs']}; ranges that differ from the real ones: {cut}", flush=True)

    def spread(key: str) -> list[float]:
        values = [f[key] for f in fits]
        return [round(statistics.mean(values), 4), round(statistics.stdev(values), 4) if len(values) > 1 else 0.0]

    out = {"epsilon": args.epsilon, "share": args.share, "declared_bounds": bool(bounds), "rows": len(real),
           "fits": [{"shapes": round(f["shapes"], 4), "trends": round(f["trends"], 4)} for f in fits],
           "shapes": spread("shapes"), "trends": spread("trends")}
    print(f"\n| epsilon | share | ranges | shapes | trends |\n| ---: | ---: | --- | ---: | ---: |\n"
          f"| {args.epsilon:g} | {args.share:g} | {'declared' if bounds else 'estimated'} | "
          f"{out['shapes'][0]:.3f} ± {out['shapes'][1]:.3f} | {out['trends'][0]:.3f} ± {out['trends'][1]:.3f} |")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
