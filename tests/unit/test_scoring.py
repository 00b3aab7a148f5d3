"""Coverage, detection and privacy metrics (against sdmetrics where it defines them), the score
stage's outputs, the HTML/markdown report, and dropping copies of training rows."""

import base64
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import generate, ingest, sampling, score, train
from pipeline.artifacts import StagePaths
from pipeline.config import Threshold
from pipeline.metrics import known_metrics
from pipeline.metrics.coverage import score_coverage
from pipeline.metrics.detection import score_detection
from pipeline.metrics.privacy import (
    encode_for_distance,
    marginal_rows,
    nearest_distances,
    row_hashes,
    score_dcr,
)
from pipeline.models.saved import load_model
from pipeline.schema import TableSchema, describe, infer_kind
from tests.conftest import ADULT

SDTYPE = {"continuous": "numerical", "integer": "numerical", "datetime": "datetime",
          "categorical": "categorical", "boolean": "boolean"}


def _schema(df):
    return TableSchema([describe(df[c], infer_kind(df[c])) for c in df.columns])


def _adult(n, seed):
    return pd.read_parquet(ADULT).sample(n, random_state=seed).reset_index(drop=True)


def _with_gaps(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Nulls in a numeric and a categorical column, a narrower range, and a missing category."""
    rng = np.random.default_rng(seed)
    out = df.copy()
    out["age"] = out["age"].astype(float)
    out.loc[rng.random(len(out)) < 0.1, "age"] = np.nan
    out.loc[rng.random(len(out)) < 0.05, "workclass"] = None
    out["hours-per-week"] = out["hours-per-week"].clip(20, 60)
    out.loc[out["race"] == "Other", "race"] = "White"
    return out


def test_coverage_matches_sdmetrics_per_column():
    from sdmetrics.single_column import (
        CategoryCoverage,
        MissingValueSimilarity,
        RangeCoverage,
    )

    real = _adult(3000, 0)
    syn = _with_gaps(_adult(2000, 1), 2)
    schema = _schema(real)
    ours = score_coverage(real, syn, schema)
    checked = 0
    for c in schema.modeled:
        got = ours.columns[c.name]
        assert got["missing_value_similarity"] == pytest.approx(
            MissingValueSimilarity.compute(real[c.name], syn[c.name]), abs=1e-9)
        if c.kind == "categorical":
            assert got["category_coverage"] == pytest.approx(CategoryCoverage.compute(real[c.name], syn[c.name]),
                                                             abs=1e-9)
        else:
            ref = RangeCoverage.compute(real[c.name].astype(float), syn[c.name].astype(float))
            assert got["range_coverage"] == pytest.approx(ref, abs=1e-9)
        checked += 1
    assert checked == 15
    # the gaps are visible, so the test can fail
    assert ours.columns["race"]["category_coverage"] < 1 and ours.columns["hours-per-week"]["range_coverage"] < 1
    assert ours.columns["age"]["missing_value_similarity"] < 1


@pytest.mark.slow  # over a second: the fast tier stays under a minute
def test_dcr_distances_match_sdmetrics_including_nulls():
    from sdmetrics.single_table.privacy.dcr_utils import calculate_dcr

    data = _with_gaps(_adult(300, 3), 4)
    ref_rows = _with_gaps(_adult(700, 5), 6)
    schema = _schema(_adult(50, 0))
    md = {"columns": {c.name: {"sdtype": SDTYPE[c.kind]} for c in schema.modeled}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = calculate_dcr(data, ref_rows, md).to_numpy()
    enc_data, enc_ref = encode_for_distance([data, ref_rows], schema)
    got = nearest_distances(enc_data, enc_ref, k=2)
    np.testing.assert_allclose(got[:, 0], expected, atol=1e-6)
    assert (got[:, 1] >= got[:, 0]).all()


def _nearest_on_one_scale(data: pd.DataFrame, ref: pd.DataFrame, scale_rows: pd.DataFrame, schema) -> np.ndarray:
    """Each data row's distance to its closest ref row, written out cell by cell: SDMetrics' DCR
    distance (a numeric difference over the column's range, capped at 1; a category 0 or 1; nulls
    equal each other and differ from any value), every range taken from ``scale_rows``."""
    total = np.zeros((len(data), len(ref)))
    for c in schema.modeled:
        a, b = data[c.name].to_numpy(), ref[c.name].to_numpy()
        a_nan, b_nan = pd.isna(a)[:, None], pd.isna(b)[None, :]
        if c.kind in ("continuous", "integer"):
            r = scale_rows[c.name].astype(float)
            span = r.max() - r.min()
            diff = np.minimum(np.abs(a.astype(float)[:, None] - b.astype(float)[None, :]) / span, 1.0)
        else:
            diff = (a[:, None] != b[None, :]).astype(float)
        total += np.where(a_nan & b_nan, 0.0, np.where(a_nan | b_nan, 1.0, diff))
    return total.min(axis=1) / len(schema.modeled)


@pytest.mark.slow  # seconds: the fast tier stays under a minute
def test_dcr_share_is_sdmetrics_distance_on_the_training_rows_scale_and_flags_copies():
    pool = _adult(1500, 7)
    schema = _schema(pool)
    train_rows, holdout, fresh = pool.iloc[:500], pool.iloc[500:1000], pool.iloc[1000:]
    res = score_dcr(train_rows, holdout, fresh, schema, rows=500, seed=0)
    shuffled = train_rows.sample(n=500, random_state=0)  # one part: every training row
    expected = np.mean(_nearest_on_one_scale(fresh, shuffled, train_rows, schema)
                       < _nearest_on_one_scale(fresh, holdout, train_rows, schema))
    assert res.dcr_share == pytest.approx(expected, abs=1e-9)
    assert res.dcr_protection == pytest.approx(min((1 - expected) * 2, 1), abs=1e-9)
    assert 0.35 < res.dcr_share < 0.65  # unseen real rows: about as close to train as to holdout
    copies = score_dcr(train_rows, holdout, train_rows, schema, rows=500, seed=0)
    assert copies.dcr_share > 0.95 and copies.dcr_median == 0 and copies.nndr_median < 0.05


@pytest.mark.slow  # seconds: one reference computation per training part
def test_dcr_share_with_more_training_rows_averages_over_disjoint_training_parts():
    pool = _adult(1400, 11)
    schema = _schema(pool)
    train_rows, holdout, fresh = pool.iloc[:800], pool.iloc[800:1000], pool.iloc[1000:]
    res = score_dcr(train_rows, holdout, fresh, schema, rows=400, seed=3)
    assert res.rows["train_parts"] == 4 and res.rows["train"] == 200 and res.rows["holdout"] == 200
    shuffled = train_rows.sample(n=800, random_state=3)  # the parts: disjoint, together every training row
    to_holdout = _nearest_on_one_scale(fresh, holdout, train_rows, schema)
    shares = [np.mean(_nearest_on_one_scale(fresh, shuffled.iloc[i * 200:(i + 1) * 200], train_rows, schema)
                      < to_holdout) for i in range(4)]
    assert res.dcr_share == pytest.approx(np.mean(shares), abs=1e-9)
    assert len(set(shares)) > 1  # the parts differ: averaging them is what is checked


@pytest.mark.slow  # seconds: SDMetrics' DCR on a few hundred rows
def test_dcr_share_of_unseen_rows_stays_near_half_where_the_holdout_misses_an_extreme():
    """A training set that holds one extreme value (a legitimate tail) and a holdout that does not:
    SDMetrics scales each side by its own range, so every other training distance shrinks and
    unseen real rows read as copies; on the training rows' one scale they score as without it."""
    from sdmetrics.single_table import DCROverfittingProtection

    pool = _adult(900, 13)
    pool["capital-gain"] = pool["capital-gain"].astype(float)
    schema = _schema(pool)
    train_rows, holdout, fresh = pool.iloc[:300].copy(), pool.iloc[300:600], pool.iloc[600:]
    before = score_dcr(train_rows, holdout, fresh, schema, rows=300, seed=0).dcr_share
    for name in ("age", "hours-per-week", "education-num"):  # one row far past the others in each
        train_rows.loc[train_rows.index[0], name] = 10 * pool[name].max()
    md = {"columns": {c.name: {"sdtype": SDTYPE[c.kind]} for c in schema.modeled}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sdm = DCROverfittingProtection.compute_breakdown(train_rows, fresh, holdout, md, None)
    ours = score_dcr(train_rows, holdout, fresh, schema, rows=300, seed=0)
    assert sdm["synthetic_data_percentages"]["closer_to_training"] > before + 0.15  # the bias this avoids
    assert abs(ours.dcr_share - before) < 0.05 and 0.4 < before < 0.6


@pytest.mark.slow  # ~2 s: detection fits
def test_detection_auc_near_half_for_same_distribution_and_high_for_broken_data():
    pool = _adult(3000, 8)
    schema = _schema(pool)
    same = score_detection(pool.iloc[:1500], pool.iloc[1500:], schema, seed=0)
    assert 0.4 < same.auc < 0.6 and same.score > 0.8
    broken = pool.iloc[1500:].copy()
    broken["age"] = broken["age"].sample(frac=1, random_state=0).to_numpy() + 40
    far = score_detection(pool.iloc[:1500], broken, schema, seed=0)
    assert far.auc > 0.9 and far.score < 0.2


@pytest.mark.slow  # ~5 s: 5 folds of 200 trees
def test_detection_trains_every_tree_where_the_old_default_stopped_early(monkeypatch):
    # scikit-learn stops early above 10,000 training rows; on a near-indistinguishable pair its
    # validation loss stalls within a few trees, and the old detector read such releases near 0.5
    # (issue 28: 0.511 where xgboost read 0.587). The detector now fits all of its trees.
    import pipeline.metrics.detection as detection

    fitted = []

    class Recording(detection.HistGradientBoostingClassifier):
        def fit(self, X, y):
            fitted.append(super().fit(X, y).n_iter_)
            return self

    monkeypatch.setattr(detection, "HistGradientBoostingClassifier", Recording)
    rng = np.random.default_rng(0)
    real, syn = (pd.DataFrame({"a": rng.normal(size=8000), "k": rng.choice(list("xyz"), 8000)}) for _ in range(2))
    schema = _schema(real)
    score_detection(real, syn, schema, seed=0, folds=3, classifier={})  # the old default: stops early
    assert max(fitted) < 100
    fitted.clear()
    det = score_detection(real, syn, schema, seed=0)
    assert fitted == [detection.CLASSIFIER["max_iter"]] * detection.FOLDS and det.folds == 5
    assert 0.45 < det.auc < 0.55


@pytest.fixture
def scored_with_report(scored_tiny):
    scored_tiny.score.report = True
    scored_tiny.score.thresholds = {"quality.overall": Threshold(min=0.1), "detection.auc": Threshold(max=0.999)}
    score.run(scored_tiny, "tiny")
    return scored_tiny


@pytest.mark.slow  # ~2 s: a score with its report: the fast tier stays under a minute
def test_score_writes_every_metric_family_and_a_self_contained_report(scored_with_report):
    cfg = scored_with_report
    metrics = json.loads((Path(cfg.metrics_dir) / "tiny.json").read_text())
    for key in ("quality.overall", "coverage.category", "coverage.range", "coverage.missing_values",
                "detection.auc", "quality.alpha_precision", "quality.beta_recall", "quality.authenticity",
                "utility.tstr_score", "utility.trtr_score", "privacy.exact_match_rate",
                "privacy.dcr_share", "privacy.nndr_median"):
        assert key in metrics, key
    for key, value in metrics.items():
        if key in known_metrics() and isinstance(value, float):
            assert known_metrics()[key].lower <= value <= known_metrics()[key].upper, key
    folder = StagePaths.of(cfg.work_dir, "tiny").score
    details = json.loads((folder / "details.json").read_text())
    # The metrics file is numbers only (what DVC compares); details.json is the whole record.
    assert all(v is None or type(v) in (int, float) for v in metrics.values())
    assert metrics == {k: v for k, v in details["metrics"].items() if k in metrics}
    assert details["metrics"]["utility.task"] == "classification" and len(details["synthetic_hash"]) == 64
    assert set(details["gate"]) == {"passed", "failures", "not_judged"}
    assert details["samples"]["seed"] == cfg.seed and details["samples"]["detection"]["rows_per_side"] > 0
    assert details["samples"]["precision_recall"]["rows_per_side"] > 0

    page = (folder / "report.html").read_text()
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page)  # nothing fetched from the network
    assert "<script" not in page
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 4  # distributions, pair heatmap, privacy, training curves
    for img in images:
        assert base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n"
    for key in ("quality.overall", "detection.auc", "privacy.dcr_share"):
        assert key in page
    assert ("gate passed" in page) == details["gate"]["passed"]
    md = (folder / "report.md").read_text()
    assert "| `quality.overall` |" in md and ("passed" if details["gate"]["passed"] else "FAILED") in md


@pytest.mark.slow  # ~5 s with its scored report
def test_report_shows_a_failing_gate_and_its_failing_keys(scored_with_report):
    cfg = scored_with_report
    cfg.score.thresholds = {"detection.auc": Threshold(max=0.0)}
    res = score.run(cfg, "tiny")
    assert not res.passed and res.failures[0].startswith("detection.auc")
    folder = StagePaths.of(cfg.work_dir, "tiny").score
    page = (folder / "report.html").read_text()
    assert "gate FAILED" in page and "detection.auc: " in page and "FAIL</td>" in page
    assert "failing: detection.auc" in (folder / "report.md").read_text()


def test_drop_training_copies_rejects_and_replaces_copied_rows(tiny_cfg):
    ingest.run(tiny_cfg, "tiny")
    train.run(tiny_cfg, "tiny")
    loaded = load_model(StagePaths.of(tiny_cfg.work_dir, "tiny").model)
    modeled = [c.name for c in loaded.schema.modeled]
    plain = sampling.sample_frame(loaded, 200, seed=3)
    banned = row_hashes(plain.iloc[:60], modeled)  # pretend the first 60 rows were training rows
    stats: dict[str, int] = {}
    kept = sampling.sample_frame(loaded, 200, seed=3, exclude=banned, stats=stats)
    assert len(kept) == 200 and not np.isin(row_hashes(kept, modeled), banned).any()
    assert stats["rejected_copies"] >= 60 and stats["drawn"] > 200
    # filtering only removes rows: the others of the first draw come first, in order
    pd.testing.assert_frame_equal(kept.iloc[:140][modeled].reset_index(drop=True),
                                  plain.iloc[60:][modeled].reset_index(drop=True))


def test_generate_stage_drops_training_copies_and_records_the_count(tiny_cfg):
    tiny_cfg.generate.drop_training_copies = True
    tiny_cfg.generate.rows = 150
    for stage in (ingest, train, generate):
        stage.run(tiny_cfg, "tiny")
    paths = StagePaths.of(tiny_cfg.work_dir, "tiny")
    info = json.loads((paths.synthetic / "_generated.json").read_text())
    assert info["drop_training_copies"] and info["training_copies_dropped"] >= 0 and info["rows_drawn"] >= 150
    syn = pd.read_parquet(paths.synthetic)
    real = pd.read_parquet(paths.train_data)
    modeled = [c for c in real.columns if c != "user_id"]
    assert len(syn) == 150 and not np.isin(row_hashes(syn, modeled), row_hashes(real, modeled)).any()


def test_dcr_keeps_precision_on_offset_timestamps_and_constant_columns():
    from sdmetrics.single_table.privacy.dcr_utils import calculate_dcr

    base = pd.Timestamp("2024-05-01 12:00:00")

    def frame(n, seed):
        r = np.random.default_rng(seed)
        return pd.DataFrame({
            "at": base + pd.to_timedelta(r.integers(0, 3600, n), unit="s"),  # one hour, far from 1970
            "big": np.where(r.random(n) < 0.5, 1e8, 1e8 + 1),
            "kind": r.choice(["a", "b"], n),
        })

    data, ref_rows = frame(200, 1), frame(300, 2)
    ref_rows["big"] = 1e8  # constant in the reference: any difference counts 1
    schema = TableSchema([describe(ref_rows[c], k) for c, k in
                          (("at", "datetime"), ("big", "continuous"), ("kind", "categorical"))])
    md = {"columns": {"at": {"sdtype": "datetime"}, "big": {"sdtype": "numerical"}, "kind": {"sdtype": "categorical"}}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = calculate_dcr(data, ref_rows, md).to_numpy()
    enc_data, enc_ref = encode_for_distance([data, ref_rows], schema)
    np.testing.assert_allclose(nearest_distances(enc_data, enc_ref)[:, 0], expected, atol=1e-6)
    assert expected.max() > expected.min()  # distances vary: the test can fail


def test_nndr_counts_a_copy_of_a_duplicated_training_row_as_a_near_copy():
    pool = _adult(600, 9)
    schema = _schema(pool)
    train_rows = pd.concat([pool.iloc[:300], pool.iloc[:50]], ignore_index=True)  # 50 rows occur twice
    res = score_dcr(train_rows, pool.iloc[300:], pool.iloc[:50], schema, rows=300, seed=0)
    assert res.dcr_median == 0 and res.nndr_median == 0


@pytest.mark.slow  # seconds: two DCR shares
def test_dcr_share_marginals_reads_what_the_training_samples_own_marginals_put_on_the_share():
    rng = np.random.default_rng(0)

    def rows(n: int, share_a: float) -> pd.DataFrame:
        return pd.DataFrame({"x": rng.normal(size=n), "y": rng.normal(size=n),
                             "kind": np.where(rng.random(n) < share_a, "a", "b")})

    schema = _schema(rows(10, 0.5))
    # Large, and train and holdout alike: rows of the training marginals are no nearer the training rows.
    big = score_dcr(rows(3000, 0.5), rows(3000, 0.5), rows(3000, 0.5), schema, rows=2000, seed=0)
    assert abs(big.dcr_share_marginals - 0.5) < 0.04
    # A training sample whose class mix differs from its holdout's: any model of its marginals sits nearer it.
    train_rows, holdout = rows(300, 0.8), rows(300, 0.2)
    skewed = score_dcr(train_rows, holdout, rows(2000, 0.5), schema, rows=2000, seed=0)
    assert skewed.dcr_share_marginals > 0.6 and skewed.dcr_share_marginals > skewed.dcr_share + 0.1
    marg = marginal_rows(train_rows, schema, 500, seed=1)
    assert len(marg) == 500 and marg["x"].between(train_rows["x"].min(), train_rows["x"].max()).all()
    assert not marg["x"].isin(train_rows["x"]).any()  # drawn between training values, never one of them
    assert marg["kind"].eq("a").mean() == pytest.approx(0.8, abs=0.06)
