"""Sharded generation on worker processes (and Dask workers) writes the same bytes as one process."""

import hashlib

import numpy as np
import pytest

from pipeline import generate, ingest, train
from pipeline.artifacts import StagePaths
from pipeline.files import read_json
from pipeline.images import frame_of
from tests.unit.test_image_models import image_config, quadrant_images

pytestmark = pytest.mark.slow  # worker processes and Dask


def _digests(cfg, dataset="tiny") -> dict[str, str]:
    out = StagePaths.of(cfg.work_dir, dataset).synthetic
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("part-*.parquet"))}


def _generate(cfg, **settings) -> dict[str, str]:
    for key, value in settings.items():
        setattr(cfg.generate, key, value)
    generate.run(cfg, "tiny")
    return _digests(cfg)


def test_one_and_three_worker_processes_write_byte_identical_shards(tiny_cfg):
    cfg = tiny_cfg
    cfg.generate.rows, cfg.generate.rows_per_shard, cfg.generate.drop_training_copies = 500, 100, True
    ingest.run(cfg, "tiny")
    train.run(cfg, "tiny")
    one = _generate(cfg, workers=1)
    info = read_json(StagePaths.of(cfg.work_dir, "tiny").synthetic / "_generated.json")
    three = _generate(cfg, workers=3, backend="processes")
    assert len(one) == 5 and one == three
    again = read_json(StagePaths.of(cfg.work_dir, "tiny").synthetic / "_generated.json")
    assert again["workers"] == 3 and again["data_hash"] == info["data_hash"]
    assert again["training_copies_dropped"] == info["training_copies_dropped"]


def test_dask_workers_write_the_same_image_shards(tmp_path):
    pixels, labels = quadrant_images(120)
    src = tmp_path / "q.parquet"
    frame_of(pixels, labels).to_parquet(src, index=False)
    cfg = image_config(tmp_path, src, "conv_vae", **{"generate.rows": 90, "generate.rows_per_shard": 30})
    cfg.datasets["tiny"].overrides["train.epochs"] = 1
    ingest.run(cfg, "tiny")
    train.run(cfg, "tiny")
    one = _generate(cfg, workers=1)
    two = _generate(cfg, workers=2, backend="dask")
    assert len(one) == 3 and one == two
    assert (StagePaths.of(cfg.work_dir, "tiny").synthetic / "_grid.png").exists()
    assert np.isclose(read_json(StagePaths.of(cfg.work_dir, "tiny").synthetic / "_generated.json")["rows"], 90)
