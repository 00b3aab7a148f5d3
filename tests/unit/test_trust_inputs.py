"""Issue 32, hostile inputs: credentials in URLs are never written or shown, a setting cannot switch
the gate off or ask for more than the machine has, a damaged old release does not block publishing,
and an ad-hoc name is not taken over by another source. Each finding is one line or handled."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import logging
import math
import threading
from pathlib import Path

import pytest
import yaml

from pipeline.__main__ import main
from pipeline.config import Threshold, build_config, parse_overrides
from pipeline.errors import ConfigError, InputDataError, PipelineError
from pipeline.redact import redact
from tests.conftest import tiny_config, tiny_frame

SECRETS = ("hunter2", "alice", "tok123", "SECRETKEY")


def _params_file(tmp_path: Path, source: Path, **overrides) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tmp_path, source, **overrides).to_dict()))
    return path


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    for needle in needles:
        assert needle in err, err
    assert "Traceback" not in err
    return err


@pytest.fixture
def restore_logging():
    level = logging.getLogger("pipeline").level
    yield
    logging.getLogger("pipeline").setLevel(level)


# ---------------------------------------------------------------------------------------------
# secrets


@pytest.mark.parametrize("text, shown", [
    ("http://alice:hunter2@host:8/x.csv", "http://***@host:8/x.csv"),
    ("s3://KEY:SECRET@bucket/x.csv: file not found", "s3://***@bucket/x.csv: file not found"),
    ("https://tok@github.com/a", "https://***@github.com/a"),
    ("https://b.example/k.csv?X-Amz-Credential=AK&X-Amz-Signature=abc&x=1",
     "https://b.example/k.csv?X-Amz-Credential=***&X-Amz-Signature=***&x=1"),
    ("https://h/x.csv?token=tok123: cannot be read", "https://h/x.csv?token=***: cannot be read"),
    ("quality.overall >= 0.7 (user@host)", "quality.overall >= 0.7 (user@host)"),  # no URL: as it is
    ("/data/a@b/x.csv", "/data/a@b/x.csv"),
])
def test_redact_masks_url_credentials_only(text, shown):
    assert redact(text) == shown
    assert redact(shown) == shown  # idempotent


def test_error_lines_never_carry_credentials():
    err = InputDataError("s3://KEY:SECRETKEY@bucket/x.csv", "cannot be read: denied for s3://KEY:SECRETKEY@bucket")
    assert "SECRETKEY" not in str(err) and "SECRETKEY" not in err.path
    assert "SECRETKEY" not in str(PipelineError("ftp://u:SECRETKEY@h/x: refused"))


@pytest.mark.parametrize("source", ["memory://KEY:SECRETKEY@bucket/missing.csv",
                                    "ftp://alice:hunter2@127.0.0.1:1/x.csv"])  # nothing listens on port 1
def test_a_refused_url_source_is_one_line_without_its_secret(tmp_path, tiny_source, capsys, source, restore_logging):
    params = _params_file(tmp_path, tiny_source)
    assert main(["validate", "--source", source, "--name", "s", "--params", str(params), "--no-estimate", "-q"]) == 2
    err = _one_line_error(capsys, "***@")
    assert not any(s in err for s in SECRETS)


@contextlib.contextmanager
def _http_server(folder: Path):
    """A loopback HTTP server over ``folder`` (it ignores the credentials the URL carries)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow  # a whole run of a tiny table (~10 s)
def test_credentials_in_a_source_url_appear_in_no_output(tmp_path, tiny_source, capsys, restore_logging):
    pytest.importorskip("aiohttp")  # fsspec's http:// filesystem
    served = tmp_path / "served"
    served.mkdir()
    tiny_frame().to_csv(served / "shop.csv", index=False)
    params = _params_file(tmp_path, tiny_source, **{"score.report": True})
    log_file = tmp_path / "run.log"
    with _http_server(served) as port:
        url = f"http://alice:hunter2@127.0.0.1:{port}/shop.csv"
        common = ["--params", str(params), "--set", "train.epochs=1", "--log-file", str(log_file)]
        assert main(["run", "--source", url, "--name", "shop", *common]) == 0
        # The gate changed at publish: the command line is recorded in the manifest (masked).
        assert main(["publish", "--dataset", "shop", *common, "--threshold", "quality.overall>=0.01"]) == 0
        # The remembered entry has no credentials: a stage run by name says how to give them.
        assert main(["ingest", "--dataset", "shop", *common, "--log-format", "json"]) == 2
    out = capsys.readouterr()
    assert "credentials were masked" in out.err and "--source" in out.err
    written = [p for p in tmp_path.rglob("*") if p.is_file() and served not in p.parents]
    assert any(p.name == "_manifest.json" for p in written) and any(p.suffix == ".parquet" for p in written)
    assert any(p.name == "_report.html" for p in written) and log_file in written
    for path in written:
        data = path.read_bytes()
        for secret in SECRETS[:2]:
            assert secret.encode() not in data, f"{secret} in {path}"
    for text in (out.out, out.err):
        assert not any(s in text for s in SECRETS[:2])
    manifest = json.loads(next(p for p in written if p.name == "_manifest.json").read_text())
    assert manifest["source"] == f"http://***@127.0.0.1:{port}/shop.csv" and len(manifest["source_hash"]) == 64


# ---------------------------------------------------------------------------------------------
# settings that cannot mean anything


@pytest.mark.parametrize("setting, needle", [
    ("score.thresholds={quality.overall: {min: .nan}}", "finite"),
    ("score.thresholds={detection.auc: {max: .inf}}", "finite"),
    ("score.thresholds={quality.overall: {min: 0.9, max: 0.1}}", "above max"),
    ("seed=-1", "seed"),
    (f"seed={2**70}", "seed"),
    (f"train.epochs={'9' * 5000}", "train.epochs"),
    ("model.diffusion.hidden_dims=[1000000000]", "hidden_dims"),
    ("runtime.threads=100000", "runtime.threads"),
])
def test_meaningless_settings_are_one_line(tmp_path, tiny_source, capsys, setting, needle, restore_logging):
    params = _params_file(tmp_path, tiny_source)
    assert main(["validate", "--dataset", "tiny", "--params", str(params), "--no-estimate", "-q",
                 "--set", setting]) == 2
    err = _one_line_error(capsys, needle)
    assert len(err) < 400


@pytest.mark.parametrize("threshold", ["privacy.dcr_share<=-5", "quality.overall>=1.5", "detection.auc<=2"])
def test_a_bound_outside_its_metrics_range_is_refused(tmp_path, tiny_source, capsys, threshold, restore_logging):
    params = _params_file(tmp_path, tiny_source)
    assert main(["validate", "--dataset", "tiny", "--params", str(params), "--no-estimate", "-q",
                 "--threshold", threshold]) == 2
    _one_line_error(capsys, threshold.split("<")[0].split(">")[0], "range")


def test_a_nan_bound_can_never_pass_the_gate():
    from pipeline.metrics import evaluate_gate

    sneaked = Threshold.model_construct(min=math.nan, max=None)  # past validation, as from an old record
    passed, failures = evaluate_gate({"quality.overall": 0.5}, {"quality.overall": sneaked})
    assert not passed and "not a finite number" in failures[0]


def test_far_beyond_the_machine_is_refused(tmp_path, tiny_source, monkeypatch):
    from pipeline import runtime
    from pipeline.stages import check_config

    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    cfg = tiny_config(tmp_path, tiny_source, **{"runtime.threads": 9})
    with pytest.raises(ConfigError, match=r"runtime.threads 9 .* at most 8"):
        check_config(cfg, ["tiny"])
    cfg = tiny_config(tmp_path, tiny_source, **{"model.diffusion.hidden_dims": [65536, 65536, 65536]})
    with pytest.raises(ConfigError, match=r"model.diffusion.hidden_dims .* GiB"):
        check_config(cfg, ["tiny"])
    check_config(tiny_config(tmp_path, tiny_source, **{"runtime.threads": 8}), ["tiny"])  # within bounds


def test_a_params_file_with_an_unreadable_integer_is_one_line(tmp_path):
    from pipeline.config import load_config

    path = tmp_path / "params.yaml"
    path.write_text(f"seed: {'7' * 5000}\ndatasets: {{}}\n")
    with pytest.raises(ConfigError, match="cannot be read") as info:
        load_config(path)
    assert "\n" not in str(info.value) and len(str(info.value)) < 400
    with pytest.raises(ConfigError, match="cannot be read"):
        parse_overrides([f"train.epochs={'9' * 5000}"])


def test_the_file_systems_root_is_refused_as_an_output_folder(tmp_path):
    from pipeline.stores import check_writable

    for key in ("publish.release_root", "work_dir"):
        with pytest.raises(ConfigError, match="file system's root"):
            check_writable("/", key, urls=True)
    before = set(Path("/").iterdir())
    with pytest.raises(ConfigError):
        check_writable("/.", "work_dir")
    assert set(Path("/").iterdir()) == before  # no probe was written


def test_a_valid_threshold_still_loads(tmp_path, tiny_source):
    cfg = build_config(tiny_config(tmp_path, tiny_source).to_dict(),
                       {"score.thresholds": {"quality.overall": {"min": 0.5, "max": 1.0}}})
    assert cfg.score.thresholds["quality.overall"].min == 0.5


# ---------------------------------------------------------------------------------------------
# a damaged old release


@pytest.mark.parametrize("damage", ["not json {", "[1, 2]", '{"dataset": "tiny", "version": "v1"}',
                                    '{"schema": [1, 2]}'])
def test_a_damaged_old_manifest_does_not_block_publishing(scored_tiny, damage, caplog):
    from pipeline import publish

    first = publish.run(scored_tiny, "tiny", version="v1")
    (first.path / "_manifest.json").write_text(damage)
    with caplog.at_level(logging.WARNING, logger="pipeline.release.layout"):
        second = publish.run(scored_tiny, "tiny")  # the same rows: v1 cannot vouch for them any more
    assert second.version != "v1" and (second.path / "_manifest.json").is_file()
    assert any("v1" in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)
    root = first.path.parent
    assert json.loads((root / "latest.json").read_text())["version"] == second.version
    assert publish.list_versions(root) == [second.version]


def test_the_manifest_is_strict_json(scored_tiny):
    from pipeline import publish
    from pipeline.artifacts import StagePaths

    path = StagePaths.of(scored_tiny.work_dir, "tiny").details  # the record publish reads
    details = json.loads(path.read_text())
    details["metrics"]["quality.extra_nan"] = math.nan
    path.write_text(json.dumps(details))
    done = publish.run(scored_tiny, "tiny")
    text = (done.path / "_manifest.json").read_text()
    manifest = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in the manifest"))
    assert manifest["metrics"]["quality.extra_nan"] is None


# ---------------------------------------------------------------------------------------------
# --name takeover


def test_an_ad_hoc_name_is_not_taken_over_by_another_source(tmp_path, tiny_source, capsys, restore_logging):
    params = _params_file(tmp_path, tiny_source)
    mine, other = tmp_path / "shop.csv", tmp_path / "other.csv"
    tiny_frame(200, seed=1).to_csv(mine, index=False)
    tiny_frame(200, seed=2).to_csv(other, index=False)
    remembered = tmp_path / "work" / "shop" / "dataset.json"
    remembered.parent.mkdir(parents=True)
    remembered.write_text(json.dumps({"dataset": "shop", "entry": {"source": str(mine)}}))
    common = ["--params", str(params), "--no-estimate", "-q"]
    assert main(["validate", "--source", str(other), "--name", "shop", *common]) == 2
    _one_line_error(capsys, "--force", str(mine))
    assert main(["validate", "--source", str(mine), "--name", "shop", *common]) == 0  # its own source
    assert main(["validate", "--source", str(other), "--name", "shop", "--force", *common]) == 0
    capsys.readouterr()
    # No work folder (cleaned): the latest release says where the name came from.
    remembered.unlink()
    release = tmp_path / "releases" / "shop" / "v1"
    release.mkdir(parents=True)
    (release / "_manifest.json").write_text(json.dumps({"dataset": "shop", "version": "v1", "source": str(mine),
                                                        "schema": [], "files": [], "rows": 0}))
    (release.parent / "latest.json").write_text(json.dumps({"dataset": "shop", "version": "v1"}))
    assert main(["validate", "--source", str(other), "--name", "shop", *common]) == 2
    _one_line_error(capsys, "--force")
