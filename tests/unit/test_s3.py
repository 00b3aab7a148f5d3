"""A source and a release root on a real S3-compatible server: moto's, started by the test on a
free local port. Every S3 client finds it through the standard AWS environment
(``AWS_ENDPOINT_URL``, honoured by botocore >= 1.31), so nothing in params names it."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest
import yaml

from pipeline import generate, ingest, publish, score, train
from pipeline.__main__ import main
from pipeline.catalog import Catalog
from pipeline.errors import ReleaseIntegrityError
from pipeline.release.store import release_store
from pipeline.stages import check_outputs_writable
from tests.conftest import tiny_config, tiny_frame

moto_server = pytest.importorskip("moto.server", reason="needs moto[server] (the dev extra)")
pytest.importorskip("s3fs", reason="needs s3fs (the dev extra)")

pytestmark = pytest.mark.slow  # a server thread, and the five stages

BUCKET = "synth"
FAST = {"train.epochs": 1, "generate.rows": 120, "publish.release_root": f"s3://{BUCKET}/releases"}


@pytest.fixture(scope="module")
def s3():
    """The server for this module, the AWS environment pointing at it, and an s3fs client."""
    import fsspec

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    try:
        with pytest.MonkeyPatch.context() as env:
            for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
                env.delenv(key, raising=False)
            env.setenv("AWS_ACCESS_KEY_ID", "testing")
            env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            env.setenv("AWS_DEFAULT_REGION", "us-east-1")
            env.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
            fs = fsspec.filesystem("s3", skip_instance_cache=True)
            fs.mkdir(BUCKET)
            fs.pipe_file(f"{BUCKET}/in/tiny.csv", tiny_frame().to_csv(index=False).encode())
            yield fs
    finally:
        server.stop()


def test_ingest_from_s3_publish_to_s3_and_read_back_with_the_catalog(s3, tmp_path, capsys):
    cfg = tiny_config(tmp_path, f"s3://{BUCKET}/in/tiny.csv", target=None, **FAST)
    check_outputs_writable(cfg)
    for stage in (ingest, train, generate, score):
        stage.run(cfg, "tiny")
    res = publish.run(cfg, "tiny")
    assert str(res.path) == f"s3://{BUCKET}/releases/tiny/{res.version}"

    cat = Catalog(f"s3://{BUCKET}/releases")
    assert cat.datasets() == ["tiny"] and cat.versions("tiny") == [res.version] and cat.latest("tiny") == res.version
    manifest = cat.manifest("tiny")
    assert manifest["source"] == f"s3://{BUCKET}/in/tiny.csv"
    assert manifest["source_hash"] == hashlib.sha256(s3.cat_file(f"{BUCKET}/in/tiny.csv")).hexdigest()
    frame = cat.load("tiny")
    assert len(frame) == manifest["rows"] == 120 and list(frame.columns) == [c["name"] for c in manifest["schema"]]
    assert json.loads(s3.cat_file(f"{BUCKET}/releases/tiny/latest.json"))["version"] == res.version
    assert not s3.exists(f"{BUCKET}/releases/tiny/.lock")  # no lock file in a store

    assert publish.run(cfg, "tiny").version == res.version  # a retry publishes nothing twice
    again = publish.run(cfg, "tiny", version="v2")
    assert Catalog(f"s3://{BUCKET}/releases").latest("tiny") == "v2"
    assert release_store(cfg.publish.release_root, "tiny").prune(keep=1) == [res.version]
    assert cat.versions("tiny") == [again.version] and not s3.exists(f"{BUCKET}/releases/tiny/{res.version}")

    assert main(["releases", "--root", f"s3://{BUCKET}/releases", "list", "tiny"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 1 and listed[0].startswith("v2 ") and "120 rows" in listed[0] and "(latest)" in listed[0]

    # Integrity on read in the store: verify passes untouched; a changed byte in a part is refused.
    assert main(["releases", "--root", f"s3://{BUCKET}/releases", "verify", "tiny"]) == 0
    assert capsys.readouterr().out.startswith("tiny@v2: ok: ")
    part = f"{BUCKET}/releases/tiny/v2/part-00000.parquet"
    data = bytearray(s3.cat_file(part))
    data[len(data) // 2] ^= 0xFF
    s3.pipe_file(part, bytes(data))
    for args in (["verify", "tiny"], ["export", "tiny", "--to", str(tmp_path / "out.csv")]):
        assert main(["releases", "--root", f"s3://{BUCKET}/releases", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"s3://{part}: does not match the manifest (SHA-256" in err, err
    assert not (tmp_path / "out.csv").exists()
    with pytest.raises(ReleaseIntegrityError, match=f"s3://{part}: does not match the manifest"):
        Catalog(f"s3://{BUCKET}/releases").load("tiny")


def test_cli_run_with_an_s3_source_prints_the_s3_release(s3, tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_config(tmp_path, "unused.csv", target=None, **FAST).to_dict()))
    args = ["run", "--source", f"s3://{BUCKET}/in/tiny.csv", "--name", "fromcli", "--params", str(params), "-q"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    latest = Catalog(f"s3://{BUCKET}/releases").latest("fromcli")
    assert summary["release"] == f"s3://{BUCKET}/releases/fromcli/{latest}"

    # (another name: a different source under "fromcli" would be a takeover, refused without --force)
    assert main([*args[:2], f"s3://{BUCKET}/in/missing.csv", "--name", "other", *args[5:]]) == 2
    assert capsys.readouterr().err.strip() == f"error: s3://{BUCKET}/in/missing.csv: file not found"
    assert main([*args, "--set", "publish.release_root=s3://no-such-bucket/releases"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: publish.release_root: s3://no-such-bucket/releases is not writable")
    assert "\n" not in err
