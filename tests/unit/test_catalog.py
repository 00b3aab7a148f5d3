"""The release catalog (Python API and CLI), data cards and the schema contract, on releases made
by the real pipeline on a tiny table."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc
import pytest

from pipeline import generate, ingest, publish, score, train
from pipeline.catalog import Catalog
from pipeline.errors import ReleaseError
from tests.conftest import REPO


def _make(cfg, rows: int, version: str):
    cfg.generate.rows = rows
    for stage in (generate, score):
        stage.run(cfg, "tiny")
    return publish.run(cfg, "tiny", version=version)


@pytest.fixture
def released(tiny_cfg):
    tiny_cfg.score.report = False
    ingest.run(tiny_cfg, "tiny")
    train.run(tiny_cfg, "tiny")
    _make(tiny_cfg, 150, "v1")
    _make(tiny_cfg, 220, "v2")
    return tiny_cfg, Catalog(tiny_cfg.publish.release_root)


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
    assert json.loads(cli("show", "tiny@v1").stdout)["rows"] == 150
    assert json.loads(cli("diff", "tiny@v1", "tiny").stdout)["rows"]["delta"] == 70
    out = cli("export", "tiny@v1", "--to", str(tmp_path / "x.csv"))
    assert out.returncode == 0 and len(pd.read_csv(tmp_path / "x.csv")) == 150
    out = cli("show", "tiny@v7")
    assert out.returncode == 2 and "no version 'v7'" in out.stderr


def test_data_card_is_written_into_every_release(released):
    cfg, cat = released
    card = cat.read_text("tiny", publish.DATACARD)
    manifest = cat.manifest("tiny")
    for needle in (manifest["source_hash"], manifest["model_hash"], f"seed {manifest['seed']}",
                   "`quality.overall`", "## Intended use", "## Known limits", "220 rows"):
        assert needle in card, needle
    # a release folder stays a clean Parquet dataset for plain readers
    assert len(pd.read_parquet(Path(cfg.publish.release_root) / "tiny" / "v2")) == 220


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
