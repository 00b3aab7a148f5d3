"""Types survive the whole pipeline, compared with the *source* file (not the prepared copy)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import generate, ingest, sampling, train
from pipeline.artifacts import StagePaths
from tests.conftest import tiny_config


def _run(cfg, rows=300, shard=100) -> Path:
    cfg.generate.rows, cfg.generate.rows_per_shard = rows, shard
    ingest.run(cfg, "tiny")
    train.run(cfg, "tiny")
    generate.run(cfg, "tiny")
    return StagePaths.of(cfg.work_dir, "tiny").synthetic


def test_arrow_written_parquet_keeps_every_arrow_type(tmp_path):
    """A Parquet file from pyarrow/Spark (no pandas metadata): nullable ints, us/tz timestamps."""
    n = 200
    rng = np.random.default_rng(0)
    days = rng.integers(0, 1000, n)
    src = tmp_path / "spark.parquet"
    table = pa.table({
        "id": pa.array(np.arange(5_000, 5_000 + n), pa.int64()),
        "qty": pa.array([None if i % 7 == 0 else int(v) for i, v in enumerate(rng.integers(1, 9, n))], pa.int32()),
        "day": pa.array((np.datetime64("2021-01-01") + days).astype("datetime64[us]"), pa.timestamp("us")),
        "seen": pa.array((np.datetime64("2021-01-01T00:00:00") + rng.integers(0, 10**6, n).astype("timedelta64[s]"))
                         .astype("datetime64[us]"), pa.timestamp("us", tz="Europe/Paris")),
        "kind": pa.array(rng.choice(["a", "b"], n), pa.string()),
        "flag": pa.array(rng.random(n) < 0.5, pa.bool_()),
    })
    pq.write_table(table, src)
    out = _run(tiny_config(tmp_path, src, target=None))
    for part in sorted(out.glob("part-*.parquet")):
        got = pq.read_schema(part)
        assert [f.name for f in got] == table.schema.names
        for name in table.schema.names:
            assert got.field(name).type == table.schema.field(name).type, name
    syn = pd.read_parquet(out)
    assert syn["qty"].isna().any() and (syn["qty"].dropna() % 1 == 0).all()
    assert (syn["day"].dt.normalize() == syn["day"]).all()  # dates stay dates
    assert syn["id"].min() > 5_000 + n - 1 and syn["id"].is_unique  # fresh IDs above every real one


def test_csv_integer_ids_and_trailing_delimiters(tmp_path):
    src = tmp_path / "people.csv"
    rows = [f"{1000 + i},{20 + i % 40},{'x' if i % 3 else 'y'}," for i in range(60)]  # note the trailing comma
    src.write_text("person_id,age,grp\n" + "\n".join(rows) + "\n")
    out = _run(tiny_config(tmp_path, src, target=None))
    prepared = pd.read_parquet(StagePaths.of(tmp_path / "work", "tiny").train_data)
    assert list(prepared.columns) == ["person_id", "age", "grp"]
    assert set(prepared["grp"]) == {"x", "y"} and prepared["age"].between(20, 59).all()
    syn = pd.read_parquet(out)
    assert str(syn["person_id"].dtype) == "int64" and str(syn["age"].dtype) == "int64"


def test_every_shard_has_the_same_schema_even_when_a_column_is_all_null(tmp_path, tiny_source, monkeypatch):
    cfg = tiny_config(tmp_path, tiny_source)
    real_sample = sampling.sample_frame

    def null_city_after_first(loaded, n, seed, start=0, **kwargs):
        frame = real_sample(loaded, n, seed, start, **kwargs)
        if start:
            frame["city"] = None
        return frame

    monkeypatch.setattr(sampling, "sample_frame", null_city_after_first)
    out = _run(cfg)
    schemas = {str(pq.read_schema(p).field("city").type) for p in out.glob("part-*.parquet")}
    assert schemas == {"string"}
    assert len(pd.read_parquet(out)) == 300
