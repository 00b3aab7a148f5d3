"""SIGTERM and SIGINT to the command line at each stage, as a scheduler or a person sends them: it
exits within seconds with 143 or 130 and one line naming what stopped and the command that goes on,
and leaves no temporary folder, no partial output and no held lock; training keeps its last whole
epoch and ``--resume`` continues it. In-process safe points (as a flow's task threads see them)
are in test_cancel.py; the flows under signals in tests/e2e/test_flow_cancel.py."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from pipeline.artifacts import StagePaths
from pipeline.training.loop import checkpoint_info
from tests.conftest import REPO

pytestmark = pytest.mark.slow  # the command line in subprocesses, stopped by signals

STOPPED_WITHIN = 20  # seconds from the signal to the exit, on a loaded 2-core machine (measured: 1-6 s)
LONG = "train.epochs=100000"  # a run that goes on until it is stopped
# What is left of a step a run was doing: atomic temporaries, a swapped folder, a release's staging.
LEFTOVERS = ("*.tmp", ".*.new-*", ".*.old-*", ".staging-*", ".train-params-*")


def _params(tmp_path: Path, cfg) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return path


# A child of a test process that a shell started in the background would inherit its ignored
# Ctrl-C (and the pipeline leaves an ignored signal ignored): the children get Python's default.
DEFAULT_SIGINT = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"


def python_m(module: str, *args: str) -> list[str]:
    """``python -m MODULE ARGS``, with Ctrl-C's default handling."""
    code = DEFAULT_SIGINT + f"import runpy; runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
    return [sys.executable, "-c", code, *args]


def _start(tmp_path: Path, args: list[str], code: str | None = None) -> subprocess.Popen:
    """``python -m pipeline ARGS`` (or ``python -c CODE ARGS``), its output in files."""
    cmd = [sys.executable, "-c", DEFAULT_SIGINT + code, *args] if code else python_m("pipeline", *args)
    out = open(tmp_path / "out.txt", "w")
    return subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def _cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m pipeline ARGS`` to its end (a run that continues a stopped one)."""
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def _wait_for(what, proc: subprocess.Popen, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not what():
        assert proc.poll() is None, f"ended ({proc.returncode}) before the moment to stop it"
        assert time.monotonic() < deadline, "never reached the moment to stop it"
        time.sleep(0.1)


def _stop(proc: subprocess.Popen, signum: int, tmp_path: Path) -> tuple[int, list[str], float]:
    """Send ``signum``; (exit code, output lines, seconds to exit)."""
    t0 = time.monotonic()
    proc.send_signal(signum)
    try:
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    seconds = time.monotonic() - t0
    return code, (tmp_path / "out.txt").read_text().strip().splitlines(), seconds


def _leftovers(root: Path) -> list[Path]:
    return [p for pattern in LEFTOVERS for p in root.rglob(pattern)]


def _epochs_logged(paths: StagePaths) -> int:
    try:
        return max(0, len(paths.train_log.read_text().splitlines()) - 1)
    except OSError:
        return 0


def _lock_free(path: Path) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _stopped_in_training(tmp_path: Path, cfg, command: str, signum: int) -> tuple[Path, StagePaths, list[str], int]:
    """``command`` (train or run) with ``cfg`` and 100,000 epochs, sent ``signum`` once an epoch is
    logged; checked to stop in time with the signal's code. (params, paths, output lines, epochs in
    the checkpoint)."""
    params, paths = _params(tmp_path, cfg), StagePaths.of(cfg.work_dir, "tiny")
    proc = _start(tmp_path, [command, "--dataset", "tiny", "--params", str(params), "-q", "--set", LONG])
    _wait_for(lambda: _epochs_logged(paths) >= 1, proc)
    code, lines, seconds = _stop(proc, signum, tmp_path)
    assert code == 128 + signum and seconds < STOPPED_WITHIN, (code, seconds, lines)
    return params, paths, lines, checkpoint_info(paths.checkpoints / "last.pt")[1]


def test_sigterm_stops_train_keeping_its_last_whole_epoch_and_resume_continues(tmp_path, tiny_cfg):
    from pipeline import ingest

    cfg = tiny_cfg  # a checkpoint every epoch: the one kept is the last whole epoch, whenever the signal lands
    ingest.run(cfg, "tiny")
    params, paths, lines, done = _stopped_in_training(tmp_path, cfg, "train", signal.SIGTERM)
    assert done >= 1 and done == _epochs_logged(paths)  # the last whole epoch; the one under way is not half-kept
    again = f"python -m pipeline train --dataset tiny --resume --params {params} --set {LONG}"
    assert lines[-1] == (f"cancelled by SIGTERM: train of tiny stopped with {done} epoch{'s' * (done > 1)} "
                         f"checkpointed; continue with: {again}"), lines
    assert not any("Traceback" in line for line in lines)
    assert not paths.model.exists() and not _leftovers(tmp_path)
    # The command it names continues (here to one more epoch, not 100,000).
    resumed = _cli(*again.split()[3:-1], f"train.epochs={done + 1}")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {paths.checkpoints / 'last.pt'} after epoch {done}" in resumed.stderr
    assert _epochs_logged(paths) == done + 1 and paths.model.exists()


# Each stage stopped inside its temporary folder, before its commit: the stage's own function is
# wrapped to say it got there and wait (a real ingest, score or publish of tiny data takes well under
# a second, too short to signal reliably).
HELD = """
import sys, time
from pathlib import Path
import {module} as target
real = target.{name}
def held(*args, **kwargs):
    out = real(*args, **kwargs)
    Path({marker!r}).touch()
    time.sleep(300)  # the signal lands here
    return out
target.{name} = held
from pipeline.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("stage, module, name, signum", [
    ("ingest", "pipeline.ingest", "write_json", signal.SIGTERM),       # prepared data in its temporary folder
    ("score", "pipeline.score", "_merge", signal.SIGINT),              # between two metric families
    ("publish", "pipeline.publish", "write_release", signal.SIGTERM),  # the release whole in its staging folder
])
def test_a_signal_inside_a_stage_leaves_what_was_there(tmp_path, scored_tiny, stage, module, name, signum):
    cfg = scored_tiny
    params = _params(tmp_path, cfg)
    before = {p: p.read_bytes() for p in sorted(Path(cfg.work_dir).rglob("*")) if p.is_file()}
    marker = tmp_path / "held"
    code = HELD.format(module=module, name=name, marker=str(marker))
    proc = _start(tmp_path, [stage, "--dataset", "tiny", "--params", str(params), "-q"], code)
    _wait_for(marker.exists, proc)
    code, lines, seconds = _stop(proc, signum, tmp_path)
    assert code == 128 + signum and seconds < STOPPED_WITHIN, (code, seconds, lines)
    assert lines == [f"cancelled by {signal.Signals(signum).name}: {stage} of tiny stopped; run it again with: "
                     f"python -m pipeline {stage} --dataset tiny --params {params}"]
    assert not _leftovers(tmp_path)
    after = {p: p.read_bytes() for p in sorted(Path(cfg.work_dir).rglob("*")) if p.is_file()}
    assert after == before  # nothing replaced, nothing half-written (prepared data, scores)
    releases = Path(cfg.publish.release_root) / "tiny"
    if stage == "publish":
        assert sorted(os.listdir(releases)) == [".lock"] and _lock_free(releases / ".lock")


def _workers(proc: subprocess.Popen) -> list[psutil.Process]:
    return [p for p in psutil.Process(proc.pid).children(recursive=True)]


def _all_end(processes: list[psutil.Process], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while left := [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]:
        assert time.monotonic() < deadline, f"still running after the run stopped: {left}"
        time.sleep(0.1)


@contextlib.contextmanager
def _port_taken(port: int):
    """``port`` on 127.0.0.1 in use while inside: bound here, or already by something else."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with contextlib.suppress(OSError):  # in use already: as good
            sock.bind(("127.0.0.1", port))
            sock.listen()
        yield
    finally:
        sock.close()


@pytest.mark.parametrize("backend, signum", [("processes", signal.SIGINT), ("dask", signal.SIGTERM)])
def test_a_signal_stops_generation_and_its_workers(tmp_path, scored_tiny, backend, signum):
    cfg = scored_tiny
    cfg.generate.rows, cfg.generate.workers, cfg.generate.backend = 400_000, 2, backend
    params, paths = _params(tmp_path, cfg), StagePaths.of(cfg.work_dir, "tiny")
    before = {p.name: p.read_bytes() for p in paths.synthetic.iterdir()}
    # Dask's default port for its scheduler's routes, taken (another run's cluster).
    with _port_taken(8787) if backend == "dask" else contextlib.nullcontext():
        proc = _start(tmp_path, ["generate", "--dataset", "tiny", "--params", str(params), "-q"])
        _wait_for(lambda: list(paths.root.glob(".synthetic.*.tmp/part-*.parquet")), proc)  # workers are writing
    workers = _workers(proc)
    assert len(workers) >= 2
    try:
        code, lines, seconds = _stop(proc, signum, tmp_path)
        assert code == 128 + signum and seconds < STOPPED_WITHIN, (code, seconds, lines)
        assert lines[-1] == (f"cancelled by {signal.Signals(signum).name}: generate of tiny stopped; run it again "
                             f"with: python -m pipeline generate --dataset tiny --params {params}"), lines
        assert not any("Traceback" in line for line in lines), lines
        # Not a line per cancelled shard, nor what Dask's workers say while the run closes them.
        assert not any("distributed" in line for line in lines), lines[:5]
        _all_end(workers)
    finally:
        for p in workers:  # a failure leaves no orphan burning the cores
            with contextlib.suppress(psutil.Error):
                p.kill()
    assert {p.name: p.read_bytes() for p in paths.synthetic.iterdir()} == before
    assert not _leftovers(tmp_path)


def test_sigint_stops_run_in_train_and_run_resume_releases(tmp_path, tiny_cfg):
    cfg = tiny_cfg
    params, paths, lines, done = _stopped_in_training(tmp_path, cfg, "run", signal.SIGINT)
    assert lines[-1] == (f"cancelled by SIGINT: run of tiny stopped in train with {done} epoch{'s' * (done > 1)} "
                         f"checkpointed; continue with: python -m pipeline run --dataset tiny --resume "
                         f"--params {params} --set {LONG}"), lines
    assert not (Path(cfg.publish.release_root) / "tiny").exists() and not _leftovers(tmp_path)
    resumed = _cli("run", "--dataset", "tiny", "--resume", "--params", str(params), "--set", f"train.epochs={done + 1}")
    assert resumed.returncode == 0, resumed.stderr
    assert f"after epoch {done}" in resumed.stderr and _epochs_logged(paths) == done + 1
    assert (Path(cfg.publish.release_root) / "tiny" / "latest.json").exists()


def test_sigterm_to_a_torchrun_launch_stops_every_rank_and_resume_continues(tmp_path, tiny_cfg):
    from pipeline import ingest

    cfg = tiny_cfg
    cfg.train.distributed.nproc_per_node = 2
    ingest.run(cfg, "tiny")
    params, paths = _params(tmp_path, cfg), StagePaths.of(cfg.work_dir, "tiny")
    proc = _start(tmp_path, ["train", "--dataset", "tiny", "--params", str(params), "-q", "--set", LONG])
    _wait_for(lambda: _epochs_logged(paths) >= 1, proc)
    ranks = [p for p in _workers(proc) if "pipeline" in " ".join(p.cmdline()) and "RANK" in p.environ()]
    assert len(ranks) == 2
    try:
        code, lines, seconds = _stop(proc, signal.SIGTERM, tmp_path)
        assert code == 143 and seconds < STOPPED_WITHIN, (code, seconds, lines)
        _all_end(ranks)
    finally:
        for p in ranks:
            with contextlib.suppress(psutil.Error):
                p.kill()
    done = checkpoint_info(paths.checkpoints / "last.pt")[1]  # every epoch is checkpointed here
    assert done >= 1 and lines[-1].startswith(f"cancelled by SIGTERM: train of tiny stopped with {done} epoch"), lines
    assert sum(line.startswith("cancelled by") for line in lines) == 1, lines  # the launcher's, not each rank's
    assert not _leftovers(tmp_path)
    resumed = _cli("train", "--dataset", "tiny", "--resume", "--params", str(params),
                   "--set", f"train.epochs={done + 1}")
    assert resumed.returncode == 0, resumed.stderr
    assert _epochs_logged(paths) == done + 1
