"""Streamed ingest (``pipeline.streamed``): a source read in record batches, never whole, with the
same statistics, split and sample however it is cut into files and batches."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import ingest
from pipeline.artifacts import StagePaths, load_prepared
from pipeline.errors import InputDataError
from pipeline.streamed import BottomK, quantile_rank_error
from tests.conftest import REPO, tiny_config, tiny_frame


def _table(n: int = 3000) -> pd.DataFrame:
    df = tiny_frame(n, seed=3)
    df["band"] = (df["age"] // 20).astype(str)
    df["grade"] = np.where(df["band"] >= "3", "senior", "junior")  # a link: band (and age) determine grade
    return df


def _streamed(tmp_path: Path, source: Path, name: str = "s", target: str | None = "income",
              **ingest_settings) -> tuple:
    cfg = tiny_config(tmp_path / name, source, target=target)
    for key, value in {"stream_rows": 0, "batch_rows": 700, "sample_rows": 100_000, **ingest_settings}.items():
        setattr(cfg.ingest, key, value)
    ingest.run(cfg, "tiny")
    paths = StagePaths.of(cfg.work_dir, "tiny")
    return cfg, paths, json.loads(paths.schema.read_text())


def _whole(tmp_path: Path, source: Path) -> dict:
    cfg = tiny_config(tmp_path / "whole", source, target="income")
    ingest.run(cfg, "tiny")
    return json.loads(StagePaths.of(cfg.work_dir, "tiny").schema.read_text())


def _cut(df: pd.DataFrame, folder: Path, bounds: list[int], name: str = "part-{}.parquet") -> Path:
    """``df`` written as Parquet files of rows ``bounds[i]:bounds[i + 1]`` in ``folder``."""
    folder.mkdir()
    for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
        df.iloc[a:b].to_parquet(folder / name.format(i), index=False)
    return folder


def _every(paths: StagePaths, side: str) -> pd.DataFrame:
    return pd.read_parquet(paths.prepared / side)


def test_streamed_statistics_equal_the_whole_tables(tmp_path):
    source = tmp_path / "t.parquet"
    _table().to_parquet(source, index=False)
    whole = _whole(tmp_path, source)
    _, paths, meta = _streamed(tmp_path, source, sample_rows=600)  # kinds from a 600-row sample
    assert meta["streamed"]["sample_rows"] == 600 and meta["streamed"]["shards"] == 5
    assert meta["rows"] + meta["holdout_rows"] == 3000
    for w, s in zip(whole["columns"], meta["columns"]):
        assert (s["name"], s["kind"], s["dtype"], s["null_rate"]) == (w["name"], w["kind"], w["dtype"], w["null_rate"])
        if s["kind"] in ("categorical", "boolean", "integer"):  # counted exactly
            assert s["n_unique"] == w["n_unique"], s["name"]
        for key in ("min", "max", "top"):
            assert s["stats"].get(key) == w["stats"].get(key), (s["name"], key)
        if "mean" in w["stats"]:
            assert s["stats"]["mean"] == pytest.approx(w["stats"]["mean"], rel=1e-12)
    assert {(k["from"], k["to"]) for k in meta["links"]} == {(k["from"], k["to"]) for k in whole["links"]}
    assert "grade" in {k["to"] for k in meta["links"]}
    # Every row written once, as shards, typed like the sample.
    train, sample = _every(paths, "train"), load_prepared(paths)[0]
    assert len(train) == meta["rows"] and len(sample) == 600
    assert list(train.dtypes.astype(str)) == list(sample.dtypes.astype(str))


@pytest.mark.slow
def test_quantile_knots_from_the_sample_are_within_the_stated_rank_error(tmp_path):
    from pipeline.models.transformer import TableTransformer

    rng = np.random.default_rng(0)
    n = 40_000
    df = pd.DataFrame({"x": rng.lognormal(0, 1, n), "k": rng.integers(0, 50, n), "y": rng.choice(["a", "b"], n)})
    source = tmp_path / "q.parquet"
    df.to_parquet(source, index=False)
    _, paths, meta = _streamed(tmp_path, source, target="y", sample_rows=4000, batch_rows=3000)
    eps = meta["streamed"]["quantile_rank_error"]
    assert eps == pytest.approx(quantile_rank_error(4000), abs=1e-6)
    sample, _, schema, _ = load_prepared(paths)
    every = _every(paths, "train")
    t = TableTransformer(schema, knots=101).fit(sample)
    levels = np.linspace(0, 1, 101)
    for name in ("x", "k"):
        knots = np.asarray(next(c for c in t.columns if c["name"] == name)["knots"])
        values = np.sort(every[name].to_numpy(dtype=float))
        below = np.searchsorted(values, knots, side="left") / len(values)  # F(knot-)
        upto = np.searchsorted(values, knots, side="right") / len(values)  # F(knot)
        # Each knot's level lies within eps of the knot's rank in every training row (ties: its interval).
        gap = np.maximum(0, np.maximum(below - levels, levels - upto))
        assert gap.max() <= eps, (name, gap.max(), eps)


def test_the_split_and_sample_do_not_depend_on_files_or_batches(tmp_path):
    df = _table(2000)
    one = tmp_path / "one.parquet"
    df.to_parquet(one, index=False)
    folder = _cut(df, tmp_path / "cut", [0, 333, 1500, 2000])
    _, p1, m1 = _streamed(tmp_path, one, "a", batch_rows=450, sample_rows=500)
    _, p2, m2 = _streamed(tmp_path, folder, "b", batch_rows=1000, sample_rows=500)
    assert m1["streamed"]["split"].startswith("by a seeded hash") and m1["holdout_rows"] == m2["holdout_rows"]
    assert 300 < m1["holdout_rows"] < 500  # ~20%
    for side in ("train", "holdout"):
        assert _every(p1, side).equals(_every(p2, side))
    assert load_prepared(p1)[0].equals(load_prepared(p2)[0])  # the same 500-row sample, in source order
    assert load_prepared(p1)[1].equals(load_prepared(p2)[1])


def test_bottom_k_is_the_same_whatever_the_batches():
    rng = np.random.default_rng(1)
    prio = rng.integers(0, 2**63, 1000).astype(np.uint64)
    frame = pd.DataFrame({"v": np.arange(1000)})
    expect = np.sort(np.argsort(prio)[:50])
    for step in (7, 100, 1000):
        keep = BottomK(50)
        for i in range(0, 1000, step):
            keep.offer(frame.iloc[i:i + step], prio[i:i + step], np.arange(i, min(i + step, 1000)))
        assert keep.frame(frame)["v"].tolist() == expect.tolist()


@pytest.mark.slow
def test_a_folder_and_a_glob_ingest_like_one_file(tmp_path):
    df = _table(900)
    one = tmp_path / "one.parquet"
    df.to_parquet(one, index=False)
    folder = _cut(df, tmp_path / "parts", [0, 300, 600, 900], "p{}.parquet")
    (folder / "_SUCCESS").write_text("")  # what Spark leaves: skipped
    results = []
    for name, source in (("file", one), ("folder", folder), ("glob", folder / "p*.parquet")):
        cfg = tiny_config(tmp_path / name, source, target="income")
        ingest.run(cfg, "tiny")
        paths = StagePaths.of(cfg.work_dir, "tiny")
        results.append((load_prepared(paths), json.loads(paths.schema.read_text())))
    (train, holdout, schema, _), meta = results[0]
    for (t, h, s, _), m in results[1:]:
        assert t.equals(train) and h.equals(holdout) and s.to_dict() == schema.to_dict()
        assert m["rows"] == meta["rows"]


@pytest.mark.slow
def test_a_folder_of_csv_files_in_a_store_ingests_like_one_local_file(tmp_path):
    import fsspec

    df = _table(600)
    one = tmp_path / "one.csv"
    df.to_csv(one, index=False)
    fs = fsspec.filesystem("memory")
    for i in range(2):
        with fs.open(f"/csvparts/p{i}.csv", "w") as f:
            df.iloc[i * 300:(i + 1) * 300].to_csv(f, index=False)
    got = []
    for name, source in (("local", one), ("store", "memory://csvparts")):
        cfg = tiny_config(tmp_path / name, source, target="income")
        cfg.ingest.stream_rows = 10_000 if name == "local" else 0  # the store's folder is streamed
        ingest.run(cfg, "tiny")
        got.append(StagePaths.of(cfg.work_dir, "tiny"))
    meta = json.loads(got[1].schema.read_text())
    assert meta["streamed"]["files"] == 2 and meta["rows"] + meta["holdout_rows"] == 600
    whole = pd.concat([load_prepared(got[0])[0], load_prepared(got[0])[1]])
    streamed = pd.concat([_every(got[1], "train"), _every(got[1], "holdout")])
    key = list(df.columns)
    assert whole.sort_values(key).reset_index(drop=True).equals(streamed.sort_values(key).reset_index(drop=True))
    fs.rm("/csvparts", recursive=True)


def test_a_folder_holding_one_partition_file_reads_it_with_its_partition_column(tmp_path):
    part = tmp_path / "ds" / "region=north"
    part.mkdir(parents=True)
    _table(300).to_parquet(part / "data.parquet", index=False)
    cfg = tiny_config(tmp_path / "w", tmp_path / "ds", target="income")
    ingest.run(cfg, "tiny")
    train, holdout, schema, _ = load_prepared(StagePaths.of(cfg.work_dir, "tiny"))
    assert len(train) + len(holdout) == 300 and set(train["region"]) == {"north"}


@pytest.mark.slow
def test_partition_folders_become_columns(tmp_path):
    df = _table(600)
    for year in (2020, 2021):
        part = tmp_path / "ds" / f"year={year}"
        part.mkdir(parents=True)
        df[df["age"] % 2 == year % 2].to_parquet(part / "data.parquet", index=False)
    _, paths, meta = _streamed(tmp_path, tmp_path / "ds")
    kinds = {c["name"]: c["kind"] for c in meta["columns"]}
    assert kinds["year"] == "integer"
    every = _every(paths, "train")
    assert set(every["year"]) == {2020, 2021} and ((every["age"] % 2) == (every["year"] % 2)).all()


@pytest.mark.slow
def test_a_value_the_sampled_kind_does_not_take_is_one_error_naming_the_file(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    df = _table(1000)
    df.to_parquet(folder / "a.parquet", index=False)
    late = df.iloc[:5].astype({"age": str})
    late.loc[late.index[2], "age"] = "unknown"
    late.to_parquet(folder / "b.parquet", index=False)
    cfg = tiny_config(tmp_path / "w", folder, target="income")
    cfg.ingest.stream_rows, cfg.ingest.sample_rows = 0, 100
    with pytest.raises(InputDataError) as err:
        ingest.run(cfg, "tiny")
    text = str(err.value)
    assert "b.parquet" in text and "age" in text and "column_types" in text
    assert not StagePaths.of(cfg.work_dir, "tiny").prepared.exists()  # nothing half-written


@pytest.mark.slow
def test_a_link_broken_outside_the_sample_is_dropped(tmp_path):
    df = _table(3000)
    kept = tmp_path / "kept.parquet"
    df.to_parquet(kept, index=False)
    _, _, meta = _streamed(tmp_path, kept, "kept", sample_rows=300)
    assert any(k["to"] == "grade" for k in meta.get("links", []))  # found in the 300-row sample
    df.loc[2999, "grade"] = "senior" if df.loc[2999, "grade"] == "junior" else "junior"  # one row breaks it
    broken = tmp_path / "broken.parquet"
    df.to_parquet(broken, index=False)
    _, _, meta = _streamed(tmp_path, broken, "broken", sample_rows=300)
    assert not any(k["to"] == "grade" for k in meta.get("links", []))


@pytest.mark.slow
def test_training_on_a_streamed_sample_generates_as_many_rows_as_the_source(tmp_path):
    from pipeline import generate, train
    from pipeline.files import read_json

    source = tmp_path / "t.parquet"
    _table(1500).to_parquet(source, index=False)
    cfg, paths, meta = _streamed(tmp_path, source, sample_rows=400)
    cfg.train.epochs = 1
    cfg.model.name = "ctgan"
    cfg.generate.drop_training_copies = True
    train.run(cfg, "tiny")
    assert read_json(paths.model / "model.json")["sampled_from_rows"] == meta["rows"]
    generate.run(cfg, "tiny")
    assert sum(len(pd.read_parquet(f)) for f in paths.shards()) == meta["rows"]


def test_a_rank_reads_only_the_row_groups_of_its_share_of_the_sample(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from pipeline import streamed
    from pipeline.artifacts import prepared_rows, read_rows_at

    monkeypatch.setattr(streamed, "SAMPLE_ROW_GROUP", 100)
    source = tmp_path / "t.parquet"
    _table(1500).to_parquet(source, index=False)
    _, paths, _ = _streamed(tmp_path, source)
    whole = pd.read_parquet(paths.train_data)
    assert pq.ParquetFile(paths.train_data).metadata.num_row_groups == -(-prepared_rows(paths) // 100) > 4
    read = []
    real_read = pq.ParquetFile.read_row_group
    monkeypatch.setattr(pq.ParquetFile, "read_row_group",
                        lambda f, g, *a, **k: read.append(g) or real_read(f, g, *a, **k))
    block = np.arange(250, 420)  # rank 1's share of 2 ranks of 340 rows, say: rows 250-419 lie in groups 2, 3, 4
    got = read_rows_at([paths.train_data], block)
    pd.testing.assert_frame_equal(got, whole.iloc[block].reset_index(drop=True))
    assert read == [2, 3, 4]


def _ingest_peak_mb(tmp_path: Path, source: Path, name: str, target: str) -> tuple[int, dict]:
    """Peak RSS (MB) of ``python -m pipeline ingest`` on ``source``, streamed in 50,000-row batches."""
    params = tmp_path / f"{name}.yaml"
    params.write_text(
        f"seed: 1\nwork_dir: {tmp_path / name}\nmetrics_dir: {tmp_path / 'metrics'}\n"
        f"datasets:\n  {name}:\n    source: {source}\n    target: {target}\n"
        "ingest: {stream_rows: 0, batch_rows: 50000, sample_rows: 20000}\n")
    code = ("import resource, subprocess, sys; "
            f"r = subprocess.run([sys.executable, '-m', 'pipeline', 'ingest', '--dataset', {name!r}, '--params', "
            f"{str(params)!r}, '-q']); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024); sys.exit(r.returncode)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    meta = json.loads((tmp_path / name / name / "prepared" / "schema.json").read_text())
    return int(out.stdout.strip().splitlines()[-1]), meta


@pytest.mark.slow
def test_ingest_memory_stays_bounded_for_a_table_far_bigger_than_it(tmp_path):
    """A subprocess ingests 3M rows x 40 float columns: as one pandas frame that is 960 MB of values
    alone. The stage's peak RSS may exceed the same command's on a 1,000-row table (the interpreter,
    pandas, and the model and metric registries its config check imports) by at most 300 MB."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, cols, step = 3_000_000, 40, 250_000
    source, small = tmp_path / "wide.parquet", tmp_path / "small.parquet"
    rng = np.random.default_rng(0)
    schema = pa.schema([(f"c{j}", pa.float64()) for j in range(cols)] + [("label", pa.string())])
    with pq.ParquetWriter(source, schema, compression="zstd") as w:
        for start in range(0, rows, step):
            base = rng.integers(0, 1000, step).astype(float)
            arrays = [pa.array(base + j * 0.5) for j in range(cols)]
            arrays.append(pa.array(np.where(base > 500, "hi", "lo")))
            w.write_table(pa.Table.from_arrays(arrays, schema=schema))
    pq.write_table(pq.read_table(source).slice(0, 1000), small)
    whole_mb, allowance = rows * cols * 8 / 1e6, 300
    base_mb, _ = _ingest_peak_mb(tmp_path, small, "small", "label")
    peak_mb, meta = _ingest_peak_mb(tmp_path, source, "wide", "label")
    assert meta["rows"] + meta["holdout_rows"] == rows and meta["streamed"]["shards"] == rows // 50_000
    assert peak_mb - base_mb < allowance and whole_mb > 3 * allowance, (peak_mb, base_mb, whole_mb)
