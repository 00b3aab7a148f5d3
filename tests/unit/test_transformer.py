import numpy as np
import pandas as pd
import pytest

from pipeline.models.transformer import TableTransformer
from pipeline.schema import TableSchema, describe, infer_kind
from tests.conftest import tiny_frame


def _schema(df: pd.DataFrame) -> TableSchema:
    return TableSchema([describe(df[c], infer_kind(df[c])) for c in df.columns])


def test_round_trip_exact_for_categories_integers_dates_and_nulls():
    df = tiny_frame(500)
    schema = _schema(df)
    tf = TableTransformer(schema, knots=201).fit(df)
    data = tf.transform(df, np.random.default_rng(0))
    assert data.dtype == np.float32 and data.shape == (500, tf.width)
    back = tf.inverse_transform(data, np.random.default_rng(0))
    assert "user_id" not in back.columns  # IDs are not modelled
    for col in ("age", "gain", "city", "member", "joined", "income"):
        pd.testing.assert_series_equal(back[col], df[col], check_names=False)
    assert back["score"].isna().equals(df["score"].isna())


def test_continuous_values_reconstructed_within_knot_spacing():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"x": rng.lognormal(0, 1, 5000)})
    tf = TableTransformer(_schema(df), knots=1001).fit(df)
    back = tf.inverse_transform(tf.transform(df, rng), rng)["x"].to_numpy()
    err = np.abs(back - df["x"].to_numpy())
    iqr = np.subtract(*np.percentile(df["x"], [75, 25]))
    assert np.median(err) < 1e-6 * iqr and err.max() < 0.05 * iqr


def test_spikes_map_to_smooth_normal_and_back_exactly():
    rng = np.random.default_rng(2)
    x = np.where(rng.random(4000) < 0.9, 0, rng.integers(100, 10_000, 4000))
    df = pd.DataFrame({"gain": x})
    tf = TableTransformer(_schema(df)).fit(df)
    z = tf.transform(df, rng)[:, 0] * 5
    # the 90% spike at 0 is spread, not a point mass
    assert np.unique(z[x == 0]).size > 3000 and abs(z.mean()) < 0.1 and abs(z.std() - 1) < 0.1
    # any level inside the spike's interval maps back to exactly 0
    codes = np.zeros((1000, tf.width), dtype=np.float32)
    codes[:, 0] = np.linspace(-0.9, 0.2, 1000)
    assert (tf.inverse_transform(codes, rng)["gain"] == 0).mean() > 0.6


def test_rare_categories_share_an_other_slot_and_come_back_as_real_values():
    values = ["a"] * 50 + ["b"] * 30 + [f"rare{i}" for i in range(20)]
    df = pd.DataFrame({"c": values})
    tf = TableTransformer(_schema(df), max_categories=3).fit(df)
    assert tf.width == 3  # a, b, other
    onehot = np.zeros((200, 3), dtype=np.float32)
    onehot[:, 2] = 1
    back = tf.inverse_transform(onehot, np.random.default_rng(0))["c"]
    assert set(back) <= {f"rare{i}" for i in range(20)} and back.nunique() > 5


def test_state_is_json_and_rebuilds_the_same_transform():
    import json

    df = tiny_frame(300)
    schema = _schema(df)
    tf = TableTransformer(schema, knots=51).fit(df)
    clone = TableTransformer.from_state(schema, json.loads(json.dumps(tf.state())))
    data = tf.transform(df, np.random.default_rng(3))
    pd.testing.assert_frame_equal(tf.inverse_transform(data, np.random.default_rng(4)),
                                  clone.inverse_transform(data, np.random.default_rng(4)))
    assert clone.spans == tf.spans


@pytest.mark.parametrize("dtype", ["int64", "Int64", "float64"])
def test_integer_dtypes_survive(dtype):
    s = pd.Series([1, 2, 3, 4, 5] * 20, dtype=dtype, name="n")
    if dtype == "Int64":
        s[::7] = pd.NA
    df = s.to_frame()
    tf = TableTransformer(_schema(df), knots=11).fit(df)
    back = tf.inverse_transform(tf.transform(df, np.random.default_rng(0)), np.random.default_rng(0))
    assert str(back["n"].dtype) == dtype
    pd.testing.assert_series_equal(back["n"], s, check_names=False)


def test_synthetic_numbers_keep_the_real_decimals_and_old_states_load_as_before():
    import json

    rng = np.random.default_rng(6)
    df = pd.DataFrame({"amount": np.round(rng.lognormal(3, 1, 400), 2),        # money: 2 decimals
                       "rate": np.round(rng.random(400), 1) + 0.5,             # 1 decimal
                       "weight": np.round(rng.normal(70, 9, 400)).astype(float),  # whole numbers as floats
                       "noise": rng.normal(0, 1e-3, 400)})                     # full precision
    schema = TableSchema([describe(df[c], "continuous") for c in df.columns])  # weight declared continuous
    tf = TableTransformer(schema, knots=101).fit(df)
    assert [c["decimals"] for c in tf.columns] == [2, 1, 0, None]
    codes = np.random.default_rng(7).uniform(-0.6, 0.6, (2000, tf.width)).astype(np.float32)
    back = tf.inverse_transform(codes, np.random.default_rng(0))
    for col, places in (("amount", 2), ("rate", 1), ("weight", 0)):
        scaled = back[col].to_numpy() * 10**places
        assert np.allclose(scaled, np.round(scaled), rtol=0, atol=1e-6), col
    assert back["amount"].nunique() > 500  # rounded, not snapped onto a few values
    assert (np.abs(back["noise"] * 1e6 - np.round(back["noise"] * 1e6)) > 1e-3).mean() > 0.9  # not rounded
    state = json.loads(json.dumps(tf.state()))
    for c in state["columns"]:
        c.pop("decimals")  # a model saved before decimals were kept
    old = TableTransformer.from_state(tf.schema, state).inverse_transform(codes, np.random.default_rng(0))
    assert (np.abs(old["amount"] * 100 - np.round(old["amount"] * 100)) > 1e-6).mean() > 0.9
    assert TableTransformer.from_state(tf.schema, state).grid("amount") is None and tf.grid("amount") == 2
