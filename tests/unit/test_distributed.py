"""Data-parallel training on CPU with gloo: the train stage launches itself under torchrun."""

import pandas as pd
import pytest

from pipeline import ingest, train
from pipeline.artifacts import StagePaths
from pipeline.files import read_json
from tests.conftest import tiny_config, tiny_frame

pytestmark = pytest.mark.slow  # torchrun ranks


def _run(tmp_path, source, nproc, **overrides):
    cfg = tiny_config(tmp_path, source, **{"train.distributed.nproc_per_node": nproc, **overrides})
    if not StagePaths.of(cfg.work_dir, "tiny").schema.exists():
        ingest.run(cfg, "tiny")
    return cfg


def test_two_processes_train_identical_replicas_and_rank_0_alone_writes(tmp_path, capfd):
    source = tmp_path / "rows.parquet"
    tiny_frame(241).to_parquet(source, index=False)  # an odd row count: every rank still takes the same steps
    cfg = _run(tmp_path, source, 2)
    result = train.run(cfg, "tiny")
    out = capfd.readouterr()
    paths = StagePaths.of(cfg.work_dir, "tiny")
    info = read_json(paths.model / "model.json")
    assert info["world_size"] == 2 and info["epochs"] == 2 and result.epochs == 2
    # fit() checks after training that every rank holds the same weights, and fails the run if not.
    assert "rank 1 of 2: done; rank 0 writes the model" in out.err + out.out
    assert len(pd.read_csv(paths.train_log)) == 2
    assert sorted(p.name for p in paths.root.iterdir() if p.name.startswith(".")) == []  # no leftover params file
    assert (paths.checkpoints / "last.pt").exists()


def test_two_process_loss_curve_matches_one_process_with_the_same_global_batch(tmp_path, capfd):
    source = tmp_path / "rows.parquet"
    tiny_frame(3000).to_parquet(source, index=False)
    logs, infos = {}, {}
    for nproc in (1, 2):
        cfg = _run(tmp_path / str(nproc), source, nproc, **{"model.name": "tvae", "train.epochs": 5,
                                                            "train.batch_size": 100})
        train.run(cfg, "tiny")
        logs[nproc] = pd.read_csv(StagePaths.of(cfg.work_dir, "tiny").train_log)
        infos[nproc] = read_json(StagePaths.of(cfg.work_dir, "tiny").model / "model.json")
    # Each rank read and held only its half of the 2,400 training rows; rank 0 fitted the
    # transformer on all of them, so it is the one-process run's.
    out = capfd.readouterr()
    for r in (0, 1):
        assert f"rank {r} of 2: holds 1200 of the 2400 training rows" in out.err + out.out
    assert infos[2]["transformer"] == infos[1]["transformer"] and infos[2]["rows"] == infos[1]["rows"] == 2400
    one, two = logs[1]["reconstruction_loss"], logs[2]["reconstruction_loss"]
    # The same optimisation with different random draws (each rank draws its own noise and rows):
    # the stated tolerance is 5% of the one-process curve's span, every epoch (24 steps of a
    # 100-row global batch each). The loss crosses zero, so a ratio to it would mean nothing there.
    span = one.max() - one.min()
    assert ((one - two).abs() <= 0.05 * span).all(), (one.tolist(), two.tolist())
    assert one.iloc[-1] < one.iloc[0] and two.iloc[-1] < two.iloc[0]


def test_a_two_process_checkpoint_resumes_on_one_process(tmp_path, tiny_source):
    cfg = _run(tmp_path, tiny_source, 2)
    train.run(cfg, "tiny")
    cfg = _run(tmp_path, tiny_source, 1, **{"train.epochs": 3})
    result = train.run(cfg, "tiny", resume=True)
    paths = StagePaths.of(cfg.work_dir, "tiny")
    assert result.epochs == 3 and read_json(paths.model / "model.json")["world_size"] == 1
    assert pd.read_csv(paths.train_log)["epoch"].tolist() == [1, 2, 3]


def test_the_image_gan_trains_on_two_processes_too(tmp_path):
    from pipeline.images import frame_of
    from tests.unit.test_image_models import image_config, quadrant_images

    pixels, labels = quadrant_images(200)
    frame_of(pixels, labels).to_parquet(tmp_path / "q.parquet", index=False)
    cfg = image_config(tmp_path, tmp_path / "q.parquet", "dcgan", **{"train.distributed.nproc_per_node": 2})
    cfg.datasets["tiny"].overrides["train.epochs"] = 2
    ingest.run(cfg, "tiny")
    # Spectral norm, BatchNorm, the projection and the auxiliary head: replicas still agree (checked in fit).
    assert train.run(cfg, "tiny").epochs == 2
    assert read_json(StagePaths.of(cfg.work_dir, "tiny").model / "model.json")["world_size"] == 2
