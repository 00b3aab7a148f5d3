"""The real `dvc repro` on a small sample of Adult, in a temporary copy of the repository."""

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


def _sh(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("repo")
    for name in ("pipeline", "dvc.yaml", "params.yaml", ".dvcignore"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    shutil.rmtree(root / "pipeline" / "__pycache__", ignore_errors=True)
    (root / "data" / "adult").mkdir(parents=True)
    pd.read_parquet(REPO / "data/adult/train.parquet").sample(600, random_state=0).to_parquet(
        root / "data/adult/train.parquet", index=False)
    pd.read_parquet(REPO / "data/adult/test.parquet").sample(300, random_state=0).to_parquet(
        root / "data/adult/test.parquet", index=False)
    (root / "data" / "mnist").mkdir(parents=True)
    pd.read_parquet(REPO / "data/mnist/digits.parquet").iloc[:300].to_parquet(root / "data/mnist/digits.parquet")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["datasets"]["mnist"]["overrides"].update({
        "train.epochs": 1, "train.batch_size": 32, "model.dcgan.width": 8, "score.classifier_epochs": 1,
        "score.thresholds": {"image.label_accuracy": {"min": 0.0}}})
    params["model"]["name"] = "ctgan"  # DVC's wiring is under test, not the default model (which samples slower)
    params["model"]["gan"].update({"generator_dims": [64], "discriminator_dims": [64], "noise_dim": 32})
    params["train"].update({"epochs": 1, "batch_size": 100, "device": "cpu"})
    params["score"]["thresholds"] = {"quality.overall": {"min": 0.3}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    env.pop("PYTHONPATH", None)
    _sh(["git", "init", "-q"], root, env)
    _sh([sys.executable, "-m", "dvc", "init", "-q"], root, env)
    _sh([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], root, env)
    _sh([sys.executable, "-m", "pipeline", "dvc-yaml"], root, env)  # Adult's model is ctgan here: its section
    return root, env


def _repro(root: Path, env: dict) -> str:
    return _sh([sys.executable, "-m", "dvc", "repro"], root, env).stdout


def _versions(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "releases" / "adult").iterdir() if p.name.startswith("v"))


def test_dvc_repro_runs_every_stage_and_releases_parquet(repo):
    root, env = repo
    out = _repro(root, env)
    for stage in ("ingest", "train", "generate", "score", "publish"):
        assert f"'{stage}@adult'" in out
    latest = json.loads((root / "releases/adult/latest.json").read_text())
    release = pd.read_parquet(root / "releases/adult" / latest["version"])
    source = pd.read_parquet(root / "data/adult/train.parquet")
    assert list(release.columns) == list(source.columns)
    assert dict(release.dtypes.astype(str)) == dict(source.dtypes.astype(str))
    assert len(release) == 600
    metrics = json.loads((root / "metrics/adult.json").read_text())
    for key in ("quality.column_shapes", "quality.column_pair_trends", "quality.overall", "utility.tstr_score",
                "utility.trtr_score", "privacy.exact_match_rate", "rows", "coverage.category", "detection.auc",
                "privacy.dcr_share", "privacy.nndr_median"):
        assert key in metrics
    # the release carries its quality report, the one the score stage wrote
    release_dir = root / "releases/adult" / latest["version"]
    scored_report = (root / "work/adult/score/report.html").read_text()
    released_report = (release_dir / "_report.html").read_text()
    assert released_report.startswith(scored_report.split("</body>")[0]) and "<h2>Data card</h2>" in released_report
    assert "## Known limits" in (release_dir / "_DATACARD.md").read_text()
    assert "quality.overall" in (release_dir / "_report.md").read_text()
    assert (root / "dvc.lock").exists()
    shown = _sh([sys.executable, "-m", "dvc", "metrics", "show", "--json"], root, env).stdout
    assert "quality.overall" in shown and "image.fid" in shown

    # The default params release synthetic digits too, in the source's layout.
    latest = json.loads((root / "releases/mnist/latest.json").read_text())
    digits = pd.read_parquet(root / "releases/mnist" / latest["version"])
    assert list(digits.columns) == ["image", "label", "height", "width"] and len(digits) == 240
    metrics = json.loads((root / "metrics/mnist.json").read_text())
    assert {"image.fid", "image.fid_real_floor", "image.label_accuracy", "image.memorized_rate"} <= set(metrics)
    assert (root / "releases/mnist" / latest["version"] / "_samples.png").exists()


def test_nothing_changed_reruns_nothing_and_a_model_param_reruns_that_datasets_train_onwards(repo):
    """A key of Adult's model's section (``model.gan``: ctgan's, here) reruns Adult's train onwards and
    nothing else: not its ingest, not one MNIST stage. (A ``train`` key would rerun MNIST's chain too:
    train@mnist reads the train section, and a model folder trained again is new bytes, its model.json
    recording the seconds it took, so MNIST's generate, score and publish follow.)"""
    root, env = repo
    before = _versions(root)
    out = _repro(root, env)
    assert "Running stage" not in out and _versions(root) == before

    params = yaml.safe_load((root / "params.yaml").read_text())
    params["model"]["gan"]["noise_dim"] = 16
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = _repro(root, env)
    assert "Running stage 'ingest@adult'" not in out
    for stage in ("train", "generate", "score", "publish"):
        assert f"Running stage '{stage}@adult'" in out
        assert f"Running stage '{stage}@mnist'" not in out
    after = _versions(root)
    assert len(after) == len(before) + 1 and set(before) <= set(after)  # the old release is kept


def test_another_models_settings_retrain_nothing_but_the_datasets_of_that_model(repo):
    """Editing model.dcgan leaves Adult's training (ctgan here) as it is and MNIST's not; editing
    model.diffusion (no dataset's model here) leaves both."""
    root, env = repo
    dvc = [sys.executable, "-m", "dvc"]
    text = (root / "params.yaml").read_text()
    params = yaml.safe_load(text)
    params["model"]["dcgan"]["noise_dim"] = 32
    params["model"]["diffusion"]["lr"] = 0.002
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        for stage in ("train@adult", "generate@adult", "score@adult", "publish@adult"):
            assert json.loads(_sh([*dvc, "status", "--json", stage], root, env).stdout) == {}, stage
        mnist = json.loads(_sh([*dvc, "status", "--json", "train@mnist"], root, env).stdout)
        assert mnist == {"train@mnist": [{"changed deps": {"params.yaml": {"model.dcgan": "modified"}}}]}, mnist
        params["model"]["dcgan"]["noise_dim"] = yaml.safe_load(text)["model"]["dcgan"]["noise_dim"]
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        assert json.loads(_sh([*dvc, "status", "--json", "train@mnist"], root, env).stdout) == {}
    finally:
        (root / "params.yaml").write_text(text)


def test_a_local_dvc_remote_round_trip_restores_byte_identical_outputs(repo, tmp_path):
    import hashlib

    root, env = repo
    dvc = [sys.executable, "-m", "dvc"]
    _sh([*dvc, "remote", "add", "-f", "-d", "shared", str(tmp_path / "remote")], root, env)
    _sh([*dvc, "push"], root, env)
    outs = [root / "work/adult" / d for d in ("prepared", "model", "synthetic", "score")]

    def digest() -> dict[str, str]:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for out in outs for p in sorted(out.rglob("*")) if p.is_file()}

    before = digest()
    assert len(before) >= 8
    shutil.rmtree(root / ".dvc" / "cache")
    for out in outs:
        shutil.rmtree(out)
    _sh([*dvc, "pull"], root, env)
    assert digest() == before
    assert "up to date" in _sh([*dvc, "status"], root, env).stdout.lower()
