"""Scores merged from per-shard statistics equal the whole-table scores."""

import numpy as np
import pandas as pd
import pytest

from pipeline.metrics.coverage import score_coverage
from pipeline.metrics.fidelity import score_fidelity
from pipeline.metrics.privacy import exact_match_rate
from pipeline.metrics.streaming import score_streaming
from pipeline.schema import TableSchema, describe, infer_kind
from tests.conftest import ADULT, tiny_frame


def _schema(df: pd.DataFrame) -> TableSchema:
    return TableSchema([describe(df[c], infer_kind(df[c])) for c in df.columns])


def _cases():
    adult = pd.read_parquet(ADULT)
    real = adult.sample(3000, random_state=0).reset_index(drop=True)
    syn = adult.sample(5000, random_state=1).reset_index(drop=True)
    syn.loc[:40, "workclass"] = None                       # nulls the real sample may not have there
    syn.loc[50:60, "age"] = syn["age"].max() + 7           # values outside the real range
    syn.loc[:200] = real.loc[:200].to_numpy()              # copies of real rows
    tiny_real, tiny_syn = tiny_frame(400, seed=0), tiny_frame(700, seed=1)
    tiny_syn.loc[:5, "city"] = "Marseille"                 # a category the real data never had
    return {"adult": (real, syn), "every_kind": (tiny_real, tiny_syn)}


@pytest.mark.parametrize("case", ["adult", "every_kind"])
def test_merged_shard_scores_equal_whole_table_scores(case):
    real, syn = _cases()[case]
    schema = _schema(real)
    cuts = [0, 1, len(syn) // 3, len(syn) // 2, len(syn)]  # uneven shards, one of a single row
    shards = lambda: (syn.iloc[a:b] for a, b in zip(cuts[:-1], cuts[1:]))  # noqa: E731
    merged = score_streaming(real, shards, schema)
    whole, cov = score_fidelity(real, syn, schema), score_coverage(real, syn, schema)

    fid = merged.fidelity()
    for name, col in whole.columns.items():  # KS and TV: exact
        assert fid.columns[name]["metric"] == col["metric"]
        assert fid.columns[name]["score"] == pytest.approx(col["score"], abs=1e-12, nan_ok=True), name
    by_pair = {tuple(p["columns"]): p for p in fid.pairs}
    assert len(by_pair) == len(whole.pairs)
    for p in whole.pairs:
        q = by_pair[tuple(p["columns"])]
        tol = 1e-9 if p["metric"] == "CorrelationSimilarity" else 1e-12  # moments vs centred sums: rounding
        assert q["metric"] == p["metric"] and q["counted"] == p["counted"]
        assert q["score"] == pytest.approx(p["score"], abs=tol, nan_ok=True), p["columns"]
    for key in ("column_shapes", "column_pair_trends", "column_pair_trends_all", "overall"):
        assert getattr(fid, key) == pytest.approx(getattr(whole, key), abs=1e-9), key

    c = merged.coverage()
    for key in ("category", "range", "missing_values"):
        assert getattr(c, key) == pytest.approx(getattr(cov, key), abs=1e-12), key
    modeled = [col.name for col in schema.modeled]
    assert merged.exact_match_rate() == pytest.approx(exact_match_rate(real, syn, modeled), abs=1e-15)
    if case == "adult":
        assert merged.exact_match_rate() > 0.03  # the copied rows are found


@pytest.mark.slow  # about a million rows
def test_the_score_stage_streams_big_releases_with_the_same_scores(tiny_cfg):
    from pipeline import generate, ingest, score, train
    from pipeline.artifacts import StagePaths
    from pipeline.files import read_json

    cfg = tiny_cfg
    cfg.generate.rows, cfg.generate.rows_per_shard = 450, 100
    ingest.run(cfg, "tiny")
    train.run(cfg, "tiny")
    generate.run(cfg, "tiny")
    in_memory = score.run(cfg, "tiny").metrics
    cfg.score.in_memory_rows = 100  # 450 rows in 5 shards: streamed
    streamed = score.run(cfg, "tiny").metrics
    details = read_json(StagePaths.of(cfg.work_dir, "tiny").score / "details.json")
    assert details["samples"]["fidelity_coverage_exact_match"]["method"] == "merged per-shard statistics"
    for key in ("quality.column_shapes", "quality.column_pair_trends", "quality.overall", "coverage.category",
                "coverage.range", "coverage.missing_values", "privacy.exact_match_rate"):
        assert streamed[key] == pytest.approx(in_memory[key], abs=1e-9), key
    assert streamed["rows"] == in_memory["rows"] == 450


def test_read_sample_takes_the_seeded_rows_across_shards(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.modalities.table import read_sample

    files = []
    for i, (a, b) in enumerate([(0, 30), (30, 31), (31, 100)]):
        files.append(tmp_path / f"part-{i:05d}.parquet")
        pq.write_table(pa.table({"row": np.arange(a, b)}), files[-1])
    got = read_sample(files, 100, 17, seed=3)["row"].to_numpy()
    assert len(got) == 17 and len(set(got)) == 17
    np.testing.assert_array_equal(got, np.sort(np.random.default_rng(3).choice(100, 17, replace=False)))


def test_a_column_constant_where_its_pair_is_present_has_no_streamed_correlation():
    rng = np.random.default_rng(0)
    real = pd.DataFrame({"a": rng.normal(size=50), "b": np.r_[rng.normal(size=25), np.full(25, np.nan)]})
    syn = pd.DataFrame({"a": np.r_[np.full(30, 1000.7), rng.normal(size=20)],
                        "b": np.r_[rng.normal(size=30), np.full(20, np.nan)]})
    schema = TableSchema([describe(real[c], "continuous") for c in real.columns])
    whole = {tuple(p["columns"]): p for p in score_fidelity(real, syn, schema).pairs}
    merged = {tuple(p["columns"]): p for p in score_streaming(real, lambda: (syn.iloc[:17], syn.iloc[17:]), schema)
              .fidelity().pairs}
    assert np.isnan(whole[("a", "b")]["synthetic"]) and np.isnan(merged[("a", "b")]["synthetic"])
