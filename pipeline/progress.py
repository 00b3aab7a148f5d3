"""Progress of the long loops: training epochs, generated shards, scoring's metric families.

A person at a terminal sees a live bar (the command line's ``logs.setup`` turns bars on when
stderr is one). Off a terminal (DVC, Prefect, cron, a pipe into a log collector) nobody sees a
bar, so every loop also logs a line on the ``pipeline.progress`` logger at a steady cadence
(``runtime.progress_seconds``), even while one step runs longer than that (a heartbeat, which says
how far into that step the work is where the work reports it with ``within``: an epoch's batches,
a shard's denoising steps), and a last line when it ends. The line's numbers ride along as fields
(``--log-format json`` writes them as numbers). Listeners (the Prefect flow's progress artifact)
hear every step's fraction.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from typing import Callable, Iterator

from pipeline import cancel, logs

log = logging.getLogger("pipeline.progress")

Listener = Callable[[str | None, float], None]  # (stage, fraction of it done)
_listeners: contextvars.ContextVar[tuple[Listener, ...]] = contextvars.ContextVar("pipeline_progress", default=())
_settings = {"seconds": 10.0}
_active: contextvars.ContextVar[Progress | None] = contextvars.ContextVar("pipeline_progress_active", default=None)


def set_cadence(seconds: float) -> None:
    """Seconds between progress lines off a terminal (``runtime.progress_seconds``)."""
    _settings["seconds"] = float(seconds)


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Call ``listener(stage, fraction)`` on every step of every loop run in this context."""
    token = _listeners.set(_listeners.get() + (listener,))
    try:
        yield
    finally:
        _listeners.reset(token)


def within(done: int, total: int, unit: str) -> None:
    """How far the innermost loop running in this context is into its current step: ``done`` of
    ``total`` ``unit``s (a shard's denoising steps). Nothing outside a loop, so code that does not
    know whether a loop runs it (a model's sampling) may call it. It is also a safe point where a
    cancelled run stops (``pipeline.cancel``): a long shard does not outlive its run."""
    cancel.check()
    bar = _active.get()
    if bar is not None:
        bar.within(done, total, unit)


def rate_text(count: float, seconds: float, unit: str) -> str | None:
    """``count`` per second as a person reads it ("1,234 rows/s", "0.25 rows/s"), or None when the
    time is too short to measure one (under 0.1 s) or nothing was counted: never "0 rows/s"."""
    if not count or seconds < 0.1:
        return None
    rate = count / seconds
    return f"{rate:,.0f} {unit}/s" if rate >= 10 else f"{rate:.2g} {unit}/s"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, s = divmod(seconds, 60)
    return f"{minutes}m{s:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _plural(unit: str) -> str:
    return unit[:-1] + "ies" if unit.endswith("y") else unit + "s"


class Progress:
    """One loop of ``total`` ``unit``s (``initial`` already done). ``advance(n, rows=…, **figures)``
    after each step; ``close()`` (or the ``with`` block's end) logs the last line. ``enabled=False``
    (a non-zero rank under torchrun) makes it silent."""

    def __init__(self, what: str, total: int, unit: str, initial: int = 0, enabled: bool = True) -> None:
        self.what, self.total, self.unit, self.done, self.enabled = what, total, unit, initial, enabled
        self.dataset, self.stage = logs.current()
        self.listeners = _listeners.get()
        self.rows, self.figures, self.current = 0, {}, None
        self.inner: tuple[int, int, str] | None = None  # (done, total, unit) within the step now running
        self.started = self.last_step = self.last_line = time.monotonic()
        self.start_done = initial
        self.lock = threading.Lock()
        self.bar = None
        if enabled and logs.bars_shown():
            try:
                from tqdm.auto import tqdm
            except ImportError:  # a bare GPU box: log lines only
                tqdm = None
            if tqdm is not None:
                label = " ".join(x for x in (what, self.dataset) if x)
                self.bar = tqdm(total=total, initial=initial, desc=label, unit=unit, leave=False)
        self._stop = threading.Event()
        self._beat = None
        self._token = _active.set(self) if enabled else None
        if enabled:
            self._beat = threading.Thread(target=self._heartbeat, daemon=True, name=f"progress-{what}")
            self._beat.start()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close(failed=exc[0] is not None)

    def advance(self, n: int = 1, rows: int = 0, **figures: float) -> None:
        if not self.enabled:
            return
        with self.lock:
            self.done += n
            self.rows += rows
            self.figures = figures
            self.last_step = time.monotonic()
            self.inner = None
            due = self.last_step - self.last_line >= _settings["seconds"]
        if self.bar is not None:
            self.bar.update(n)
            if figures:
                self.bar.set_postfix({k: f"{v:.3g}" for k, v in figures.items()}, refresh=False)
        if due:
            self._line()
        for listener in self.listeners:
            listener(self.stage, min(1.0, self.done / self.total) if self.total else 1.0)

    def now(self, label: str) -> None:
        """Name the step now running (a metric family): the lines say what a long wait is spent on."""
        with self.lock:
            self.current, self.last_step = label, time.monotonic()
        if self.bar is not None:
            self.bar.set_postfix_str(label)

    def within(self, done: int, total: int, unit: str) -> None:
        """How far the step now running is: ``done`` of ``total`` ``unit``s (an epoch's batches).
        The heartbeat's lines show it, so a long step is not silent off a terminal."""
        if self.enabled:
            self.inner = (done, total, unit)  # one tuple, swapped whole: read without the lock

    def set_total(self, total: int) -> None:
        """The loop turned out shorter or longer (``train.budget_seconds`` planned the epochs again)."""
        self.total = total
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def close(self, failed: bool = False) -> None:
        if not self.enabled or self._stop.is_set():
            return
        self._stop.set()
        if self._token is not None:
            try:
                _active.reset(self._token)
            except ValueError:  # closed in another context than it was made in: the next loop sets its own
                pass
        if self.bar is not None:
            self.bar.close()
        if not failed:
            self._line(final=True)

    def _heartbeat(self) -> None:
        """A line at the cadence while a step runs longer than it (an MNIST epoch on a busy box)."""
        while not self._stop.wait(min(1.0, max(0.1, _settings["seconds"]))):  # never a busy loop
            if time.monotonic() - self.last_line >= _settings["seconds"]:
                self._line()

    def _line(self, final: bool = False) -> None:
        with self.lock:
            now = time.monotonic()
            self.last_line = now
            elapsed, done, total = now - self.started, self.done, self.total
            inner = self.inner if not final else None
            part = inner[0] / inner[1] if inner and inner[1] else 0.0  # of the step now running
            steps = done - self.start_done + part
            rows = self.rows
            eta = elapsed / steps * max(0.0, total - done - part) if steps > 0 and not final else None
            figures = dict(self.figures)
            current, in_step = (self.current, now - self.last_step) if not final else (None, 0.0)
        rate = rate_text(rows, elapsed, "rows")
        fields = {"done": done, "total": total, "unit": self.unit, "elapsed_s": round(elapsed, 1),
                  **({"rows_per_s": round(rows / elapsed, 3)} if rows and elapsed > 0 else {}),
                  **({"eta_s": round(eta, 1)} if eta is not None else {}),
                  **{k: round(float(v), 5) for k, v in figures.items()}}
        head = " ".join(x for x in (self.what, self.dataset) if x)
        parts = [f"{done}/{total} {_plural(self.unit)}" + (" done" if final else
                                                           f" ({100 * done / total:.0f}%)" if total else "")]
        if current:
            parts.append(f"now {current} ({_duration(in_step)})")
            fields["now"] = current
        if inner and inner[1]:
            parts.append(f"{self.unit} {done + 1}: {inner[0]:,}/{inner[1]:,} {_plural(inner[2])} ({100 * part:.0f}%)")
            fields.update(within_done=inner[0], within_total=inner[1], within_unit=inner[2])
        parts += [f"{k} {v:.4g}" for k, v in figures.items()]
        if rate:
            parts.append(rate)
        parts.append(f"{_duration(elapsed)} elapsed")
        if eta is not None:
            parts.append(f"ETA {_duration(eta)}")
        elif not final and steps == 0 and not current and not inner:
            parts.append("first step running")
        log.info("%s: %s", head, ", ".join(parts),
                 extra={"fields": fields, "progress": True, "dataset": self.dataset, "stage": self.stage})
