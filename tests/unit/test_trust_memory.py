"""One hostile column or setting must not take the machine's memory (issue 32, finding 6): a
10,000-character column name in the report's figures, a categorical of tens of thousands of values
in the DCR and the pair trends, a generate.rows of 10**15."""

import base64
import resource
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import generate, report
from pipeline.errors import ConfigError
from pipeline.metrics import fidelity, privacy
from pipeline.metrics.fidelity import score_fidelity
from pipeline.metrics.privacy import encode_for_distance, nearest_distances, one_hot_columns, score_dcr
from pipeline.metrics.streaming import score_streaming
from pipeline.schema import TableSchema, describe, infer_kind
from tests.conftest import tiny_frame

LONG = "column " + "x" * 9_993  # 10,000 characters


def _schema(df: pd.DataFrame, categorical: tuple[str, ...] = ()) -> TableSchema:
    return TableSchema([describe(df[c], "categorical" if c in categorical else infer_kind(df[c])) for c in df.columns])


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


# -- the report's figures ----------------------------------------------------------------------------


def test_short_labels_are_cut_with_an_ellipsis_and_stay_distinct():
    names = ["a" * 50, "a" * 60, "age", "a" * 39 + "…"]
    labels = report.short_labels(names)
    assert labels[2] == "age"
    assert all(len(label) <= report.LABEL_CHARS for label in labels)
    assert labels[0] == "a" * 39 + "…"
    assert len(set(labels)) == len(names)
    assert report.short_labels(["age", "age"]) == ["age", "age"]  # the same name, the same label


@pytest.mark.slow  # ~1.5 s: matplotlib renders
def test_a_10000_character_column_name_is_cut_in_every_figure(monkeypatch):
    real, syn = (tiny_frame(240, s).rename(columns={"city": LONG}) for s in (0, 1))
    schema = _schema(real)
    fid = score_fidelity(real, syn, schema)
    inp = report.ReportInput("tiny", {"gate.passed": True}, {}, schema, real, syn, fid.columns, fid.pairs,
                             privacy_distances={"synthetic_to_train": np.linspace(0, 1, 50)},
                             train_log=pd.DataFrame({"epoch": [1, 2], LONG: [1.0, 0.5]}))
    # What each figure draws, before a pixel is rendered: every text short, every canvas modest.
    figures = []
    monkeypatch.setattr(report, "_png", lambda fig: figures.append(fig) or "data:image/png;base64,")
    page = report.render_html(inp)
    assert LONG in page  # the tables keep the whole name (escaped text)
    assert len(figures) == 4
    for fig in figures:
        texts = [t.get_text() for ax in fig.axes for t in (ax.title, *ax.get_xticklabels(), *ax.get_yticklabels())]
        assert texts and max(map(len, texts)) <= report.LABEL_CHARS + len(" (categorical)  score 0.000")
        box = fig.get_tightbbox(fig.canvas.get_renderer())
        assert box.width * 80 < 4_000 and box.height * 80 < 4_000  # pixels at the report's dpi
        fig.clf()
    monkeypatch.undo()
    before = _peak_mb()
    png = base64.b64decode(report.plot_pair_heatmap(inp).split(",", 1)[1])
    assert _peak_mb() - before < 500  # this heatmap once asked for 18 GB
    width, height = struct.unpack(">II", png[16:24])  # the PNG header's size
    assert width < 4_000 and height < 4_000


# -- DCR -------------------------------------------------------------------------------------------


@pytest.mark.slow  # about a second: the fast tier stays under a minute
def test_dcr_of_a_50000_value_categorical_has_a_bounded_encoding():
    rng = np.random.default_rng(0)
    n = 50_000
    reference = pd.DataFrame({"code": [f"v{i}" for i in range(n)], "x": rng.normal(size=n),
                              "small": rng.choice(["a", "b", "c"], n)})
    data = reference.sample(200, random_state=1).reset_index(drop=True)
    data.loc[100:, "code"] = [f"new{i}" for i in range(100)]  # half copies, half unseen values
    schema = _schema(reference, categorical=("code",))
    enc_data, enc_ref = encode_for_distance([data, reference], schema)
    hot, direct = one_hot_columns(enc_data.codes, enc_ref.codes)
    code = [c.name for c in schema.modeled if c.kind in ("categorical", "boolean")].index("code")
    assert direct == [code] and code not in hot
    assert sum(hot.values()) * len(reference) <= privacy.ONE_HOT_CELLS  # rows x encoded width, capped
    before = _peak_mb()
    d = nearest_distances(enc_data, enc_ref, k=1)[:, 0]
    assert _peak_mb() - before < 500  # one-hot, the reference alone was 50,000 x 50,000 floats (10 GB)
    assert (d[:100] == 0).all()  # a copy is at distance 0
    assert (d[100:] >= 1 / 3 - 1e-6).all()  # an unseen value: at least its one mismatch of three columns
    res = score_dcr(reference.iloc[:49_800], reference.iloc[49_800:], data, schema, rows=200, seed=0)
    assert 0 <= res.dcr_median <= 1 and res.rows["train_reference"] == 49_800


def _dcr_figures(res) -> tuple:
    return (res.dcr_share, res.dcr_protection, res.dcr_median, res.dcr_holdout_median, res.nndr_median,
            res.distances["synthetic_to_train"].tobytes(), res.distances["holdout_to_train"].tobytes())


def test_dcr_of_an_ordinary_table_is_unchanged(monkeypatch):
    real, syn = tiny_frame(600, 1), tiny_frame(300, 2)
    schema = _schema(real)
    old = score_dcr(real.iloc[:400], real.iloc[400:], syn, schema, rows=300, seed=0, scale="reference")
    # The figures before the bounded encoding (every categorical one-hot), to the last bit, each
    # side on its own range as they were then.
    assert (old.dcr_share, old.dcr_median, old.dcr_holdout_median, old.nndr_median) == (
        0.43166666666666664, 0.0367666520178318, 0.042842352762818336, 0.7630764986751726)
    res = score_dcr(real.iloc[:400], real.iloc[400:], syn, schema, rows=300, seed=0)
    # Every column compared code by code instead: the same bytes (whole mismatches are exact).
    monkeypatch.setattr(privacy, "MAX_ONE_HOT", 0)
    for scale, before in (("reference", old), ("train", res)):
        again = score_dcr(real.iloc[:400], real.iloc[400:], syn, schema, rows=300, seed=0, scale=scale)
        assert _dcr_figures(again) == _dcr_figures(before)


# -- pair trends -----------------------------------------------------------------------------------


def test_pair_trends_of_many_valued_pairs_count_only_the_cells_that_occur(monkeypatch):
    real, syn = tiny_frame(240, 0), tiny_frame(240, 1)
    schema = _schema(real)
    dense = score_fidelity(real, syn, schema)
    stream_dense = score_streaming(real, lambda: iter([syn.iloc[:100], syn.iloc[100:]]), schema).fidelity()
    monkeypatch.setattr(fidelity, "MAX_CONTINGENCY_CELLS", 0)
    monkeypatch.setattr("pipeline.metrics.streaming.MAX_CONTINGENCY_CELLS", 0)
    sparse = score_fidelity(real, syn, schema)
    stream_sparse = score_streaming(real, lambda: iter([syn.iloc[:100], syn.iloc[100:]]), schema).fidelity()
    for a, b in ((dense, sparse), (stream_dense, stream_sparse)):
        assert len(a.pairs) == len(b.pairs)
        for p, q in zip(a.pairs, b.pairs):
            assert p["metric"] == q["metric"] and p["counted"] == q["counted"]
            assert q["score"] == pytest.approx(p["score"], abs=1e-12)
            if p["metric"] == "ContingencySimilarity":
                assert q["real_association"] == pytest.approx(p["real_association"], abs=1e-12, nan_ok=True)
    # Two 30,000-value columns: 9 * 10^8 cells dense, here only those that occur.
    monkeypatch.undo()
    n = 30_000
    wide = pd.DataFrame({"a": [f"a{i}" for i in range(n)], "b": [f"b{i % 29_999}" for i in range(n)]})
    before = _peak_mb()
    res = score_fidelity(wide, wide.iloc[::-1].reset_index(drop=True), _schema(wide, categorical=("a", "b")))
    assert _peak_mb() - before < 500
    assert res.pairs[0]["score"] == pytest.approx(1.0)


# -- generate --------------------------------------------------------------------------------------


def _tree(folder) -> dict:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("rows, per, says", [
    (10**15, 100_000, "generate.rows 1,000,000,000,000,000 is more than"),
    (10**8, 100, "shards, more than"),
    (10**6, 100_000, "MB of synthetic data"),
])
def test_generate_refuses_a_plan_that_cannot_finish_before_writing(scored_tiny, monkeypatch, rows, per, says):
    cfg = scored_tiny
    cfg.generate.rows, cfg.generate.rows_per_shard = rows, per
    monkeypatch.setattr("pipeline.generate.free_mb", lambda folder: 1.0)  # a 1 MB disk: 10^6 rows do not fit
    work = Path(cfg.work_dir)
    before = _tree(work)
    with pytest.raises(ConfigError) as err:
        generate.run(cfg, "tiny")
    message = str(err.value)
    assert says in message and "generate.rows" in message and "\n" not in message
    assert _tree(work) == before  # nothing written, nothing replaced
