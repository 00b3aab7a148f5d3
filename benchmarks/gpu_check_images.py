"""The image half of the GPU check: the `mnist` recipe of params.yaml (class-conditional dcgan, batch
32, learning rates 2e-4 / 8e-4, 50 epochs) trained at full epochs on cuda with the pipeline's own
loop, its time per epoch against the same model on this machine's CPU, 8,000 sampled digits written
to Parquet, and the score stage's metrics (FID against the real-vs-real floor, label accuracy,
precision/recall). Exits non-zero if cuda was not used.

    python benchmarks/gpu_check_images.py [--epochs 50] [--cpu-epochs 2] [--seed 42] [--out DIR]

Needs only torch, numpy, pandas and pyarrow (what a bare GPU box has); Pillow is used when present,
otherwise the embedded PNGs are decoded with zlib here and the sample is written as raw uint8 pixels
(`image_format` in the JSON says which). Split, evaluator and metrics are the ingest and score
stages' own (same seed, same 80/20 split), so the figures read like `metrics/mnist.json`. Prints a
table, then one JSON line. ``--device cpu --allow-cpu --epochs 1`` is a smoke test without a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from gpu_check import device_refusal, timed_fit  # noqa: E402

from pipeline.metrics.image import evaluate_images, fid_ratio, train_evaluator  # noqa: E402
from pipeline.models import model_class  # noqa: E402
from pipeline.models.image import ImageSpec, images_to_tensor  # noqa: E402
from pipeline.models.saved import LoadedModel  # noqa: E402
from pipeline.sampling import label_plan, sample_images  # noqa: E402
from pipeline.settings import ModelSettings, TrainSettings  # noqa: E402


def png_gray(data: bytes) -> np.ndarray:
    """An 8-bit grayscale, non-interlaced PNG (what the embedded MNIST holds) as [H, W] uint8, with
    zlib alone: for boxes without Pillow."""
    pos, chunks, width, height = 8, [], 0, 0
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big")
            if body[8] != 8 or body[9] != 0 or body[12] != 0:
                raise ValueError("png_gray reads 8-bit grayscale non-interlaced PNGs only")
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    raw = np.frombuffer(zlib.decompress(b"".join(chunks)), np.uint8).reshape(height, width + 1)
    out = np.zeros((height, width), np.int32)
    for r in range(height):  # undo the per-row filters (PNG spec, bpp = 1)
        f, line = raw[r, 0], raw[r, 1:].astype(np.int32)
        up = out[r - 1] if r else np.zeros(width, np.int32)
        if f == 0:
            out[r] = line
        elif f == 2:
            out[r] = (line + up) & 255
        else:
            row = np.zeros(width, np.int32)
            for c in range(width):
                left = row[c - 1] if c else 0
                ul = up[c - 1] if c else 0
                if f == 1:
                    pred = left
                elif f == 3:
                    pred = (left + up[c]) // 2
                else:  # 4: Paeth
                    p = left + up[c] - ul
                    pa, pb, pc = abs(p - left), abs(p - up[c]), abs(p - ul)
                    pred = left if pa <= pb and pa <= pc else (up[c] if pb <= pc else ul)
                row[c] = (line[c] + pred) & 255
            out[r] = row
    return out.astype(np.uint8)


def load_digits() -> tuple[np.ndarray, np.ndarray, str]:
    frame = pd.read_parquet(REPO / "data/mnist/digits.parquet")
    try:
        from pipeline.images import pixels_of

        return pixels_of(frame), frame["label"].to_numpy(), "png"
    except ImportError:  # no Pillow
        return np.stack([png_gray(b) for b in frame["image"]]), frame["label"].to_numpy(), "raw"


def configs(epochs: int, amp: bool) -> tuple[ModelSettings, TrainSettings]:
    """params.yaml's model section and the mnist overrides of its train section (``pipeline.settings``)."""
    return ModelSettings(name="dcgan"), TrainSettings(epochs=epochs, batch_size=32, lr_generator=2e-4,
                                                      lr_discriminator=8e-4, lr_decay=0.0, checkpoint_every=10**9,
                                                      amp=amp)


def train_once(spec: ImageSpec, data: torch.Tensor, epochs: int, amp: bool, seed: int):
    model_cfg, train_cfg = configs(epochs, amp)
    device = data.device
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    net = model_class("dcgan")(spec, model_cfg, train_cfg).to(device)
    epoch_s, wall, used, _ = timed_fit(net, data, train_cfg, seed, t0)
    return net, epoch_s, wall, used


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--cpu-epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--no-amp", action="store_true")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--allow-cpu", action="store_true", help="do not fail without cuda (smoke test)")
    ap.add_argument("--out", default=None, help="folder for the sampled Parquet (default: a temp dir)")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N digits (a quick smoke test)")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check_images: torch sees no CUDA device", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    amp = not args.no_amp and device.type == "cuda"

    pixels, labels, image_format = load_digits()
    pixels, labels = pixels[:args.limit], labels[:args.limit]
    order = np.random.default_rng(args.seed).permutation(len(pixels))  # the ingest stage's 80/20 split
    n_hold = int(round(len(pixels) * 0.2))
    hold, tr = np.sort(order[:n_hold]), np.sort(order[n_hold:])
    spec = ImageSpec(int(pixels.shape[1]), int(pixels.shape[2]), sorted(int(v) for v in np.unique(labels)))
    index = np.searchsorted(np.asarray(spec.labels), labels)
    data = images_to_tensor(pixels[tr], index[tr])
    res: dict = {"model": "dcgan", "device": str(device), "images_train": len(tr), "batch_size": 32, "amp": amp,
                 "seed": args.seed, "torch": torch.__version__, "image_format": image_format}
    if device.type == "cuda":
        res["gpu"] = torch.cuda.get_device_name(0)

    net, epoch_s, wall, used = train_once(spec, data.to(device), args.epochs, amp, args.seed)
    res.update({"epochs": args.epochs, "epoch_s": epoch_s, "train_wall_s": wall, "images_per_s": len(tr) / epoch_s,
                "devices_used": sorted(used)})
    _, cpu_epoch_s, _, _ = train_once(spec, data, args.cpu_epochs, False, args.seed)
    res.update({"cpu_epochs": args.cpu_epochs, "cpu_epoch_s": cpu_epoch_s, "speedup_vs_cpu": cpu_epoch_s / epoch_s})

    # 8,000 digits in the training label mix (the generate stage's plan and sampler), to Parquet.
    net.eval()
    plan = label_plan(spec, np.bincount(index[tr], minlength=spec.n_labels), len(tr), {}, None, args.seed)
    t0 = time.perf_counter()
    made = sample_images(LoadedModel(net, None, None, {}, "", spec), plan, args.seed)
    sample_s = time.perf_counter() - t0
    made_labels = np.asarray(spec.labels)[plan]
    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="gpu_check_images_"))
    out_dir.mkdir(parents=True, exist_ok=True)
    if image_format == "png":
        from pipeline.images import frame_of

        frame = frame_of(made, made_labels)
    else:
        frame = pd.DataFrame({"image": [p.tobytes() for p in made], "label": made_labels.astype(np.int64),
                              "height": np.int32(spec.height), "width": np.int32(spec.width)})
    frame.to_parquet(out_dir / "part-00000.parquet", index=False)
    back = pd.read_parquet(out_dir)
    res.update({"sampled_images": len(back), "sample_s": sample_s, "parquet": str(out_dir)})

    # The score stage's evaluator and metrics.
    def as_x(px: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(px).float().div(127.5).sub(1).unsqueeze(1)

    x_train, y_train = data[:, 1:].reshape(-1, 1, spec.height, spec.width), data[:, 0].long()
    t0 = time.perf_counter()
    evaluator = train_evaluator(x_train.to(device), y_train.to(device), spec.n_labels, 3, args.seed).cpu()
    ev = evaluate_images(evaluator, x_train, as_x(pixels[hold]), torch.from_numpy(index[hold]), as_x(made),
                         torch.from_numpy(plan), rows=10_000, seed=args.seed)
    s, floor = ev.synthetic, ev.floor
    res.update({"score_s": time.perf_counter() - t0, "image.fid": s.fid, "image.fid_real_floor": floor.fid,
                "image.fid_ratio": fid_ratio(s.fid, floor.fid), "image.label_accuracy": s.label_accuracy,
                "image.precision": s.precision, "image.recall": s.recall, "image.memorized_rate": s.memorized_rate,
                "image.classifier_accuracy": ev.classifier_accuracy})

    print(f"{'measure':<28} {args.device:>14} {'cpu':>14}")
    print(f"{'s/epoch (batch 32)':<28} {epoch_s:>14.3f} {cpu_epoch_s:>14.3f}")
    print(f"{'training images/s':<28} {res['images_per_s']:>14,.0f} {len(tr) / cpu_epoch_s:>14,.0f}")
    print(f"{'train wall, ' + str(args.epochs) + ' epochs (s)':<28} {wall:>14.1f}")
    print(f"FID {s.fid:.2f} vs real floor {floor.fid:.2f} (ratio {res['image.fid_ratio']:.2f}); label accuracy "
          f"{s.label_accuracy:.3f}; precision {s.precision:.3f}, recall {s.recall:.3f}; "
          f"{len(back):,} images in {out_dir} ({image_format})")
    print(json.dumps(res))
    return device_refusal("gpu_check_images", device, used, args.allow_cpu) or (0 if len(back) == len(tr) else 1)


if __name__ == "__main__":
    sys.exit(main())
