"""The default gate judges what tells a generator from a fake; a target's task follows what the
user means (and can be set); a utility score on too small a holdout is not judged, and says why."""

import json

import numpy as np
import pandas as pd
import pytest

from pipeline import ingest, score
from pipeline.artifacts import StagePaths, metrics_path
from pipeline.config import Threshold, load_config
from pipeline.errors import InputDataError
from pipeline.metrics import evaluate_gate, judge, suites_for
from pipeline.metrics.utility import score_utility
from pipeline.modalities.table import TableEvidence
from pipeline.schema import TableSchema, cast_column, describe, infer_kind
from tests.conftest import ADULT, REPO, tiny_config


def _typed(df: pd.DataFrame, like: pd.DataFrame | None = None) -> tuple[pd.DataFrame, list]:
    like = df if like is None else like
    kinds = {c: infer_kind(like[c]) for c in like.columns}
    out = pd.DataFrame({c: cast_column(df[c], k) for c, k in kinds.items()})
    return out, [describe(out[c], kinds[c]) for c in out.columns]


def _metrics(train, holdout, syn, schema) -> dict:
    cfg = load_config(REPO / "params.yaml", {"score.detection_rows": 3000, "score.utility_rows": 3000,
                                              "score.privacy_rows": 1000})
    ev = TableEvidence("adult", None, train, holdout, syn, schema, "income", "auto", cfg.score, 0, len(syn), False)
    metrics = {}
    for suite in suites_for("table"):
        metrics.update(suite.compute(ev).metrics)
    return judge(metrics, cfg.score.thresholds)


@pytest.mark.slow  # seconds: the fast tier stays under a minute
def test_the_default_gate_passes_unseen_real_rows_and_refuses_perfect_marginals_without_dependence():
    rows = pd.read_parquet(ADULT).sample(9000, random_state=0).reset_index(drop=True)
    typed, columns = _typed(rows)
    schema = TableSchema(columns, target="income")
    train, holdout, other = typed.iloc[:3000], typed.iloc[3000:6000], typed.iloc[6000:].reset_index(drop=True)
    real = _metrics(train, holdout, other, schema)
    assert real["gate.passed"], real["gate.failures"]
    shuffled = pd.DataFrame({c: other[c].sample(frac=1, random_state=i).to_numpy() for i, c in enumerate(other)})
    shuffled = shuffled.astype(other.dtypes.to_dict())
    fake = _metrics(train, holdout, shuffled, schema)
    assert fake["quality.column_shapes"] == pytest.approx(real["quality.column_shapes"])  # the same marginals
    assert not fake["gate.passed"]
    failed = {f.split(":")[0] for f in fake["gate.failures"]}
    assert {"quality.column_pair_trends", "detection.auc", "utility.ratio"} <= failed


@pytest.mark.slow  # ~4 s: three utility fits
@pytest.mark.parametrize("task, expect", [("auto", "regression"), ("classification", "classification"),
                                          ("regression", "regression")])
def test_a_numeric_targets_task_can_be_set(task, expect):
    rng = np.random.default_rng(0)
    frame = lambda n: pd.DataFrame({"x": rng.normal(0, 1, n), "y": rng.choice(range(20), n)})  # noqa: E731
    tr, ho, syn = frame(200), frame(100), frame(200)
    schema = TableSchema([describe(tr["x"], "continuous"), describe(pd.concat([tr["y"], ho["y"]]), "integer")],
                         target="y")
    result = score_utility(tr, ho, syn, schema, "y", task)
    assert result.task == expect and result.metric == ("r2" if expect == "regression" else "f1_macro")


def test_regression_on_a_categorical_target_is_refused_at_ingest(tmp_path, tiny_source):
    cfg = tiny_config(tmp_path, tiny_source, **{"datasets.tiny.task": "regression"})
    with pytest.raises(InputDataError, match="column 'income': task: regression needs a numeric target"):
        ingest.run(cfg, "tiny")


@pytest.mark.slow  # a few seconds: keeps the fast tier under a minute
def test_utility_on_a_small_holdout_is_not_judged_and_the_report_says_why(scored_tiny):
    cfg = scored_tiny
    cfg.score.utility_min_holdout = 1000
    cfg.score.report = True
    cfg.score.thresholds = {"utility.ratio": Threshold(min=0.99), "quality.overall": Threshold(min=0.1)}
    result = score.run(cfg, "tiny")
    metrics = json.loads(metrics_path(cfg.metrics_dir, "tiny").read_text())
    assert "utility.ratio" not in metrics and result.passed  # skipped, not failed
    reason = json.loads(StagePaths.of(cfg.work_dir, "tiny").details.read_text())["gate"]["not_judged"]["utility."]
    assert "48 holdout rows, fewer than score.utility_min_holdout (1000)" in reason
    md = (StagePaths.of(cfg.work_dir, "tiny").score / "report.md").read_text()
    assert "not judged: utility: 48 holdout rows" in md and "| `utility.ratio` | n/a | ≥ 0.99 | not judged |" in md
    # A metric that is simply missing still fails the gate.
    assert evaluate_gate({}, {"utility.ratio": Threshold(min=0.5)}) == (False, ["utility.ratio: not computed"])
