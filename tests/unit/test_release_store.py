"""The release store interface: a local folder and an object store (fsspec's in-memory one) go
through the same calls and leave the same release line, read back by the one layout reader."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import fsspec
import pytest

from pipeline.errors import ReleaseError
from pipeline.release.layout import (
    LATEST,
    MANIFEST,
    latest_version,
    list_versions,
    new_version,
    version_order,
)
from pipeline.release.store import LocalFolder, ObjectStore, release_store

SCHEMA = [{"name": "x", "kind": "integer", "dtype": "int64"}]


@pytest.fixture(params=["local", "store"])
def releases(request, tmp_path):
    if request.param == "local":
        yield release_store(str(tmp_path / "releases"), "ds")
        return
    prefix = f"/r{uuid.uuid4().hex[:12]}"
    yield release_store(f"memory:/{prefix}", "ds")
    fsspec.filesystem("memory").rm(prefix, recursive=True)


def _publish(releases, version: str, created_at: str, tmp_path: Path) -> None:
    """What the publish stage does with a store, with a hand-written release."""
    with releases.lock():
        releases.clear_unfinished()
        with releases.staging(version, tmp_path / "work") as staging:
            (staging / "part-00000.parquet").write_bytes(b"rows")
            (staging / MANIFEST).write_text(json.dumps({"created_at": created_at, "schema": SCHEMA}))
            releases.commit(staging, version)
        releases.point_latest("ds", version)


def test_the_kind_of_root_is_chosen_once(tmp_path):
    assert isinstance(release_store(str(tmp_path), "ds"), LocalFolder)
    assert isinstance(release_store(f"file://{tmp_path}", "ds"), LocalFolder)
    assert release_store(f"file://{tmp_path}", "ds").root == tmp_path / "ds"
    assert isinstance(release_store("memory://somewhere", "ds"), ObjectStore)
    with pytest.raises(ReleaseError, match="publish.release_root nosuch://x: "):
        release_store("nosuch://x", "ds")


def test_both_kinds_keep_the_same_release_line(releases, tmp_path):
    root = releases.root
    assert list_versions(root) == [] and latest_version(root) is None
    _publish(releases, "v10", "2026-01-01T00:00:00+00:00", tmp_path)
    _publish(releases, "v2", "2026-01-01T00:00:00+00:00", tmp_path)  # same second: v2 before v10
    _publish(releases, "v1", "2026-01-02T00:00:00+00:00", tmp_path)  # newer, whatever its name
    assert list_versions(root) == ["v2", "v10", "v1"] and latest_version(root) == "v1"
    assert json.loads((root / LATEST).read_text()) == {"dataset": "ds", "version": "v1",
                                                        "manifest": f"v1/{MANIFEST}"}
    assert new_version(root) not in {"v1", "v2", "v10"}

    with pytest.raises(ReleaseError, match="v1: version exists already; a release is never overwritten"):
        _publish(releases, "v1", "2026-01-03T00:00:00+00:00", tmp_path)
    assert list_versions(root) == ["v2", "v10", "v1"] and (root / "v1" / "part-00000.parquet").read_text() == "rows"

    with pytest.raises(RuntimeError, match="injected"), releases.staging("v3", tmp_path / "work") as staging:
        (staging / "part-00000.parquet").write_bytes(b"half")
        raise RuntimeError("injected")
    assert not staging.exists() and not (root / "v3").exists()

    releases.point_latest("ds", "v2")  # latest pinned to an older one: prune keeps it
    assert releases.prune(keep=1) == ["v10"]
    assert list_versions(root) == ["v2", "v1"] and not (root / "v10").exists()


def test_what_a_dead_publish_left_is_cleared_and_never_listed(releases, tmp_path):
    _publish(releases, "v1", "2026-01-01T00:00:00+00:00", tmp_path)
    if isinstance(releases, LocalFolder):
        left = releases.root / ".staging-v2-999"  # a hidden staging folder
        left.mkdir()
    else:
        left = releases.root / "v2"  # an upload that died before its manifest
    (left / "part-00000.parquet").write_text("half")
    assert list_versions(releases.root) == ["v1"]
    with releases.lock():
        releases.clear_unfinished()
    assert not left.exists() and list_versions(releases.root) == ["v1"]


def test_version_order_is_by_creation_then_name_with_numbers():
    created = {"v10": "b", "v9": "b", "v1": "c", "x": ""}
    assert version_order(created) == ["x", "v9", "v10", "v1"]
