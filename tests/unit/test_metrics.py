"""Our fidelity metrics against the reference implementation (the sdmetrics package)."""

import warnings

import numpy as np
import pandas as pd
import pytest

from pipeline.config import Threshold
from pipeline.metrics import evaluate_gate
from pipeline.metrics.fidelity import score_fidelity
from pipeline.metrics.privacy import exact_match_rate
from pipeline.metrics.utility import score_utility
from pipeline.schema import DISCRETE_KINDS, TableSchema, describe, infer_kind
from tests.conftest import ADULT, tiny_frame

SDTYPE = {"continuous": "numerical", "integer": "numerical", "datetime": "datetime",
          "categorical": "categorical", "boolean": "boolean", "id": "id"}


def _schema(df):
    return TableSchema([describe(df[c], infer_kind(df[c])) for c in df.columns])


def _perturb(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """A 'synthetic' table: some columns shuffled (pairs broken), some noised, some nulls moved."""
    rng = np.random.default_rng(seed)
    out = df.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    cols = list(df.columns)
    for c in cols[::3]:
        out[c] = out[c].sample(frac=1.0, random_state=seed + 1).to_numpy()
    for c in cols:
        if pd.api.types.is_integer_dtype(out[c]) and out[c].nunique() > 20:
            out[c] = out[c] + rng.integers(-3, 4, len(out))
    return out


def _reference(real, syn, schema):
    from sdmetrics.reports.single_table import QualityReport

    md = {"columns": {c.name: {"sdtype": SDTYPE[c.kind]} for c in schema.columns}}
    report = QualityReport()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report.generate(real, syn, md, verbose=False)
    return report


@pytest.mark.parametrize("which", ["adult", "mixed"])
def test_fidelity_matches_sdmetrics_per_column_per_pair_and_overall(which):
    if which == "adult":
        real = pd.read_parquet(ADULT).sample(3000, random_state=0).reset_index(drop=True)
    else:
        real = tiny_frame(2000).drop(columns=["user_id"])
    schema = _schema(real)
    syn = _perturb(real, 1)
    ours = score_fidelity(real, syn, schema)
    ref = _reference(real, syn, schema)

    shapes = ref.get_details("Column Shapes")
    assert len(shapes) == len(ours.columns)
    for _, row in shapes.iterrows():
        assert ours.columns[row["Column"]]["score"] == pytest.approx(row["Score"], abs=1e-9)
    pairs = ref.get_details("Column Pair Trends")
    mine = {tuple(p["columns"]): p for p in ours.pairs}
    assert len(pairs) == len(mine)
    for _, row in pairs.iterrows():
        p = mine[(row["Column 1"], row["Column 2"])]
        assert p["metric"] == row["Metric"]
        assert p["counted"] == bool(row["Meets Threshold?"] is True or row["Meets Threshold?"] == True)  # noqa: E712
        if p["counted"]:
            assert p["score"] == pytest.approx(row["Score"], abs=1e-9)
    props = ref.get_properties().set_index("Property")["Score"]
    assert ours.column_shapes == pytest.approx(props["Column Shapes"], abs=1e-9)
    assert ours.column_pair_trends == pytest.approx(props["Column Pair Trends"], abs=1e-9)
    assert ours.overall == pytest.approx(ref.get_score(), abs=1e-9)
    assert ours.overall < 0.99  # the perturbation is visible: the test can fail


def test_identical_tables_score_one():
    real = tiny_frame(500).drop(columns=["user_id"])
    res = score_fidelity(real, real.copy(), _schema(real))
    assert res.column_shapes == pytest.approx(1.0) and res.overall == pytest.approx(1.0)


def test_a_synthetic_column_of_huge_close_values_or_infinities_is_scored_not_an_error():
    """Pairs bin a numeric column on its own values: a range too narrow at its magnitude for ten
    distinct edges (numpy refuses), or an infinite value, still gets its bins (once a DP run's
    rows stopped the score stage so)."""
    real = tiny_frame(300).drop(columns=["user_id"])
    for values in (1e17 + 16.0 * (np.arange(300) % 3), np.where(np.arange(300) % 7, 30.0, np.inf)):
        syn = real.copy()
        syn["score"] = values
        res = score_fidelity(real, syn, _schema(real))
        assert 0.0 <= res.column_pair_trends <= 1.0 and res.column_shapes < 1.0


def test_real_bins_cut_both_sides_on_the_real_range_as_sdmetrics_contingency_similarity_does():
    """``bins="real"`` scores a mixed pair as SDMetrics' ContingencySimilarity metric does (the real
    values' 10 bins, outer edges open); the default cuts each side on its own range, as the
    QualityReport does. Synthetic rows equal to the real ones but for their extremes (the outer 0.1 %
    pulled in) lose most of the pair's score on their own range and almost none on the real one."""
    from sdmetrics.column_pairs import ContingencySimilarity

    rng = np.random.default_rng(0)
    x = rng.standard_t(3, 4000)  # heavy tails: the extremes set the width of every bin
    real = pd.DataFrame({"x": x, "band": np.where(x + rng.normal(0, 1, 4000) > 0, "hi", "lo")})
    syn = real.assign(x=np.clip(x, np.quantile(x, 0.001), np.quantile(x, 0.999)))
    schema = _schema(real)
    own, on_real = score_fidelity(real, syn, schema), score_fidelity(real, syn, schema, bins="real")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ContingencySimilarity.compute(real, syn, continuous_column_names=["x"])
    assert on_real.pairs[0]["score"] == pytest.approx(ref, abs=1e-9) and ref > 0.99
    assert own.pairs[0]["score"] < 0.5
    assert score_fidelity(real, syn, schema, bins="own").pairs == own.pairs
    with pytest.raises(ValueError, match="bins: 'edges' is not"):
        score_fidelity(real, syn, schema, bins="edges")


def test_exact_match_rate_counts_copied_rows_with_nulls_and_dtypes():
    real = tiny_frame(200)
    cols = [c for c in real.columns if c != "user_id"]
    syn = real.sample(50, random_state=0).reset_index(drop=True)
    syn.loc[:24, "age"] = syn.loc[:24, "age"] + 1000  # half of them no longer match
    syn["age"] = syn["age"].astype("Int64")  # a different integer dtype still matches
    assert exact_match_rate(real, syn, cols) == pytest.approx(0.5)


@pytest.mark.slow  # over a second: the fast tier stays under a minute
def test_utility_tstr_close_to_trtr_when_synthetic_is_real():
    df = tiny_frame(1200)
    schema = _schema(df)
    train, hold = df.iloc[:800], df.iloc[800:]
    copy = score_utility(train, hold, train, schema, "income")
    assert copy.metric == "roc_auc" and copy.tstr == pytest.approx(copy.trtr)
    noise = train.copy()
    noise["income"] = noise["income"].sample(frac=1.0, random_state=0).to_numpy()
    assert score_utility(train, hold, noise, schema, "income").tstr < copy.trtr - 0.1
    reg = score_utility(train, hold, train, schema, "score")
    assert reg.metric == "r2"


@pytest.mark.slow  # over a second: the fast tier stays under a minute
def test_utility_scores_a_release_with_a_numeric_column_left_empty():
    df = tiny_frame(1200)
    schema = _schema(df)
    train, hold = df.iloc[:800], df.iloc[800:]
    num = next(c.name for c in schema.modeled if c.kind not in DISCRETE_KINDS and c.name != "income")
    syn = train.copy()
    syn[num] = np.nan  # e.g. a DP peer's release that kept no value of a column
    without = score_utility(train, hold, train.drop(columns=[num]).assign(**{num: 0}), schema, "income")
    got = score_utility(train, hold, syn, schema, "income")
    assert got.tstr == pytest.approx(without.tstr) and got.trtr == without.trtr


@pytest.mark.slow  # over a second: the fast tier stays under a minute
def test_utility_leaves_out_a_synthetic_class_of_one_row():
    """A DP release emitted one target label of the "other" slot (``_RARE_``) among 32,560 rows,
    and the score stage failed: HistGradientBoosting's early stopping (over 10,000 rows) splits its
    validation part by class and a class of one row cannot be split. That row is left out."""
    rng = np.random.default_rng(0)
    n = 11_000
    x = rng.normal(0, 1, n)
    df = pd.DataFrame({"x": x, "z": rng.normal(0, 1, n), "y": np.where(x + rng.normal(0, 0.5, n) > 0, "hi", "lo")})
    schema = _schema(df)
    train, hold = df.iloc[:10_500], df.iloc[10_500:]
    syn = df.iloc[:10_500].copy()
    syn.loc[0, "y"] = "_RARE_"
    got = score_utility(train, hold, syn, schema, "y")
    assert got.tstr == pytest.approx(score_utility(train, hold, syn.iloc[1:], schema, "y").tstr)
    assert got.tstr > 0.8
    syn["y"] = "hi"  # one class beside the lone row: chance level, as for one class alone
    syn.loc[0, "y"] = "_RARE_"
    assert score_utility(train, hold, syn, schema, "y").tstr == 0.5


def test_gate_checks_min_max_and_missing_keys():
    th = {"quality.overall": Threshold(min=0.8), "privacy.exact_match_rate": Threshold(max=0.01),
          "utility.tstr_score": Threshold(min=0.5)}
    ok, fails = evaluate_gate({"quality.overall": 0.9, "privacy.exact_match_rate": 0.0, "utility.tstr_score": 0.7}, th)
    assert ok and not fails
    ok, fails = evaluate_gate({"quality.overall": 0.7, "privacy.exact_match_rate": 0.2}, th)
    assert not ok and len(fails) == 3 and any("not computed" in f for f in fails)
