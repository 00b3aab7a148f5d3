"""Generation at scale: rows/s and peak memory of the generate stage for growing row counts, to show
that memory is bounded by the shard size, not the row count.

    python benchmarks/generate_scale.py --rows 100000 1000000 [--shard 100000] [--dataset adult] [--workers 2]

Needs a trained model (``dvc repro`` or ``python -m pipeline train --dataset adult`` first). Each
size runs in its own process so that its peak RSS is its own (with ``--workers``, the largest of it and
its worker processes). Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

CHILD = """
import json, resource, sys, time
from pipeline.config import load_config
from pipeline import generate
cfg = load_config("params.yaml", {"generate.rows": int(sys.argv[1]), "generate.rows_per_shard": int(sys.argv[2]),
                                  "work_dir": sys.argv[3], "generate.workers": int(sys.argv[5])})
t0 = time.perf_counter()
res = generate.run(cfg, sys.argv[4])
peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
print(json.dumps({"rows": res.rows, "shards": res.shards, "seconds": time.perf_counter() - t0,
                  "peak_rss_mb": peak / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--shard", type=int, default=100_000)
    ap.add_argument("--dataset", default="adult")
    ap.add_argument("--work-dir", default="work")
    ap.add_argument("--workers", type=int, default=1, help="generate.workers (processes making shards)")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        # Generate into a scratch copy of the work dir so the pipeline's own outputs stay untouched.
        subprocess.run(["cp", "-r", f"{args.work_dir}/{args.dataset}", f"{tmp}/{args.dataset}"], check=True)
        for rows in args.rows:
            out = subprocess.run([sys.executable, "-c", CHILD, str(rows), str(args.shard), tmp, args.dataset,
                                  str(args.workers)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["rows_per_s"] = r["rows"] / r["seconds"]
            results.append(r)
    print(f"{'rows':>12} {'shards':>7} {'seconds':>9} {'rows/s':>10} {'peak RSS MB':>12}")
    for r in results:
        print(f"{r['rows']:>12,} {r['shards']:>7} {r['seconds']:>9.1f} {r['rows_per_s']:>10,.0f} "
              f"{r['peak_rss_mb']:>12,.0f}")
    print(json.dumps({"shard_rows": args.shard, "workers": args.workers, "results": results}))


if __name__ == "__main__":
    main()
