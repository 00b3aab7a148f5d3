"""Where the pipeline's log lines go and what they carry.

Every record of the ``pipeline`` loggers carries the dataset and the stage it was logged under
(``stage_context``, entered by ``pipeline.stages.run_stage``) and any numbers its caller attached
as ``extra={"fields": {...}}`` (the progress lines do). ``setup`` is the command line's one call:
text or JSON lines (one object per line: time, level, dataset, stage, message and the numbers as
fields, for a platform that ingests logs), to stderr and optionally to a file.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import math
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

# The dataset and stage being run in this thread (Prefect runs datasets in parallel threads).
_CONTEXT: contextvars.ContextVar[tuple[str | None, str | None]] = contextvars.ContextVar("pipeline_stage",
                                                                                         default=(None, None))
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Whether live bars show on the terminal: set by ``setup``, which writes the lines above them;
# ``pipeline.progress`` reads it (off by default: a library, a flow, a pipe).
_BARS = {"shown": False}


@contextlib.contextmanager
def stage_context(dataset: str, stage: str) -> Iterator[None]:
    token = _CONTEXT.set((dataset, stage))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current() -> tuple[str | None, str | None]:
    """(dataset, stage) of the stage running in this thread, or (None, None)."""
    return _CONTEXT.get()


def bars_shown() -> bool:
    """Whether the progress loops draw live bars (``setup`` with ``bars``: a person at a terminal)."""
    return _BARS["shown"]


class _Context(logging.Filter):
    """Stamps each record with the dataset and stage (a handler filter: it sees child loggers' records)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "dataset"):
            record.dataset, record.stage = current()
        return True


class Redact(logging.Filter):
    """Masks URL credentials in a record's message (``pipeline.redact``) before any handler
    writes it: a source or release root given as ``s3://KEY:SECRET@...`` is never logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pipeline.redact import redact

        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, dataset, stage, message, and the
    record's ``fields`` (numbers stay numbers; a non-finite one is null, so every line is strict JSON)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
               "level": record.levelname, "logger": record.name, "dataset": getattr(record, "dataset", None),
               "stage": getattr(record, "stage", None), "message": record.getMessage()}
        for key, value in (getattr(record, "fields", None) or {}).items():
            out.setdefault(key, None if isinstance(value, float) and not math.isfinite(value) else value)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class _NotOnBar(logging.Filter):
    """Drops the progress lines from the terminal's handler while live bars show the same figures."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "progress", False)


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is logged (a redirected or captured stream
    that was replaced since is never written to after it closed)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class _AboveBars(_Stderr):
    """On a terminal with live bars: each line is written above the bars (``tqdm.write``), not into
    the middle of one."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def setup(level: int = logging.INFO, fmt: str = "text", file: str | None = None, bars: bool = False,
          others: int = logging.WARNING) -> Callable[[], None]:
    """The command line's logging: the pipeline's records from ``level`` and other libraries' from
    ``others``, as ``fmt`` text or json, to stderr (without the progress lines when ``bars`` show
    them) and, with ``file``, appended to that file too (every line, progress included). Returns
    the undo: a command run in-process (a test, a notebook) leaves logging as it found it."""
    formatter = JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT, datefmt="%H:%M:%S")
    handlers: list[logging.Handler] = [_AboveBars() if bars else _Stderr()]
    if bars:
        handlers[0].addFilter(_NotOnBar())
    if file:
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(file, encoding="utf-8"))
    root, source = logging.getLogger(), logging.getLogger("pipeline")
    before = (root.level, source.level, _BARS["shown"])
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(_Context())
        handler.addFilter(Redact())
        root.addHandler(handler)
    root.setLevel(others)  # third-party chatter (fsspec, matplotlib, urllib3)
    source.setLevel(level)
    _BARS["shown"] = bool(bars)

    def undo() -> None:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(before[0])
        source.setLevel(before[1])
        _BARS["shown"] = before[2]

    return undo
