"""The privacy gate is judged against the real baseline: a table whose unseen real rows repeat
training rows as often as the synthetic ones do passes by default, a copier fails; a failure names
the baseline beside the value. The report, the data card and validate's plan say the same in
plain words."""

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.config import Threshold, load_config
from pipeline.metrics import SUITES, evaluate_gate, judge, metric, register_suite
from pipeline.metrics.privacy import privacy_suite
from pipeline.modalities.table import TableEvidence
from pipeline.schema import TableSchema, describe, infer_kind
from tests.conftest import REPO


def _measurements(n: int, seed: int) -> pd.DataFrame:
    """Six small-integer measurements (geometric): a table of few distinct rows, where a fresh real
    row often equals some training row, like many public tables of discrete measurements."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({f"m{i}": rng.geometric(0.4, n) for i in range(6)})


def _privacy(train: pd.DataFrame, holdout: pd.DataFrame, syn: pd.DataFrame, thresholds=None) -> dict:
    """The privacy suite's metrics, judged under ``thresholds`` (the default gate's privacy keys)."""
    cfg = load_config(REPO / "params.yaml", {"score.privacy_rows": 1000})
    if thresholds is None:
        thresholds = {k: v for k, v in cfg.score.thresholds.items() if k.startswith("privacy.")}
    cfg.score.thresholds = thresholds
    schema = TableSchema([describe(train[c], infer_kind(train[c])) for c in train.columns])
    ev = TableEvidence("m", None, train, holdout, syn, schema, None, "auto", cfg.score, 0, len(syn), False)
    out = privacy_suite(ev)
    metrics = dict(out.metrics)
    if out.not_judged:
        metrics["gate.not_judged"] = out.not_judged
    return judge(metrics, thresholds)


@pytest.fixture(scope="module")
def measurements():
    return _measurements(3000, 1), _measurements(2000, 2), _measurements(2000, 3)


def test_a_table_whose_real_rows_repeat_themselves_passes_the_default_gate(measurements):
    train, holdout, fresh = measurements  # fresh: new draws of the same population, a perfect generator
    m = _privacy(train, holdout, fresh)
    assert m["privacy.exact_match_rate"] > 0.15 and m["privacy.exact_match_rate_holdout"] > 0.15
    assert m["privacy.exact_match_excess"] == pytest.approx(
        m["privacy.exact_match_rate"] - m["privacy.exact_match_rate_holdout"])
    assert m["gate.passed"], m["gate.failures"]
    # The rate alone, judged absolutely (an explicit user threshold): refused, with the baseline named.
    absolute = _privacy(train, holdout, fresh, {"privacy.exact_match_rate": Threshold(max=0.05)})
    assert absolute["gate.failures"] == [
        f"privacy.exact_match_rate: {m['privacy.exact_match_rate']:.4f} > max 0.05 "
        f"(unseen real rows: {m['privacy.exact_match_rate_holdout']:.4f})"]


def test_a_copier_fails_through_the_excess(measurements):
    train, holdout, _ = measurements
    m = _privacy(train, holdout, train.sample(2000, random_state=0).reset_index(drop=True))
    assert m["privacy.exact_match_rate"] == 1.0
    excess = 1.0 - m["privacy.exact_match_rate_holdout"]
    assert m["privacy.exact_match_excess"] == pytest.approx(excess)
    # (DCR may miss it here: a copy is often as near an unseen row, equal to some training row too.)
    failures = {f.split(":")[0]: f for f in m["gate.failures"]}
    assert failures["privacy.exact_match_excess"] == (f"privacy.exact_match_excess: {excess:.4f} > max 0.05 "
                                                      "(unseen real rows: 0)")


def test_without_a_holdout_the_excess_is_not_judged_and_says_why(measurements):
    train, holdout, fresh = measurements
    m = _privacy(train, holdout.iloc[:0], fresh, {"privacy.exact_match_excess": Threshold(max=0.05)})
    assert math.isnan(m["privacy.exact_match_excess"]) and "privacy.exact_match_rate_holdout" not in m
    assert "no holdout rows" in m["gate.not_judged"]["privacy.exact_match_excess"]
    assert m["gate.passed"]  # skipped, not failed: the reason stands in the verdict


@pytest.fixture
def baseline_suite():
    @register_suite("toybase", "table", [
        metric("toybase.rate", 0, 1, "a rate read against a measured one", baseline="toybase.real",
               baseline_words="real rows"),
        metric("toybase.real", 0, 1, "the rate of real rows"),
        metric("toybase.auc", 0, 1, "an attack's AUC", baseline=0.5, baseline_words="chance"),
    ])
    def toy(ev):
        raise AssertionError("not computed here")

    yield
    SUITES.pop("toybase")


def test_a_failure_names_the_baseline_measured_or_fixed_and_only_when_there_is_one(baseline_suite):
    th = {"toybase.rate": Threshold(max=0.1), "toybase.auc": Threshold(max=0.6)}
    ok, failures = evaluate_gate({"toybase.rate": 0.3, "toybase.real": 0.25, "toybase.auc": 0.7}, th)
    assert not ok and failures == ["toybase.rate: 0.3000 > max 0.1 (real rows: 0.2500)",
                                   "toybase.auc: 0.7000 > max 0.6 (chance: 0.5)"]
    # A baseline not measured in this run (or not a number) is left out, never shown as n/a.
    assert evaluate_gate({"toybase.rate": 0.3, "toybase.real": float("nan")}, {"toybase.rate": Threshold(max=0.1)}) \
        == (False, ["toybase.rate: 0.3000 > max 0.1"])
    assert evaluate_gate({"toybase.rate": 0.3}, {"toybase.rate": Threshold(max=0.1)}) \
        == (False, ["toybase.rate: 0.3000 > max 0.1"])
