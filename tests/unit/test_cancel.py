"""Cancellation in-process: the signal handler, and the safe points where a run's work stops when
the flag is set from elsewhere (as in a Prefect task thread, which gets no signal). The command
lines and flows under real signals are in test_cancel_cli.py and tests/e2e/test_flow_cancel.py."""

from __future__ import annotations

import fcntl
import os
import signal

import pytest

from pipeline import cancel, ingest, publish, score, train
from pipeline.artifacts import StagePaths
from pipeline.errors import Cancelled
from pipeline.training.loop import checkpoint_info


@pytest.fixture(autouse=True)
def _clear():
    cancel.reset()
    yield
    cancel.reset()


def test_the_first_signal_raises_at_once_a_repeat_only_flags():
    with cancel.on_signals():
        with pytest.raises(Cancelled) as stop:
            signal.raise_signal(signal.SIGTERM)
        assert stop.value.signal == signal.SIGTERM and str(stop.value) == "cancelled by SIGTERM"
        signal.raise_signal(signal.SIGINT)  # Prefect re-sends the signal it handled: cleanup goes on
        assert cancel.requested() == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the previous handlers are back
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert cancel.exit_code(signal.SIGTERM) == 143 and cancel.exit_code(signal.SIGINT) == 130


def test_a_deferred_block_is_not_interrupted_and_stops_at_its_check():
    with cancel.on_signals():
        with cancel.deferred():
            signal.raise_signal(signal.SIGINT)  # no exception here: the block decides where it stops
            assert cancel.requested() == signal.SIGINT
            with pytest.raises(Cancelled):
                cancel.check()


def test_a_scoped_request_stops_only_that_runs_work():
    cancel.request(signal.SIGTERM, scope="run-a")
    with cancel.scope("run-b"):
        cancel.check()  # another run on the same (Dask) worker goes on
    with cancel.scope("run-a"), pytest.raises(Cancelled):
        cancel.check()
    cancel.check()  # nothing asked of the process itself


def test_cancelled_is_not_an_exception_so_no_fallback_swallows_it():
    assert not issubclass(Cancelled, Exception)


def test_training_stopped_between_epochs_keeps_that_epoch_and_resume_continues(tiny_cfg, monkeypatch):
    cfg = tiny_cfg
    cfg.train.epochs, cfg.train.checkpoint_every = 3, 100  # no checkpoint would be due before the end
    ingest.run(cfg, "tiny")
    paths = StagePaths.of(cfg.work_dir, "tiny")
    write_log = train._write_log

    def stop_after_epoch_1(p, history):  # as a flow's task thread sees it: a flag, no signal
        write_log(p, history)
        cancel.request(signal.SIGTERM)

    monkeypatch.setattr(train, "_write_log", stop_after_epoch_1)
    with pytest.raises(Cancelled):
        train.run(cfg, "tiny")
    monkeypatch.undo()
    assert checkpoint_info(paths.checkpoints / "last.pt")[1] == 1  # the whole epoch it stopped after
    assert not paths.model.exists()
    assert not [p for p in paths.root.rglob("*.tmp")]
    cancel.reset()
    assert train.run(cfg, "tiny", resume=True).epochs == 3
    assert len(paths.train_log.read_text().splitlines()) == 1 + 3


def test_training_stopped_before_its_first_epoch_writes_no_checkpoint_and_no_model(tiny_cfg):
    cfg = tiny_cfg
    ingest.run(cfg, "tiny")
    cancel.request(signal.SIGTERM)
    with pytest.raises(Cancelled):
        train.run(cfg, "tiny")
    paths = StagePaths.of(cfg.work_dir, "tiny")
    assert not (paths.checkpoints / "last.pt").exists() and not paths.model.exists()


def test_score_and_publish_stopped_before_they_commit_leave_what_was_there(scored_tiny, monkeypatch):
    cfg = scored_tiny
    paths = StagePaths.of(cfg.work_dir, "tiny")
    before = paths.details.read_bytes()
    cancel.request(signal.SIGTERM)
    with pytest.raises(Cancelled):
        score.run(cfg, "tiny")
    assert paths.details.read_bytes() == before
    cancel.reset()

    real = publish.write_release

    def written_then_stopped(*args, **kwargs):  # the release is whole in its staging folder
        out = real(*args, **kwargs)
        cancel.request(signal.SIGTERM)
        return out

    monkeypatch.setattr(publish, "write_release", written_then_stopped)
    with pytest.raises(Cancelled):
        publish.run(cfg, "tiny")
    root = cfg.publish.release_root
    assert os.listdir(f"{root}/tiny") == [".lock"]  # no version, no staging folder, no latest.json
    fd = os.open(f"{root}/tiny/.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released
    finally:
        os.close(fd)


def test_a_deferred_block_in_another_thread_does_not_defer_the_main_threads_stop():
    import threading

    inside, leave = threading.Event(), threading.Event()

    def task():  # a flow's task thread training (deferred) while the flow waits on it
        with cancel.deferred():
            inside.set()
            leave.wait(10)

    worker = threading.Thread(target=task)
    worker.start()
    try:
        inside.wait(10)
        with cancel.on_signals(), pytest.raises(Cancelled):
            signal.raise_signal(signal.SIGINT)
    finally:
        leave.set()
        worker.join()


def test_a_signal_the_process_ignores_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a shell's background job
    try:
        with cancel.on_signals():
            signal.raise_signal(signal.SIGINT)
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and cancel.requested() is None
    finally:
        signal.signal(signal.SIGINT, previous)
