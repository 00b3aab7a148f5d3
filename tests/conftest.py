"""Shared fixtures: tiny tables and a tiny, fast config rooted in a temporary folder."""

from __future__ import annotations

import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.config import Config, build_config

REPO = Path(__file__).resolve().parent.parent
ADULT = REPO / "data" / "adult" / "train.parquet"


def pytest_configure(config) -> None:
    """Ctrl-C as a terminal gives it: pytest started as a shell's background job (``nohup pytest &``)
    inherits an ignored SIGINT, which the pipeline rightly leaves ignored, and the signal tests would
    then test the shell rather than the code."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # One intra-op thread: the tests' tensors are tiny, so a second thread costs more in handing work
    # over than it saves (the fast tier ran 13 % faster on one than on two idle cores), and on a
    # machine whose other core is busy two threads wait on each other (twice as slow).
    import torch

    torch.set_num_threads(1)


def tiny_frame(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Every kind of column, with missing values in some."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n)
    income = np.where(age + rng.normal(0, 10, n) > 45, ">50K", "<=50K")
    city = rng.choice(["Paris", "Lyon", "Nice", "Lille"], n, p=[0.5, 0.3, 0.15, 0.05]).astype(object)
    city[rng.random(n) < 0.1] = None
    score = rng.gamma(2.0, 3.0, n)
    score[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame({
        "user_id": np.arange(1000, 1000 + n),
        "age": age,
        "score": score,
        "gain": np.where(rng.random(n) < 0.8, 0, rng.integers(100, 5000, n)),
        "city": city,
        "member": rng.random(n) < 0.3,
        "joined": pd.to_datetime("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, n), unit="D"),
        "income": income,
    })


def tiny_config(tmp_path: Path, source: Path, *, target: str | None = "income", holdout: Path | None = None,
                **overrides) -> Config:
    raw = {
        "seed": 7,
        "work_dir": str(tmp_path / "work"),
        "metrics_dir": str(tmp_path / "metrics"),
        "datasets": {"tiny": {"source": str(source), "target": target,
                              "holdout_source": str(holdout) if holdout else None}},
        "model": {"name": "ctgan", "quantile_knots": 101,
                  "gan": {"noise_dim": 16, "generator_dims": [32, 32], "discriminator_dims": [32, 32], "pac": 2},
                  "tvae": {"latent_dim": 16, "encoder_dims": [32], "decoder_dims": [32]}},
        "train": {"epochs": 2, "batch_size": 40, "device": "cpu", "checkpoint_every": 1, "lr_decay": 0.0},
        "generate": {"rows_per_shard": 100},
        "score": {"thresholds": {}, "report": False,  # reports cost ~2 s a score: tests that read them ask
                  "utility_min_holdout": 10},  # tiny holdouts (48 rows) are judged here
        "publish": {"release_root": str(tmp_path / "releases")},
        "runtime": {"threads": 1},  # as pytest_configure: tiny tensors, one thread
    }
    return build_config(raw, overrides)


@pytest.fixture
def tiny_source(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.parquet"
    tiny_frame().to_parquet(path, index=False)
    return path


@pytest.fixture
def tiny_cfg(tmp_path: Path, tiny_source: Path) -> Config:
    return tiny_config(tmp_path, tiny_source)


@contextmanager
def light_detector(trees: int = 20):
    """Score runs inside it fit a detector of ``trees`` trees instead of production's 200 (its other
    settings as they are). For the shared fixtures of tests about the pipeline's mechanics
    (publishing, the catalog, lineage, faults), which read that a detection AUC is there, never
    how strong it is: 5 folds of 200 trees are about a second of each tiny score run. The tests
    of detection itself, and every score run outside these fixtures, fit production's."""
    from pipeline.metrics import detection

    production = detection.CLASSIFIER
    detection.CLASSIFIER = {**production, "max_iter": trees}
    try:
        yield
    finally:
        detection.CLASSIFIER = production


@pytest.fixture(scope="session")
def _scored_tiny_template(tmp_path_factory) -> tuple[Path, Path]:
    """Made once per test session: the tiny table ingested, trained, 250 rows generated and scored
    (a light detector: ``light_detector``)."""
    from pipeline import generate, ingest, score, train

    root = tmp_path_factory.mktemp("scored-tiny")
    source = root / "tiny.parquet"
    tiny_frame().to_parquet(source, index=False)
    cfg = tiny_config(root, source)
    cfg.generate.rows = 250
    with light_detector():
        for stage in (ingest, train, generate, score):
            stage.run(cfg, "tiny")
    return root, source


@pytest.fixture
def scored_tiny(tmp_path: Path, _scored_tiny_template) -> Config:
    """A fresh copy of that scored work (work and metrics folders) for one test, and its config
    (the same as ``tiny_cfg`` with ``generate.rows: 250``); the source file is shared, read-only."""
    root, source = _scored_tiny_template
    for name in ("work", "metrics"):
        shutil.copytree(root / name, tmp_path / name)
    cfg = tiny_config(tmp_path, source)
    cfg.generate.rows = 250
    return cfg


def clipped_sum(per_row: list, clip: float) -> tuple:
    """Each row's scale to norm <= ``clip`` (from Opacus' materialised per-row gradients, [rows, ...]
    a parameter), and what DP-SGD steps with before its noise: the sum of the rows' scaled gradients."""
    import torch  # here: the fast tier's other helpers need no torch

    norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in per_row))
    scale = (clip / (norms + 1e-6)).clamp(max=1.0)
    return scale, [torch.einsum("i,i...->...", scale, g) for g in per_row]

