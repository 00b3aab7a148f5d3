"""Image datasets: reading them (MNIST idx files, a folder of PNGs per label, a Parquet of image
bytes) into one frame layout, and the PNG codec.

The layout, in Parquet as everywhere else: one row per image with ``image`` (PNG bytes),
``label`` (int64), ``height`` and ``width`` (int32). Grayscale, 8 bits per pixel. A file that is
not a readable image fails with its path (and row, for Parquet) rather than being skipped.
"""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.errors import InputDataError

# Every image Parquet we write (prepared, synthetic, released) has exactly this schema.
IMAGE_ARROW_SCHEMA = pa.schema([("image", pa.binary()), ("label", pa.int64()), ("height", pa.int32()),
                                ("width", pa.int32())])
# The same columns described as a schema (kind and dtype), for manifests and schema contracts.
IMAGE_COLUMNS = [{"name": "image", "kind": "image", "dtype": "binary"},
                 {"name": "label", "kind": "categorical", "dtype": "int64"},
                 {"name": "height", "kind": "integer", "dtype": "int32"},
                 {"name": "width", "kind": "integer", "dtype": "int32"}]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.int16, 0x0C: np.int32, 0x0D: np.float32, 0x0E: np.float64}


def encode_png(pixels: np.ndarray) -> bytes:
    """A [H, W] uint8 array as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), mode="L").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Image bytes (PNG or any format Pillow reads) as a [H, W] uint8 grayscale array."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return np.asarray(img.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputDataError(where, f"not a readable image ({type(exc).__name__}: {exc})") from None


def read_idx(path: str | Path) -> np.ndarray:
    """An idx file (MNIST's format, optionally gzipped) as an array of its declared shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise InputDataError(path, f"cannot read ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise InputDataError(path, "not an idx file (bad magic number)")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[raw[2]]).newbyteorder(">")
    body = raw[4 + 4 * ndim:]
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(body) != expected:
        raise InputDataError(path, f"idx header says {dims} ({expected} bytes of data) but the file has {len(body)}")
    return np.frombuffer(body, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def idx_labels_path(images: Path) -> Path:
    """MNIST naming: ``*-images-idx3-ubyte[.gz]`` -> ``*-labels-idx1-ubyte[.gz]``."""
    name = re.sub(r"images-idx3", "labels-idx1", images.name)
    if name == images.name:
        raise InputDataError(images, "an idx image file needs its labels beside it, named *-labels-idx1-ubyte[.gz]")
    return images.with_name(name)


def frame_of(pixels: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """The image frame layout from [N, H, W] uint8 pixels and N labels."""
    n, h, w = pixels.shape
    return pd.DataFrame({
        "image": [encode_png(p) for p in pixels],
        "label": np.asarray(labels, dtype=np.int64),
        "height": np.full(n, h, dtype=np.int32),
        "width": np.full(n, w, dtype=np.int32),
    })


def read_png_folder(root: Path) -> pd.DataFrame:
    """``root/<label>/*.png``: labels are the subfolder names (integers, or sorted names -> 0..K-1)."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise InputDataError(root, "an image folder needs one subfolder per label (e.g. 0/, 1/, ...)")
    numeric = all(f.name.isdigit() for f in folders)
    rows = []
    for i, folder in enumerate(folders):
        label = int(folder.name) if numeric else i
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                rows.append((decode_image(file.read_bytes(), str(file)), label))
    if not rows:
        raise InputDataError(root, f"no image files ({', '.join(IMAGE_SUFFIXES)}) in its label subfolders")
    return _from_arrays(rows, root)


def read_image_parquet(path: Path) -> pd.DataFrame:
    """A Parquet with an ``image`` column of encoded bytes and a ``label`` column."""
    df = pd.read_parquet(path)
    missing = {"image", "label"} - set(df.columns)
    if missing:
        raise InputDataError(path, f"an image Parquet needs columns image (bytes) and label; missing {sorted(missing)}")
    rows = [(decode_image(b, f"{path} row {i} (column image)"), int(label))
            for i, (b, label) in enumerate(zip(df["image"], df["label"]))]
    return _from_arrays(rows, path)


def _from_arrays(rows: list[tuple[np.ndarray, int]], where: Path) -> pd.DataFrame:
    shapes = {r[0].shape for r in rows}
    if len(shapes) != 1:
        raise InputDataError(where, f"images differ in size ({sorted(shapes)[:3]} ...); resize them to one size first")
    return frame_of(np.stack([r[0] for r in rows]), np.array([r[1] for r in rows]))


def read_images(source: str | Path) -> pd.DataFrame:
    """Any of the supported image sources as the image frame layout."""
    path = Path(source)
    if not path.exists():
        raise InputDataError(path, "file or folder not found")
    if path.is_dir():
        return read_png_folder(path)
    if "idx" in path.name:
        pixels = read_idx(path)
        labels = read_idx(idx_labels_path(path))
        if pixels.ndim != 3 or labels.ndim != 1 or len(labels) != len(pixels):
            raise InputDataError(path, f"expected [N, H, W] images and N labels, got {pixels.shape} and {labels.shape}")
        return frame_of(pixels.astype(np.uint8), labels)
    return read_image_parquet(path)


def pixels_of(frame: pd.DataFrame) -> np.ndarray:
    """[N, H, W] uint8 pixels of an image frame."""
    return np.stack([decode_image(b, f"row {i}") for i, b in enumerate(frame["image"])])


def pixel_hashes(pixels: np.ndarray) -> np.ndarray:
    """A short hash of each image's pixels ([N, H, W] uint8): equal images, equal hashes."""
    import hashlib

    return np.array([hashlib.blake2b(p.tobytes(), digest_size=8).hexdigest() for p in pixels], dtype=object)


def image_grid(pixels: np.ndarray, labels: np.ndarray, per_label: int = 10, pad: int = 2) -> np.ndarray:
    """A preview: one row per label (in label order), ``per_label`` images each, on black."""
    h, w = pixels.shape[1:]
    values = np.unique(labels)
    grid = np.zeros((len(values) * (h + pad) + pad, per_label * (w + pad) + pad), dtype=np.uint8)
    for r, v in enumerate(values):
        for c, i in enumerate(np.flatnonzero(labels == v)[:per_label]):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            grid[y:y + h, x:x + w] = pixels[i]
    return grid
