"""The real Prefect flows (ephemeral API, no server) on tiny tables: one dataset, the nightly run
over several, failures that stay contained, retries, the lock, retention, the schedule, Dask."""

import contextlib
import json
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from pipeline import publish
from pipeline.files import dataset_run_lock
from pipeline.release.layout import LATEST, MANIFEST
from pipeline.release.store import LocalFolder
from tests.conftest import tiny_frame

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _params(tmp_path: Path, names=("tiny",), **sections) -> Path:
    datasets = {}
    for i, name in enumerate(names):
        src = tmp_path / f"{name}.parquet"
        tiny_frame(300, seed=i).to_parquet(src, index=False)
        datasets[name] = {"source": str(src), "target": "income"}
    params = {
        "seed": 3, "work_dir": str(tmp_path / "work"), "metrics_dir": str(tmp_path / "metrics"),
        "datasets": datasets,
        "model": {"name": "ctgan",
                  "gan": {"noise_dim": 16, "generator_dims": [32], "discriminator_dims": [32], "pac": 2}},
        "train": {"epochs": 1, "batch_size": 40, "device": "cpu"},
        "score": {"thresholds": {"quality.overall": {"min": 0.2}}, "report": False},
        "publish": {"release_root": str(tmp_path / "releases")},
        "nightly": {"retry_delay_seconds": 0, **sections.pop("nightly", {})},
        **sections,
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _latest(tmp_path: Path, name: str = "tiny") -> dict:
    root = tmp_path / "releases" / name
    version = json.loads((root / "latest.json").read_text())["version"]
    return json.loads((root / version / MANIFEST).read_text())


def test_synthesize_flow_runs_the_same_stages_and_releases(tmp_path, harness, capfd):
    from prefect.artifacts import Artifact

    from flows.synthesize import synthesize

    params = _params(tmp_path, score={"thresholds": {"quality.overall": {"min": 0.2}}, "report": True})
    capfd.readouterr()
    result = synthesize(dataset="tiny", params=str(params), overrides={"generate.rows": 123})
    assert set(result) == {"ingest", "train", "generate", "score", "publish"}
    out = "".join(capfd.readouterr())
    # Each stage line once, as its task run's (not again as the ``pipeline.*`` logger's).
    assert out.count("generated 123 rows of tiny") == 1, out
    assert "Task run 'generate-tiny'" in out and "| pipeline." not in out
    bar = Artifact.get("synthesis-tiny-progress")  # the dataset's progress artifact, at its end
    assert bar is not None and bar.type == "progress" and float(bar.data) == 100.0
    manifest = _latest(tmp_path)
    assert manifest["rows"] == 123 == len(pd.read_parquet(Path(result["publish"]["path"])))
    assert manifest["run"]["orchestrator"] == "prefect" and manifest["run"]["flow_run_id"]
    assert set(manifest["stage_seconds"]) == {"ingest", "train", "generate", "score"}
    assert manifest["seed"] == 3  # a one-off run keeps the configured seed

    from prefect.artifacts import Artifact

    summary = Artifact.get("synthesis-tiny")
    assert summary is not None and "quality.overall" in summary.data and result["publish"]["version"] in summary.data
    assert Artifact.get("synthesis-tiny-metrics") is not None


def test_a_failed_gate_fails_the_flow_releases_nothing_and_keeps_latest(tmp_path, harness):
    from flows.nightly import DatasetsFailed
    from flows.synthesize import synthesize

    params = _params(tmp_path)
    synthesize(dataset="tiny", params=str(params))
    before = _latest(tmp_path)["version"]
    with pytest.raises(DatasetsFailed, match="publish: QualityGateError"):
        synthesize(dataset="tiny", params=str(params),
                   overrides={"score.thresholds": {"quality.overall": {"min": 0.9999}}})
    assert publish.list_versions(tmp_path / "releases/tiny") == [before]
    assert _latest(tmp_path)["version"] == before


def test_nightly_a_failing_dataset_does_not_stop_the_others_and_fails_the_run(tmp_path, harness):
    from flows.nightly import DatasetsFailed, nightly

    params = _params(tmp_path, names=("good", "bad"))
    raw = yaml.safe_load(params.read_text())
    raw["datasets"]["bad"]["source"] = str(tmp_path / "missing.csv")
    params.write_text(yaml.safe_dump(raw))
    with pytest.raises(DatasetsFailed) as info:
        nightly(params=str(params))
    assert "bad: ingest" in str(info.value) and "released: good" in str(info.value)
    manifest = _latest(tmp_path, "good")
    assert manifest["run"]["nightly"] and manifest["seed"] != 3  # a nightly run draws its own seed
    assert not (tmp_path / "releases/bad").exists()


def test_transient_errors_are_retried_and_a_held_lock_fails_clearly(tmp_path, harness, monkeypatch):
    from flows.nightly import DatasetsFailed
    from flows.synthesize import synthesize
    from pipeline import generate

    params = _params(tmp_path)
    real_run, calls = generate.run, []

    def flaky(cfg, dataset, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk hiccup")
        return real_run(cfg, dataset, **kw)

    monkeypatch.setattr(generate, "run", flaky)
    synthesize(dataset="tiny", params=str(params))
    assert len(calls) == 2
    with dataset_run_lock(tmp_path / "work", "tiny"):
        with pytest.raises(DatasetsFailed, match="another run of this dataset holds"):
            synthesize(dataset="tiny", params=str(params))


def test_nightly_keeps_the_newest_releases(tmp_path, harness):
    from flows.nightly import nightly

    params = _params(tmp_path, nightly={"keep_releases": 2})
    for _ in range(3):
        nightly(params=str(params), overrides={"train.epochs": 1})
    root = tmp_path / "releases/tiny"
    versions = publish.list_versions(root)
    assert len(versions) == 2 and publish.latest_version(root) == versions[-1]


def test_retention_never_prunes_latest(tmp_path, tiny_cfg):
    from pipeline import generate, ingest, score, train

    tiny_cfg.score.report = False
    for stage in (ingest, train, generate, score):
        stage.run(tiny_cfg, "tiny")
    made = [publish.run(tiny_cfg, "tiny", version=f"v{i}").version for i in range(4)]
    root = Path(tiny_cfg.publish.release_root) / "tiny"
    (root / LATEST).write_text(json.dumps({"version": made[0]}))  # latest pinned to the oldest
    assert LocalFolder(root).prune(keep=1) == made[1:3]
    assert publish.list_versions(root) == [made[0], made[3]]


def test_the_served_deployment_carries_the_schedule_from_params(tmp_path):
    from flows.nightly import build_deployment
    from pipeline.config import load_config

    params = _params(tmp_path, nightly={"cron": "30 3 * * 1-5", "timezone": "Europe/Berlin"})
    deployment = build_deployment(load_config(params), str(params), datasets=["tiny"])
    (schedule,) = deployment.schedules
    assert schedule.schedule.cron == "30 3 * * 1-5" and schedule.schedule.timezone == "Europe/Berlin"
    assert deployment.name == "nightly" and deployment.parameters["params"] == str(params)
    assert deployment.parameters["datasets"] == ["tiny"]


def test_the_dask_task_runner_runs_two_datasets(tmp_path, harness, monkeypatch):
    from flows.nightly import nightly

    monkeypatch.setenv("DASK_LOGGING__DISTRIBUTED", "warning")
    monkeypatch.setenv("DASK_TEMPORARY_DIRECTORY", str(tmp_path / "dask"))
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))  # a worker's own server would write here
    params = _params(tmp_path, names=("one", "two"), nightly={"task_runner": "dask", "max_workers": 2})
    results = nightly(params=str(params))  # the runner comes from params, as in a deployment
    assert set(results) == {"one", "two"}
    for name in results:
        assert _latest(tmp_path, name)["rows"] > 0
    # The workers' task runs reached the flow's API (the harness's): a worker without its URL starts
    # an ephemeral server of its own, on its own database, which outlives it when the cluster kills it.
    strays = _api_servers_of(tmp_path / "dask")
    for p in strays:
        with contextlib.suppress(psutil.Error):
            p.kill()
    assert not strays, [p.cmdline() for p in strays]
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    names = [f"{stage}-{name}" for stage in ("ingest", "train", "generate", "score", "publish") for name in results]
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=names)))
    assert sorted(r.name for r in runs if r.state.is_completed()) == sorted(names)


def _api_servers_of(dask_dir: Path) -> list:
    """The Prefect API server processes started under this test's Dask folder (its environment's
    DASK_TEMPORARY_DIRECTORY, which the workers and what they start inherit)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if "prefect.server.api.server:create_app" in " ".join(p.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                if p.environ().get("DASK_TEMPORARY_DIRECTORY") == str(dask_dir):
                    found.append(p)
    return found


def test_stage_logs_reach_their_datasets_task_run_logger_once():
    """Records go to the run logger of their dataset's task (the stage context names it, or the
    record itself does: a progress heartbeat logs from its own thread) and nowhere else; records of
    no running task reach the root logger's handlers as they would have."""
    import logging
    import threading

    from flows.nightly import _ToRunLogger
    from pipeline.logs import stage_context

    seen, elsewhere = [], []

    class Sink:
        def log(self, level, fmt, msg):
            seen.append((level, msg))

    class Root(logging.Handler):
        def emit(self, record):
            elsewhere.append(record.getMessage())

    handler, root = _ToRunLogger(), Root()
    handler.run_loggers["tiny"] = Sink()
    source = logging.getLogger("pipeline.test")
    source.addHandler(handler)
    source.propagate = False
    source.setLevel(logging.INFO)
    logging.getLogger().addHandler(root)
    try:
        with stage_context("tiny", "train"):
            source.info("trained %s", "tiny")

        def other():
            with stage_context("other", "train"):
                source.info("another dataset's line")
            source.info("heartbeat", extra={"dataset": "tiny"})

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    finally:
        source.removeHandler(handler)
        source.propagate = True
        logging.getLogger().removeHandler(root)
    assert seen == [(logging.INFO, "trained tiny"), (logging.INFO, "heartbeat")]
    assert elsewhere == ["another dataset's line"]


def test_nightly_releases_a_table_and_an_image_dataset_side_by_side(tmp_path, harness):
    import pandas as pd

    from flows.nightly import nightly
    from tests.conftest import REPO

    params = _params(tmp_path)
    tree = yaml.safe_load(params.read_text())
    digits = tmp_path / "digits.parquet"
    pd.read_parquet(REPO / "data/mnist/digits.parquet").iloc[:200].to_parquet(digits, index=False)
    tree["datasets"]["digits"] = {"source": str(digits), "modality": "image", "overrides": {
        "model.name": "dcgan", "model.dcgan.width": 8, "train.batch_size": 32, "score.classifier_epochs": 1,
        "score.thresholds": {"image.label_accuracy": {"min": 0.0}}}}
    params.write_text(yaml.safe_dump(tree))
    results = nightly(params=str(params))
    assert set(results) == {"tiny", "digits"}
    image = _latest(tmp_path, "digits")
    assert image["modality"] == "image" and image["model"] == "dcgan" and image["rows"] == 160
    assert "image.fid" in image["metrics"] and "_samples.png" in image["reports"]
    assert _latest(tmp_path, "tiny")["modality"] == "table"
