"""Where a release root lives: a local folder, or a folder in an object store. One class per kind,
with the same methods, chosen once (``release_store``); the publish stage calls them in order::

    with store.lock():                          # one publisher per dataset at a time
        store.clear_unfinished()                # what a publish that died left
        with store.staging(version, work) as staging:
            ...                                 # the release written into ``staging``
            store.commit(staging, version)      # appears whole, or not at all
        store.point_latest(dataset, version)    # moved last
        store.prune(keep)

A local release is assembled in a hidden staging folder and renamed into place in one step, under
a lock; ``latest.json`` is replaced atomically only after that. A crash at any point leaves the
previous ``latest`` intact and no partial version visible. An existing version is never replaced.

``publish.release_root`` may be an fsspec URL (``s3://bucket/releases``). An object store has no
rename and no lock, so there the release is assembled in a scratch folder of the work folder,
uploaded file by file to ``<version>/`` with ``_manifest.json`` last, then ``latest.json`` (one
upload, replaced whole). Versions are listed by their manifests, so a reader still never sees a
partial version, and ``latest`` moves only to a whole one; an upload that died leaves a prefix
without a manifest, which the next publish removes. What the store cannot give is the lock: one
publisher per dataset at a time is the caller's to ensure (the nightly flow's per-dataset run
lock in the work folder does, for runs that share that work folder).
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import logging
import os
import shutil
from pathlib import Path
from typing import Iterator

from pipeline.errors import ReleaseError
from pipeline.files import fsync_path, json_text, open_lock, scratch_dir, write_json
from pipeline.names import name_problem
from pipeline.release.layout import LATEST, MANIFEST, latest_record, latest_version, list_versions
from pipeline.stores import StorePath, is_url, local_path

log = logging.getLogger(__name__)


class ReleaseStore(abc.ABC):
    """One dataset's release folder, ``root``; the kinds differ in how a version is locked,
    staged, committed, pointed at and deleted, not in what they mean."""

    root: Path | StorePath

    @abc.abstractmethod
    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Held while a release is made: concurrent publishers of a dataset wait their turn."""

    @abc.abstractmethod
    def clear_unfinished(self) -> None:
        """Remove what a publish that died left (call under the lock)."""

    @abc.abstractmethod
    def staging(self, version: str, work: Path) -> contextlib.AbstractContextManager[Path]:
        """A local folder where ``version`` is assembled out of sight (``work``: the dataset's work
        folder); removed if the release fails."""

    @abc.abstractmethod
    def commit(self, staging: Path, version: str) -> None:
        """Move the assembled release to ``root/version``: listed whole, or not at all."""

    @abc.abstractmethod
    def point_latest(self, dataset: str, version: str) -> None:
        """Make ``latest.json`` name ``version``, replaced whole."""

    @abc.abstractmethod
    def delete(self, version: str) -> None:
        """Delete a version so that no reader ever sees it half-deleted (call under the lock)."""

    def prune(self, keep: int) -> list[str]:
        """Delete all but the newest ``keep`` versions; the one ``latest.json`` names is always
        kept. Call under the lock. Returns the deleted versions."""
        versions = list_versions(self.root)
        latest = latest_version(self.root)
        doomed = [v for v in versions[:-keep] if v != latest] if keep < len(versions) else []
        for v in doomed:
            self.delete(v)
        if doomed:
            log.info("pruned %d old release(s) of %s: %s", len(doomed), self.root.name, ", ".join(doomed))
        return doomed


class LocalFolder(ReleaseStore):
    """A release folder on local disk: a lock file, a hidden staging folder beside the versions,
    one rename to commit."""

    def __init__(self, root: Path):
        self.root = root

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = open_lock(self.root / ".lock", ReleaseError)  # never truncated, never through a link
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def clear_unfinished(self) -> None:
        """The hidden staging and deleting folders of a publish that died."""
        for stale in [*self.root.glob(".staging-*"), *self.root.glob(".deleting-*")]:
            shutil.rmtree(stale, ignore_errors=True)

    @contextlib.contextmanager
    def staging(self, version: str, work: Path) -> Iterator[Path]:
        staging = self.root / f".staging-{version}-{os.getpid()}"
        staging.mkdir(parents=True)
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def commit(self, staging: Path, version: str) -> None:
        target = self.root / version
        fsync_path(staging)
        if target.exists():
            raise ReleaseError(f"{target}: version exists already; a release is never overwritten")
        os.rename(staging, target)  # the release appears whole, or not at all

    def point_latest(self, dataset: str, version: str) -> None:
        write_json(self.root / LATEST, latest_record(dataset, version))  # by rename
        fsync_path(self.root)

    def delete(self, version: str) -> None:
        # Renamed out of sight first, so no reader ever sees a half-deleted release.
        trash = self.root / f".deleting-{version}-{os.getpid()}"
        os.rename(self.root / version, trash)
        shutil.rmtree(trash, ignore_errors=True)


class ObjectStore(ReleaseStore):
    """A release folder in an object store (``StorePath``): no lock (one publisher per dataset is
    the caller's to ensure), staged in the work folder, uploaded with the manifest last."""

    def __init__(self, root: StorePath):
        self.root = root

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        yield

    def clear_unfinished(self) -> None:
        """Version prefixes without a manifest (an upload or a prune that died; no reader ever
        listed them)."""
        for folder in self.root.iterdir():
            if folder.is_dir() and name_problem(folder.name) is None and not (folder / MANIFEST).exists():
                log.info("removing %s, an unfinished release (no manifest)", folder)
                folder.remove()

    @contextlib.contextmanager
    def staging(self, version: str, work: Path) -> Iterator[Path]:
        with scratch_dir(work, "release") as staging:
            yield staging

    def commit(self, staging: Path, version: str) -> None:
        """Every file uploaded, the manifest last, so the version is listed (by its manifest) only
        once it is whole; a failed upload is removed again."""
        target = self.root / version
        if target.exists():
            raise ReleaseError(f"{target}: version exists already; a release is never overwritten")
        names = sorted(p.name for p in staging.iterdir() if p.name != MANIFEST)
        try:
            for name in [*names, MANIFEST]:
                (target / name).upload(staging / name)
        except BaseException:
            with contextlib.suppress(Exception):  # else the next publish removes it (no manifest)
                target.remove(first=MANIFEST)
            raise

    def point_latest(self, dataset: str, version: str) -> None:
        (self.root / LATEST).write_text(json_text(latest_record(dataset, version)))  # one upload

    def delete(self, version: str) -> None:
        (self.root / version).remove(first=MANIFEST)  # no rename: unlisted first (its manifest), then its files


def release_store(release_root: str, dataset: str) -> ReleaseStore:
    """``<release_root>/<dataset>``: a local folder (a path or a ``file://`` URL), or a folder in the
    object store an fsspec URL names (a one-line error if fsspec cannot open it)."""
    if not is_url(release_root):
        return LocalFolder(local_path(release_root) / dataset)
    try:
        return ObjectStore(StorePath.of(release_root) / dataset)
    except ValueError as exc:
        raise ReleaseError(f"publish.release_root {release_root}: {exc}") from None
