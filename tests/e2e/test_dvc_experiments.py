"""DVC experiments on a tiny Adult sample, in a temporary git repository: `dvc exp run -S` on a
train param and on a gate threshold, and `dvc exp show` comparing the experiments' metrics."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _sh(cmd: list[str], cwd: Path, env: dict) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out.stdout + out.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, dict]:
    """The project's pipeline, dvc.yaml, params and .gitignore with one small table (Adult's first
    300 rows, 200 held out) and the smallest settings, committed (`dvc exp run` needs a commit)."""
    root = tmp_path_factory.mktemp("exp")
    for name in ("pipeline", "dvc.yaml", "params.yaml", ".dvcignore", ".gitignore"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    shutil.rmtree(root / "pipeline" / "__pycache__", ignore_errors=True)
    (root / "data" / "adult").mkdir(parents=True)
    pd.read_parquet(REPO / "data/adult/train.parquet").iloc[:300].to_parquet(root / "data/adult/train.parquet")
    pd.read_parquet(REPO / "data/adult/test.parquet").iloc[:200].to_parquet(root / "data/adult/test.parquet")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["datasets"] = {"adult": params["datasets"]["adult"]}
    params["model"]["name"] = "ctgan"
    params["model"]["gan"].update({"generator_dims": [32], "discriminator_dims": [32], "noise_dim": 16})
    params["train"].update({"epochs": 1, "batch_size": 100, "device": "cpu"})
    params["score"].update({"utility_rows": 100, "detection_rows": 100, "privacy_rows": 50, "report": False})
    params["score"]["thresholds"] = {"quality": {"overall": {"min": 0.2}}}  # the nested form, as in params.yaml
    params["runtime"]["threads"] = 1  # on a loaded machine, OpenMP threads that spin cost detection 30x
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    env.pop("PYTHONPATH", None)
    dvc = [sys.executable, "-m", "dvc"]
    _sh(["git", "init", "-q"], root, env)
    _sh([*dvc, "init", "-q"], root, env)
    _sh([*dvc, "config", "core.analytics", "false"], root, env)
    _sh([sys.executable, "-m", "pipeline", "dvc-yaml"], root, env)  # one dataset, ctgan: its wiring
    _sh(["git", "add", "-A"], root, env)
    _sh(["git", "commit", "-qm", "baseline"], root, env)
    return root, env


def _rows(shown: list[dict]) -> dict[str, dict]:
    """`dvc exp show --json`: every experiment's row by name, with its metrics and params as DVC
    read them from the experiment's commit."""
    def read(r: dict) -> dict:
        data = r.get("data") or {}
        return {"metrics": ((data.get("metrics") or {}).get("metrics/adult.json") or {}).get("data"),
                "params": ((data.get("params") or {}).get("params.yaml") or {}).get("data")}

    rows = {}
    for row in shown:
        for exp in row.get("experiments") or []:
            for r in exp.get("revs") or []:
                rows[r["name"]] = read(r)
    return rows


def _locked(root: Path, stage: str) -> dict:
    """The stage's entry in dvc.lock: what DVC last ran it with."""
    return yaml.safe_load((root / "dvc.lock").read_text())["stages"][stage]


def test_experiments_carry_their_metrics_and_a_threshold_change_reruns_publish_alone(repo):
    root, env = repo
    dvc = [sys.executable, "-m", "dvc"]
    out = _sh([*dvc, "exp", "run", "-n", "epochs2", "-S", "train.epochs=2"], root, env)
    assert "Running stage 'train@adult'" in out and "Running stage 'publish@adult'" in out
    details, metrics = root / "work/adult/score/details.json", root / "metrics/adult.json"
    scored = (details.stat().st_mtime_ns, metrics.read_text(), _locked(root, "score@adult"))

    # A gate threshold, in the nested form DVC's -S writes: publish judges it, scoring is not re-run.
    out = _sh([*dvc, "exp", "run", "-n", "loose", "-S", "score.thresholds.quality.overall.min=0.1"], root, env)
    assert "Running stage 'publish@adult'" in out and "Running stage 'score@adult'" not in out, out
    assert (details.stat().st_mtime_ns, metrics.read_text(), _locked(root, "score@adult")) == scored
    assert yaml.safe_load((root / "params.yaml").read_text())["score"]["thresholds"] == \
        {"quality": {"overall": {"min": 0.1}}}

    shown = subprocess.run([*dvc, "exp", "show", "--json"], cwd=root, env=env, capture_output=True, text=True,
                           timeout=300)
    assert shown.returncode == 0, shown.stderr
    rows = _rows(json.loads(shown.stdout))
    first, second = rows["epochs2"], rows["loose"]
    for row in (first, second):
        # numbers only: every value DVC shows is a number it can compare (null: a score that is NaN)
        assert isinstance(row["metrics"]["quality.overall"], float)
        assert all(v is None or type(v) in (int, float) for v in row["metrics"].values()), row["metrics"]
        assert row["params"]["train"]["epochs"] == 2
    assert first["metrics"] == json.loads(metrics.read_text())
    assert second["metrics"] == first["metrics"]  # the same scores, judged under another threshold
    assert second["params"]["score"]["thresholds"]["quality"]["overall"]["min"] == 0.1

    # A threshold the scores miss: publish judges it, under the new threshold, and refuses the release.
    strict = subprocess.run([*dvc, "exp", "run", "-S", "score.thresholds.quality.overall.min=0.99"], cwd=root,
                            env=env, capture_output=True, text=True, timeout=300)
    out = strict.stdout + strict.stderr
    assert strict.returncode != 0 and "quality gate failed" in out and "quality.overall" in out, out
    assert "Running stage 'score@adult'" not in out and _locked(root, "score@adult") == scored[2]
