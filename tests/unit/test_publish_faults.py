"""Fault injection in publish: an exception, or the process killed, at each step. Afterwards
``latest`` names a complete release, no partial version is visible, every checksum matches, and
the rerun succeeds without publishing the same rows twice."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import generate, ingest, publish, score, train
from pipeline.files import sha256_file
from pipeline.release import contents, store
from pipeline.release.layout import MANIFEST
from tests.conftest import REPO, light_detector, tiny_config, tiny_frame

# Where publish can be interrupted, as (name, the module or class and its attribute to wrap, when
# to strike).
STEPS = {
    "before staging": (publish, "new_version", lambda *a, **k: True),
    "mid-staging": (contents, "write_parquet", lambda *a, **k: Path(a[1]).name == "part-00001.parquet"),
    "before the rename": (store, "fsync_path", lambda p, *a, **k: Path(p).name.startswith(".staging-")),
    "after the rename, before latest.json": (store.LocalFolder, "point_latest", lambda *a, **k: True),
    "after latest.json": (store, "fsync_path", lambda p, *a, **k: Path(p).name == "tiny"),
}


def _cfg(tmp_path: Path, source: Path, seed: int):
    return tiny_config(tmp_path, source, seed=seed, **{"generate.rows": 250})


@pytest.fixture(scope="module")
def _prepared(tmp_path_factory) -> Path:
    """Made once: one published release (seed 7), then new rows (seed 8) scored, not yet published."""
    base = tmp_path_factory.mktemp("faults")
    source = base / "tiny.parquet"
    tiny_frame().to_parquet(source, index=False)
    with light_detector():
        cfg = _cfg(base, source, 7)
        for stage in (ingest, train, generate, score, publish):
            stage.run(cfg, "tiny")
        cfg = _cfg(base, source, 8)
        for stage in (generate, score):
            stage.run(cfg, "tiny")
    return base


@pytest.fixture
def two_scored(_prepared, tmp_path):
    """A fresh copy of the prepared state for each test (every folder of the config is in it)."""
    for name in ("work", "metrics", "releases"):
        shutil.copytree(_prepared / name, tmp_path / name, symlinks=True)
    return _cfg(tmp_path, _prepared / "tiny.parquet", 8)


def _check_releases(cfg) -> tuple[str, list[str]]:
    """Every visible version is complete and matches its checksums; latest names one of them."""
    root = Path(cfg.publish.release_root) / "tiny"
    versions = publish.list_versions(root)
    latest = publish.latest_version(root)
    assert latest in versions
    for v in versions:
        m = json.loads((root / v / MANIFEST).read_text())
        assert sorted(p.name for p in (root / v).glob("part-*.parquet")) == [f["path"] for f in m["files"]]
        for f in m["files"]:
            assert sha256_file(root / v / f["path"]) == f["sha256"]
    hashes = [json.loads((root / v / MANIFEST).read_text())["synthetic_hash"] for v in versions]
    assert len(hashes) == len(set(hashes)), "the same rows were published twice"
    return latest, versions


def _inject(monkeypatch, step: str, exc: BaseException) -> None:
    owner, attr, when = STEPS[step]
    original = getattr(owner, attr)

    def faulty(*a, **k):
        if when(*a, **k):
            raise exc
        return original(*a, **k)

    monkeypatch.setattr(owner, attr, faulty)


@pytest.mark.slow  # the module's published and scored runs (~4 s): the fast tier stays under a minute
@pytest.mark.parametrize("step", list(STEPS))
def test_an_exception_at_each_step_leaves_a_consistent_release_line(two_scored, monkeypatch, step):
    cfg = two_scored
    first, _ = _check_releases(cfg)
    with monkeypatch.context() as m:
        _inject(m, step, RuntimeError(f"injected {step}"))
        with pytest.raises(RuntimeError, match="injected"):
            publish.run(cfg, "tiny")
    latest, versions = _check_releases(cfg)
    landed = step in ("after the rename, before latest.json", "after latest.json")
    assert len(versions) == (2 if landed else 1)
    assert latest == (versions[-1] if step == "after latest.json" else first)
    root = Path(cfg.publish.release_root) / "tiny"
    assert not list(root.glob(".staging-*"))  # an exception cleans its own staging folder
    # The rerun succeeds and publishes the new rows exactly once; latest names them.
    res = publish.run(cfg, "tiny")
    latest, versions = _check_releases(cfg)
    assert latest == res.version == versions[-1] and len(versions) == 2
    assert publish.run(cfg, "tiny").version == res.version  # and again: still no duplicate


_KILL = """
import os, sys
from pathlib import Path
import pipeline.publish as publish
from tests.conftest import tiny_config
from tests.unit.test_publish_faults import STEPS
step, tmp, source = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
owner, attr, when = STEPS[step]
original = getattr(owner, attr)
def faulty(*a, **k):
    if when(*a, **k):
        os._exit(9)  # as kill -9: no except or finally runs
    return original(*a, **k)
setattr(owner, attr, faulty)
publish.run(tiny_config(tmp, source, seed=8, **{"generate.rows": 250}), "tiny")
"""


@pytest.mark.slow
@pytest.mark.parametrize("step", list(STEPS))
def test_a_kill_at_each_step_leaves_a_consistent_release_line(two_scored, tmp_path, step):
    cfg = two_scored
    first, _ = _check_releases(cfg)
    out = subprocess.run([sys.executable, "-c", _KILL, step, str(tmp_path), cfg.datasets["tiny"].source],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 9, out.stderr
    latest, versions = _check_releases(cfg)
    assert latest == (versions[-1] if step == "after latest.json" else first)
    res = publish.run(cfg, "tiny")  # the rerun cleans the dead run's staging folder
    latest, versions = _check_releases(cfg)
    assert latest == res.version == versions[-1] and len(versions) == 2
    root = Path(cfg.publish.release_root) / "tiny"
    assert not list(root.glob(".staging-*"))
