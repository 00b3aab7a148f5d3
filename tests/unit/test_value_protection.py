"""Value protection (``pipeline.protection``): rare categories and extreme values of the training
rows are not released as they are, counted per column, the same whatever the worker count."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import ConditionError, ConfigError
from pipeline.models.transformer import TAIL_ROWS, TableTransformer
from pipeline.protection import MARKER, default_k, protection_for
from pipeline.schema import TableSchema, describe
from tests.conftest import tiny_frame

KINDS = {"age": "integer", "score": "continuous", "gain": "integer", "city": "categorical", "member": "boolean",
         "joined": "datetime", "income": "categorical", "grade": "categorical"}


def planted(n: int = 400) -> pd.DataFrame:
    """The tiny table with a rare city in 2 rows, an integer-coded category (``grade``) with a rare
    code in 3 rows, and an age no one else is near (120) in one row."""
    df = tiny_frame(n).drop(columns="user_id")
    df.loc[:1, "city"] = "Atlantis"
    df.loc[2, "age"] = 120
    df["grade"] = np.where(np.arange(n) % 2 == 0, 1, 2)
    df.loc[10:12, "grade"] = 9
    return df


def fitted(df: pd.DataFrame) -> TableTransformer:
    return TableTransformer(TableSchema([describe(df[c], KINDS[c]) for c in df.columns]), knots=101).fit(df)


def kth(values: pd.Series, k: int, largest: bool) -> float:
    """The k-th smallest or largest value, counted directly."""
    ordered = np.sort(values.dropna().to_numpy())
    return ordered[-k] if largest else ordered[k - 1]


def test_default_k_grows_with_the_rows_from_five():
    assert [default_k(n) for n in (10, 2_500, 32_561, 1_000_000)] == [5, 5, 19, 100]
    assert default_k(10**12) == TAIL_ROWS  # never more than the extremes a model records


def test_the_setting_bounds_k_by_the_extremes_a_model_records():
    from pipeline.config import GenerateConfig

    bounds = GenerateConfig.model_fields["value_protection_k"].metadata
    assert [b.le for b in bounds if hasattr(b, "le")] == [TAIL_ROWS]


def test_planted_rare_values_are_never_released_and_counted():
    """The rows a model could make (here the training rows themselves, planted values and all)
    come out with no rare category and no value beyond the k-th from either end."""
    df = planted()
    tf = fitted(df)
    protection = protection_for(tf)
    k = protection.k
    assert k == default_k(len(df)) == 5
    out, marks = protection.apply(df.copy(), np.random.default_rng(0))
    assert "Atlantis" in set(df["city"]) and "Atlantis" not in set(out["city"])
    assert (out["city"] == MARKER).sum() == 2  # text: the marker
    assert 9 not in set(out["grade"]) and set(out["grade"]) == {1, 2}  # integer-coded: redrawn from the common
    assert MARKER not in set(out["income"])  # nothing rare there: untouched
    for col in ("age", "score", "gain", "joined"):
        low, high = kth(df[col], k, largest=False), kth(df[col], k, largest=True)
        assert out[col].min() == low and out[col].max() == high, col
    assert df["age"].max() == 120 and out["age"].max() < 120
    assert list(out.dtypes) == list(df.dtypes)  # the dtypes are the source's

    stats: dict[str, int] = {}
    protection.count(marks, stats)
    record = protection.record(stats)
    cols = record["columns"]
    assert cols["city"] == {"action": "marker", "categories": 1, "replaced": 2}
    assert cols["grade"] == {"action": "redraw", "categories": 1, "replaced": 3}
    for col in ("age", "score", "gain", "joined"):
        low, high = kth(df[col], k, largest=False), kth(df[col], k, largest=True)
        assert cols[col]["clipped_low"] == int((df[col] < low).sum()), col
        assert cols[col]["clipped_high"] == int((df[col] > high).sum()), col
    assert "income" not in cols and "member" not in cols
    same = (out == df) | (out.isna() & df.isna())
    assert record["rows_changed"] == int((~same).any(axis=1).sum())
    assert "Atlantis" not in json.dumps(record)  # the record never names a protected value

    # The same rows without protection keep every planted value (what the model may emit).
    assert {"Atlantis", 9, 120} <= set(df["city"]) | set(df["grade"]) | set(df["age"])


def test_same_seed_same_rows_another_seed_other_redraws():
    df = planted()
    protection = protection_for(fitted(df), k=40)  # grade 9 (3 rows) and Lille (~5% of 400) are rare here
    a, _ = protection.apply(df.copy(), np.random.default_rng([3, 1]))
    b, _ = protection.apply(df.copy(), np.random.default_rng([3, 1]))
    pd.testing.assert_frame_equal(a, b)
    redrawn = df["grade"] == 9
    draws = [tuple(protection.apply(df.copy(), np.random.default_rng(s))[0]["grade"][redrawn]) for s in range(8)]
    assert len(set(draws)) > 1


def test_a_larger_k_protects_more_and_the_setting_names_its_bound():
    df = planted()
    tf = fitted(df)
    small, big = protection_for(tf, k=5), protection_for(tf, k=60)
    changed = [int(p.apply(df.copy(), np.random.default_rng(0))[1].any(axis=1).sum()) for p in (small, big)]
    assert changed[0] < changed[1]
    assert big.record({})["k_from"] == "generate.value_protection_k"
    with pytest.raises(ConfigError, match="generate.value_protection_k"):
        protection_for(fitted(planted(2 * TAIL_ROWS + 200)), k=TAIL_ROWS + 1)


def test_a_column_with_nothing_common_is_withheld():
    """Every category rare (a near-unique column): the marker where the column holds text, else
    missing; fewer than 2k numbers (no cut leaves k on each side): missing."""
    n = 60
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"name": [f"person-{i // 2}" for i in range(n)],  # each name in 2 rows
                       "code": np.arange(n) // 3,  # each integer code in 3 rows
                       "x": np.where(np.arange(n) < 8, rng.normal(0, 1, n), np.nan),  # 8 numbers
                       "kept": rng.choice(["a", "b"], n)})
    kinds = {"name": "categorical", "code": "categorical", "x": "continuous", "kept": "categorical"}
    tf = TableTransformer(TableSchema([describe(df[c], kinds[c]) for c in df.columns])).fit(df)
    protection = protection_for(tf)
    assert protection.k == 5
    out, marks = protection.apply(df.copy(), np.random.default_rng(0))
    assert (out["name"] == MARKER).all()
    assert out["code"].isna().all() and str(out["code"].dtype) == "Int64"  # int64, able to hold missing
    assert out["x"].isna().all()
    pd.testing.assert_series_equal(out["kept"], df["kept"])
    stats: dict[str, int] = {}
    protection.count(marks, stats)
    cols = protection.record(stats)["columns"]
    assert cols["name"] == {"action": "withhold", "categories": n // 2, "as": MARKER, "replaced": n}
    assert cols["code"]["as"] == "missing" and cols["code"]["replaced"] == n
    assert cols["x"] == {"action": "withhold", "as": "missing", "replaced": 8}  # its missing values stay missing


def test_old_model_state_is_refused_in_one_line_and_decodes_as_before():
    """A transformer saved before it kept the counts: protection refuses (naming the setting and
    the fixes); the transform and its inverse are the same bytes as a new one's."""
    df = planted()
    tf = fitted(df)
    state = json.loads(json.dumps(tf.state()))
    state.pop("rows")
    for c in state["columns"]:
        for key in ("counts", "low", "high", "finite_rows"):
            c.pop(key, None)
    old = TableTransformer.from_state(tf.schema, state)
    with pytest.raises(ConfigError, match="generate.value_protection") as err:
        protection_for(old)
    assert "retrain" in str(err.value) and "value_protection=false" in str(err.value) and "\n" not in str(err.value)
    codes = tf.transform(df, np.random.default_rng(0))
    assert np.array_equal(codes, old.transform(df, np.random.default_rng(0)))
    pd.testing.assert_frame_equal(tf.inverse_transform(codes, np.random.default_rng(1)),
                                  old.inverse_transform(codes, np.random.default_rng(1)))


def test_the_transformer_records_counts_and_extremes():
    df = planted()
    tf = fitted(df)
    by_name = {c["name"]: c for c in tf.state()["columns"]}
    assert tf.state()["rows"] == len(df)
    city = by_name["city"]
    assert dict(zip(city["categories"], city["counts"])) == df["city"].value_counts().to_dict()
    age = by_name["age"]
    assert age["low"][0] == [float(df["age"].min()), int((df["age"] == df["age"].min()).sum())]
    assert age["high"][0] == [120.0, 1]
    assert sum(c for _, c in age["low"]) == min(TAIL_ROWS, len(df))  # every value, up to TAIL_ROWS of them
    assert math.isclose(by_name["score"]["finite_rows"], df["score"].notna().sum())


# -- with a trained model -------------------------------------------------------------------------


def _trained(cfg):
    from pipeline.artifacts import StagePaths
    from pipeline.models.saved import load_model

    return load_model(StagePaths.of(cfg.work_dir, "tiny").model)


def _city_rare_k(loaded) -> int:
    """A k at which the commonest city but one is rare (a value the model makes often)."""
    city = next(c for c in loaded.transformer.columns if c["name"] == "city")
    return sorted(city["counts"])[-2] + 1


def test_sampled_rows_are_protected_and_counted_on_every_path(scored_tiny):
    """The fast path and the redraw path (training copies excluded) count exactly the rows they
    return changed; a condition on a protected value is refused in one line."""
    from pipeline.sampling import sample_frame

    loaded = _trained(scored_tiny)
    protection = protection_for(loaded.transformer, k=_city_rare_k(loaded))
    rare = protection.rules[[r.column for r in protection.rules].index("city")].rare
    plain = sample_frame(loaded, 300, seed=2)
    assert plain["city"].isin(rare).any()  # the model does make them
    for exclude in (None, np.array([1, 2, 3], dtype=np.uint64)):
        stats: dict[str, int] = {}
        rows = sample_frame(loaded, 300, seed=2, exclude=exclude, stats=stats, protection=protection)
        assert not rows["city"].isin(rare).any()
        assert stats["value_protection:replaced:city"] == (rows["city"] == MARKER).sum() > 0
        assert list(rows.dtypes) == list(plain.dtypes)
    with pytest.raises(ConditionError, match="generate.value_protection") as err:
        sample_frame(loaded, 10, seed=2, conditions={"city": sorted(rare)[0]}, protection=protection)
    assert "\n" not in str(err.value)
    kept = sample_frame(loaded, 20, seed=2, conditions={"income": ">50K"}, protection=protection)
    assert (kept["income"] == ">50K").all()


def test_generate_records_protection_and_refuses_an_old_model(scored_tiny):
    """_generated.json says k and the counts; off, the rows are as before protection existed; a
    model saved without the counts fails in one line unless protection is off."""
    from pipeline import generate
    from pipeline.artifacts import StagePaths
    from pipeline.files import read_json

    paths = StagePaths.of(scored_tiny.work_dir, "tiny")
    scored_tiny.generate.rows = 120
    generate.run(scored_tiny, "tiny")
    record = read_json(paths.generated)["value_protection"]
    assert record["enabled"] and record["k"] == default_k(record["training_rows"])
    assert record["rows_changed"] > 0 and set(record["columns"]) >= {"age", "score"}
    on = pd.read_parquet(paths.synthetic)
    scored_tiny.generate.value_protection = False
    generate.run(scored_tiny, "tiny")
    assert read_json(paths.generated)["value_protection"] == {"enabled": False}
    off = pd.read_parquet(paths.synthetic)
    assert list(on.dtypes) == list(off.dtypes) and not on.equals(off)

    info = read_json(paths.model / "model.json")
    info["transformer"].pop("rows")
    (paths.model / "model.json").write_text(json.dumps(info))
    generate.run(scored_tiny, "tiny")  # off: an old model generates as it always did
    pd.testing.assert_frame_equal(pd.read_parquet(paths.synthetic), off)
    scored_tiny.generate.value_protection = True
    with pytest.raises(ConfigError, match="retrain it, or set generate.value_protection=false"):
        generate.run(scored_tiny, "tiny")


def test_the_python_api_protects_too(scored_tiny):
    from pipeline import generate

    loaded = _trained(scored_tiny)
    scored_tiny.generate.value_protection_k = _city_rare_k(loaded)
    rare = protection_for(loaded.transformer, scored_tiny.generate.value_protection_k).rules
    rare = next(r.rare for r in rare if r.column == "city")
    assert not generate.sample(scored_tiny, "tiny", 200)["city"].isin(rare).any()
    scored_tiny.generate.value_protection = False
    assert generate.sample(scored_tiny, "tiny", 200)["city"].isin(rare).any()


@pytest.mark.slow  # a scoring with the report, then a publish: ~6 s
def test_the_release_card_and_report_say_what_was_protected(scored_tiny):
    """The rows of the scored tiny run were generated with protection on (the default): the score
    report and the release's data card say k and the rows changed, as _generated.json has them."""
    from pipeline import publish, score
    from pipeline.artifacts import StagePaths
    from pipeline.files import read_json
    from pipeline.release.layout import DATACARD, MANIFEST

    paths = StagePaths.of(scored_tiny.work_dir, "tiny")
    record = read_json(paths.generated)["value_protection"]
    scored_tiny.score.report = True
    score.run(scored_tiny, "tiny")
    assert "<h2>Value protection</h2>" in (paths.score / "report.html").read_text()
    assert f"k = {record['k']}" in (paths.score / "report.md").read_text()
    release = publish.run(scored_tiny, "tiny").path
    assert json.loads((release / MANIFEST).read_text())["value_protection"] == record
    card = (release / DATACARD).read_text()
    assert "## Value protection" in card and f"Rows changed: {record['rows_changed']:,} of 250" in card


def test_the_protection_text_names_k_columns_and_counts():
    from pipeline.report import value_protection_text

    record = {"enabled": True, "k": 19, "k_from": "max(5, ceil(sqrt(32,561 training rows) / 10))",
              "training_rows": 32561, "rows_changed": 40,
              "columns": {"native-country": {"action": "marker", "categories": 3, "replaced": 12},
                          "capital-gain": {"action": "clip", "range": [0, 41310], "clipped_low": 0,
                                           "clipped_high": 28}}}
    text = value_protection_text(record, 32561)
    assert "k = 19" in text and "40 of 32,561" in text
    assert "native-country 12 replaced by _RARE_ (3 categories)" in text and "capital-gain 28 clipped high" in text
    assert "off" in value_protection_text({"enabled": False})
    assert value_protection_text(None) is None


@pytest.mark.slow
def test_counts_are_the_same_whatever_the_worker_count(scored_tiny):
    from pipeline import generate
    from pipeline.artifacts import StagePaths
    from pipeline.files import read_json

    paths = StagePaths.of(scored_tiny.work_dir, "tiny")
    scored_tiny.generate.rows, scored_tiny.generate.rows_per_shard = 300, 100
    scored_tiny.generate.value_protection_k = 12
    records = []
    for workers in (1, 2):
        scored_tiny.generate.workers = workers
        generate.run(scored_tiny, "tiny")
        gen = read_json(paths.generated)
        records.append((gen["value_protection"], gen["data_hash"]))
    assert records[0] == records[1] and records[0][0]["rows_changed"] > 0
