"""Rebuild data/mnist/digits.parquet from the MNIST test set idx files (run once; the Parquet is
committed).

    python data/prepare_mnist.py ../shared/data/mnist

One row per digit: ``image`` (28x28 grayscale PNG bytes), ``label`` (0-9), ``height``, ``width``,
in the files' order. Pixels are unchanged (PNG is lossless).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.images import frame_of, read_idx  # noqa: E402


def main(src: str) -> None:
    root = Path(src)
    pixels = read_idx(root / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(root / "t10k-labels-idx1-ubyte.gz")
    dst = Path(__file__).resolve().parent / "mnist" / "digits.parquet"
    dst.parent.mkdir(exist_ok=True)
    frame_of(pixels, labels).to_parquet(dst, index=False, compression="zstd")
    print(f"{dst}: {len(labels)} digits, {dst.stat().st_size:,} bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/mnist")
