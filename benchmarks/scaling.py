"""Scaling out: training throughput for 1..N data-parallel ranks (torchrun; gloo on CPU, nccl on
GPUs), and generation rows/s and memory for 1..N worker processes (or Dask workers), with a check
that every worker count writes byte-identical Parquet.

    python benchmarks/scaling.py [--ranks 1 2] [--epochs 3] [--workers 1 2 4] [--rows 1000000]
                                 [--shard 100000] [--backend processes] [--skip-train]

Needs a trained model (``dvc repro`` or ``python -m pipeline train --dataset adult`` first). Each
worker count runs in its own process, generating into a scratch copy of the work dir, so that its
peak memory is its own: the parent's peak RSS, and the largest worker's (``RUSAGE_CHILDREN``).
Prints a table and, last, one JSON line.
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
from pipeline.files import read_json
from pipeline.artifacts import StagePaths
rows, shard, work, dataset, workers, backend = sys.argv[1:7]
cfg = load_config("params.yaml", {"generate.rows": int(rows), "generate.rows_per_shard": int(shard), "work_dir": work,
                                  "generate.workers": int(workers), "generate.backend": backend})
t0 = time.perf_counter()
res = generate.run(cfg, dataset)
seconds = time.perf_counter() - t0
info = read_json(StagePaths.of(work, dataset).synthetic / "_generated.json")
print(json.dumps({"workers": int(workers), "rows": res.rows, "shards": res.shards, "seconds": seconds,
                  "data_hash": info["data_hash"],
                  "parent_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "worker_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


TRAIN_CHILD = """
import csv, json, sys
from pipeline.config import load_config
from pipeline import train
from pipeline.files import read_json
from pipeline.artifacts import StagePaths
work, dataset, ranks, epochs = sys.argv[1:5]
cfg = load_config("params.yaml", {"work_dir": work, "train.epochs": int(epochs),
                                  "train.distributed.nproc_per_node": int(ranks)})
train.run(cfg, dataset)
paths = StagePaths.of(work, dataset)
log = list(csv.DictReader(open(paths.train_log)))
info = read_json(paths.model / "model.json")
print(json.dumps({"ranks": int(ranks), "epochs": len(log), "rows": info["rows"],
                  "epoch_seconds": [float(r["seconds"]) for r in log], "device": info["device"]}))
"""


SCORE_CHILD = """
import json, resource, sys, time
from pipeline.config import load_config
from pipeline import score
work, dataset, limit = sys.argv[1:4]
cfg = load_config("params.yaml", {"work_dir": work, "metrics_dir": work + "/metrics", "score.in_memory_rows": int(limit),
                                  "score.report": False})
t0 = time.perf_counter()
m = score.run(cfg, dataset).metrics
print(json.dumps({"streamed": int(limit) < m["rows"], "rows": m["rows"], "seconds": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "scores": {k: m[k] for k in ("quality.overall", "quality.column_shapes", "quality.column_pair_trends",
                                               "coverage.range", "privacy.exact_match_rate")}}))
"""  # noqa: E501 - the child's source text: wrapping it would change the string


def score_scaling(args, tmp: str) -> list[dict]:
    """Score the generated rows in memory and streamed: time, peak memory, and the exact scores."""
    out = []
    for limit in (10**12, 1):
        r = subprocess.run([sys.executable, "-c", SCORE_CHILD, tmp, args.dataset, str(limit)],
                           capture_output=True, text=True, check=True)
        out.append(json.loads(r.stdout.strip().splitlines()[-1]))
    return out


def train_scaling(args, tmp: str) -> list[dict]:
    results = []
    for ranks in args.ranks:
        work = f"{tmp}/train-{ranks}"
        subprocess.run(["mkdir", "-p", f"{work}/{args.dataset}"], check=True)
        # Only the prepared data: each rank count trains from scratch.
        subprocess.run(["cp", "-r", f"{args.work_dir}/{args.dataset}/prepared", f"{work}/{args.dataset}/prepared"],
                       check=True)
        out = subprocess.run([sys.executable, "-c", TRAIN_CHILD, work, args.dataset, str(ranks), str(args.epochs)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        # The first epoch carries start-up costs; the steady state is the median of the rest.
        steady = sorted(r["epoch_seconds"][1:] or r["epoch_seconds"])[len(r["epoch_seconds"][1:]) // 2]
        r["seconds_per_epoch"] = steady
        r["rows_per_s"] = r["rows"] / steady
        results.append(r)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="data-parallel training ranks to compare")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs per rank count")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--score", action="store_true", help="also score the generated rows in memory and streamed")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--shard", type=int, default=100_000)
    ap.add_argument("--backend", choices=["processes", "dask"], default="processes")
    ap.add_argument("--dataset", default="adult")
    ap.add_argument("--work-dir", default="work")
    args = ap.parse_args()
    results, training = [], []
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_train:
            training = train_scaling(args, tmp)
        subprocess.run(["cp", "-r", f"{args.work_dir}/{args.dataset}", f"{tmp}/{args.dataset}"], check=True)
        for w in args.workers:
            out = subprocess.run([sys.executable, "-c", CHILD, str(args.rows), str(args.shard), tmp, args.dataset,
                                  str(w), args.backend], capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            r["rows_per_s"] = r["rows"] / r["seconds"]
            results.append(r)
        scoring = score_scaling(args, tmp) if args.score else []
    if training:
        print(f"{'ranks':>7} {'device':>8} {'s/epoch':>8} {'rows/s':>10} {'speed-up':>8}")
        for r in training:
            print(f"{r['ranks']:>7} {r['device']:>8} {r['seconds_per_epoch']:>8.2f} {r['rows_per_s']:>10,.0f} "
                  f"{r['rows_per_s'] / training[0]['rows_per_s']:>7.2f}x")
    base = results[0]["rows_per_s"]
    identical = len({r["data_hash"] for r in results}) == 1
    print(f"{'workers':>7} {'rows':>11} {'seconds':>8} {'rows/s':>10} {'speed-up':>8} {'parent MB':>10} "
          f"{'worker MB':>10}")
    for r in results:
        worker = f"{r['worker_peak_rss_mb']:>10,.0f}" if r["workers"] > 1 else f"{'(in-proc)':>10}"
        print(f"{r['workers']:>7} {r['rows']:>11,} {r['seconds']:>8.1f} {r['rows_per_s']:>10,.0f} "
              f"{r['rows_per_s'] / base:>7.2f}x {r['parent_peak_rss_mb']:>10,.0f} {worker}")
    print(f"byte-identical output for every worker count: {identical}")
    if scoring:
        print(f"{'scoring':>10} {'rows':>11} {'seconds':>8} {'peak MB':>8}  quality.overall")
        for r in scoring:
            print(f"{'streamed' if r['streamed'] else 'in memory':>10} {r['rows']:>11,} {r['seconds']:>8.1f} "
                  f"{r['peak_rss_mb']:>8,.0f}  {r['scores']['quality.overall']:.12f}")
        same = all(abs(scoring[0]['scores'][k] - scoring[1]['scores'][k]) < 1e-9 for k in scoring[0]['scores'])
        print(f"streamed scores equal the in-memory ones (1e-9): {same}")
    print(json.dumps({"training": training, "scoring": scoring, "backend": args.backend, "shard_rows": args.shard,
                      "identical": identical, "results": results}))
    if not identical:
        sys.exit(1)


if __name__ == "__main__":
    main()
