"""The diffusion sampler's speed: rows/s of the model alone, and its achieved GFLOP/s against the
machine's measured matmul peak on the same threads.

    python benchmarks/sampler.py --work-dir work --dataset adult --steps 50 10 6 --precision float32 bfloat16

Needs a trained diffusion model (``python -m pipeline train --dataset adult``). For each step count
and precision it draws ``--rows`` rows with ``model.sample`` (the transformer's space; decoding is
timed apart, once) after a warm-up draw. FLOPs count the denoiser's per-row matrix products
(2 x in x out for each linear layer on the rows; the time embedding runs once per step and is left
out). The peak is ``torch.mm`` of a [chunk, width] by [width, width] product in the same precision
and threads, the shape of the denoiser's body. Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def matmul_peak(rows: int, width: int, dtype: torch.dtype, seconds: float = 1.0) -> float:
    """GFLOP/s of [rows, width] @ [width, width] in ``dtype`` on this process's threads."""
    a, b = torch.randn(rows, width, dtype=dtype), torch.randn(width, width, dtype=dtype)
    for _ in range(3):
        a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    return 2 * rows * width * width * n / (time.perf_counter() - t0) / 1e9


def row_flops(net: torch.nn.Module) -> int:
    """FLOPs per row per network evaluation: the linear layers applied to the rows (the time
    embedding's, which run once per step whatever the rows, are not counted)."""
    per_step = {id(m) for m in net.time.modules()} if hasattr(net, "time") else set()
    return sum(2 * m.in_features * m.out_features for m in net.modules()
               if isinstance(m, torch.nn.Linear) and id(m) not in per_step)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work-dir", default="work")
    ap.add_argument("--dataset", default="adult")
    ap.add_argument("--rows", type=int, default=32_561)
    ap.add_argument("--steps", type=int, nargs="+", default=[50, 10])
    ap.add_argument("--precision", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from pipeline.models.saved import load_model

    loaded = load_model(Path(args.work_dir) / args.dataset / "model")
    model = loaded.model
    if not hasattr(model, "steps"):
        raise SystemExit(f"sampler.py: {loaded.info['model']} is not a diffusion model")
    net = model.sampler
    flops = row_flops(net)
    width = max(m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear))
    peaks = {p: matmul_peak(model.rows_at_once, width, getattr(torch, p)) for p in args.precision}
    results = []
    for precision in args.precision:
        for steps in args.steps:
            model.steps, model.precision = steps, precision
            model.sample(min(args.rows, 2_000), torch.Generator().manual_seed(args.seed))  # warm-up
            t0 = time.perf_counter()
            raw = model.sample(args.rows, torch.Generator().manual_seed(args.seed))
            seconds = time.perf_counter() - t0
            gflops = args.rows * steps * flops / seconds / 1e9
            results.append({"precision": precision, "steps": steps, "rows": args.rows, "seconds": seconds,
                            "rows_per_s": args.rows / seconds, "gflops": gflops,
                            "peak_gflops": peaks[precision], "share_of_peak": gflops / peaks[precision]})
    t0 = time.perf_counter()
    loaded.transformer.inverse_transform(raw.float().numpy(), np.random.default_rng(args.seed))
    decode = args.rows / (time.perf_counter() - t0)
    print(f"denoiser: {flops / 1e6:.2f} MFLOP per row per step; sampled {model.rows_at_once:,} rows at once; "
          f"{torch.get_num_threads()} threads")
    print(f"{'precision':>9} {'steps':>6} {'seconds':>8} {'rows/s':>9} {'GFLOP/s':>8} {'mm peak':>8} {'share':>6}")
    for r in results:
        print(f"{r['precision']:>9} {r['steps']:>6} {r['seconds']:>8.2f} {r['rows_per_s']:>9,.0f} {r['gflops']:>8.1f} "
              f"{r['peak_gflops']:>8.1f} {r['share_of_peak']:>6.0%}")
    print(f"decoding (inverse transform): {decode:,.0f} rows/s")
    print(json.dumps({"dataset": args.dataset, "mflop_per_row_step": flops / 1e6, "chunk": model.rows_at_once,
                      "threads": torch.get_num_threads(), "decode_rows_per_s": decode, "results": results}))


if __name__ == "__main__":
    main()
