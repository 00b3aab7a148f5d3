"""One prepared check for a GPU machine: train on cuda, compare with the same run on CPU, sample
1M rows to Parquet; on a machine with several GPUs, also data-parallel training on all of them
(one rank per GPU, nccl) against one GPU. Exits non-zero if cuda was not used.

    python benchmarks/gpu_check.py [--model ctgan] [--epochs 20] [--cpu-epochs 2] [--rows 1000000] [--ranks N]

Needs only torch, numpy, pandas, pyarrow and scikit-learn (what a bare GPU box has): no pydantic,
PyYAML, tqdm, Prefect or DVC. Settings mirror the defaults of params.yaml. Prints a table, then
one JSON line. ``--device cpu --allow-cpu`` runs it end to end without a GPU (a smoke test).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

from pipeline.models import models  # noqa: E402
from pipeline.models.saved import LoadedModel  # noqa: E402
from pipeline.sampling import sample_frame, shard_seed  # noqa: E402
from pipeline.schema import TableSchema, arrow_schema_b64, describe, infer_kind  # noqa: E402
from pipeline.settings import ModelSettings, TrainSettings  # noqa: E402
from pipeline.training.loop import fit  # noqa: E402
from pipeline.training.setup import build_model, transform_table  # noqa: E402


def configs(model: str, epochs: int, batch: int, amp: bool, compile_: bool) -> tuple[ModelSettings, TrainSettings]:
    """The model and train sections of params.yaml's defaults (``pipeline.settings``), with this
    run's epochs, batch size, bf16 and compile."""
    return ModelSettings(name=model), TrainSettings(epochs=epochs, batch_size=batch, checkpoint_every=10**9, amp=amp,
                                                    compile=compile_)


def train_once(df, schema, device, model, epochs, batch, amp, compile_, seed=0):
    model_cfg, train_cfg = configs(model, epochs, batch, amp, compile_)
    t0 = time.perf_counter()
    tf, data = transform_table(df, schema, model_cfg, seed, device)
    torch.manual_seed(seed)
    net = build_model(model_cfg, train_cfg, tf).to(device)
    epoch_s, wall, used, state = timed_fit(net, data, train_cfg, seed, t0)
    return net, tf, epoch_s, wall, used, state.history[-1]


def timed_fit(net, data: torch.Tensor, train_cfg, seed: int, t0: float):
    """The pipeline's loop on ``net``: (median steady s/epoch, wall since ``t0``, device types used, state)."""
    state = fit(net, data, train_cfg, seed)
    if data.device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    # The first epoch carries warm-up (CUDA context, kernel selection, compilation): leave it out.
    steady = [h["seconds"] for h in state.history[1:]] or [state.history[0]["seconds"]]
    used = {p.device.type for p in net.parameters()} | {data.device.type}
    return float(np.median(steady)), wall, used, state


def _ddp_rank(rank: int, world: int, port: int, device_type: str, model: str, epochs: int, batch: int,
              amp: bool, out: str) -> None:
    """One rank of the data-parallel run (torch.multiprocessing.spawn): the pipeline's own loop."""
    import os

    from pipeline.training import distributed

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)})
    _, device = distributed.setup("auto", "cuda" if device_type == "cuda" else "cpu")
    df = pd.read_parquet(REPO / "data/adult/train.parquet")
    schema = TableSchema([describe(df[c], infer_kind(df[c])) for c in df.columns], target="income",
                         arrow_schema=arrow_schema_b64(df))
    _, _, epoch_s, _, _, _ = train_once(df, schema, device, model, epochs, batch, amp, False)
    if rank == 0:
        Path(out).write_text(json.dumps({"epoch_s": epoch_s}))
    torch.distributed.destroy_process_group()


def ddp_epoch_seconds(world: int, device_type: str, model: str, epochs: int, batch: int, amp: bool) -> float:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "rank0.json")
        mp.spawn(_ddp_rank, args=(world, port, device_type, model, epochs, batch, amp, out), nprocs=world, join=True)
        return json.loads(Path(out).read_text())["epoch_s"]


def device_refusal(script: str, device: torch.device, used: set[str], allow_cpu: bool) -> int:
    """1 (with the reason on stderr) when a check meant for cuda did not train there, else 0."""
    if device.type == "cuda" and "cuda" not in used:
        print(f"{script}: training did not run on cuda", file=sys.stderr)
        return 1
    if device.type != "cuda" and not allow_cpu:
        print(f"{script}: not a cuda run (pass --allow-cpu for a smoke test)", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=ModelSettings().name, choices=sorted(models()))  # params.yaml's default
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--cpu-epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--shard", type=int, default=250_000)
    ap.add_argument("--no-amp", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--allow-cpu", action="store_true", help="do not fail without cuda (smoke test)")
    ap.add_argument("--out", default=None, help="folder for the sampled Parquet (default: a temp dir)")
    ap.add_argument("--ranks", type=int, default=None,
                    help="data-parallel ranks to compare with one device (default: every GPU, when there are 2+)")
    args = ap.parse_args()

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA device", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    df = pd.read_parquet(REPO / "data/adult/train.parquet")
    schema = TableSchema([describe(df[c], infer_kind(df[c])) for c in df.columns], target="income",
                         arrow_schema=arrow_schema_b64(df))
    amp = not args.no_amp
    res: dict = {"model": args.model, "device": str(device), "rows_train": len(df), "batch_size": args.batch_size,
                 "amp": amp and device.type == "cuda", "compile": args.compile, "torch": torch.__version__}
    if device.type == "cuda":
        res["gpu"] = torch.cuda.get_device_name(0)

    net, tf, epoch_s, wall, used, last = train_once(df, schema, device, args.model, args.epochs, args.batch_size,
                                                    amp, args.compile)
    res.update({"epochs": args.epochs, "epoch_s": epoch_s, "train_wall_s": wall, "rows_per_s": len(df) / epoch_s,
                "final_losses": last, "devices_used": sorted(used)})
    _, _, cpu_epoch_s, _, _, _ = train_once(df, schema, torch.device("cpu"), args.model, args.cpu_epochs,
                                            args.batch_size, False, False)
    res.update({"cpu_epochs": args.cpu_epochs, "cpu_epoch_s": cpu_epoch_s, "cpu_rows_per_s": len(df) / cpu_epoch_s,
                "speedup_vs_cpu": cpu_epoch_s / epoch_s})

    ranks = args.ranks if args.ranks is not None else (torch.cuda.device_count() if device.type == "cuda" else 1)
    if ranks > 1:  # the same global batch on every device at once
        ddp_s = ddp_epoch_seconds(ranks, device.type, args.model, args.epochs, args.batch_size, amp)
        res.update({"ddp_ranks": ranks, "ddp_epoch_s": ddp_s, "ddp_rows_per_s": len(df) / ddp_s,
                    "ddp_speedup_vs_one": epoch_s / ddp_s})

    net.eval()
    loaded = LoadedModel(model=net, transformer=tf, schema=schema, info={}, model_hash="")
    arrow = schema.arrow()
    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="gpu_check_"))
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for i, start in enumerate(range(0, args.rows, args.shard)):
        n = min(args.shard, args.rows - start)
        frame = sample_frame(loaded, n, shard_seed(0, i), start=start)
        pq.write_table(pa.Table.from_pandas(frame, schema=arrow, preserve_index=False),
                       out_dir / f"part-{i:05d}.parquet")
    sample_s = time.perf_counter() - t0
    if hasattr(net, "steps"):  # the diffusion sampler: the default step count, and 50 (the sampler before) alone
        res["sample_steps"] = net.steps
        default_steps, net.steps = net.steps, 50
        t1 = time.perf_counter()
        sample_frame(loaded, args.shard, shard_seed(0, 0))
        res["sample_rows_per_s_50_steps"] = args.shard / (time.perf_counter() - t1)
        net.steps = default_steps
    back = pd.read_parquet(out_dir)
    res.update({"sampled_rows": len(back), "sample_s": sample_s, "sample_rows_per_s": len(back) / sample_s,
                "parquet": str(out_dir), "dtypes_match": dict(back.dtypes.astype(str)) == dict(df.dtypes.astype(str))})

    print(f"{'measure':<28} {args.device:>14} {'cpu':>14}")
    print(f"{'s/epoch (batch ' + str(args.batch_size) + ')':<28} {epoch_s:>14.3f} {cpu_epoch_s:>14.3f}")
    print(f"{'training rows/s':<28} {res['rows_per_s']:>14,.0f} {res['cpu_rows_per_s']:>14,.0f}")
    print(f"{'sampling rows/s':<28} {res['sample_rows_per_s']:>14,.0f} {'':>14}")
    if "sample_steps" in res:
        print(f"{'sampling rows/s, 50 steps':<28} {res['sample_rows_per_s_50_steps']:>14,.0f}   "
              f"(above: {res['sample_steps']} steps)")
    if "ddp_ranks" in res:
        print(f"{str(res['ddp_ranks']) + ' ranks s/epoch':<28} {res['ddp_epoch_s']:>14.3f}   "
              f"({res['ddp_speedup_vs_one']:.2f}x one {device.type})")
    print(f"speedup vs cpu: {res['speedup_vs_cpu']:.1f}x; {len(back):,} rows in {out_dir}; "
          f"dtypes match: {res['dtypes_match']}")
    print(json.dumps(res))
    refused = device_refusal("gpu_check", device, used, args.allow_cpu)
    if refused:
        return refused
    return 0 if len(back) == args.rows and res["dtypes_match"] else 1


if __name__ == "__main__":
    sys.exit(main())
