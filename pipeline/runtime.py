"""How a stage uses this machine's CPUs: one thread count (``runtime.threads``) for torch, the
scoring models (gradient boosting's OpenMP threads) and the generation workers, defaulting to the
cores this process may use. ``os.cpu_count()`` counts the host's cores, not the share a container
or ``taskset`` gives us; two runs on one box that each took them all would thrash.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from pipeline.config import Config


def usable_cores(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (v2
    ``cpu.max``, or v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = None
    try:
        limit, period = (cgroup / "cpu.max").read_text().split()[:2]
        if limit != "max":
            quota = int(limit) / int(period)
    except (OSError, ValueError):
        try:
            limit = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
            period = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
            quota = limit / period if limit > 0 and period > 0 else None
        except (OSError, ValueError):
            pass
    if quota:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def threads_available(cfg: Config) -> int:
    """``runtime.threads``, or (0) the usable cores, shared among the torchrun ranks of this node."""
    threads = cfg.runtime.threads or usable_cores()
    return max(1, threads // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)))


@contextlib.contextmanager
def thread_limits(threads: int, torch_too: bool = True) -> Iterator[None]:
    """Cap torch's intra-op threads and every OpenMP/BLAS pool (scikit-learn's gradient boosting,
    numpy's BLAS) at ``threads`` for the block."""
    from threadpoolctl import threadpool_limits

    if torch_too or "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)
    with threadpool_limits(limits=threads):
        yield
