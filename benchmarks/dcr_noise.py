"""How much of a DCR share is the draw of its samples: one release's synthetic rows scored again
under several sampling seeds, by the score stage's scheme and by the earlier one (equal 5,000-row
training and holdout samples).

    python benchmarks/dcr_noise.py --work-dir work --dataset adult --seeds 0 1 2 3 4 5

The release stays fixed, so any spread is the measurement's own. Prints a table and, last, one JSON
line ``{"<scheme>": {"shares": [...], "mean": .., "sd": ..}}``.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from pipeline.artifacts import StagePaths, load_prepared, read_synthetic
from pipeline.metrics.privacy import encode_for_distance, nearest_distances, score_dcr


def equal_samples_share(train, holdout, syn, schema, rows: int, seed: int) -> float:
    """The earlier scheme: ``rows`` synthetic rows against equal ``rows``-row train and holdout samples."""
    n = min(len(train), len(holdout), rows)
    pick = lambda df, k: df.sample(n=k, random_state=seed) if len(df) > k else df  # noqa: E731
    e_tr, e_ho, e_sy = encode_for_distance([pick(train, n), pick(holdout, n), pick(syn, rows)], schema)
    return float((nearest_distances(e_sy, e_tr)[:, 0] < nearest_distances(e_sy, e_ho)[:, 0]).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work-dir", default="work")
    ap.add_argument("--dataset", default="adult")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    ap.add_argument("--rows", type=int, default=5_000, help="synthetic rows (score.privacy_rows)")
    args = ap.parse_args()
    paths = StagePaths.of(args.work_dir, args.dataset)
    train, holdout, schema, _ = load_prepared(paths)
    syn = read_synthetic(paths.synthetic)
    schemes = {
        "equal 5,000-row samples (before)": lambda s: equal_samples_share(train, holdout, syn, schema, args.rows, s),
        "holdout vs disjoint train samples (now)": lambda s: score_dcr(train, holdout, syn, schema, rows=args.rows,
                                                                       seed=s).dcr_share,
    }
    out = {}
    print(f"{args.dataset}: {len(train):,} train, {len(holdout):,} holdout, {len(syn):,} synthetic rows")
    print(f"{'scheme':42s} " + " ".join(f"seed {s:<3d}" for s in args.seeds) + "    mean      sd")
    for name, share in schemes.items():
        shares = [round(share(s), 4) for s in args.seeds]
        out[name] = {"shares": shares, "mean": round(float(np.mean(shares)), 4), "sd": round(float(np.std(shares)), 4)}
        print(f"{name:42s} " + " ".join(f"{v:8.3f}" for v in shares) + f" {np.mean(shares):7.3f} {np.std(shares):7.3f}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
