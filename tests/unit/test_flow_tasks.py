"""The nightly flow's tasks are the stage functions: called as plain code (``task.fn``, no Prefect
run), the five tasks in order take a dataset from its source to a release, each reading the
config from the params file and the overrides it is given, as the flow's workers do."""

import pytest
import yaml

from pipeline.catalog import Catalog
from pipeline.stages import STAGE_NAMES


@pytest.mark.slow  # imports Prefect (1.5 s), so kept out of the fast tier and out of its collection
def test_each_stage_task_runs_its_stage_from_params_and_overrides(tmp_path, tiny_cfg):
    from flows.nightly import STAGE_TASKS

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_cfg.to_dict()))
    assert list(STAGE_TASKS) == list(STAGE_NAMES)
    overrides = {"generate.rows": 77}
    results = {}
    for stage, task in STAGE_TASKS.items():
        assert task.name == stage
        results[stage] = task.fn(stage, str(params), overrides, "tiny",
                                 {"orchestrator": "test"} if stage == "publish" else None)
    assert results["train"]["epochs"] == tiny_cfg.train.epochs
    assert results["generate"]["rows"] == 77  # the override reached the stage
    assert isinstance(results["score"]["passed"], bool)
    release = results["publish"]
    frame = Catalog(tiny_cfg.publish.release_root).load(f"tiny@{release['version']}")
    assert len(frame) == 77 and release["rows"] == 77
