"""A big table through the five stages: seconds, rows/s and peak memory per stage.

    python benchmarks/big_table.py --rows 2000000 [--folder /tmp/big_table] [--model ctgan] [--epochs 1]
                                   [--set key=value ...] [--keep]

Makes an N-row Adult-shaped Parquet dataset (Adult's rows resampled, the numbers jittered, in files
of ``--file-rows`` rows, one file at a time: never N rows in memory), then runs ingest, train,
generate, score and publish, each as its own ``python -m pipeline <stage>`` process, with a short
training budget (``--epochs`` of ``--model`` on the streamed sample). Each stage's peak RSS is that
process's and its workers' (``wait4``'s ``ru_maxrss``); rows/s counts the source's rows for ingest,
the sample's rows times the epochs for train, and the synthetic rows for the rest. The settings that
bound memory are the defaults (``ingest.stream_rows``, ``ingest.batch_rows``, ``ingest.sample_rows``) plus
``score.in_memory_rows: 1000000`` (synthetic rows scored from per-shard statistics above that).

Prints a table and, last, one JSON line ``{"rows": N, "stages": {"ingest": {"seconds": ..,
"rows_per_s": .., "peak_rss_mb": ..}, ...}, "peak_rss_mb": ..}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
ADULT = REPO / "data" / "adult" / "train.parquet"
STAGES = ("ingest", "train", "generate", "score", "publish")


def make_source(folder: Path, rows: int, file_rows: int, seed: int = 0) -> None:
    """``rows`` Adult-shaped rows in Parquet files of ``file_rows``: Adult resampled, each integer
    column jittered by up to 2% of its spread (the count columns keep their zeros)."""
    folder.mkdir(parents=True, exist_ok=True)
    adult = pq.read_table(ADULT)
    rng = np.random.default_rng(seed)
    numeric = [f.name for f in adult.schema if pa.types.is_integer(f.type)]
    spread = {c: float(np.ptp(adult.column(c).to_numpy())) for c in numeric}
    lo = {c: int(np.min(adult.column(c).to_numpy())) for c in numeric}
    for i, start in enumerate(range(0, rows, file_rows)):
        n = min(file_rows, rows - start)
        part = adult.take(pa.array(rng.integers(0, adult.num_rows, n)))
        for c in numeric:
            v = part.column(c).to_numpy().astype(np.int64)
            jitter = np.rint(rng.normal(0, 0.02 * spread[c] / 3, n)).astype(np.int64)
            v = np.where(v == 0, 0, np.maximum(lo[c], v + jitter))  # capital-gain's zeros stay zeros
            part = part.set_column(part.schema.get_field_index(c), c, pa.array(v, type=part.schema.field(c).type))
        pq.write_table(part, folder / f"part-{i:05d}.parquet")


def run_stage(stage: str, params: Path, sets: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS MB) of ``python -m pipeline <stage>``, its workers included."""
    cmd = [sys.executable, "-m", "pipeline", stage, "--dataset", "big", "--params", str(params), "-q"]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{stage} failed (exit {proc.returncode})")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--folder", type=Path, default=Path("/tmp/big_table"))
    ap.add_argument("--file-rows", type=int, default=1_000_000)
    ap.add_argument("--model", default="ctgan")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--keep", action="store_true", help="keep the source and work folders")
    args = ap.parse_args()

    root = args.folder / f"rows-{args.rows}"
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    make_source(root / "source", args.rows, args.file_rows)
    made = time.perf_counter() - t0
    params = root / "params.yaml"
    params.write_text(
        f"seed: 42\nwork_dir: {root / 'work'}\nmetrics_dir: {root / 'metrics'}\n"
        f"datasets:\n  big:\n    source: {root / 'source'}\n    target: income\n"
        f"model: {{name: {args.model}}}\n"
        f"train: {{epochs: {args.epochs}, lr_decay: 0}}\n"
        "score: {in_memory_rows: 1000000, thresholds: {}}\n"
        f"publish: {{release_root: {root / 'releases'}}}\n")
    print(f"source: {args.rows:,} rows in {len(list((root / 'source').glob('*.parquet')))} files, "
          f"made in {made:.1f}s", flush=True)
    rows_of = {"ingest": args.rows}
    out: dict = {}
    for stage in STAGES:
        seconds, rss = run_stage(stage, params, args.set)
        if stage == "ingest":  # train: epochs over the sample; the rest: the synthetic rows
            meta = json.loads((root / "work" / "big" / "prepared" / "schema.json").read_text())
            rows_of["train"] = meta.get("streamed", {}).get("sample_rows", meta["rows"]) * args.epochs
        if stage == "generate":
            made = pads.dataset(root / "work" / "big" / "synthetic", format="parquet").count_rows()
            rows_of.update(generate=made, score=made, publish=made)
        rows = rows_of[stage]
        out[stage] = {"seconds": round(seconds, 1), "rows_per_s": round(rows / seconds), "peak_rss_mb": round(rss)}
        print(f"{stage:<9} {seconds:8.1f} s  {rows / seconds:12,.0f} rows/s  peak RSS {rss:7,.0f} MB", flush=True)
    result = {"rows": args.rows, "stages": out, "peak_rss_mb": max(s["peak_rss_mb"] for s in out.values())}
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
