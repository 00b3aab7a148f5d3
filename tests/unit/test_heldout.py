"""Fidelity against the held-out rows: a copy of the training rows scores the baseline exactly (also
when both sides are sampled), rows that know only each column's values score lower pair trends,
equal rows a side, the pairs counted are the training rows' associated ones, and no holdout is not
judged."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from pipeline.config import ScoreConfig
from pipeline.metrics import heldout
from pipeline.metrics.fidelity import score_fidelity
from pipeline.metrics.heldout import heldout_suite
from pipeline.schema import TableSchema, describe, infer_kind
from tests.conftest import tiny_frame

KEYS = ("quality.column_pair_trends_holdout", "quality.column_pair_trends_holdout_real",
        "quality.column_shapes_holdout", "quality.column_shapes_holdout_real")


def _schema(df):
    return TableSchema([describe(df[c], infer_kind(df[c])) for c in df.columns])


def _evidence(train, holdout, syn, seed=0):
    return SimpleNamespace(train=train, holdout=holdout, syn=syn, schema=_schema(train), seed=seed,
                           settings=ScoreConfig())


def _split(n=1200):
    frame = tiny_frame(n, seed=3)
    return frame.iloc[: n * 3 // 4].reset_index(drop=True), frame.iloc[n * 3 // 4:].reset_index(drop=True)


def test_a_copy_of_the_training_rows_scores_its_baseline_exactly():
    train, holdout = _split()
    out = heldout_suite(_evidence(train, holdout, train.copy()))
    m = out.metrics
    assert m["quality.column_pair_trends_holdout"] == m["quality.column_pair_trends_holdout_real"]
    assert m["quality.column_shapes_holdout"] == m["quality.column_shapes_holdout_real"]
    # the fidelity family's figures with the holdout as the real side, over the pairs the training rows count
    schema = _schema(train)
    counted = {tuple(p["columns"]) for p in score_fidelity(train, train, schema).pairs if p["counted"]}
    fid = score_fidelity(holdout, train, schema, bins="real")
    assert m["quality.column_pair_trends_holdout_real"] == pytest.approx(
        np.mean([p["score"] for p in fid.pairs if tuple(p["columns"]) in counted]))
    assert m["quality.column_shapes_holdout_real"] == pytest.approx(fid.column_shapes)
    assert out.details["samples"]["heldout_fidelity"] == {"holdout": len(holdout), "rows_per_side": len(train),
                                                          "pairs_counted": len(counted)}
    assert counted and not out.not_judged


def test_a_copy_scores_its_baseline_exactly_when_both_sides_are_sampled(monkeypatch):
    """Above MAX_ROWS rows both sides are sampled: with one draw for both, a row-for-row copy of the
    training rows is the same sample of them (with a draw each it scored 0.8995 against 0.9071)."""
    monkeypatch.setattr(heldout, "MAX_ROWS", 300)
    train, holdout = _split()
    out = heldout_suite(_evidence(train, holdout, train.copy(), seed=5))
    m = out.metrics
    assert out.details["samples"]["heldout_fidelity"]["rows_per_side"] == 300
    assert m["quality.column_pair_trends_holdout"] == m["quality.column_pair_trends_holdout_real"]
    assert m["quality.column_shapes_holdout"] == m["quality.column_shapes_holdout_real"]


def test_the_pairs_counted_are_those_associated_in_the_training_rows_not_in_a_small_holdout():
    """Cramér's V is biased upwards on few rows: on 40 held-out rows an independent 10-category column
    reads well over the 0.3 threshold against a number, so counting the holdout's associated pairs
    would count nearly every mixed pair. Counted on the training rows, only the associated pair is."""
    rng = np.random.default_rng(2)
    n = 1040
    x = rng.normal(size=n)
    frame = pd.DataFrame({"x": x, "y": x + rng.normal(scale=0.3, size=n),  # associated
                          "city": rng.choice(list("abcdefghij"), n), "z": rng.normal(size=n)})  # independent
    train, holdout = frame.iloc[:1000].reset_index(drop=True), frame.iloc[1000:].reset_index(drop=True)
    schema = _schema(train)
    in_holdout = [p["columns"] for p in score_fidelity(holdout, train, schema).pairs if p["counted"]]
    assert ["city", "z"] in in_holdout or ["x", "city"] in in_holdout  # the small holdout's bias
    out = heldout_suite(_evidence(train, holdout, train.copy()))
    assert out.details["samples"]["heldout_fidelity"]["pairs_counted"] == 1  # x with y only
    fid = score_fidelity(holdout, train, schema, bins="real")
    only = [p["score"] for p in fid.pairs if p["columns"] == ["x", "y"]]
    assert out.metrics["quality.column_pair_trends_holdout_real"] == pytest.approx(only[0])


def test_no_associated_pair_leaves_the_pair_trends_not_judged():
    train, holdout = _split()
    one = train[["age"]]  # one column: no pair at all
    out = heldout_suite(_evidence(one, holdout[["age"]], one.copy()))
    assert math.isnan(out.metrics["quality.column_pair_trends_holdout"])
    assert set(out.not_judged) == {"quality.column_pair_trends_holdout", "quality.column_pair_trends_holdout_real"}
    assert not math.isnan(out.metrics["quality.column_shapes_holdout"])


def test_rows_that_know_only_each_columns_values_score_lower_pair_trends():
    train, holdout = _split()
    rng = np.random.default_rng(1)
    marginals = train.apply(lambda col: col.sample(frac=1.0, random_state=int(rng.integers(1 << 30))).to_numpy())
    m = heldout_suite(_evidence(train, holdout, marginals)).metrics
    assert m["quality.column_pair_trends_holdout"] < m["quality.column_pair_trends_holdout_real"] - 0.05
    # each column's values unchanged: its shape is the training rows' own
    assert m["quality.column_shapes_holdout"] == pytest.approx(m["quality.column_shapes_holdout_real"])


def test_both_sides_are_compared_on_as_many_rows():
    train, holdout = _split()
    bigger = train.sample(n=len(train) * 3, replace=True, random_state=0).reset_index(drop=True)
    out = heldout_suite(_evidence(train, holdout, bigger))
    assert out.details["samples"]["heldout_fidelity"]["rows_per_side"] == len(train)
    smaller = train.iloc[:200]
    out = heldout_suite(_evidence(train, holdout, smaller))
    assert out.details["samples"]["heldout_fidelity"]["rows_per_side"] == 200
    # the training side sampled to 200 rows too: its baseline is not the full training rows' figure
    full = score_fidelity(holdout, train, _schema(train), bins="real").column_shapes
    assert out.metrics["quality.column_shapes_holdout_real"] != pytest.approx(full)


def test_no_holdout_is_not_judged():
    train, holdout = _split()
    out = heldout_suite(_evidence(train, holdout.iloc[:1], train))
    assert all(math.isnan(out.metrics[k]) for k in KEYS)
    assert set(out.not_judged) == set(KEYS) and "1 holdout rows" in out.not_judged[KEYS[0]]


def test_a_number_is_cut_on_the_held_out_rows_bins_so_clipped_extremes_do_not_empty_a_pair():
    """Value protection clips a small table's rarest values (tips' party sizes 1 and 6 become 2 and 5):
    cut on its own range, every clipped value lands in another bin than the held-out rows' same value,
    and a pair with it scored about 0.04 on tips. On the held-out rows' bins it scores near the
    training rows' own."""
    rng = np.random.default_rng(0)
    n = 800
    kind = rng.choice(["a", "b"], n)
    size = np.where(kind == "a", rng.choice([1, 2, 3], n, p=[0.03, 0.67, 0.30]),
                    rng.choice([3, 4, 5, 6], n, p=[0.30, 0.40, 0.27, 0.03]))  # 1 and 6 rare
    frame = pd.DataFrame({"kind": kind, "size": size})
    train, holdout = frame.iloc[:600].reset_index(drop=True), frame.iloc[600:].reset_index(drop=True)
    clipped = train.assign(size=train["size"].clip(2, 5))
    m = heldout_suite(_evidence(train, holdout, clipped)).metrics
    assert m["quality.column_pair_trends_holdout_real"] > 0.8
    assert m["quality.column_pair_trends_holdout"] > m["quality.column_pair_trends_holdout_real"] - 0.05
    # each side on its own range (the QualityReport's cut) the same rows score far lower
    own = score_fidelity(holdout, clipped, _schema(train)).column_pair_trends
    assert own < m["quality.column_pair_trends_holdout"] - 0.3
