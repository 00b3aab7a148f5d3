"""A metric family is one module: registering a suite is all it takes for the score stage to
compute its metrics, write them, gate on them and list them in the report."""

import json

import pytest

from pipeline import score
from pipeline.artifacts import StagePaths, metrics_path
from pipeline.config import Threshold
from pipeline.errors import ConfigError
from pipeline.metrics import SUITES, SuiteResult, check_thresholds, metric, register_suite, suites_for


@pytest.fixture
def toy_suite():
    """The whole of a new metric family: the share of synthetic rows whose age is above the real
    median (a toy), registered for tables."""

    @register_suite("toy", "table", [metric("toy.above_median", 0, 1, "share above the real median age")])
    def toy(ev) -> SuiteResult:
        median = ev.train["age"].median()
        return SuiteResult({"toy.above_median": float((ev.syn["age"] > median).mean())},
                           {"toy": {"median": float(median)}})

    yield toy
    SUITES.pop("toy")


@pytest.mark.slow  # seconds: the fast tier stays under a minute
def test_a_registered_suite_is_computed_written_gated_and_reported(scored_tiny, toy_suite):
    tiny_cfg = scored_tiny
    tiny_cfg.score.report = True
    assert "toy" in [s.name for s in suites_for("table")] and "toy" not in [s.name for s in suites_for("image")]
    check_thresholds({"toy.above_median": Threshold(min=0.99)})  # a known metric now

    tiny_cfg.score.thresholds = {"toy.above_median": Threshold(min=0.99)}
    result = score.run(tiny_cfg, "tiny")
    on_file = json.loads(metrics_path(tiny_cfg.metrics_dir, "tiny").read_text())
    value = on_file["toy.above_median"]
    assert 0 < value < 0.99 and value == result.metrics["toy.above_median"]
    assert not result.passed and result.failures == [f"toy.above_median: {value:.4f} < min 0.99"]
    paths = StagePaths.of(tiny_cfg.work_dir, "tiny")
    details = json.loads(paths.details.read_text())
    assert details["toy"]["median"] > 0 and "toy" in details["seconds"]
    assert "toy.above_median" in (paths.score / "report.md").read_text()
    # The other families ran as before, beside it.
    assert {"quality.overall", "detection.auc", "privacy.dcr_share"} <= set(on_file)

    tiny_cfg.score.thresholds = {"toy.above_median": Threshold(min=0.01)}
    tiny_cfg.score.report = False
    assert score.run(tiny_cfg, "tiny").passed


def test_a_threshold_on_an_unregistered_metric_is_refused():
    with pytest.raises(ConfigError, match="unknown metric 'toy.nothing'"):
        check_thresholds({"toy.nothing": Threshold(min=0.5)})
