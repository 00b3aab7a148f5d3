"""Data-parallel training across processes, GPUs and nodes (launched by ``torchrun``).

Each rank holds its shard of the training tensor on its device and trains on its part of every
global batch; after each phase's backward pass the phase's gradients are averaged across ranks,
so every rank takes the same optimiser step and the replicas stay identical.

Why not the ``DistributedDataParallel`` wrapper: its reducer assumes one backward pass over one
set of parameters per forward. A GAN step has two optimisers over disjoint parameter sets, a
generator phase whose backward also reaches the critic, and a double backward (the gradient
penalty). Averaging exactly the phase's gradients, in one flattened bucket per phase, is the same
collective DDP performs, without unused-parameter errors or a second all-reduce of the critic.
BatchNorm statistics stay per rank during an epoch (as with DDP) and rank 0's are broadcast at the
end of each epoch, so the replicas end identical, buffers included.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from pipeline import cancel
from pipeline.errors import Cancelled
from pipeline.training.resume import Resume


@dataclass(frozen=True)
class Rank:
    rank: int
    world: int
    local_rank: int


def launched() -> bool:
    """True in a process torchrun started for a run of more than one rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def current() -> Rank | None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return Rank(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return None


def setup(backend: str, device_name: str) -> tuple[Rank, torch.device]:
    """Join the process group torchrun describes (env://); pick this rank's device."""
    local = int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
    if backend == "auto":
        backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    device = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    return Rank(dist.get_rank(), dist.get_world_size(), local), device


def rank_seed(seed: int, rank: int, epoch: int) -> int:
    """The seed of one rank's draws in one epoch: a resumed run (of any world size) needs no saved
    RNG state to continue deterministically."""
    return int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)


def average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """All-reduce the gradients of ``params`` (one flattened bucket) and divide by the world size."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= world
    for g, synced in zip(grads, _unflatten_dense_tensors(flat, grads)):
        g.copy_(synced)


def broadcast_json(obj, device: torch.device):
    """Rank 0's ``obj`` (JSON-able) on every rank: sent as UTF-8 bytes, never pickled."""
    import json

    data = json.dumps(obj).encode() if dist.get_rank() == 0 else b""
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    dist.broadcast(size, 0)
    buf = (torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device) if data
           else torch.empty(int(size.item()), dtype=torch.uint8, device=device))
    dist.broadcast(buf, 0)
    return json.loads(bytes(buf.cpu().numpy()).decode())


def broadcast_state(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers to every rank."""
    for t in [*module.parameters(), *module.buffers()]:
        dist.broadcast(t.data, 0)


def replicas_agree(module: torch.nn.Module) -> bool:
    """Whether every rank holds the same parameters (a float64 checksum, all-gathered)."""
    flat = torch.cat([p.detach().double().flatten() for p in module.parameters()])
    mine = torch.stack([flat.sum(),
                        (flat * torch.arange(1, flat.numel() + 1, device=flat.device, dtype=flat.dtype)).sum()])
    mine = mine.cpu() if dist.get_backend() == "gloo" else mine
    every = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(every, mine)
    return all(torch.equal(every[0], e) for e in every[1:])


def launch_train(config_tree: dict, dataset: str, nproc_per_node: int, nnodes: int, rdzv_endpoint: str | None,
                 resume: Resume, work_dir: str) -> None:
    """Run ``python -m pipeline train`` under torchrun with this exact (resolved) config."""
    import yaml

    Path(work_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=work_dir, prefix=".train-params-", delete=False) as f:
        yaml.safe_dump(config_tree, f, sort_keys=False)
        params = f.name
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc_per_node}", f"--nnodes={nnodes}"]
    if nnodes == 1 and not rdzv_endpoint:
        cmd.append("--standalone")
    else:
        cmd += ["--rdzv_backend=c10d", f"--rdzv_endpoint={rdzv_endpoint}"]
    cmd += ["-m", "pipeline", "train", "--dataset", dataset, "--params", params]
    if resume is not Resume.NO:
        cmd += ["--resume", resume.value]
    try:
        _run_ranks(cmd)
    finally:
        os.unlink(params)


def _run_ranks(cmd: list[str], stop_seconds: float = 30.0) -> None:
    """Run torchrun and wait for it, polling for a cancellation (a flow's task thread gets no
    signal). On one, torchrun is sent the signal, which it forwards to the ranks (each stops at its
    next step, checkpointing on rank 0), and is killed if it has not ended within ``stop_seconds``.
    Its own session: a Ctrl-C at the terminal reaches it once, through here, not twice."""
    proc = subprocess.Popen(cmd, start_new_session=True, env={**os.environ, cancel.LAUNCHED_BY: str(os.getpid())})
    try:
        while True:
            try:
                with cancel.deferred():  # seen between waits, never inside one
                    code = proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                cancel.check()
    except BaseException as exc:  # Cancelled (polled or from the signal handler), or anything else
        signum = cancel.requested() or (exc.signal if isinstance(exc, Cancelled) else signal.SIGTERM)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)
        try:
            proc.wait(timeout=stop_seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    cancel.check()  # the ranks stopped because this run was cancelled
    if code != 0:
        raise subprocess.CalledProcessError(code, cmd)
