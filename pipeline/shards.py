"""The shard executor: write a list of shards in this process, on worker processes or on Dask workers.

A ShardJob names one output file and everything its bytes depend on (row count, first global row,
seed, rows to avoid, image labels), so any worker, at any worker count, writes the same file.
Workers get ``write_shard`` by reference (a module-level function of this importable module,
pickled by name) and load the model once each.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pipeline import cancel
from pipeline.artifacts import StagePaths
from pipeline.files import write_parquet
from pipeline.modalities import modality_named
from pipeline.progress import Progress
from pipeline.runtime import threads_available
from pipeline.training.loop import pick_device

if TYPE_CHECKING:
    from pipeline.config import Config
    from pipeline.models.saved import LoadedModel


@dataclass(frozen=True)
class ShardJob:
    """One output file: which shard, how many rows from which global row, its seed, where to write,
    and the training-row hashes to avoid (``exclude``). Images also carry their label indices."""

    index: int
    rows: int
    start: int
    seed: int
    out: str
    exclude: np.ndarray | None = None
    labels: np.ndarray | None = None


_WORKER_MODELS: dict[str, Any] = {}  # a worker loads each model once, not once per shard
_PARENT: int | None = None  # in a worker: the pid of the run that started it


def _worker_model(cfg: Config, paths: StagePaths) -> LoadedModel:
    from pipeline.models.saved import load_model

    key = str(paths.model)
    if key not in _WORKER_MODELS:
        _WORKER_MODELS.clear()
        _WORKER_MODELS[key] = load_model(paths.model, pick_device(cfg.train.device))
    return _WORKER_MODELS[key]


def write_shard(job: ShardJob, cfg: Config, paths: StagePaths, loaded: LoadedModel | None = None) -> dict[str, int]:
    """Make and write one shard; returns its counts. Depends only on the job, so any process
    (any worker count) writes the same bytes."""
    loaded = loaded or _worker_model(cfg, paths)
    loaded.model.use_sampling(cfg.generate)  # per shard: a worker's cached model may have served another run
    stats: dict[str, int] = {}
    table = modality_named(loaded.modality).shard_table(loaded, job, cfg.generate, stats)
    if _PARENT is not None and os.getppid() != _PARENT:
        os._exit(1)  # the run is gone (killed): nothing more goes into its temporary folder
    write_parquet(table, Path(job.out))
    return stats


def _die_with_parent(parent: int) -> None:
    """End this worker when the run that started it (``parent``) ends. A run killed with kill -9
    runs no cleanup, and its workers would keep writing shards into its temporary folder. On Linux
    the kernel kills the worker (the parent-death signal); elsewhere ``write_shard`` checks first.
    Workers stay in the run's process group, so a Ctrl-C or a kill of the group reaches them too."""
    global _PARENT
    _PARENT = parent
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it died before the signal was set
        os._exit(1)


def _worker_init(threads: int, parent: int) -> None:
    _die_with_parent(parent)
    # The run decides: a Ctrl-C at the terminal (sent to the whole group) or a SIGTERM to the group
    # stops the run, which ends its workers (``_abandon``); a worker of its own would only print
    # a traceback and break the pool.
    for signum in cancel.SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    torch.set_num_threads(threads)  # workers share the cores instead of each taking them all


def _dask_worker_init(parent: int) -> None:
    """A Dask worker of this run's own cluster: it ends with the run, and keeps quiet. Its logs are
    never the run's message: a shard's failure comes back to the run as that shard's exception, a
    worker that dies is reported by its nanny in the run's process, and what a worker says while the
    run closes it (a cancelled shard, the tracebacks of the connections the close cuts) is noise."""
    _die_with_parent(parent)
    for name in ("distributed", ""):  # "": the root logger, which asyncio's and tornado's reach
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _abandon(pool) -> None:
    """End a process pool's workers at once: their shards go with the run's temporary folder.
    (``shutdown`` alone waits for the shards they are writing.)"""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(OSError, AttributeError):
            process.kill()
    pool.shutdown(wait=True, cancel_futures=True)


def _finished(pending: set, wait) -> list:
    """The futures of ``pending`` that are done, waiting at most a moment for one, then a check for
    a cancellation. Deferred: a signal raised inside ``wait`` could leave the futures' locks held
    (``concurrent.futures.wait`` takes them all) and hang the pool's shutdown; so it is seen here,
    between waits (a flow's task thread gets no signal at all)."""
    with cancel.deferred():
        done = wait(pending)
    cancel.check()
    return done


def _dask_done(pending: set) -> list:
    """The Dask futures of ``pending`` that are done, after a moment's wait if none is."""
    done = [f for f in pending if f.done()]
    if not done:
        time.sleep(0.2)
    return done


@contextlib.contextmanager
def _dask_logs_as_others():
    """Dask's loggers at the level the command line gives other libraries (the root logger's, at
    least WARNING). Importing ``distributed`` sets them to INFO: a line per cancelled shard
    (thousands on a signal) and the tracebacks of the connections a shutdown closes."""
    logger = logging.getLogger("distributed")
    before = logger.level
    logger.setLevel(max(logging.getLogger().level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(before)


def local_cluster(workers: int) -> dict:
    """A local Dask cluster's arguments: ``workers`` processes of one thread each, no dashboard, and
    the scheduler's HTTP routes on a free port of this host only (by default they take port 8787,
    and a second cluster on the machine, another run's, prints a warning as it moves elsewhere)."""
    return {"n_workers": workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None,
            "scheduler_kwargs": {"dashboard": False, "dashboard_address": "127.0.0.1:0"}}


def make_shards(cfg: Config, paths: StagePaths, jobs: list[ShardJob], loaded: LoadedModel) -> dict[str, int]:
    """Write every job's shard: in this process (``generate.workers: 1``), or on that many worker
    processes (``generate.backend: processes``) or Dask workers (``dask``). Returns summed counts."""
    g = cfg.generate
    results = []
    with Progress("generate", len(jobs), "shard") as bar:
        if g.workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                cancel.check()
                results.append(write_shard(job, cfg, paths, loaded))
                bar.advance(1, rows=job.rows)
        elif g.backend == "processes":
            import multiprocessing
            from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

            threads = max(1, threads_available(cfg) // g.workers)
            # spawn: a fresh interpreter per worker (forking a process that holds torch threads is unsafe).
            pool = ProcessPoolExecutor(g.workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_worker_init, initargs=(threads, os.getpid()))
            try:
                futures = {pool.submit(write_shard, job, cfg, paths): job for job in jobs}
                pending = set(futures)
                while pending:
                    for future in _finished(pending, lambda p: wait(p, 0.2, FIRST_COMPLETED)[0]):
                        pending.discard(future)
                        results.append(future.result())
                        bar.advance(1, rows=futures[future].rows)
            except BaseException:  # cancelled, or a shard failed: the other workers stop now
                _abandon(pool)
                raise
            pool.shutdown()
        else:
            from distributed import Client, LocalCluster

            with _dask_logs_as_others():
                # Workers write straight into the output folder: on a remote cluster it must be shared storage.
                cluster = None if g.dask_address else LocalCluster(**local_cluster(g.workers))
                try:
                    with Client(g.dask_address or cluster) as client:
                        if cluster is not None:  # a remote cluster's workers are not this run's to end
                            client.run(_dask_worker_init, os.getpid())
                        futures = client.map(write_shard, jobs, cfg=cfg, paths=paths, pure=False)
                        rows = {f.key: job.rows for f, job in zip(futures, jobs)}
                        pending = set(futures)
                        try:
                            while pending:
                                for future in _finished(pending, _dask_done):
                                    pending.discard(future)
                                    results.append(future.result())
                                    bar.advance(1, rows=rows[future.key])
                        except BaseException:
                            # Stopped: what Dask says while it closes (the connections cut) is not the run's message.
                            logging.getLogger("distributed").setLevel(logging.CRITICAL)
                            client.cancel(list(pending))  # a remote cluster's shards not begun are dropped
                            raise
                finally:
                    if cluster is not None:  # this run's workers end with it (cancelled or not)
                        cluster.close()
    total: dict[str, int] = {}
    for r in results:
        for k, v in r.items():
            total[k] = total.get(k, 0) + v
    return total
