import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline import generate, ingest, publish, score, train
from pipeline.artifacts import StagePaths
from pipeline.config import Threshold
from pipeline.errors import QualityGateError, ReleaseError
from pipeline.files import LINEAGE_KEY, sha256_file
from pipeline.release.layout import DATACARD, LATEST, MANIFEST
from tests.conftest import light_detector


@pytest.fixture
def scored(scored_tiny):
    return scored_tiny


def _root(cfg) -> Path:
    return Path(cfg.publish.release_root) / "tiny"


def test_release_has_manifest_checksums_lineage_and_latest(scored):
    res = publish.run(scored, "tiny")
    root = _root(scored)
    assert publish.latest_version(root) == res.version and publish.list_versions(root) == [res.version]
    manifest = json.loads((res.path / MANIFEST).read_text())
    assert manifest["rows"] == 250 == len(pd.read_parquet(res.path))
    for f in manifest["files"]:
        assert sha256_file(res.path / f["path"]) == f["sha256"]
    for key in ("source_hash", "params", "model_hash", "code_version", "metrics", "seed"):
        assert manifest[key] is not None
    assert manifest["metrics"]["quality.overall"] > 0
    lineage = json.loads(pq.read_schema(res.path / "part-00000.parquet").metadata[LINEAGE_KEY])
    assert lineage["model_hash"] == manifest["model_hash"] and lineage["version"] == res.version
    # readable by plain pandas with the source's columns and dtypes
    real = pd.read_parquet(Path(scored.work_dir) / "tiny" / "prepared" / "train.parquet")
    assert dict(pd.read_parquet(res.path).dtypes.astype(str)) == dict(real.dtypes.astype(str))


def test_failing_gate_publishes_nothing_and_keeps_latest(scored):
    first = publish.run(scored, "tiny")
    scored.score.thresholds = {"quality.overall": Threshold(min=0.9999)}
    with pytest.raises(QualityGateError, match="quality.overall"):
        publish.run(scored, "tiny")
    assert publish.list_versions(_root(scored)) == [first.version]
    assert publish.latest_version(_root(scored)) == first.version


@pytest.mark.slow  # over a second: the fast tier stays under a minute
def test_versions_are_never_overwritten(scored):
    a = publish.run(scored, "tiny", version="v1")
    before = sha256_file(a.path / "part-00000.parquet")
    with pytest.raises(ReleaseError, match="never overwritten"):
        publish.run(scored, "tiny", version="v1")
    assert sha256_file(a.path / "part-00000.parquet") == before
    # Publishing the rows that are already the latest release (a retried publish) makes no duplicate.
    b = publish.run(scored, "tiny")
    assert b.version == "v1" and publish.list_versions(_root(scored)) == ["v1"]
    scored.generate.rows = 260
    with light_detector():
        generate.run(scored, "tiny")
        score.run(scored, "tiny")
    c = publish.run(scored, "tiny")
    assert c.version != "v1" and publish.list_versions(_root(scored)) == ["v1", c.version]
    assert publish.latest_version(_root(scored)) == c.version


@pytest.mark.slow  # ~2 s: two whole runs
def test_the_same_run_again_is_the_same_model_and_publishes_no_second_version(scored):
    """Issue 31: model.json holds wall-clock seconds, so a model hash of the file differed on every
    run and three identical runs published three versions of the same rows. The hash is of the
    weights and the settings that made them; another setting is another hash."""
    from pipeline.models.saved import model_hash

    paths = StagePaths.of(scored.work_dir, "tiny")

    def the_command() -> None:  # start to end
        with light_detector():
            for stage in (ingest, train, generate, score):
                stage.run(scored, "tiny")

    # Both runs made here, in this test's process state: the shared template's model was trained in
    # whichever earlier test first asked for it (one full run under heavy load found its hash other
    # than a rerun's; not reproduced alone or after its likely neighbours: see the session's note).
    the_command()
    first, made = publish.run(scored, "tiny"), model_hash(paths.model)
    seconds = json.loads((paths.model / "model.json").read_text())["seconds"]
    the_command()  # the same command again
    assert model_hash(paths.model) == made
    # Timings differ from run to run (to the millisecond they can agree by chance: made explicit here)...
    info = json.loads((paths.model / "model.json").read_text())
    (paths.model / "model.json").write_text(json.dumps({**info, "seconds": seconds + 1.0}))
    assert model_hash(paths.model) == made  # ...the model's hash does not
    again = publish.run(scored, "tiny")
    assert again.version == first.version and publish.list_versions(_root(scored)) == [first.version]
    scored.model.gan.ema_decay = 0.9  # another model setting
    train.run(scored, "tiny")
    assert model_hash(paths.model) != made


CRASH = """
import os, sys
from pipeline import publish
from pipeline.release import contents
from tests.conftest import tiny_config
calls = {"n": 0}
real = contents.write_parquet
def dying(*a, **k):
    calls["n"] += 1
    if calls["n"] == 2:
        os._exit(9)  # a hard crash: no exception handler, no cleanup runs
    return real(*a, **k)
contents.write_parquet = dying
cfg = tiny_config(__import__("pathlib").Path(sys.argv[1]), __import__("pathlib").Path(sys.argv[2]))
cfg.generate.rows_per_shard = 100
publish.run(cfg, "tiny", version="v2")  # a named version: the same rows again, on purpose
"""


@pytest.mark.slow  # a subprocess, killed
def test_hard_crash_mid_publish_leaves_no_partial_release(tmp_path, tiny_source):
    import subprocess
    import sys

    from tests.conftest import REPO, tiny_config

    cfg = tiny_config(tmp_path, tiny_source)
    cfg.generate.rows, cfg.generate.rows_per_shard = 250, 100  # 3 shards
    for stage in (ingest, train, generate, score):
        stage.run(cfg, "tiny")
    first = publish.run(cfg, "tiny")
    out = subprocess.run([sys.executable, "-c", CRASH, str(tmp_path), str(tiny_source)], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 9, out.stderr
    root = _root(cfg)
    visible = [p.name for p in root.iterdir() if not p.name.startswith(".")]
    assert sorted(visible) == sorted([first.version, LATEST])  # nothing half-made is visible
    assert publish.latest_version(root) == first.version
    assert [p for p in root.iterdir() if p.name.startswith(".staging")]  # the crash left its staging...
    second = publish.run(cfg, "tiny", version="v3")  # ...which the next publish clears away
    assert not [p for p in root.iterdir() if p.name.startswith(".staging")]
    assert publish.list_versions(root) == [first.version, second.version]


def test_publish_refuses_rows_that_were_not_scored(scored):
    scored.seed = 99
    generate.run(scored, "tiny")  # new rows, old scores
    with pytest.raises(ReleaseError, match="not the rows that were scored"):
        publish.run(scored, "tiny")
    assert publish.list_versions(_root(scored)) == []


def test_publish_refuses_synthetic_data_from_another_model(scored):
    scored.train.epochs = 3
    train.run(scored, "tiny")  # new model; synthetic data is stale
    with pytest.raises(ReleaseError, match="another model"):
        publish.run(scored, "tiny")


def test_a_threshold_relaxed_on_the_command_line_is_recorded_in_the_release(scored, tmp_path):
    from pipeline.config import parse_overrides
    from pipeline.datacard import release_summary
    from tests.conftest import tiny_config

    source = Path(scored.datasets["tiny"].source)
    strict = {"score.thresholds": {"quality.overall": {"min": 0.99, "max": 1.0}, "detection.auc": {"max": 1.0}}}
    with pytest.raises(QualityGateError, match="quality.overall"):
        publish.run(tiny_config(tmp_path, source, **strict), "tiny")
    relaxed = tiny_config(tmp_path, source, **strict, **parse_overrides([], ["quality.overall>=0.1"]))
    res = publish.run(relaxed, "tiny")
    m = json.loads((res.path / MANIFEST).read_text())
    assert m["gate"]["passed"]
    assert m["gate"]["overrides"] == [{"metric": "quality.overall", "bound": "min", "params": 0.99, "used": 0.1}]
    # one bound changed: the metric's other bound and the other thresholds are as params has them
    assert m["gate"]["thresholds"] == {"quality.overall": {"min": 0.1, "max": 1.0},
                                       "detection.auc": {"min": None, "max": 1.0}}
    assert m["gate"]["changed_by"]["user"] is not None
    card = (res.path / DATACARD).read_text()
    assert "(`--threshold`)" in card and "`quality.overall`: ≥ 0.99 → ≥ 0.1" in card
    assert "changed by --threshold: quality.overall >= 0.99 -> >= 0.1" in release_summary(m)


def test_the_data_card_says_where_the_holdout_comes_from(scored):
    from pipeline.datacard import render_datacard

    res = publish.run(scored, "tiny")  # the tiny source has no holdout_source: 20% of it is held out
    card = (res.path / DATACARD).read_text()
    assert "real holdout rows kept out of training: 48, split from the source (ingest.holdout_fraction 0.2)" in card
    assert "`None`" not in card
    m = json.loads((res.path / MANIFEST).read_text())
    m["params"]["datasets"]["tiny"]["holdout_source"] = "data/tiny/test.csv"
    m["holdout_hash"] = "ab" * 32
    assert f"48, from `data/tiny/test.csv` (sha256 `{'ab' * 32}`)" in render_datacard(m, {})
