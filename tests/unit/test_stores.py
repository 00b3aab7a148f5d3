"""Sources and release roots as fsspec URLs, on fsspec's in-memory store (fast); the same against a
real S3-compatible server is tests/unit/test_s3.py (slow)."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import uuid
from pathlib import Path

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import ingest, publish
from pipeline.__main__ import main
from pipeline.artifacts import StagePaths, load_prepared
from pipeline.catalog import Catalog
from pipeline.errors import ConfigError, InputDataError
from pipeline.files import LINEAGE_KEY, remove_leftovers, scratch_dir, sha256_file
from pipeline.release.layout import MANIFEST
from pipeline.release.store import release_store
from pipeline.stores import StorePath, check_writable, is_url, local_copy
from tests.conftest import tiny_config, tiny_frame

MEMORY = fsspec.filesystem("memory")


@pytest.fixture
def store():
    """A fresh prefix of the in-memory store (shared by the whole process), removed after."""
    prefix = f"/t{uuid.uuid4().hex[:12]}"
    yield f"memory:/{prefix}"  # memory://tXXXX
    if MEMORY.exists(prefix):
        MEMORY.rm(prefix, recursive=True)


def _put(url: str, data: bytes) -> str:
    MEMORY.pipe_file(url.removeprefix("memory:/"), data)
    return url


def test_urls_and_local_paths_are_told_apart():
    assert is_url("s3://bucket/x.csv") and is_url("memory://x") and is_url("simplecache::s3://b/x")
    assert not is_url("data/x.csv") and not is_url("file:///tmp/x.csv") and not is_url(Path("s3:/b"))
    with local_copy("file:///tmp/x.csv") as path:  # a file:// URL is a local path, not copied
        assert path == Path("/tmp/x.csv")


def test_a_compressed_semicolon_csv_url_is_ingested_like_the_local_file(tmp_path, store):
    text = tiny_frame().to_csv(index=False, sep=";").encode()
    data = gzip.compress(text, mtime=0)
    url = _put(f"{store}/in/tiny.csv.gz", data)
    local = tmp_path / "tiny.csv.gz"
    local.write_bytes(data)

    by_url = tiny_config(tmp_path / "a", url)
    by_path = tiny_config(tmp_path / "b", local)
    assert ingest.run(by_url, "tiny").source_hash == hashlib.sha256(data).hexdigest() == sha256_file(local)
    ingest.run(by_path, "tiny")
    a, b = load_prepared(StagePaths.of(by_url.work_dir, "tiny")), load_prepared(StagePaths.of(by_path.work_dir, "tiny"))
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])
    assert a[2].to_dict() == b[2].to_dict()
    assert a[3]["source"] == url  # lineage names the URL as written
    assert not list((tmp_path / "a" / "work" / "tiny").glob(".source*"))  # the fetched copy is gone


def test_a_fetched_copy_left_by_a_dead_run_is_removed_by_the_next(tmp_path):
    with scratch_dir(tmp_path, "source") as mine:
        dead = tmp_path / mine.name.replace(f"-{os.getpid()}.", "-999999999.")  # beyond any pid_max
        dead.mkdir()
        assert remove_leftovers(tmp_path) == [dead] and mine.exists()
    assert not mine.exists()


def test_a_parquet_url_with_a_holdout_url(tmp_path, store):
    frame = tiny_frame()
    src, hold = tmp_path / "s.parquet", tmp_path / "h.parquet"
    frame.iloc[:200].to_parquet(src, index=False)
    frame.iloc[200:].to_parquet(hold, index=False)
    cfg = tiny_config(tmp_path, _put(f"{store}/s.parquet", src.read_bytes()),
                      holdout=_put(f"{store}/h.parquet", hold.read_bytes()))
    res = ingest.run(cfg, "tiny")
    meta = json.loads(StagePaths.of(cfg.work_dir, "tiny").schema.read_text())
    assert (res.rows, res.holdout_rows) == (200, 40)
    assert meta["holdout_hash"] == sha256_file(hold) and meta["holdout_source"].startswith("memory://")


def test_source_url_problems_are_one_line_naming_the_url(tmp_path, store):
    ragged = _put(f"{store}/ragged.csv", b"a,b\n1,2\n3,4,5\n")
    _put(f"{store}/folder/x.csv", b"a\n1\n")
    cases = [
        (f"{store}/nope.csv", "file not found"),
        (f"{store}/folder", "target column not found"),  # a folder is a multi-file source, named by its URL
        (ragged, "line 3 has 3 fields"),  # raised about the fetched copy, shown with the URL
        ("nosuchprotocol://b/x.csv", "not a URL fsspec can open"),
    ]
    if importlib.util.find_spec("gcsfs") is None:
        cases.append(("gs://bucket/x.csv", "pip install gcsfs"))
    for url, reason in cases:
        with pytest.raises(InputDataError) as err:
            ingest.run(tiny_config(tmp_path, url), "tiny")
        message = str(err.value)
        assert message.startswith(f"{url}: ") and reason in message and "\n" not in message, message
    assert not (tmp_path / "work" / "tiny" / "prepared").exists()


def test_check_writable_takes_a_release_root_url_and_refuses_a_work_dir_url(tmp_path, store):
    check_writable(f"{store}/releases", "publish.release_root", urls=True)
    assert not MEMORY.exists(store.removeprefix("memory:/"))  # the probe was removed again
    check_writable(f"file://{tmp_path}/releases", "publish.release_root", urls=True)
    _put(f"{store}/afile", b"x")
    with pytest.raises(ConfigError, match="is a file"):
        check_writable(f"{store}/afile", "publish.release_root", urls=True)
    with pytest.raises(ConfigError, match="work_dir: memory://x is a URL; work_dir must be a local folder"):
        check_writable("memory://x", "work_dir")
    if importlib.util.find_spec("adlfs") is None:
        with pytest.raises(ConfigError, match=r"publish.release_root: az://c/r: .*pip install adlfs"):
            check_writable("az://c/r", "publish.release_root", urls=True)


def _same_apart_from_the_root(lineage: dict) -> dict:
    """A manifest or a shard's lineage less what differs between two roots: the time, and the
    release root itself (it is a setting, in params and so in params_hash)."""
    out = {k: v for k, v in lineage.items() if k not in ("created_at", "params_hash", "files", "report_files")}
    out["params"] = {k: v for k, v in lineage["params"].items() if k != "publish"}
    return out


def test_a_release_in_a_store_holds_what_the_local_release_holds(scored_tiny, store):
    local = publish.run(scored_tiny, "tiny", version="v1")
    scored_tiny.publish.release_root = f"{store}/releases"
    remote = publish.run(scored_tiny, "tiny", version="v1")
    assert isinstance(remote.path, StorePath) and str(remote.path) == f"{store}/releases/tiny/v1"
    assert sorted(p.name for p in remote.path.iterdir()) == sorted(p.name for p in local.path.iterdir())
    manifest = json.loads((remote.path / MANIFEST).read_text())
    local_manifest = json.loads((local.path / MANIFEST).read_text())
    assert _same_apart_from_the_root(manifest) == _same_apart_from_the_root(local_manifest)
    assert manifest["params"]["publish"]["release_root"] == f"{store}/releases"
    for f, g in zip(manifest["files"], local_manifest["files"]):
        data = (remote.path / f["path"]).fs.cat_file((remote.path / f["path"]).path)
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["bytes"]
        a, b = pq.read_table(pa.BufferReader(data)), pq.read_table(local.path / g["path"])
        assert a.replace_schema_metadata(None).equals(b.replace_schema_metadata(None))
        assert (_same_apart_from_the_root(json.loads(a.schema.metadata[LINEAGE_KEY]))
                == _same_apart_from_the_root(json.loads(b.schema.metadata[LINEAGE_KEY])))
    latest = json.loads((remote.path.fs.cat_file(f"{store.removeprefix('memory:/')}/releases/tiny/latest.json")))
    assert latest == {"dataset": "tiny", "version": "v1", "manifest": f"v1/{MANIFEST}"}

    cat = Catalog(f"{store}/releases")
    assert cat.datasets() == ["tiny"] and cat.versions("tiny") == ["v1"] and cat.latest("tiny") == "v1"
    assert len(cat.load("tiny")) == cat.manifest("tiny")["rows"] == 250
    assert cat.verify("tiny") == {"release": "tiny@v1", "files": 4, "rows": 250,
                                  "bytes": sum(f["bytes"] for f in manifest["files"] + manifest["report_files"])}
    assert publish.run(scored_tiny, "tiny").version == "v1"  # the same rows again: no duplicate


def test_an_upload_that_dies_leaves_no_version_and_the_next_publish_clears_it(scored_tiny, store, monkeypatch):
    scored_tiny.publish.release_root = f"{store}/releases"
    first = publish.run(scored_tiny, "tiny", version="v1")
    releases = release_store(scored_tiny.publish.release_root, "tiny")
    root = releases.root
    real = StorePath.upload

    def dies_at_the_manifest(self, local):
        if self.name == MANIFEST:
            raise RuntimeError("connection lost")
        return real(self, local)

    with monkeypatch.context() as m:
        m.setattr(StorePath, "upload", dies_at_the_manifest)
        with pytest.raises(RuntimeError, match="connection lost"):
            publish.run(scored_tiny, "tiny", version="v2")
    assert not (root / "v2").exists()  # removed again
    # A publish killed mid-upload leaves files without a manifest: never listed, removed next time.
    (root / "v3" / "part-00000.parquet").write_text("half")
    assert publish.list_versions(root) == Catalog(f"{store}/releases").versions("tiny") == [first.version]
    assert publish.latest_version(root) == first.version
    publish.run(scored_tiny, "tiny", version="v4")
    assert not (root / "v3").exists() and publish.list_versions(root) == ["v1", "v4"]
    assert releases.prune(keep=1) == ["v1"] and publish.list_versions(root) == ["v4"]
    assert not (root / "v1").exists()


def test_releases_cli_reads_a_store_root(scored_tiny, store, capsys):
    scored_tiny.publish.release_root = f"{store}/releases"
    res = publish.run(scored_tiny, "tiny")
    assert main(["releases", "--root", f"{store}/releases", "list"]) == 0
    assert f"tiny  latest {res.version}  (1 versions)" in capsys.readouterr().out
    assert main(["releases", "--root", f"{store}/releases", "list", "tiny"]) == 0
    assert f"{res.version}" in capsys.readouterr().out
