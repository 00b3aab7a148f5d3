"""The membership-inference attacks: a release that copies its training rows is caught, real rows
the model never saw released in its place are not, and the figures and their intervals are what
they say."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pipeline.config import ScoreConfig
from pipeline.metrics import SUITES, load_families
from pipeline.metrics.membership import (
    ATTACKS,
    KEYS,
    attack_space,
    bootstrap_weights,
    membership_suite,
    roc_figures,
    score_membership,
    tpr_at_fpr,
)
from pipeline.metrics.privacy import attack_rows
from pipeline.schema import TableSchema, describe, infer_kind
from tests.conftest import tiny_frame


def _schema(df: pd.DataFrame) -> TableSchema:
    return TableSchema([describe(df[c], infer_kind(df[c])) for c in df.columns])


def _sets(n: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Training rows, a holdout twice as big and unseen rows: independent draws of one table."""
    return tiny_frame(n, seed=1), tiny_frame(2 * n, seed=2), tiny_frame(n, seed=3)


def _attack(train: pd.DataFrame, holdout: pd.DataFrame, syn: pd.DataFrame, seed: int = 0):
    return score_membership(attack_rows(train, holdout, syn, rows=5_000, seed=seed), _schema(train), seed=seed)


def _noisy(df: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The rows with small noise on every numeric column (a year of age, 2% of a score, a day)."""
    rng = np.random.default_rng(seed)
    out = df.copy()
    out["age"] = out["age"] + rng.integers(-1, 2, len(df))
    out["score"] = out["score"] * (1 + rng.normal(0, 0.02, len(df)))
    out["joined"] = out["joined"] + pd.to_timedelta(rng.integers(-1, 2, len(df)), unit="D")
    return out


@pytest.mark.parametrize("release", ["copies", "noisy copies"])
def test_a_release_of_its_training_rows_is_caught(release):
    train, holdout, _ = _sets(400)
    syn = train if release == "copies" else _noisy(train)
    result = _attack(train, holdout, syn)
    assert result.worst("auc")[1] >= 0.8
    assert result.worst("tpr_at_fpr_1pct")[1] >= 0.3  # chance is 0.01
    assert result.attacks["distance"]["auc"].low > 0.75  # the nearest-row attack alone sees it


def test_real_rows_the_model_never_saw_released_instead_tell_nothing():
    train, holdout, unseen = _sets(400)
    result = _attack(train, holdout, unseen)
    for name in ATTACKS:
        auc = result.attacks[name]["auc"]
        assert auc.low < 0.5 < auc.high and abs(auc.estimate - 0.5) < 0.06, name
        assert result.attacks[name]["tpr_at_fpr_1pct"].estimate < 0.06, name


def test_the_intervals_hold_their_estimate_are_seeded_and_narrow_with_rows():
    train, holdout, _ = _sets(400)
    syn = _noisy(train)
    result = _attack(train, holdout, syn)
    for name in ATTACKS:
        for figure in ("auc", "tpr_at_fpr_1pct"):
            f = result.attacks[name][figure]
            assert f.low <= f.estimate <= f.high, (name, figure)
    assert _attack(train, holdout, syn).attacks == result.attacks  # the same seed, the same numbers
    other = _attack(train, holdout, syn, seed=1).attacks["distance"]["auc"]
    assert (other.low, other.high) != (result.attacks["distance"]["auc"].low, result.attacks["distance"]["auc"].high)

    small, big = _sets(100), _sets(1_000)
    widths = [_attack(t, h, _noisy(t)).attacks["density_ratio"]["auc"] for t, h, _ in (small, big)]
    assert widths[1].high - widths[1].low < 0.6 * (widths[0].high - widths[0].low)


def test_the_roc_figures_by_hand():
    # Scores high to low: member, non-member, member, non-member. The curve: (0, 0), (0, .5),
    # (.5, .5), (.5, 1), (1, 1); its area 0.75.
    scores, labels = np.array([4.0, 3.0, 2.0, 1.0]), np.array([1, 0, 1, 0])
    auc, at = roc_figures(scores, labels, np.ones((1, 4)), (0.25, 0.5, 0.75))
    assert auc[0] == pytest.approx(0.75) and at[0] == pytest.approx([0.5, 1.0, 1.0])
    # Ties are one diagonal step: all four tied is the diagonal, read by straight lines.
    flat = np.zeros(4)
    assert tpr_at_fpr(flat, labels, 0.25) == pytest.approx(0.25)
    assert roc_figures(flat, labels, np.ones((1, 4)))[0][0] == pytest.approx(0.5)
    # The top score shared by one of ten non-members and half of ten members (one diagonal step from
    # (0, 0) to (0.1, 0.5)), the other members next: at FPR 1%, a tenth of the way along that step.
    scores = np.r_[9.0, np.zeros(9), np.full(5, 9.0), np.full(5, 5.0)]
    labels = np.r_[np.zeros(10), np.ones(10)]
    assert tpr_at_fpr(scores, labels, 0.01) == pytest.approx(0.05)
    assert tpr_at_fpr(scores, labels, 0.15) == pytest.approx(1.0)

def test_the_auc_is_the_mann_whitney_statistic_with_ties_and_weights_count_rows():
    rng = np.random.default_rng(0)
    scores, labels = rng.integers(0, 20, 300).astype(float), rng.integers(0, 2, 300)
    auc, _ = roc_figures(scores, labels, np.ones((1, 300)))
    assert auc[0] == pytest.approx(roc_auc_score(labels, scores))
    # A resample's counts are the rows repeated.
    weights = bootstrap_weights(labels, 3, rng)
    for w in weights:
        assert w[labels == 1].sum() == (labels == 1).sum() and w[labels == 0].sum() == (labels == 0).sum()
        repeated = np.repeat(np.arange(300), w.astype(int))
        assert roc_figures(scores, labels, w[None])[0][0] == pytest.approx(
            roc_auc_score(labels[repeated], scores[repeated]))


def _evidence(train, holdout, syn, **settings):
    return SimpleNamespace(train=train, holdout=holdout, syn=syn, schema=_schema(train), seed=0,
                           settings=ScoreConfig(**settings))


def test_the_suite_reports_the_worst_attack_and_every_attack_in_details():
    train, holdout, _ = _sets(300)
    out = membership_suite(_evidence(train, holdout, _noisy(train), attack_rows=250))
    details = out.details["membership"]
    # The attacker holds the whole release (300 rows), up to 8 times score.attack_rows.
    assert out.details["samples"]["membership"] == {"members": 250, "non_members": 250, "reference": 250,
                                                    "synthetic": 300}
    for figure, key in KEYS.items():
        assert out.metrics[key] == max(details["attacks"][a][figure]["estimate"] for a in ATTACKS)
        assert details["attacks"][details["worst"][figure]][figure]["estimate"] == out.metrics[key]
    assert not out.not_judged
    load_families()
    assert SUITES["privacy"].order < SUITES["membership"].order < SUITES["anonymity"].order


def test_a_small_holdout_is_not_judged_and_says_why():
    train, holdout, _ = _sets(100)
    out = membership_suite(_evidence(train, holdout.iloc[:50], train, privacy_min_holdout=200))
    assert all(np.isnan(out.metrics[key]) for key in KEYS.values())
    assert set(out.not_judged) == set(KEYS.values())
    assert "50 holdout rows, fewer than score.privacy_min_holdout (200)" in out.not_judged["privacy.mia_auc"]


def test_ids_are_not_features_and_values_the_reference_lacks_are_placed():
    train, holdout, unseen = _sets(200)
    base = _attack(train, holdout, unseen)
    renamed = unseen.assign(user_id=unseen["user_id"] + 10**6)
    assert _attack(train, holdout, renamed).attacks == base.attacks


def test_values_the_reference_lacks_get_their_own_place():
    train, holdout, unseen = _sets(200)
    holdout = holdout.assign(city=holdout["city"].fillna("Paris"))  # the reference has no null city
    members = train[train["city"].notna()].iloc[[0] * 4].reset_index(drop=True)
    members.loc[1, "city"] = "Brest"  # a city no reference row has
    members.loc[2, "city"] = None  # a null where the reference has none
    members.loc[3, "income"] = "unknown"  # the last column: a value past its block would overrun the row
    members["age"] = members["age"].astype("Int64")
    members.loc[3, "age"] = None
    rows = attack_rows(members, holdout, unseen, rows=5_000, seed=0)
    rows.members = members  # these four rows, in this order
    points = attack_space(rows, _schema(train))["members"]
    gap = lambda i, j: float((points[i] - points[j]).norm())  # noqa: E731
    # One category apart is one one-hot mismatch, sqrt(2), whatever the category.
    assert gap(0, 1) == pytest.approx(2**0.5) and gap(0, 2) == pytest.approx(2**0.5)
    assert gap(1, 2) == pytest.approx(2**0.5)
    assert gap(0, 3) > 2**0.5  # the income block and the age's missing slot
