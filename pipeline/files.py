"""File I/O shared by the stages: atomic writes, hashing, stage paths, code version.

Every write goes to a temporary sibling first and is moved into place with ``os.replace``, so a
crash never leaves a half-written file where a reader (or DVC) would take it for a finished one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.redact import redact

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
    fd = open_lock(path, PipelineError)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise PipelineError(f"another run of this dataset holds {path} "
                                        f"(waited {wait_seconds:g}s); try again when it has finished") from None
                time.sleep(0.5)
        try:
            yield path
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def open_lock(path: Path, error: type[Exception]) -> int:
    """A file descriptor of the lock file ``path`` (made if missing) for ``flock``. Opened without
    truncating it and without following a link: a ``.lock`` planted as a symbolic link in a shared
    folder must not make us empty the file it points to. A link or a non-regular file there is an
    ``error`` naming the path."""
    fix = "remove it (a lock is a plain file the pipeline makes itself)"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise error(f"lock file {path} is a symbolic link: {fix}")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise error(f"lock file {path} is not a regular file: {fix}")
    try:
        # O_NONBLOCK: a FIFO swapped in since the check cannot hang the open (flock still waits).
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link made since the check
            raise error(f"lock file {path} is a symbolic link: {fix}") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise error(f"lock file {path} is not a regular file: {fix}")
    return fd


def check_folder_writable(path: Path, key: str) -> None:
    """Fail now, with a one-line error naming the setting, if the local folder ``path`` could not be
    written later (a run must not find out after hours of training). Creates nothing: it writes one
    temporary file in the nearest folder that exists, and removes it. A setting that may be a URL
    is checked by ``pipeline.stores.check_writable``, which calls this for a local one."""
    from pipeline.errors import ConfigError

    if os.path.realpath(path) == os.path.realpath(os.sep):  # every dataset would become a top-level folder
        raise ConfigError(f"{key}: {path} is the file system's root; set {key} to a folder of its own")
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


def free_mb(folder: str | Path) -> float:
    """Free space (MB) where ``folder`` is or would be made: on the nearest folder that exists."""
    probe = Path(folder).resolve()
    while not probe.exists():
        probe = probe.parent
    return round(shutil.disk_usage(probe).free / 2**20, 1)


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
# from a live run's work in progress: .<name>.<host>-<pid>.<random>.tmp, and atomic_dir's
# .<name>.new-<host>-<pid> (a finished copy) and .<name>.old-<host>-<pid> (the copy it replaces).
_OWNER = socket.gethostname().replace(".", "_").replace("-", "_") or "host"
_LEFTOVER = re.compile(r"^\.(?:.+\.(?P<h1>[^.]+)-(?P<p1>\d+)\.[^.]+\.tmp|.+\.(?:old|new)-(?P<h2>[^.]+)-(?P<p2>\d+))$")
_SWAPPED = re.compile(r"^\.(?P<name>.+)\.(?P<kind>new|old)-(?P<host>[^.]+)-(?P<pid>\d+)$")


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


def _dead_run(host: str, pid: str) -> bool:
    """Whether a temporary's maker was a run on this host that is no longer alive."""
    return host == _OWNER and int(pid) != os.getpid() and not _alive(int(pid))


def _restore_swapped(folder: Path) -> list[Path]:
    """Put back each folder that a dead run was replacing when it died (between ``atomic_dir``'s
    renames, so the name is missing): its finished new copy (``.<name>.new-*``) if it left one,
    else the copy it had moved aside (``.<name>.old-*``). Returns the entries moved."""
    import logging

    copies: dict[str, list[tuple[bool, int, Path]]] = {}
    for entry in folder.iterdir():
        m = _SWAPPED.match(entry.name)
        if m is not None and entry.is_dir() and not entry.is_symlink() and _dead_run(m["host"], m["pid"]):
            with contextlib.suppress(FileNotFoundError):
                copies.setdefault(m["name"], []).append((m["kind"] == "new", entry.stat().st_mtime_ns, entry))
    restored = []
    for name, found in copies.items():
        target = folder / name
        if os.path.lexists(target):
            continue  # the swap finished or never began: the other copies are leftovers
        best = max(found)[2]  # a new copy before an old one, then the latest
        try:
            os.replace(best, target)
        except FileNotFoundError:  # another process (a torchrun rank) put it back first
            continue
        logging.getLogger(__name__).warning("restored %s from %s: a run died while replacing it", target, best.name)
        restored.append(best)
    return restored


def remove_leftovers(folder: str | Path, depth: int = 2) -> list[Path]:
    """Remove temporary files and folders that dead runs on this host left under ``folder`` (a
    killed generate's ``.synthetic.*.tmp``, a ``.prepared.old-*``); a live run's are kept, and so
    is anything made on another host (its liveness cannot be seen from here). A folder a dead run
    was replacing is first put back from the newest whole copy it left (``_restore_swapped``).
    Returns what went (a copy put back under its own name too)."""
    folder = Path(folder)
    removed: list[Path] = []
    if depth < 0 or not folder.is_dir():
        return removed
    removed += _restore_swapped(folder)
    for entry in folder.iterdir():
        m = _LEFTOVER.match(entry.name)
        if m is not None:
            host, pid = (m["h1"], m["p1"]) if m["h1"] else (m["h2"], m["p2"])
            if _dead_run(host, pid):
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
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_in(tmp, path)


def _swap_in(tmp: Path, path: Path) -> None:
    """Move the finished folder ``tmp`` to ``path``. Replacing a folder takes two renames (``path``
    aside, then the new one in), and a crash between them leaves no ``path``: so the new one is
    first renamed ``.<name>.new-<host>-<pid>``, which tells the next run's ``remove_leftovers``
    that it is whole (a ``.tmp`` may be half-written) and is to be put back."""
    if not path.exists():
        try:
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return
    owner = f"{_OWNER}-{os.getpid()}"
    new, old = path.with_name(f".{path.name}.new-{owner}"), path.with_name(f".{path.name}.old-{owner}")
    step = 0
    try:
        os.replace(tmp, new)
        step = 1
        os.replace(path, old)
        step = 2
        os.replace(new, path)
    except BaseException:
        if step == 2 and not os.path.lexists(path):
            os.replace(old, path)  # the previous copy back: as if nothing had been written
        shutil.rmtree(new if step else tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's entry to disk (a folder: so a rename in it survives power loss)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def json_text(data: Any) -> str:
    """The text of a JSON record, as every record is written: indented, and through redact, so a
    source or root URL's credentials are never written (``write_json``, and a store's upload)."""
    return redact(json.dumps(data, indent=2, sort_keys=False, default=str)) + "\n"


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically (by rename); a record in an object store is one upload of ``json_text``."""
    with atomic_path(path) as tmp:
        tmp.write_text(json_text(data))


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None, recursively: what
    ``json.dumps(..., allow_nan=False)`` (strict JSON) accepts."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def write_parquet(table: pa.Table, path: str | Path, lineage: dict[str, Any] | None = None) -> None:
    """Write one Parquet file atomically, with lineage in its key-value metadata when given."""
    if lineage is not None:
        meta = dict(table.schema.metadata or {})
        meta[LINEAGE_KEY] = redact(json.dumps(lineage, sort_keys=True, default=str)).encode()
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
