"""The real Prefect flow (ephemeral API, no server) on a tiny table."""

import json

import pandas as pd
import pytest
import yaml

from tests.conftest import tiny_frame

pytestmark = pytest.mark.e2e


def test_synthesize_flow_runs_the_same_stages_and_releases(tmp_path, monkeypatch):
    from prefect.testing.utilities import prefect_test_harness

    from flows.synthesize import synthesize

    src = tmp_path / "tiny.parquet"
    tiny_frame(300).to_parquet(src, index=False)
    params = {
        "seed": 3, "work_dir": str(tmp_path / "work"), "metrics_dir": str(tmp_path / "metrics"),
        "datasets": {"tiny": {"source": str(src), "target": "income"}},
        "model": {"gan": {"noise_dim": 16, "generator_dims": [32], "discriminator_dims": [32], "pac": 2}},
        "train": {"epochs": 1, "batch_size": 40, "device": "cpu"},
        "score": {"thresholds": {"quality.overall": {"min": 0.2}}},
        "publish": {"release_root": str(tmp_path / "releases")},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with prefect_test_harness(server_startup_timeout=120):
        result = synthesize(dataset="tiny", params=str(tmp_path / "params.yaml"),
                            overrides={"generate.rows": 123})
    assert set(result) == {"ingest", "train", "generate", "score", "publish"}
    latest = json.loads((tmp_path / "releases/tiny/latest.json").read_text())
    assert len(pd.read_parquet(tmp_path / "releases/tiny" / latest["version"])) == 123
