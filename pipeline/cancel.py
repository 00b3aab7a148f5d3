"""Cancellation: SIGTERM and SIGINT stop a run at a safe point, with its work released.

Schedulers stop work with SIGTERM (Kubernetes, systemd, a Prefect worker, a CI timeout) and a
person with Ctrl-C (SIGINT). Every entry point (the CLI, the flows) installs ``on_signals``: the
signal sets one flag, and in the main thread also raises ``Cancelled`` at once, unless the code
there is in a ``deferred`` block (the training loop, a commit), which stops at its own safe point.
Code in other threads (a Prefect task) or processes (a Dask worker) cannot be interrupted by a
signal: the long loops call ``check()`` between their steps (training steps, shards, metric
families, streamed batches, denoising steps). A run torn down some other way (Prefect's own SIGTERM
handler, a torchrun agent) calls ``request`` so that the same loops stop.

``Cancelled`` is a ``BaseException`` (as ``KeyboardInterrupt`` is): a handler of ``Exception``
(a retry, a metric family's fallback) must not swallow it. What it leaves: the temporary folders
of the step it stopped are removed by their own ``with`` blocks (``files.atomic_dir``,
``release.store``), locks are released by theirs, and training keeps its last checkpoint.
"""

from __future__ import annotations

import contextlib
import contextvars
import signal
import threading
from typing import Iterator

from pipeline.errors import Cancelled

SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Set in the processes a run launches for part of its work (torchrun's ranks): the launcher says
# once what was cancelled, not every rank.
LAUNCHED_BY = "SYNTHFACTORY_LAUNCHER_PID"
# After a cancellation an epoch that would end within this many seconds is finished and
# checkpointed (a whole epoch kept); a longer one is abandoned for the last checkpoint.
GRACE_SECONDS = 3.0

_flag = threading.Event()
_state: dict[str, int | None] = {"signal": None, "deferred": 0}
_scoped: dict[str, int] = {}  # orchestrated runs cancelled in this process (a Dask worker hosts several)
_scope: contextvars.ContextVar[str | None] = contextvars.ContextVar("pipeline_cancel_scope", default=None)


def request(signum: int = signal.SIGTERM, scope: str | None = None) -> None:
    """Ask the running work to stop (``signum`` says why): all of this process's, or only the
    work running in ``scope`` (one flow run's tasks on a shared Dask worker)."""
    if scope is not None:
        _scoped.setdefault(scope, int(signum))
        return
    if not _flag.is_set():
        _state["signal"] = int(signum)
        _flag.set()


def requested() -> int | None:
    """The signal that asked the work running here to stop, or None."""
    if _flag.is_set():
        return _state["signal"]
    key = _scope.get()
    return _scoped.get(key) if key is not None else None


def check() -> None:
    """A safe point: raise ``Cancelled`` if the work running here was asked to stop."""
    signum = requested()
    if signum is not None:
        raise Cancelled(signum)


def reset() -> None:
    """Forget a cancellation (a new run in a process that outlived a cancelled one, a test)."""
    _flag.clear()
    _state["signal"] = None
    _scoped.clear()


@contextlib.contextmanager
def scope(key: str | None) -> Iterator[None]:
    """Run the block as the work of ``key`` (a flow run id): ``request(..., scope=key)`` stops it."""
    token = _scope.set(key)
    try:
        yield
    finally:
        _scope.reset(token)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """In the main thread, a signal only sets the flag while this block runs: the block calls
    ``check`` (or ``requested``) at its own safe points, so it never stops mid-step (between a
    release's commit and ``latest``, inside an epoch that is about to be checkpointed). In another
    thread it changes nothing: signals interrupt the main thread only (a flow's, waiting on it)."""
    main = threading.current_thread() is threading.main_thread()
    _state["deferred"] += main
    try:
        yield
    finally:
        _state["deferred"] -= main


def _handle(signum: int, frame) -> None:
    # Only the first request raises: a repeated signal (Prefect re-sends SIGTERM to the handler it
    # replaced once its own has run) must not interrupt the cleanup the first one started.
    first = not _flag.is_set()
    request(signum)
    if first and not _state["deferred"]:
        raise Cancelled(signum)


@contextlib.contextmanager
def on_signals() -> Iterator[None]:
    """Install the SIGTERM and SIGINT handlers for the block (an entry point's whole run); the
    previous ones come back after. A signal the process was started ignoring stays ignored (a
    background job of a shell ignores Ctrl-C; Python leaves it so too). Outside the main thread
    (signals go to the main thread only) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handle) for s in SIGNALS if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def exit_code(signum: int) -> int:
    """The shell's code of a process the signal ended: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + int(signum)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name
