"""Errors the pipeline raises on purpose: each names what is wrong and where."""

from __future__ import annotations

import signal


class PipelineError(Exception):
    """Base for errors that the CLI reports as one clear line (no traceback). A URL's credentials
    in the message are masked (``pipeline.redact``): error lines end up in logs and CI output."""

    def __init__(self, *args: object):
        from pipeline.redact import redact

        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


class ConfigError(PipelineError):
    """params.yaml or an override names an unknown key or holds a wrong value."""


class InputDataError(PipelineError):
    """A source file cannot be used; the message names the file, the column and the reason."""

    def __init__(self, path: object, reason: str, column: str | None = None):
        from pipeline.redact import redact

        self.path, self.column, self.reason = redact(str(path)), column, redact(reason)
        where = f"{self.path}: column '{column}'" if column is not None else self.path
        super().__init__(f"{where}: {reason}")


class CheckpointError(PipelineError):
    """A checkpoint cannot be resumed (it belongs to other data or params)."""


class ConditionError(PipelineError):
    """Conditional sampling was asked for something the schema or the model cannot give."""


class QualityGateError(PipelineError):
    """The synthetic data failed the quality thresholds; nothing was published."""


class ReleaseError(PipelineError):
    """A release cannot be written (it exists already, or its inputs are inconsistent), or read."""


class ReleaseIntegrityError(ReleaseError):
    """A release is not what its manifest says: a file changed, missing or extra, a manifest that
    contradicts itself or its files, or a ``latest.json`` that names no version of its dataset.
    The message names the file."""


class BadNameError(PipelineError):
    """A dataset name or release version that cannot be a folder name (``pipeline.names``)."""


class Cancelled(BaseException):
    """The run was told to stop (SIGTERM, SIGINT; ``pipeline.cancel``). A ``BaseException``, as
    ``KeyboardInterrupt`` is, so that no ``except Exception`` (a retry, a fallback) swallows it."""

    def __init__(self, signum: int):
        self.signal = int(signum)
        super().__init__(f"cancelled by {signal.Signals(self.signal).name}")
