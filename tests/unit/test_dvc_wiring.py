"""dvc.yaml against the config and the score stage's records, without running DVC (the e2e tests
run it): what each stage's params are, and that the DVC metrics file holds numbers only."""

import json

import pytest
import yaml

from pipeline.artifacts import StagePaths, load_scores, score_records
from pipeline.config import ScoreConfig
from pipeline.errors import InputDataError
from pipeline.files import write_json
from tests.conftest import REPO


def _stage(name: str) -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][name]["do"]


def test_score_depends_on_every_score_key_but_the_thresholds_which_publish_judges():
    score, publish = _stage("score")["params"], _stage("publish")["params"]
    assert score == ["seed", "datasets.${key}", *(f"score.{k}" for k in ScoreConfig.model_fields if k != "thresholds")]
    assert "score.thresholds" in publish  # a threshold change re-runs publish alone
    assert "${metrics_dir}/${key}.json" not in _stage("publish")["deps"]  # publish reads details.json


def test_the_metrics_file_is_a_dvc_metric_that_git_tracks():
    assert _stage("score")["metrics"] == [{"${metrics_dir}/${key}.json": {"cache": False}}]
    ignored = [line.strip().strip("/") for line in (REPO / ".gitignore").read_text().splitlines()]
    metrics_dir = yaml.safe_load((REPO / "params.yaml").read_text())["metrics_dir"]
    assert metrics_dir not in ignored  # `dvc exp run` commits it with the experiment; `dvc exp show` reads it


def _scored() -> dict:
    """The score stage's flat results, as ``score.run`` holds them before writing."""
    return {"rows": 600, "synthetic_hash": "ab" * 32, "quality.overall": 0.81, "utility.task": "classification",
            "utility.metric": "roc_auc", "utility.ratio": None, "gate.not_judged": {"utility.": "48 holdout rows"},
            "gate.passed": True, "gate.failures": [], "score.seconds": 1.5}


def test_the_metrics_file_holds_numbers_only_and_the_record_everything(tmp_path):
    record, numbers = score_records(_scored(), {"dataset": "tiny", "thresholds": {}})
    assert numbers == {"rows": 600, "quality.overall": 0.81, "utility.ratio": None, "score.seconds": 1.5}
    assert record["metrics"] == {k: v for k, v in _scored().items() if not k.startswith(("gate.", "synthetic"))}
    assert record["synthetic_hash"] == "ab" * 32 and record["dataset"] == "tiny"
    assert record["gate"] == {"passed": True, "failures": [], "not_judged": {"utility.": "48 holdout rows"}}
    # Read back, the record is the flat view the gate, publish and the manifest read.
    paths = StagePaths.of(tmp_path, "tiny")
    write_json(paths.details, record)
    flat, details = load_scores(paths)
    assert flat == {k: v for k, v in _scored().items() if k not in ("gate.passed", "gate.failures")}
    assert details == json.loads(paths.details.read_text())


@pytest.mark.parametrize("record", [{"dataset": "tiny"}, {"metrics": {}, "gate": {}}, [1]])
def test_a_record_without_scores_is_one_line_naming_the_stage(tmp_path, record):
    paths = StagePaths.of(tmp_path, "tiny")
    write_json(paths.details, record)
    with pytest.raises(InputDataError) as err:
        load_scores(paths)
    assert "score stage" in str(err.value) and "\n" not in str(err.value)

