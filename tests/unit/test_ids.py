"""Identifier columns (``pipeline.ids``, ``schema.infer_kind``): keys that repeat are IDs too, fresh
IDs keep the real values' format, and none is a real value."""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd
import pytest

from pipeline import generate, ingest, train
from pipeline.artifacts import StagePaths, load_prepared
from pipeline.ids import counter_number, format_ids, fresh_ids, id_stats, key_of_rows, learn_format
from pipeline.metrics.privacy import privacy_suite, real_id_rate, real_ids_released
from pipeline.modalities.table import evidence
from pipeline.schema import TableSchema, describe, doubtful_id, infer_kind
from tests.conftest import tiny_config

ORDER = re.compile(r"ORD-\d{8}")
CUSTOMER = re.compile(r"C\d{6}")


def orders(n: int = 2_000, customers: int = 600, seed: int = 0) -> pd.DataFrame:
    """Orders with a unique formatted order_id and a customer_id that repeats (600 customers)."""
    rng = np.random.default_rng(seed)
    numbers = rng.choice(np.arange(1, 3 * customers), customers, replace=False)
    who = np.concatenate([np.arange(customers), rng.choice(customers, n - customers, p=_zipf(customers))])
    rng.shuffle(who)
    return pd.DataFrame({
        "order_id": [f"ORD-{v:08d}" for v in rng.choice(np.arange(100_000, 120_000), n, replace=False)],
        "customer_id": np.array([f"C{v:06d}" for v in numbers], dtype=object)[who],
        "amount": np.round(rng.lognormal(3, 0.5, n), 2),
        "status": rng.choice(["paid", "shipped", "returned"], n, p=[0.5, 0.45, 0.05]),
    })


def _zipf(k: int) -> np.ndarray:
    w = 1.0 / np.arange(1, k + 1) ** 0.8
    return w / w.sum()


def test_a_repeating_key_and_a_formatted_id_are_ids():
    df = orders()
    assert df["customer_id"].nunique() == 600 and not df["customer_id"].is_unique
    assert {c: infer_kind(df[c]) for c in df.columns} == {
        "order_id": "id", "customer_id": "id", "amount": "continuous", "status": "categorical"}
    ints = pd.Series(np.random.default_rng(1).integers(1, 500, 2_000), name="customer_id")
    assert infer_kind(ints) == "id"  # named like an ID, many values: a key, not a number


def test_many_valued_integers_without_a_name_stay_numbers():
    # Adult's fnlwgt: 21,648 values in 32,561 rows, a measurement.
    weights = pd.Series(np.random.default_rng(2).integers(10_000, 1_500_000, 30_000), name="fnlwgt")
    assert weights.nunique() > 0.5 * len(weights) and infer_kind(weights) == "integer"
    assert not doubtful_id(weights, "integer")
    amounts = pd.Series(np.random.default_rng(3).integers(0, 5_000, 2_000).astype(str), name="amount")
    assert infer_kind(amounts) == "integer"


def test_text_of_many_values_is_an_id_and_fewer_is_a_doubt():
    rng = np.random.default_rng(4)
    many = pd.Series([f"r{v}" for v in rng.integers(0, 4_000, 3_000)], name="ref")  # ~2,100 values
    assert infer_kind(many) == "id"
    some = pd.Series([f"r{v}" for v in rng.integers(0, 300, 2_000)], name="ref")  # 300 values, no hint
    assert infer_kind(some) == "categorical" and doubtful_id(some, "categorical")
    few = pd.Series(rng.choice(["a", "b", "c"], 2_000), name="ref")
    assert not doubtful_id(few, "categorical")
    mails = pd.Series([f"p{v}@mail.test" for v in rng.integers(0, 400, 2_000)], name="contact")
    assert infer_kind(mails) == "id"  # e-mail addresses: an identifier whatever the column's name


def test_a_doubtful_column_is_one_warning_naming_column_types(tmp_path, caplog):
    df = orders()
    df["ref"] = [f"r{v}" for v in np.random.default_rng(5).integers(0, 300, len(df))]
    source = tmp_path / "orders.csv"
    df.to_csv(source, index=False)
    caplog.set_level(logging.WARNING, logger="pipeline")
    ingest.run(tiny_config(tmp_path, source, target=None), "tiny")
    lines = [r.getMessage() for r in caplog.records if "column_types" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "column ref:" in lines[0] and "datasets.tiny.column_types: {ref: id}" in lines[0]


def test_formats_are_learned_and_kept():
    rng = np.random.default_rng(6)
    real = pd.Series([f"ORD-{v:08d}" for v in rng.choice(np.arange(100_000, 130_000), 500, replace=False)])
    fmt = learn_format(real)
    assert fmt["parts"] == [["text", "ORD"], ["text", "-"], ["digits", 8, 8]]
    assert fmt["max"] == real.str[4:].astype(int).max()
    made = format_ids(fmt, np.arange(1_000), rng)
    assert all(ORDER.fullmatch(v) for v in made) and not set(made) & set(real)
    uuids = pd.Series(["0f8fad5b-d9cb-469f-a165-70867728950e", "7c9e6679-7425-40de-944b-e07fc1f90ae7"] * 6)
    made = format_ids(learn_format(uuids), np.arange(5), rng)
    assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", v) for v in made)
    mails = format_ids(learn_format(pd.Series(["ann@corp.com", "bob.k@mail.org"])), np.arange(3), rng)
    assert list(mails) == ["user1@example.invalid", "user2@example.invalid", "user3@example.invalid"]
    hexes = pd.Series(["3fa9c07b", "a3f90c1e", "0b7d3e9f"])
    made = format_ids(learn_format(hexes), np.arange(3), rng)
    assert all(re.fullmatch(r"[0-9a-f]{8}", v) for v in made) and not set(made) & set(hexes)
    assert learn_format(pd.Series(["alpha", "beta-7", "x_y"])) is None  # no shared format: syn-<n>
    assert list(format_ids(None, np.arange(2), rng)) == ["syn-000000000", "syn-000000001"]


def test_fresh_counters_go_below_the_real_ones_when_above_is_full():
    # Real counters 90..99 of a 2-digit block: 0..89 are free, and only then a wider counter.
    fmt = learn_format(pd.Series([f"A{v}" for v in range(90, 100)]))
    made = [counter_number(fmt, k) for k in range(91)]
    assert made[:90] == list(range(89, -1, -1)) and made[90] == 100
    assert all(re.fullmatch(r"A\d{2}", v) for v in format_ids(fmt, np.arange(90), np.random.default_rng(0)))


def test_a_repeating_key_keeps_its_rows_per_key():
    real = orders()["customer_id"]
    col = describe(real, "id")
    assert col.stats == id_stats(real) and sum(r * k for r, k in col.stats["per_key"]) == len(real)
    keys = key_of_rows(col.stats["per_key"], 5_000, 2_000, np.random.default_rng(0))
    assert len(keys) == 2_000 and keys.min() >= 5_000 and keys.max() < 7_000  # within its rows' range
    made = fresh_ids(col, 5_000, 2_000, np.random.default_rng(0))
    per_key = made.value_counts()
    assert 400 < len(per_key) < 900 and per_key.max() > 5  # about the real 600 keys, some with many rows
    assert made.map(CUSTOMER.fullmatch).all() and not made.isin(set(real)).any()
    unique = describe(pd.Series(np.arange(100, 140), name="n"), "id")
    assert unique.stats == {"max": 139}  # a unique ID's stats as before: fresh ones count up from 140
    assert list(fresh_ids(unique, 0, 3, np.random.default_rng(0))) == [140, 141, 142]


@pytest.mark.slow  # ~2 s: ingest, train, generate, score
def test_no_real_id_is_released_end_to_end(tmp_path):
    real = orders()
    source = tmp_path / "orders.csv"
    real.to_csv(source, index=False)
    cfg = tiny_config(tmp_path, source, target=None)
    cfg.train.epochs, cfg.train.max_rows, cfg.generate.rows, cfg.generate.rows_per_shard = 1, 200, 600, 300
    cfg.score.privacy_rows = 200
    for stage in (ingest, train, generate):
        stage.run(cfg, "tiny")
    paths = StagePaths.of(cfg.work_dir, "tiny")
    _, _, schema, _ = load_prepared(paths)
    assert schema["order_id"].kind == schema["customer_id"].kind == "id"
    syn = pd.read_parquet(paths.synthetic)
    assert syn["order_id"].map(ORDER.fullmatch).all() and syn["order_id"].is_unique
    assert syn["customer_id"].map(CUSTOMER.fullmatch).all() and syn["customer_id"].value_counts().max() > 1
    assert not syn["order_id"].isin(real["order_id"]).any() and not syn["customer_id"].isin(real["customer_id"]).any()
    result = privacy_suite(evidence(cfg, "tiny", paths))
    assert result.metrics["privacy.real_id_rate"] == 0
    assert result.details["real_ids_released"]["customer_id"] == {"released": 0, "values": 600}


def test_the_audit_counts_real_ids_released():
    real = pd.DataFrame({"customer_id": ["C1", "C2", "C2", "C3"], "n": [1, 2, 3, 4]})
    holdout = pd.DataFrame({"customer_id": ["C9"], "n": [5]})
    syn = pd.DataFrame({"customer_id": ["C2", "C9", "X1", None], "n": [7, 8, 9, 10]})
    released = real_ids_released([real, holdout], syn, ["customer_id", "n"])
    assert released == {"customer_id": {"released": 2, "values": 3}, "n": {"released": 0, "values": 4}}
    assert real_id_rate(released) == 2 / 7


def test_an_integer_key_with_empty_cells_stays_integer_and_keeps_its_nulls(tmp_path):
    rng = np.random.default_rng(7)
    key = rng.integers(1, 400, 1_000).astype(float)
    key[rng.random(1_000) < 0.1] = np.nan
    source = tmp_path / "t.csv"
    pd.DataFrame({"customer_id": pd.array(key, dtype="Int64"), "x": rng.normal(size=1_000)}).to_csv(source, index=False)
    cfg = tiny_config(tmp_path, source, target=None)
    ingest.run(cfg, "tiny")
    col = load_prepared(StagePaths.of(cfg.work_dir, "tiny"))[2]["customer_id"]
    assert (col.kind, col.dtype, col.stats["max"]) == ("id", "Int64", 399)
    made = fresh_ids(col, 0, 2_000, np.random.default_rng(0))
    assert str(made.dtype) == "Int64" and made.min() > 399 and 0.05 < made.isna().mean() < 0.15


def test_a_streamed_source_counts_its_keys_and_counters_over_every_row(tmp_path):
    real = orders()
    source = tmp_path / "orders.parquet"
    real.to_parquet(source, index=False)
    cfg = tiny_config(tmp_path, source, target=None)
    cfg.ingest.stream_rows, cfg.ingest.batch_rows, cfg.ingest.sample_rows = 0, 700, 500  # types from 500 rows
    ingest.run(cfg, "tiny")
    schema = load_prepared(StagePaths.of(cfg.work_dir, "tiny"))[2]
    whole = id_stats(real["customer_id"])
    assert schema["customer_id"].stats["per_key"] == whole["per_key"]
    assert schema["customer_id"].stats["format"]["max"] == whole["format"]["max"]
    assert schema["order_id"].stats["format"]["max"] == id_stats(real["order_id"])["format"]["max"]


def test_a_real_id_threshold_is_skipped_for_a_table_without_ids(tmp_path):
    from pipeline.config import Threshold
    from pipeline.metrics import judge
    from pipeline.modalities.table import TableEvidence

    frame = pd.DataFrame({"status": ["paid", "shipped"] * 20, "amount": np.linspace(0.5, 9.5, 40)})
    schema = TableSchema([describe(frame[c], infer_kind(frame[c])) for c in frame.columns])
    settings = tiny_config(tmp_path, tmp_path / "x.csv").score
    settings.thresholds = {"privacy.real_id_rate": Threshold(max=0)}
    ev = TableEvidence("t", None, frame, frame.iloc[:0], frame, schema, None, "auto", settings, 0, len(frame), False)
    result = privacy_suite(ev)
    assert "privacy.real_id_rate" not in result.metrics and "privacy.real_id_rate" in result.not_judged
    assert judge({**result.metrics, "gate.not_judged": result.not_judged}, settings.thresholds)["gate.passed"]
