"""Image ingest: MNIST idx files, a folder of PNGs per label, a Parquet of image bytes; corrupt
images fail with their path; the Parquet layout round-trips pixels exactly."""

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import ingest
from pipeline.artifacts import StagePaths
from pipeline.errors import ConfigError, InputDataError
from pipeline.images import encode_png, frame_of, pixels_of, read_idx
from tests.conftest import REPO, tiny_config


def _digits(n=60, seed=0):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, 8, 6), dtype=np.uint8)
    labels = np.arange(n) % 3
    return pixels, labels


def _write_idx(path: Path, array: np.ndarray) -> None:
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def _cfg(tmp_path, source):
    cfg = tiny_config(tmp_path, source, target=None)
    cfg.datasets["tiny"].modality = "image"
    return cfg


def _prepared(cfg):
    paths = StagePaths.of(cfg.work_dir, "tiny")
    train, hold = pd.read_parquet(paths.train_data), pd.read_parquet(paths.holdout_data)
    return train, hold, json.loads(paths.schema.read_text())


def test_idx_ingest_keeps_every_pixel_and_label(tmp_path):
    pixels, labels = _digits()
    _write_idx(tmp_path / "x-images-idx3-ubyte.gz", pixels)
    _write_idx(tmp_path / "x-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    np.testing.assert_array_equal(read_idx(tmp_path / "x-images-idx3-ubyte.gz"), pixels)
    cfg = _cfg(tmp_path, tmp_path / "x-images-idx3-ubyte.gz")
    res = ingest.run(cfg, "tiny")
    train, hold, meta = _prepared(cfg)
    assert res.rows + res.holdout_rows == 60 and len(hold) == 12
    assert meta["modality"] == "image" and (meta["height"], meta["width"]) == (8, 6) and meta["labels"] == [0, 1, 2]
    both = pd.concat([train, hold])
    got = {bytes(img): int(lab) for img, lab in zip(both["image"], both["label"])}
    want = {encode_png(p): int(lab) for p, lab in zip(pixels, labels)}
    assert got == want
    assert list(train.columns) == ["image", "label", "height", "width"]


def test_png_folder_ingest_and_corrupt_image_names_its_file(tmp_path):
    pixels, labels = _digits(30)
    root = tmp_path / "digits"
    for i, (p, lab) in enumerate(zip(pixels, labels)):
        (root / str(lab)).mkdir(parents=True, exist_ok=True)
        (root / str(lab) / f"{i:03d}.png").write_bytes(encode_png(p))
    cfg = _cfg(tmp_path, root)
    ingest.run(cfg, "tiny")
    train, hold, meta = _prepared(cfg)
    assert len(train) + len(hold) == 30 and meta["labels"] == [0, 1, 2]
    bad = root / "1" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(InputDataError, match=r"broken\.png.*not a readable image"):
        ingest.run(cfg, "tiny")


def test_parquet_layout_round_trips_and_a_table_model_on_images_stops_clearly(tmp_path):
    pixels, labels = _digits(20)
    src = tmp_path / "imgs.parquet"
    frame_of(pixels, labels).to_parquet(src, index=False)
    back = pd.read_parquet(src)
    np.testing.assert_array_equal(pixels_of(back), pixels)
    cfg = _cfg(tmp_path, src)
    ingest.run(cfg, "tiny")
    bad = frame_of(pixels, labels)
    bad.loc[5, "image"] = b"garbage"
    bad.to_parquet(src, index=False)
    with pytest.raises(InputDataError, match="row 5"):
        ingest.run(cfg, "tiny")
    from pipeline import train

    frame_of(pixels, labels).to_parquet(src, index=False)
    ingest.run(cfg, "tiny")
    with pytest.raises(ConfigError, match="model 'ctgan' is for tables"):
        train.run(cfg, "tiny")


def test_the_embedded_mnist_parquet_is_the_idx_test_set_layout():
    df = pd.read_parquet(REPO / "data/mnist/digits.parquet")
    assert len(df) == 10_000 and sorted(df["label"].unique()) == list(range(10))
    assert (df["height"] == 28).all() and (df["width"] == 28).all()
    assert pixels_of(df.head(5)).shape == (5, 28, 28)
