"""File I/O shared by the stages: atomic writes, hashing, stage paths, code version.

Every write goes to a temporary sibling first and is moved into place with ``os.replace``, so a
crash never leaves a half-written file where a reader (or DVC) would take it for a finished one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

LINEAGE_KEY = b"synthfactory.lineage"
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def dataset_run_lock(work_dir: str | Path, dataset: str, wait_seconds: float = 0.0) -> Iterator[Path]:
    """Hold an exclusive lock on one dataset's work folder for a whole run (all stages).

    A second run of the same dataset waits up to ``wait_seconds`` and then fails with a message
    naming the lock, instead of interleaving with the first (the OS drops the lock if its holder
    dies, so a crashed run never blocks the next one).
    """
    import fcntl
    import time

    from pipeline.errors import PipelineError

    path = Path(work_dir) / dataset / ".run.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    with open(path, "w") as f:
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise PipelineError(f"another run of this dataset holds {path} "
                                        f"(waited {wait_seconds:g}s); try again when it has finished") from None
                time.sleep(0.5)
        try:
            yield path
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def check_writable(path: str | Path, key: str, urls: bool = False) -> None:
    """Fail now, with a one-line error naming the setting, if ``path`` could not be written later
    (a run must not find out after hours of training). Creates nothing: it writes one temporary
    file in the nearest folder that exists, and removes it. With ``urls``, ``path`` may be an
    fsspec URL (``pipeline.stores.check_store_writable``); without, a URL is refused."""
    from pipeline.errors import ConfigError
    from pipeline.stores import check_store_writable, has_protocol, is_url, local_path

    if has_protocol(path):
        if not urls:
            raise ConfigError(f"{key}: {path} is a URL; {key} must be a local folder (or a shared one "
                              "mounted at the same path everywhere)")
        if is_url(path):
            return check_store_writable(str(path), key)
    path = local_path(path)
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"{key}: {path} cannot be a folder: {probe} is a file; set {key} to a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise ConfigError(f"{key}: {path} is not writable ({exc.strerror or exc}); set {key} to a folder "
                          "you can write") from None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_files(paths: list[Path]) -> str:
    """One hash over several files (names and contents), order-independent of the file system."""
    h = hashlib.sha256()
    for p in sorted(paths, key=lambda p: p.name):
        h.update(p.name.encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


# Temporaries carry their maker (host and pid), so a later run can tell a dead run's leftovers
# from a live run's work in progress: .<name>.<host>-<pid>.<random>.tmp, .<name>.old-<host>-<pid>.
_OWNER = socket.gethostname().replace(".", "_").replace("-", "_") or "host"
_LEFTOVER = re.compile(r"^\.(?:.+\.(?P<h1>[^.]+)-(?P<p1>\d+)\.[^.]+\.tmp|.+\.old-(?P<h2>[^.]+)-(?P<p2>\d+))$")


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.{_OWNER}-{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_leftovers(folder: str | Path, depth: int = 2) -> list[Path]:
    """Remove temporary files and folders that dead runs on this host left under ``folder`` (a
    killed generate's ``.synthetic.*.tmp``, a ``.prepared.old-*``); a live run's are kept, and so
    is anything made on another host (its liveness cannot be seen from here). Returns what went."""
    folder = Path(folder)
    removed: list[Path] = []
    if depth < 0 or not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        m = _LEFTOVER.match(entry.name)
        if m is not None:
            host, pid = (m["h1"], m["p1"]) if m["h1"] else (m["h2"], m["p2"])
            if host == _OWNER and int(pid) != os.getpid() and not _alive(int(pid)):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed.append(entry)
                continue
        if entry.is_dir() and not entry.is_symlink() and not entry.name.startswith("."):
            removed += remove_leftovers(entry, depth - 1)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it into place, else remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs are meant to be shared
    try:
        yield tmp_path
        fsync_path(tmp_path)  # the bytes are on disk before the name says the file is complete
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def scratch_dir(parent: str | Path | None, name: str) -> Iterator[Path]:
    """A temporary folder in ``parent`` (None: the system's temporary folder), removed on exit;
    named like the other temporaries, so if this run dies the next one removes it."""
    if parent is not None:
        Path(parent).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(Path(name)), suffix=".tmp", dir=parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{_OWNER}-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's entry to disk (a folder: so a rename in it survives power loss)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically: locally by rename, to a ``pipeline.stores.StorePath`` in one upload."""
    from pipeline.stores import StorePath

    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    if isinstance(path, StorePath):
        path.write_text(text)
        return
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: str | Path) -> Any:
    """JSON from a local path or a ``pipeline.stores.StorePath``."""
    from pipeline.stores import StorePath

    return json.loads((path if isinstance(path, StorePath) else Path(path)).read_text())


def write_parquet(table: pa.Table, path: str | Path, lineage: dict[str, Any] | None = None) -> None:
    """Write one Parquet file atomically, with lineage in its key-value metadata when given."""
    if lineage is not None:
        meta = dict(table.schema.metadata or {})
        meta[LINEAGE_KEY] = json.dumps(lineage, sort_keys=True, default=str).encode()
        table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def code_version() -> str:
    """Package version plus the git commit of the checkout (``+dirty`` with local changes), if any."""
    from pipeline import __version__

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return __version__
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "pipeline"],
            cwd=root, capture_output=True, text=True, timeout=10,
        )
        suffix = "+dirty" if dirty.stdout.strip() else ""
        return f"{__version__}+g{commit.stdout.strip()}{suffix}"
    except (OSError, subprocess.SubprocessError):
        return __version__
