"""The Prefect flows stopped by signals, as schedulers and people stop them: ``flows.nightly run``
(tasks in threads, or on the Dask workers the run started) and ``flows.synthesize`` during training,
and ``flows.nightly serve`` with a run in progress. Each stops within seconds with 143 or 130 and one
line, its flow run ends Crashed (Cancelled when serve cancels it) with the reason, the dataset's
run lock is free, no temporary folder or release is left, and a rerun continues the training from
its checkpoint. The flows run as subprocesses against one API server (the test harness's)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.artifacts import StagePaths
from pipeline.training.loop import checkpoint_info
from tests.conftest import REPO, tiny_frame
from tests.unit.test_cancel_cli import (
    STOPPED_WITHIN,
    _epochs_logged,
    _leftovers,
    _lock_free,
    _stop,
    _wait_for,
    python_m,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LONG = "train.epochs=100000"


@pytest.fixture(scope="module")
def api():
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


def _params(tmp_path: Path, **sections) -> Path:
    src = tmp_path / "tiny.parquet"
    tiny_frame(300).to_parquet(src, index=False)
    params = {
        "seed": 3, "work_dir": str(tmp_path / "work"), "metrics_dir": str(tmp_path / "metrics"),
        "datasets": {"tiny": {"source": str(src), "target": "income"}},
        "model": {"name": "ctgan", "gan": {"noise_dim": 16, "generator_dims": [32], "discriminator_dims": [32],
                                           "pac": 2}},
        "train": {"epochs": 1, "batch_size": 40, "device": "cpu", "checkpoint_every": 1},
        "score": {"thresholds": {}, "report": False},
        "publish": {"release_root": str(tmp_path / "releases")},
        **sections,
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _flow(tmp_path: Path, api: str, module: str, *args: str, **env: str) -> subprocess.Popen:
    out = open(tmp_path / "out.txt", "w")  # as test_cancel_cli._stop reads it
    return subprocess.Popen(python_m(module, *args), cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / "prefect"),
                                 "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **env})


def _runs(flow_name: str) -> list:
    """The flow runs of ``flow_name`` the API server holds, newest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                                     sort=FlowRunSort.START_TIME_DESC)


def _nothing_left(tmp_path: Path) -> None:
    paths = StagePaths.of(tmp_path / "work", "tiny")
    assert _lock_free(paths.root / ".run.lock")  # the run lock is released
    assert not _leftovers(tmp_path)
    releases = tmp_path / "releases" / "tiny"
    assert not releases.exists() or sorted(os.listdir(releases)) == [".lock"]  # no version, no latest.json


def _rerun_continues(tmp_path: Path, api: str, again: list[str], done: int) -> None:
    """The command the line names (to one more epoch) resumes training from its checkpoint."""
    rerun = subprocess.run([sys.executable, "-m", *again[2:], "--set", f"train.epochs={done + 1}"], cwd=REPO,
                           capture_output=True, text=True, timeout=600,
                           env={**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / "prefect")})
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    paths = StagePaths.of(tmp_path / "work", "tiny")
    assert f"after epoch {done}" in rerun.stdout + rerun.stderr  # "resumed from ... after epoch N"
    assert _epochs_logged(paths) == done + 1 and (tmp_path / "releases" / "tiny" / "latest.json").exists()


@pytest.mark.parametrize("runner", ["sequential", "dask"])
def test_sigterm_stops_a_nightly_run_in_training(tmp_path, api, runner):
    params = _params(tmp_path, nightly={"task_runner": runner, "max_workers": 1})
    paths = StagePaths.of(tmp_path / "work", "tiny")
    proc = _flow(tmp_path, api, "flows.nightly", "run", "--params", str(params), "--set", LONG)
    _wait_for(lambda: _epochs_logged(paths) >= 1, proc)
    code, lines, seconds = _stop(proc, signal.SIGTERM, tmp_path)
    assert code == 143 and seconds < STOPPED_WITHIN, (code, seconds, lines[-20:])
    last = [line for line in lines if line.startswith("cancelled by")]
    assert len(last) == 1, lines[-20:]
    found = re.fullmatch(r"cancelled by SIGTERM: the nightly run stopped; run it again with: (.*) --set seed=(\d+) "
                         r"\(its seed: training continues from its checkpoint\)", last[0])
    assert found and found[1] == f"python -m flows.nightly run --params {params} --set {LONG}", last
    (run,) = [r for r in _runs("nightly") if r.parameters.get("params") == str(params)]
    assert run.state.is_crashed() and run.state.message == "Execution was aborted by a termination signal.", run.state
    done = checkpoint_info(paths.checkpoints / "last.pt")[1]
    assert done >= 1 and done == _epochs_logged(paths)  # the last whole epoch
    _nothing_left(tmp_path)
    _rerun_continues(tmp_path, api, [*found[1].split(), "--set", f"seed={found[2]}"], done)


def test_sigint_stops_a_synthesize_run_and_a_rerun_continues(tmp_path, api):
    params = _params(tmp_path)
    paths = StagePaths.of(tmp_path / "work", "tiny")
    proc = _flow(tmp_path, api, "flows.synthesize", "--dataset", "tiny", "--params", str(params), "--set", LONG)
    _wait_for(lambda: _epochs_logged(paths) >= 1, proc)
    code, lines, seconds = _stop(proc, signal.SIGINT, tmp_path)
    assert code == 130 and seconds < STOPPED_WITHIN, (code, seconds, lines[-20:])
    again = f"python -m flows.synthesize --params {params} --dataset tiny --set {LONG}"
    assert [line for line in lines if line.startswith("cancelled by")] == [
        f"cancelled by SIGINT: the synthesize run of tiny stopped; run it again with: {again}"], lines[-20:]
    (run,) = [r for r in _runs("synthesize") if r.parameters.get("params") == str(params)]
    assert run.state.is_crashed() and "cancelled by SIGINT" in run.state.message, run.state
    done = checkpoint_info(paths.checkpoints / "last.pt")[1]
    _nothing_left(tmp_path)
    _rerun_continues(tmp_path, api, again.split(), done)


def test_sigterm_stops_serve_and_cancels_its_run_in_progress(tmp_path, api):
    from prefect.client.orchestration import get_client

    params = _params(tmp_path)
    paths = StagePaths.of(tmp_path / "work", "tiny")
    proc = _flow(tmp_path, api, "flows.nightly", "serve", "--params", str(params), "--set", LONG,
                 PREFECT_RUNNER_POLL_FREQUENCY="1")
    deadline = time.monotonic() + 180
    with get_client(sync_client=True) as client:
        while True:  # the deployment is registered once serve has started
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "out.txt").read_text()
            try:
                deployment = client.read_deployment_by_name("nightly/nightly")
                break
            except Exception:  # noqa: BLE001 - not registered yet
                time.sleep(0.5)
        flow_run = client.create_flow_run_from_deployment(deployment.id)
    _wait_for(lambda: _epochs_logged(paths) >= 1, proc)
    code, lines, seconds = _stop(proc, signal.SIGTERM, tmp_path)
    assert code == 143 and seconds < STOPPED_WITHIN + 30, (code, seconds, lines[-20:])  # Prefect waits on its runs
    assert lines[-1] == ("cancelled by SIGTERM: serve stopped (runs in progress cancelled, the schedule paused); "
                         f"start it again with: python -m flows.nightly serve --params {params} --set {LONG}"), lines
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run.id).state
    assert state.is_cancelled(), state
    _nothing_left(tmp_path)
