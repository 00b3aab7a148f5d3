"""Object stores: sources and release roots given as fsspec URLs (``s3://``, ``gs://``, ``az://``,
``memory://``...). A plain path or a ``file://`` URL stays a local ``Path``, read and written as
before.

- ``local_copy`` fetches a source object once into a local file (its bytes: the lineage hashes
  them), so CSV sniffing, compression and Parquet work as for a local file, and errors still
  name the URL;
- ``StorePath`` is a folder or file in a store with the few pathlib methods the release code
  reads through (``pipeline.release`` lists versions and reads manifests alike in both);
- ``check_writable`` checks a setting that may be a URL: a store by a probe object, a local folder
  by ``pipeline.files.check_folder_writable``.

Credentials and endpoints come from the store's own configuration (for S3: the AWS environment,
profile or instance role, ``AWS_ENDPOINT_URL`` for an S3-compatible server), or from fsspec's
``FSSPEC_<PROTOCOL>_<OPTION>`` environment variables; nothing in params.yaml holds a secret.
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from pathlib import Path
from typing import Any, Iterator

from pipeline.files import check_folder_writable, scratch_dir
from pipeline.redact import is_redacted, redact

log = logging.getLogger(__name__)

_PROTOCOL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*(::|://)")  # s3://, memory://, simplecache::s3://; not C:\


def has_protocol(location: str | Path) -> bool:
    """Whether ``location`` is written as a URL (``file://`` included)."""
    return not isinstance(location, Path) and _PROTOCOL.match(str(location)) is not None


def is_url(location: str | Path) -> bool:
    """Whether ``location`` names a store other than the local disk (a ``file://`` URL does not)."""
    if not has_protocol(location):
        return False
    import fsspec.utils

    return fsspec.utils.get_protocol(str(location)) not in ("file", "local")


def local_path(location: str | Path) -> Path:
    """The local path of a plain path or a ``file://`` URL."""
    if not has_protocol(location):
        return Path(location)
    from fsspec.implementations.local import LocalFileSystem

    return Path(LocalFileSystem._strip_protocol(str(location)))


def location(text: str | Path) -> str | Path:
    """A URL as written (it is what lineage records), anything else as a local ``Path``."""
    return str(text) if has_protocol(text) else Path(text)


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def open_store(url: str) -> tuple[Any, str]:
    """(the fsspec filesystem, the path in it) of ``url``: a fresh instance, so a long-lived
    process never answers from another run's cached listings. ValueError, one line, for an
    unknown protocol or a missing fsspec extra (naming the package to install)."""
    import fsspec
    import fsspec.utils

    try:
        return fsspec.core.url_to_fs(url, skip_instance_cache=True)
    except ImportError as exc:  # fsspec's message names the package (e.g. "Install s3fs to access S3")
        from fsspec.registry import known_implementations

        protocol = fsspec.utils.get_protocol(url)
        known = known_implementations.get(protocol, {}).get("class", "")
        package = known.split(".", 1)[0] if known and not known.startswith("fsspec.") else None
        fix = f": pip install {package}" if package else ""
        raise ValueError(f"{protocol}:// URLs need an fsspec extra that is not installed "
                         f"({one_line(exc)}){fix}") from None
    except ValueError as exc:  # "Protocol not known: foo"
        raise ValueError(f"not a URL fsspec can open ({one_line(exc)})") from None
    except Exception as exc:  # a store that connects when opened (ftp://, sftp://): refused, unreachable
        raise ValueError(f"cannot be reached ({one_line(exc)}); check the host, the port and that the server "
                         "is running") from exc


# ---------------------------------------------------------------------------------------------
# sources


def check_not_masked(url: str) -> None:
    """A URL read back from a record (an ad-hoc dataset remembered by name) had its credentials
    masked (``pipeline.redact``): one line saying how to give them, instead of a store's refusal."""
    from pipeline.errors import InputDataError

    if is_redacted(url):
        raise InputDataError(url, "its credentials were masked when it was recorded (they are never stored); "
                                  "give --source with them again, or put them in the store's environment")


@contextlib.contextmanager
def local_copy(source: str | Path, folder: str | Path | None = None) -> Iterator[Path]:
    """A local file holding ``source``'s bytes: the path itself when it is local, else the object
    fetched once into ``folder`` (default: the system's temporary folder) and removed on exit.
    An InputDataError raised inside about the copy is raised again naming the URL; a missing
    object, an unreadable store or a missing fsspec extra is one InputDataError naming the URL."""
    from pipeline.errors import InputDataError

    if not is_url(source):
        yield local_path(source)
        return
    url = str(source)
    check_not_masked(url)
    try:
        fs, path = open_store(url)
    except ValueError as exc:
        raise InputDataError(url, str(exc)) from None
    try:
        kind = fs.info(path).get("type")
    except FileNotFoundError:
        raise InputDataError(url, "file not found") from None
    except Exception as exc:  # the store's own errors (credentials, network) are not all OSErrors
        raise InputDataError(url, f"cannot be read: {one_line(exc)}") from exc
    if kind == "directory":
        raise InputDataError(url, "is a folder (a prefix), expected one CSV or Parquet file "
                                  "(image folders and idx pairs are read from local disk)")
    with scratch_dir(folder, "source") as tmp:
        local = tmp / (path.rstrip("/").rsplit("/", 1)[-1] or "source")  # the name: .parquet, .gz
        try:
            fs.get_file(path, str(local))
        except Exception as exc:
            raise InputDataError(url, f"cannot be read: {one_line(exc)}") from exc
        log.info("fetched %s (%d bytes) to read it", redact(url), local.stat().st_size)
        try:
            yield local
        except InputDataError as exc:
            if exc.path != str(local):
                raise
            raise InputDataError(url, exc.reason, exc.column) from None


# ---------------------------------------------------------------------------------------------
# release roots


class StorePath:
    """A file or folder in an fsspec store, with the pathlib methods the release code reads
    through (``/``, ``name``, ``exists``, ``is_file``, ``is_dir``, ``iterdir``, ``read_bytes``, ``read_text``,
    ``write_text``); ``str()`` is its URL. A folder is a prefix: it exists while it holds files."""

    def __init__(self, fs: Any, path: str, url: str, kind: str | None = None):
        self.fs, self.path, self.url, self._kind = fs, path.rstrip("/"), url.rstrip("/"), kind

    @classmethod
    def of(cls, url: str) -> StorePath:
        """The root a URL names; ValueError (one line) if fsspec cannot open it."""
        fs, path = open_store(url)
        return cls(fs, path, url)

    def __truediv__(self, name: str) -> StorePath:
        return StorePath(self.fs, f"{self.path}/{name}", f"{self.url}/{name}")

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"StorePath({self.url!r})"

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def exists(self) -> bool:
        return self.fs.exists(self.path)

    def is_file(self) -> bool:
        return self.fs.isfile(self.path)

    def is_dir(self) -> bool:
        return self._kind == "directory" if self._kind is not None else self.fs.isdir(self.path)

    def iterdir(self) -> Iterator[StorePath]:
        self.fs.invalidate_cache(self.path)  # what is there now, not what a listing saw earlier
        try:
            entries = self.fs.ls(self.path, detail=True)
        except FileNotFoundError:
            return
        for entry in entries:
            name = str(entry["name"]).rstrip("/").rsplit("/", 1)[-1]
            if name:
                yield StorePath(self.fs, f"{self.path}/{name}", f"{self.url}/{name}", entry.get("type"))

    def read_bytes(self) -> bytes:
        return self.fs.cat_file(self.path)

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        """One upload: a store replaces an object whole, so a reader sees the old text or the new."""
        self.fs.pipe_file(self.path, text.encode(encoding))

    def upload(self, local: Path) -> None:
        self.fs.put_file(str(local), self.path)

    def remove(self, first: str | None = None) -> None:
        """Delete this folder and everything in it; ``first``, a file in it, before the rest
        (a version's manifest: the version stops being listed before its files go)."""
        if first is not None and (self / first).exists():
            self.fs.rm_file((self / first).path)
        if self.fs.exists(self.path):
            self.fs.rm(self.path, recursive=True)


def check_writable(location: str | Path, key: str, urls: bool = False) -> None:
    """Fail now, with a one-line error naming the setting, if ``location`` could not be written
    later (``pipeline.files.check_folder_writable``). With ``urls`` it may be an fsspec URL
    (``check_store_writable``); without, a URL is refused."""
    from pipeline.errors import ConfigError

    if has_protocol(location):
        if not urls:
            raise ConfigError(f"{key}: {location} is a URL; {key} must be a local folder (or a shared one "
                              "mounted at the same path everywhere)")
        if is_url(location):
            return check_store_writable(str(location), key)
    check_folder_writable(local_path(location), key)


def check_store_writable(url: str, key: str) -> None:
    """``check_writable`` for a URL: the store opens (its fsspec extra is installed),
    ``url`` is not a file, and a probe object can be written there and removed. ConfigError naming
    the setting otherwise."""
    from pipeline.errors import ConfigError

    try:
        root = StorePath.of(url)
    except ValueError as exc:
        raise ConfigError(f"{key}: {url}: {exc}") from None
    try:
        if root.is_file():
            raise ConfigError(f"{key}: {url} is a file; set {key} to a folder (a prefix)")
        probe = root / f".write-probe.{uuid.uuid4().hex}.tmp"
        probe.write_text("")
        probe.fs.rm_file(probe.path)
    except ConfigError:
        raise
    except Exception as exc:  # the store's own errors (credentials, a missing bucket) are not all OSErrors
        raise ConfigError(f"{key}: {url} is not writable ({one_line(exc)}); set {key} to a folder or URL "
                          "you can write, with the store's credentials in the environment") from exc
