"""Alpha-precision, beta-recall and authenticity: against a loop-by-loop reference written from the
paper's definitions (as synthcity's naive variant reads them), on hand-checkable cases, and on the
obvious ones (a copy, independent marginals)."""

import math

import numpy as np
import pandas as pd
import pytest

from pipeline.metrics.precision_recall import LEVELS, feature_matrix, precision_recall, score_precision_recall
from pipeline.schema import TableSchema, describe, infer_kind
from tests.conftest import ADULT, tiny_frame


def _schema(df):
    return TableSchema([describe(df[c], infer_kind(df[c])) for c in df.columns])


def _quantile(values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = math.floor(pos)
    return v[lo] + (v[min(lo + 1, len(v) - 1)] - v[lo]) * (pos - lo)


def _reference(real: list[list[float]], syn: list[list[float]]) -> tuple[float, float, float]:
    """The definitions, one row at a time: alpha-precision compares the share of synthetic rows
    within the real rows' alpha-quantile ball about the real mean with alpha; beta-recall the share
    of real rows whose nearest synthetic row is nearer than their nearest other real row and lies
    within the synthetic rows' beta-quantile ball (of those nearest rows' distances to the
    synthetic mean) with beta; each scored 1 - sum |share - level| / sum levels. Authenticity: the
    share of synthetic rows farther from their nearest real row than it is from its own."""
    def dist(a, b):
        return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))

    def mean(rows):
        return [sum(col) / len(rows) for col in zip(*rows)]

    levels = [i / (LEVELS - 1) for i in range(LEVELS)]
    mu_r, mu_s = mean(real), mean(syn)
    real_d = [dist(r, mu_r) for r in real]
    alpha_share = [sum(dist(s, mu_r) <= _quantile(real_d, a) for s in syn) / len(syn) for a in levels]
    own = [min(dist(r, o) for j, o in enumerate(real) if j != i) for i, r in enumerate(real)]
    nearest = [min(range(len(syn)), key=lambda j: dist(r, syn[j])) for r in real]
    covered = [dist(r, syn[j]) <= own[i] for i, (r, j) in enumerate(zip(real, nearest))]
    near_d = [dist(syn[j], mu_s) for j in nearest]
    beta_share = [sum(c and d <= _quantile(near_d, b) for c, d in zip(covered, near_d)) / len(real) for b in levels]
    nearest_real = [min(range(len(real)), key=lambda i: dist(s, real[i])) for s in syn]
    authentic = [dist(s, real[i]) > own[i] for s, i in zip(syn, nearest_real)]

    def score(share):
        return 1 - sum(abs(x - a) for x, a in zip(share, levels)) / sum(levels)

    return score(alpha_share), score(beta_share), sum(authentic) / len(syn)


def test_matches_the_reference_on_random_rows():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(25, 3))
    syn = rng.normal(0.3, 1.3, size=(25, 3))
    ours = precision_recall(real, syn)
    ref = _reference(real.tolist(), syn.tolist())
    assert ours == pytest.approx(ref, abs=1e-12)


def test_hand_checked_cases():
    real = np.array([[-3.0], [-1.0], [1.0], [3.0]])
    # Every synthetic row at the real mean (0): inside every ball, a share of 1 at each level, so
    # alpha-precision is 1 - sum(1 - a) / sum(a) = 0 (too typical). The real rows -1 and 1 have it 1
    # away, nearer than their real neighbours (2): half the rows covered at every level, and
    # beta-recall is 1 - sum |1/2 - i/29| / 15 = 1 - (225 / 29) / 15 = 210/435. Authentic: none
    # (0 is 1 from its nearest real row, whose own neighbour is 2 away).
    assert precision_recall(real, np.zeros((4, 1))) == pytest.approx((0.0, 210 / 435, 0.0))
    # Far away: outside every ball, nothing covered, all authentic.
    assert precision_recall(real, real + 100.0) == pytest.approx((0.0, 0.0, 1.0))
    assert precision_recall(real, real + 100.0) == pytest.approx(_reference(real.tolist(), (real + 100).tolist()))


def test_features_are_tabsyns_one_hot_layout_less_the_last_column_scaled_by_the_real_rows():
    real = pd.DataFrame({"income": ["y", "n"], "n": [0.0, 10.0], "c": ["b", "a"]})
    syn = pd.DataFrame({"income": ["n", "n"], "n": [20.0, 5.0], "c": ["c", "a"]})
    x_real, x_syn = feature_matrix(real, syn, _schema(real), target="income")
    # numbers, then c's a|b, then the target's n (its last column, y, left out, as synthcity does)
    assert x_real.tolist() == [[0, 0, 1, 0], [1, 1, 0, 1]]
    assert x_syn.tolist() == [[2, 0, 0, 1], [0.5, 1, 0, 1]]  # an unseen category: all zeros


def test_a_copy_scores_one_and_one_and_is_not_authentic():
    real = tiny_frame(400).drop(columns=["user_id"])
    res = score_precision_recall(real, real.copy(), _schema(real), "income", seed=1)
    # Not exactly 1: at level a the share of rows within the a-quantile radius is a step of 1/n
    # (at least a, at most a + 1/n), so each score falls short of 1 by up to about 1/n.
    assert 1 - 2 / len(real) <= res.alpha_precision <= 1 and 1 - 2 / len(real) <= res.beta_recall <= 1
    assert res.authenticity == 0.0 and res.rows_per_side == 400


def test_independent_marginals_score_a_low_beta_recall():
    real = pd.read_parquet(ADULT).sample(1000, random_state=0).reset_index(drop=True)
    rng = np.random.default_rng(0)
    shuffled = pd.DataFrame({c: rng.permutation(real[c].to_numpy()) for c in real.columns})
    schema = _schema(real)
    copy = score_precision_recall(real, real.copy(), schema, "income", seed=1)
    independent = score_precision_recall(real, shuffled, schema, "income", seed=1)
    assert copy.beta_recall > 0.99 and independent.beta_recall < 0.3
    assert independent.authenticity > 0.7  # shuffled rows land far from every real row


def test_seeded_samples_repeat_and_the_seed_picks_them():
    real = tiny_frame(300).drop(columns=["user_id"])
    syn = tiny_frame(300, seed=5).drop(columns=["user_id"])
    schema = _schema(real)
    first = score_precision_recall(real, syn, schema, "income", rows=150, seed=2)
    assert first == score_precision_recall(real, syn, schema, "income", rows=150, seed=2)
    assert first != score_precision_recall(real, syn, schema, "income", rows=150, seed=3)
    assert first.rows_per_side == 150


def test_too_few_rows_score_nan():
    real = tiny_frame(10).drop(columns=["user_id"])
    res = score_precision_recall(real.iloc[:1], real.iloc[1:], _schema(real), "income")
    assert math.isnan(res.alpha_precision) and math.isnan(res.beta_recall) and res.rows_per_side == 1


def test_past_the_category_limit_the_rarer_categories_share_one_column(monkeypatch):
    import pipeline.metrics.precision_recall as pr

    monkeypatch.setattr(pr, "MAX_CATEGORIES", 2)
    hot_real, hot_syn = pr.one_hot(pd.Series(["b", "a", "a", "c", "b", "a"]), pd.Series(["d", "c", "a"]))
    # a and b, the two most frequent, in sorted order; c, and d which the real rows lack, pooled
    assert hot_real.tolist() == [[0, 1, 0], [1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0]]
    assert hot_syn.tolist() == [[0, 0, 1], [0, 0, 1], [1, 0, 0]]
