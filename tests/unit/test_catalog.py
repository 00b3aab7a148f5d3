"""The release catalog (Python API and CLI), data cards and the schema contract, on releases made
by the real pipeline on a tiny table."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import pytest

from pipeline import generate, ingest, publish, score, train
from pipeline.catalog import Catalog
from pipeline.errors import ReleaseError
from pipeline.release.layout import DATACARD, MANIFEST
from tests.conftest import REPO, light_detector, tiny_config, tiny_frame


def _make(cfg, rows: int, version: str):
    cfg.generate.rows = rows
    for stage in (generate, score):
        stage.run(cfg, "tiny")
    return publish.run(cfg, "tiny", version=version)


@pytest.fixture(scope="module")
def _released_template(tmp_path_factory) -> Path:
    """Made once for this module: tiny trained, then released as v1 (150 rows) and v2 (220)."""
    root = tmp_path_factory.mktemp("released")
    tiny_frame().to_parquet(root / "tiny.parquet", index=False)
    cfg = tiny_config(root, root / "tiny.parquet")
    ingest.run(cfg, "tiny")
    train.run(cfg, "tiny")
    with light_detector():
        _make(cfg, 150, "v1")
        _make(cfg, 220, "v2")
    return root


@pytest.fixture
def released(_released_template, tmp_path):
    """A fresh copy of those releases and their work for one test, and its config (at 220 rows)."""
    shutil.copytree(_released_template, tmp_path, dirs_exist_ok=True)
    cfg = tiny_config(tmp_path, tmp_path / "tiny.parquet")
    cfg.generate.rows = 220
    return cfg, Catalog(cfg.publish.release_root)


def test_list_show_and_load_pinned_or_latest(released):
    cfg, cat = released
    assert cat.datasets() == ["tiny"] and cat.versions("tiny") == ["v1", "v2"] and cat.latest("tiny") == "v2"
    assert cat.manifest("tiny")["version"] == "v2" and cat.manifest("tiny@v1")["rows"] == 150
    v1 = cat.load("tiny@v1")
    pd.testing.assert_frame_equal(v1, pd.read_parquet(Path(cfg.publish.release_root) / "tiny" / "v1"))
    assert len(v1) == 150 and len(cat.load("tiny")) == 220
    real = pd.read_parquet(Path(cfg.work_dir) / "tiny/prepared/train.parquet")
    assert dict(v1.dtypes.astype(str)) == dict(real.dtypes.astype(str))
    old = cat.load("tiny", columns=["age", "income"], filter=pc.field("age") > 50)
    assert list(old.columns) == ["age", "income"] and (old["age"] > 50).all()
    assert len(old) == (cat.load("tiny")["age"] > 50).sum()
    with pytest.raises(ReleaseError, match="no version 'v9'"):
        cat.load("tiny@v9")
    with pytest.raises(ReleaseError, match="no releases of 'nope'"):
        cat.load("nope")


def test_diff_reports_rows_metrics_schema_and_drift(released):
    _, cat = released
    d = cat.diff("tiny@v1", "tiny@v2")
    assert d["rows"] == {"a": 150, "b": 220, "delta": 70}
    assert d["schema"] == {"breaking": [], "compatible": []}
    assert d["metrics"]["quality.overall"]["delta"] == pytest.approx(
        d["metrics"]["quality.overall"]["b"] - d["metrics"]["quality.overall"]["a"])
    assert 0.5 < d["drift"]["quality.overall"] <= 1.0 and "age" in d["drift"]["columns"]


def test_export_parquet_and_csv_and_read_from_an_fsspec_filesystem(released, tmp_path):
    import fsspec

    cfg, cat = released
    cat.export("tiny@v1", str(tmp_path / "v1.parquet"))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "v1.parquet"), cat.load("tiny@v1"))
    cat.export("tiny@v1", str(tmp_path / "v1.csv"), "csv")
    assert len(pd.read_csv(tmp_path / "v1.csv")) == 150
    mem = fsspec.filesystem("memory")
    mem.put(str(Path(cfg.publish.release_root)), "/shared/releases", recursive=True)
    remote = Catalog("memory://shared/releases")
    assert remote.versions("tiny") == ["v1", "v2"]
    pd.testing.assert_frame_equal(remote.load("tiny@v1"), cat.load("tiny@v1"))


@pytest.mark.slow  # the CLI in subprocesses
def test_cli_lists_shows_diffs_and_exports(released, tmp_path):
    cfg, _ = released
    root = cfg.publish.release_root

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "pipeline", "releases", "--root", root, *args],
                              capture_output=True, text=True, cwd=REPO, timeout=300)

    out = cli("list")
    assert out.returncode == 0 and "tiny  latest v2  (2 versions)" in out.stdout
    out = cli("list", "tiny")
    assert "v1" in out.stdout and "v2" in out.stdout and "(latest)" in out.stdout
    assert json.loads(cli("show", "tiny@v1", "--json").stdout)["rows"] == 150
    assert cli("show", "tiny@v1").stdout.startswith("tiny@v1\n")
    assert json.loads(cli("diff", "tiny@v1", "tiny").stdout)["rows"]["delta"] == 70
    out = cli("export", "tiny@v1", "--to", str(tmp_path / "x.csv"))
    assert out.returncode == 0 and len(pd.read_csv(tmp_path / "x.csv")) == 150
    out = cli("show", "tiny@v7")
    assert out.returncode == 2 and "no version 'v7'" in out.stderr


def test_data_card_is_written_into_every_release(released):
    cfg, cat = released
    card = cat.read_text("tiny", DATACARD)
    manifest = cat.manifest("tiny")
    for needle in (manifest["source_hash"], manifest["model_hash"], f"seed {manifest['seed']}",
                   "`quality.overall`", "## Intended use", "## Known limits", "220 rows"):
        assert needle in card, needle
    # a release folder stays a clean Parquet dataset for plain readers
    assert len(pd.read_parquet(Path(cfg.publish.release_root) / "tiny" / "v2")) == 220


@pytest.mark.slow  # ~2 s: a second run of the stages
def test_a_schema_breaking_release_is_refused_unless_allowed(released):
    cfg, cat = released
    cfg.datasets["tiny"].drop_columns = ["city"]
    for stage in (ingest, train, generate, score):
        stage.run(cfg, "tiny")
    with pytest.raises(ReleaseError, match="column 'city' removed"):
        publish.run(cfg, "tiny", version="v3")
    assert cat.latest("tiny") == "v2" and cat.versions("tiny") == ["v1", "v2"]
    cfg.publish.allow_breaking_changes = True
    publish.run(cfg, "tiny", version="v3")
    assert cat.manifest("tiny@v3")["schema_changes"]["breaking"] == ["column 'city' removed"]
    # adding the column back is a compatible change, recorded and released without consent
    cfg.publish.allow_breaking_changes = False
    cfg.datasets["tiny"].drop_columns = []
    for stage in (ingest, train, generate, score):
        stage.run(cfg, "tiny")
    publish.run(cfg, "tiny", version="v4")
    assert cat.manifest("tiny@v4")["schema_changes"]["compatible"] == ["column 'city' added"]


def _strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def shown(scored_tiny, tmp_path):
    """tiny@v1: the scored tiny rows published under --threshold quality.overall>=0.1 (params ask a
    min of 0.99 the rows fail); tiny@v0: an older hand-made version with other params and lineage
    and a NaN score; other@v1: the same rows as another dataset's release."""
    from pipeline.config import parse_overrides
    from tests.conftest import tiny_config

    cfg = tiny_config(tmp_path, Path(scored_tiny.datasets["tiny"].source), **{
        "score.thresholds": {"quality.overall": {"min": 0.99, "max": 1.0}, "detection.auc": {"max": 1.0}}},
        **parse_overrides([], ["quality.overall>=0.1"]))
    publish.run(cfg, "tiny", version="v1")
    root = Path(cfg.publish.release_root)

    def copy_as(dataset: str, version: str, edit) -> None:
        shutil.copytree(root / "tiny" / "v1", root / dataset / version)
        path = root / dataset / version / MANIFEST
        manifest = json.loads(path.read_text())
        manifest.update(dataset=dataset, version=version)
        edit(manifest)
        path.write_text(json.dumps(manifest))  # NaN as the manifest writer would write it

    def older(m):
        m["created_at"] = "2000-01-01T00:00:00+00:00"
        m["params"]["train"]["epochs"], m["params"]["seed"], m["seed"], m["seeds"]["train"] = 150, 42, 42, 42
        m["params"]["datasets"]["adult"] = {"source": "data/adult/train.parquet"}  # not this dataset's: not shown
        m["model_hash"], m["code_version"] = "f" * 64, "0.0.9"
        m["metrics"]["quality.overall"] = float("nan")

    def other(m):
        m["params"]["datasets"] = {"other": m["params"]["datasets"]["tiny"]}

    copy_as("tiny", "v0", older)
    copy_as("other", "v1", other)
    (root / "other" / "latest.json").write_text(json.dumps({"version": "v1"}))
    return str(root), Catalog(root)


def test_show_prints_a_summary_by_default_and_the_manifest_with_json(shown, capsys):
    from pipeline.__main__ import main

    root, cat = shown
    assert main(["releases", "--root", root, "show", "tiny"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tiny@v1  (latest)\n") and "rows     250 in 8 columns (table)" in out
    assert "holdout 48 rows, split from the source (ingest.holdout_fraction 0.2)" in out
    assert "model    ctgan: epochs 2, seed 7" in out and "code " in out
    assert re.search(r"\n  quality\.overall +0\.\d{3}  >= 0\.1 and <= 1\.0 +ok\n", out), out
    assert re.search(r"\n  detection\.auc +0\.\d{3}  <= 1\.0 +ok\n", out), out
    assert re.search(r"\n  quality\.column_pair_trends +0\.\d{3}\n", out), out  # a headline score, no threshold
    assert "gate     passed" in out and "changed by --threshold: quality.overall >= 0.99 -> >= 0.1" in out
    assert re.search(r"\n  part-00000\.parquet +100 rows +\d+\.\d KiB\n", out), out
    assert main(["releases", "--root", root, "show", "tiny@v0"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\n  quality\.overall +nan  >= 0\.1 and <= 1\.0 +\?\n", out), out
    assert not [word for word in ("release_root", "hidden_dims", "adult") if word in out]  # no params dump
    assert main(["releases", "--root", root, "show", "tiny@v1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == cat.manifest("tiny@v1")


def test_show_reads_a_hand_edited_partial_manifest_without_a_traceback(shown, capsys):
    from pipeline.__main__ import main

    root, _ = shown
    v1, bare = Path(root) / "tiny" / "v1", Path(root) / "tiny" / "bare"
    bare.mkdir()
    shutil.copyfile(v1 / "part-00000.parquet", bare / "part-00000.parquet")
    part = json.loads((v1 / MANIFEST).read_text())["files"][0]
    partial = {"dataset": "tiny", "version": "bare", "files": [{"path": "part-00000.parquet"}],
               "metrics": {"quality.overall": "high"},
               "gate": {"thresholds": {"quality.overall": {"min": "0.7"}}, "overrides": [{"metric": "x"}]},
               "training": [], "schema": {"a": 1}, "seeds": None}
    (bare / MANIFEST).write_text(json.dumps(partial))
    # Without its part's rows, size and hash a manifest cannot vouch for its files: refused.
    assert main(["releases", "--root", root, "show", "tiny@bare"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tiny/bare/_manifest.json: files entry 'part-00000.parquet' has no 'bytes'" in err
    # What it lists is whole: the rest, however odd, is shown as '?'.
    (bare / MANIFEST).write_text(json.dumps({**partial, "files": [part], "rows": part["rows"]}))
    assert main(["releases", "--root", root, "show", "tiny@bare"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tiny@bare\n") and "created  ?" in out and "rows     100 in ? columns" in out
    assert "model    ?: epochs ?, seed ?" in out and "gate     ?" in out
    assert re.search(r"\n  quality\.overall +\?  >= 0\.7 +\?\n", out), out
    assert re.search(r"\n  part-00000\.parquet +100 rows +\d+\.\d KiB\n", out), out


def test_diff_is_strict_json_with_params_and_lineage_changes(shown, capsys):
    from pipeline.__main__ import main

    root, _ = shown
    assert main(["releases", "--root", root, "diff", "tiny@v0", "tiny@v1"]) == 0
    d = _strict_json(capsys.readouterr().out)
    assert d["params"]["train.epochs"] == [150, 2] and d["params"]["seed"] == [42, 7]
    assert not [k for k in d["params"] if k.startswith("datasets.adult")]  # another dataset's entry
    assert d["lineage"]["model_hash"][0] == "f" * 64 and d["lineage"]["code_version"][0] == "0.0.9"
    assert d["lineage"]["seeds.train"] == [42, 7] and d["lineage"]["seed"] == [42, 7]
    assert "source_hash" not in d["lineage"]  # the same source
    assert d["metrics"]["quality.overall"]["a"] is None and d["metrics"]["quality.overall"]["delta"] is None
    assert d["rows"] == {"a": 250, "b": 250, "delta": 0} and d["schema"] == {"breaking": [], "compatible": []}


def test_diff_of_two_datasets_is_refused_unless_forced(shown, capsys):
    from pipeline.__main__ import main

    root, cat = shown
    assert main(["releases", "--root", root, "diff", "tiny@v1", "other"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "different datasets" in err and "--force" in err
    with pytest.raises(ReleaseError, match="different datasets"):
        cat.diff("tiny", "other")
    assert main(["releases", "--root", root, "diff", "tiny@v1", "other", "--force"]) == 0
    d = _strict_json(capsys.readouterr().out)
    assert (d["a"], d["b"]) == ("tiny@v1", "other@v1") and d["rows"]["delta"] == 0
    assert d["params"]["datasets.tiny.source"][1] is None and d["params"]["datasets.other.source"][0] is None


def test_two_publishes_in_one_second_keep_their_order(scored_tiny, monkeypatch):
    """Versions are ordered by their manifests' creation time: two publishes in the same second
    (a retry, a pinned version right after) must still be told apart, or a prune deletes the wrong
    one (this once failed CI now and then on the object store)."""
    import datetime as dt

    import pipeline.release.contents as contents
    from pipeline.release.store import release_store

    ticks = iter([dt.datetime(2026, 12, 4, 15, 43, 11, 100, tzinfo=dt.timezone.utc),
                  dt.datetime(2026, 12, 4, 15, 43, 11, 200, tzinfo=dt.timezone.utc)])

    class SameSecond(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return next(ticks)

    monkeypatch.setattr(contents, "datetime", SameSecond)
    tiny_cfg = scored_tiny
    publish.run(tiny_cfg, "tiny", version="v20261204T154311Z")
    publish.run(tiny_cfg, "tiny", version="v2")  # sorts first by name, was made last
    cat = Catalog(tiny_cfg.publish.release_root)
    assert cat.versions("tiny") == ["v20261204T154311Z", "v2"] and cat.latest("tiny") == "v2"
    assert release_store(tiny_cfg.publish.release_root, "tiny").prune(keep=1) == ["v20261204T154311Z"]
