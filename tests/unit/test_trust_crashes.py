"""Crash windows: a folder replaced when its run died, generation workers whose run was killed,
and a streamed source replaced while ingest reads it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import fsspec
import psutil
import pytest

from pipeline import ingest, streamed, train
from pipeline.artifacts import StagePaths
from pipeline.errors import InputDataError
from pipeline.files import _OWNER, atomic_dir, remove_leftovers
from pipeline.streamed import CHANGED
from tests.conftest import REPO, tiny_config, tiny_frame


def _dead_pid() -> int:
    """A pid of this host that no process holds now (its process ran and was reaped)."""
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def _folder(path: Path, text: str) -> Path:
    path.mkdir(parents=True)
    (path / "train.parquet").write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# atomic_dir: a run that died between its two renames


def test_a_folder_a_dead_run_was_replacing_gets_its_finished_new_copy(tmp_path):
    root, pid = tmp_path / "work" / "ds", _dead_pid()
    # Died after moving the old copy aside, before moving the finished new one in: no `prepared`.
    old = _folder(root / f".prepared.old-{_OWNER}-{pid}", "old")
    new = _folder(root / f".prepared.new-{_OWNER}-{pid}", "new")
    gone = remove_leftovers(root)
    assert (root / "prepared" / "train.parquet").read_text() == "new"
    assert not old.exists() and not new.exists() and sorted(gone) == sorted([old, new])


def test_without_a_finished_new_copy_the_old_one_is_restored(tmp_path):
    root, pid = tmp_path / "work" / "ds", _dead_pid()
    old = _folder(root / f".prepared.old-{_OWNER}-{pid}", "old")
    half = _folder(root / f".prepared.{_OWNER}-{pid}.k2j_x.tmp", "half")  # a .tmp may be half-written
    remove_leftovers(root)
    assert (root / "prepared" / "train.parquet").read_text() == "old"
    assert not old.exists() and not half.exists()


@pytest.mark.parametrize("left", ["new", "old"])
def test_a_folder_in_place_keeps_it_and_the_dead_runs_copies_go(tmp_path, left):
    # Died before moving the old copy aside (a .new left) or after the swap (a .old left).
    root, pid = tmp_path / "ds", _dead_pid()
    _folder(root / "prepared", "current")
    extra = _folder(root / f".prepared.{left}-{_OWNER}-{pid}", left)
    live = _folder(root / f".prepared.new-{_OWNER}-{os.getpid()}", "mine")  # a live run's: kept
    assert remove_leftovers(root) == [extra]
    assert (root / "prepared" / "train.parquet").read_text() == "current" and live.exists()


def test_atomic_dir_replaces_a_folder_whole_and_leaves_nothing_beside_it(tmp_path):
    target = _folder(tmp_path / "prepared", "old")
    with atomic_dir(target) as tmp:
        (tmp / "train.parquet").write_text("new")
    assert (target / "train.parquet").read_text() == "new" and os.listdir(tmp_path) == ["prepared"]


def test_atomic_dir_failing_between_its_renames_keeps_the_old_copy(tmp_path, monkeypatch):
    import pipeline.files as files

    target = _folder(tmp_path / "prepared", "old")
    real, calls = os.replace, []

    def fail_third(src, dst):
        calls.append(dst)
        if len(calls) == 3:  # new -> path, after path -> .old
            raise OSError("injected")
        real(src, dst)

    monkeypatch.setattr(files.os, "replace", fail_third)
    with pytest.raises(OSError, match="injected"), atomic_dir(target) as tmp:
        (tmp / "train.parquet").write_text("new")
    assert (target / "train.parquet").read_text() == "old" and os.listdir(tmp_path) == ["prepared"]


# ---------------------------------------------------------------------------------------------
# Generation workers end with a killed run


@pytest.mark.slow  # a generate with worker processes in a subprocess, killed with SIGKILL
@pytest.mark.parametrize("backend", ["processes", "dask"])
def test_workers_end_with_a_killed_generate_and_write_nothing_more(tiny_cfg, tmp_path, backend):
    cfg = tiny_cfg
    ingest.run(cfg, "tiny")
    train.run(cfg, "tiny")
    root = StagePaths.of(cfg.work_dir, "tiny").root
    code = ("from pathlib import Path; from pipeline import generate; from tests.conftest import tiny_config\n"
            f"cfg = tiny_config(Path({str(tmp_path)!r}), Path({str(cfg.datasets['tiny'].source)!r}))\n"
            f"cfg.generate.rows, cfg.generate.workers, cfg.generate.backend = 200_000, 2, {backend!r}\n"
            "generate.run(cfg, 'tiny')\n")
    run = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not list(root.glob(".synthetic.*.tmp/part-*.parquet")):  # workers are writing shards
            assert run.poll() is None and time.monotonic() < deadline, "generate ended before writing a shard"
            time.sleep(0.1)
        workers = [p for p in psutil.Process(run.pid).children(recursive=True)
                   if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == 2
    finally:
        os.kill(run.pid, signal.SIGKILL)  # no except, finally or atexit runs in it
        run.wait()
    (tmp,) = root.glob(".synthetic.*.tmp")
    at_kill = {p.name for p in tmp.glob("part-*.parquet")}
    deadline = time.monotonic() + 10
    try:
        while left := [p for p in workers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]:
            assert time.monotonic() < deadline, f"workers still running after their run was killed: {left}"
            time.sleep(0.1)
    finally:
        for p in workers:  # a failure leaves no orphan burning the cores
            with contextlib.suppress(psutil.Error):
                p.kill()
    time.sleep(1)
    # At most a shard each that was being moved into place at the kill; none begun after it.
    assert len({p.name for p in tmp.glob("part-*.parquet")} - at_kill) <= len(workers)


# ---------------------------------------------------------------------------------------------
# A streamed source replaced while ingest reads it


def _replace(path: Path, rows: int, seed: int) -> None:
    """Another writer's new version, moved in by a rename (as most writers do)."""
    new = path.with_name("incoming.parquet")
    tiny_frame(rows, seed=seed).to_parquet(new, index=False)
    os.replace(new, path)


@pytest.mark.parametrize("when, rows", [("pass 1", 600), ("pass 2", 900), ("pass 2", 600), ("hash", 600)])
def test_a_source_replaced_while_streamed_is_refused_and_nothing_is_written(tmp_path, monkeypatch, when, rows):
    source = tmp_path / "t.parquet"
    tiny_frame(600, seed=1).to_parquet(source, index=False)
    cfg = tiny_config(tmp_path, source)
    cfg.ingest.stream_rows, cfg.ingest.batch_rows = 0, 200
    # The hook: pass 1 is the first batches() call, pass 2 the second, then source_hash reads it.
    hooks = {"pass 1": "split_and_priority", "pass 2": "batches", "hash": "source_hash"}
    real, calls = getattr(streamed, hooks[when]), []

    def hooked(*args, **kwargs):
        calls.append(1)
        if len(calls) == (2 if when == "pass 2" else 1):
            _replace(source, rows, seed=2)  # same row count: only the fingerprint can tell
        return real(*args, **kwargs)

    monkeypatch.setattr(streamed, hooks[when], hooked)
    with pytest.raises(InputDataError) as err:
        ingest.run(cfg, "tiny")
    assert str(err.value) == f"{source}: {CHANGED}"
    root = StagePaths.of(cfg.work_dir, "tiny").root
    assert not [p.name for p in root.iterdir() if "prepared" in p.name]  # nor a temporary


def test_an_object_replaced_in_its_store_between_the_passes_is_refused(tmp_path, monkeypatch):
    memory = fsspec.filesystem("memory")
    key = f"/t{uuid.uuid4().hex[:8]}/t.parquet"
    local = tmp_path / "t.parquet"
    tiny_frame(600, seed=1).to_parquet(local, index=False)
    memory.pipe_file(key, local.read_bytes())
    try:
        url = f"memory:/{key}"
        cfg = tiny_config(tmp_path, url)
        cfg.ingest.stream_rows, cfg.ingest.batch_rows = 0, 200
        real = streamed.batches
        calls = []

        def replacing(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                _replace(local, 600, seed=2)
                memory.pipe_file(key, local.read_bytes())
            return real(*args, **kwargs)

        monkeypatch.setattr(streamed, "batches", replacing)
        with pytest.raises(InputDataError, match=f"^{re.escape(url)}: {re.escape(CHANGED)}$"):
            ingest.run(cfg, "tiny")
        assert not StagePaths.of(cfg.work_dir, "tiny").prepared.exists()
    finally:
        memory.rm(key)
