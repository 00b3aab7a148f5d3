"""The image modality's handler: the training tensor, the evidence its metric suite reads and its
report.

Images are scored by ``pipeline.metrics.image`` (an evaluator CNN trained on the real training
images; FID, KID, precision/recall, label accuracy and memorisation, each beside its real-vs-real
floor and noise ceiling).
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.artifacts import StagePaths, load_prepared_images, read_synthetic
from pipeline.config import Config, DatasetConfig, GenerateConfig, ScoreConfig
from pipeline.errors import ConditionError, ConfigError, InputDataError
from pipeline.files import sha256_file
from pipeline.modalities.base import GenerationPlan, SourceRows, TrainingData, bounded
from pipeline.modalities.registry import register_modality
from pipeline.settings import ModelSettings

MODALITY = "image"
UNIT = "images"
DEFAULT_MODEL = "dcgan"  # what an ad-hoc image source (``run --source --modality image``) trains
# The thresholds in params on scores an image dataset has none of (prefixes of their keys): an
# ad-hoc image source drops them rather than fail its gate on missing scores.
UNSCORED = ("utility.", "quality.", "coverage.", "detection.", "privacy.dcr", "privacy.nndr")
TIMED_ESTIMATE = False  # validate estimates no time for images
# The data card's intended use and known limits of an image release.
CARD_USE = [
    "## Intended use",
    "- Augmenting or prototyping image classifiers, demos and tests where the real images may not be shared.",
    "- Each image has the label it was generated for; `image.label_accuracy` is how often an independent "
    "classifier agrees.",
    "",
    "## Known limits",
    "- Judged by a small classifier trained on the real images (no external feature network): FID and KID are "
    "comparable within this dataset's releases and against its real-vs-real floor, not with published FIDs.",
    "- Fine strokes, rare writing styles and unusual digits are under-represented (see `image.recall`).",
    "- Privacy: the share of generated images nearer a training image than unseen real ones are is shown "
    "(`image.memorized_rate`); this is an empirical check, not a formal guarantee such as differential privacy.",
]


# ---------------------------------------------------------------------------------------------
# ingest


def tree_hash(path: Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, in sorted order)."""
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(file.relative_to(path)).encode() + b"\0" + bytes.fromhex(sha256_file(file)))
    return h.hexdigest()


def source_parts(source) -> list:
    """An image source is read whole: an IDX file, a folder of PNGs by label, an image Parquet."""
    return [source]


def read(source: Path, ds: DatasetConfig, dataset: str) -> SourceRows:
    """Images from an IDX file, a folder of PNGs by label, or an image Parquet (``pipeline.images``)."""
    from pipeline.images import read_images

    return SourceRows(read_images(source), tree_hash(source))


def read_holdout(path: Path, ds: DatasetConfig, dataset: str, first: SourceRows) -> SourceRows:
    from pipeline.images import read_images

    holdout, train = read_images(path), first.frame
    if (holdout["height"].iloc[0], holdout["width"].iloc[0]) != (train["height"].iloc[0], train["width"].iloc[0]):
        raise InputDataError(ds.holdout_source, "holdout images differ in size from the source's")
    return SourceRows(holdout, tree_hash(path))


def describe_prepared(train: pd.DataFrame, first: SourceRows) -> dict:
    """What ``schema.json`` records of the images: size, labels and their counts."""
    from pipeline.images import IMAGE_COLUMNS

    counts = train["label"].value_counts().sort_index()
    return {"modality": "image", "height": int(train["height"].iloc[0]), "width": int(train["width"].iloc[0]),
            "channels": 1, "labels": [int(k) for k in counts.index],
            "label_counts": [int(v) for v in counts.to_numpy()], "target": "label", "columns": IMAGE_COLUMNS}


def ingest_summary(train: pd.DataFrame, holdout: pd.DataFrame, first: SourceRows) -> str:
    return (f"{len(train)} training images, {len(holdout)} holdout images, {train['height'].iloc[0]}x"
            f"{train['width'].iloc[0]}, {train['label'].nunique()} labels")


# ---------------------------------------------------------------------------------------------
# train


@dataclass
class ImageEvidence:
    """Images as [n, 1, H, W] tensors in [-1, 1] with label indices, on the training device, and
    their pixels (uint8) for exact-copy checks and the report's grids."""

    dataset: str
    paths: StagePaths
    labels: np.ndarray
    x_train: object
    y_train: object
    x_hold: object
    y_hold: object
    x_syn: object
    y_syn: object
    px_train: np.ndarray
    px_syn: np.ndarray
    train_labels: np.ndarray
    syn_labels: np.ndarray
    settings: ScoreConfig
    seed: int
    rows: int
    px_hold: np.ndarray | None = None  # the held-out images' pixels: how often unseen images copy a training one


def training_data(paths: StagePaths, model_cfg: ModelSettings, seed: int, device,
                  max_rows: int | None = None, rank_slice: tuple[int, int] | None = None,
                  privacy=None) -> TrainingData:
    """The training images (at most ``max_rows``, a seeded sample) as ``[label, pixels...]`` rows
    on ``device``, with their spec. Every torchrun rank holds all of them (``rank_slice`` is not taken:
    the loop trains each rank on its stride). ``privacy`` is refused: the spec's labels are read
    from the images, outside any budget."""
    if privacy is not None:
        raise ConfigError("train.privacy.epsilon: differential privacy covers tables only; set "
                          "train.privacy.epsilon: null for images")
    from pipeline.training.setup import image_tensor

    train_df, _, meta = load_prepared_images(paths)
    total = len(train_df)
    train_df = bounded(train_df, max_rows, seed)
    spec, tensor = image_tensor(train_df, device)
    described = {"image_spec": spec.to_dict(), **({"sampled_from_rows": total} if len(train_df) < total else {})}
    return TrainingData(spec, tensor, described, meta["source_hash"], len(train_df))


# ---------------------------------------------------------------------------------------------
# generate


def plan_generation(g: GenerateConfig, seed: int, loaded, paths: StagePaths) -> GenerationPlan:
    from pipeline.images import pixel_hashes, pixels_of
    from pipeline.sampling import label_plan

    if g.conditions:
        raise ConditionError("generate.conditions is for tables; for images set generate.labels ({label: share})")
    counts = loaded.model.label_counts.cpu().numpy()
    rows = g.rows or int(loaded.info.get("sampled_from_rows", loaded.info["rows"]))  # as many as the source
    labels = label_plan(loaded.spec, counts, rows, g.labels, g.rows_per_label, seed)
    exclude = None
    if g.drop_training_copies:
        exclude = np.unique(pixel_hashes(pixels_of(load_prepared_images(paths)[0])))
    return GenerationPlan(len(labels), exclude, labels)


def shard_table(loaded, job, g: GenerateConfig, stats: dict[str, int]) -> pa.Table:
    """A shard of images (PNG bytes, label, height, width); copies of training images redrawn."""
    from pipeline.images import IMAGE_ARROW_SCHEMA, frame_of, pixel_hashes
    from pipeline.sampling import sample_images, shard_seed

    pixels = sample_images(loaded, job.labels, job.seed)
    for attempt in range(1, 102) if job.exclude is not None else ():
        copies = np.isin(pixel_hashes(pixels), job.exclude)
        if not copies.any():
            break
        if attempt == 101:
            raise ConditionError(f"shard {job.index}: {int(copies.sum())} images still copy a training image "
                                 "after 100 redraws: the model has memorised them")
        stats["rejected_copies"] = stats.get("rejected_copies", 0) + int(copies.sum())
        pixels[copies] = sample_images(loaded, job.labels[copies], shard_seed(job.seed, attempt))
    frame = frame_of(pixels, np.asarray(loaded.spec.labels)[job.labels])
    return pa.Table.from_pandas(frame, schema=IMAGE_ARROW_SCHEMA, preserve_index=False)


def finish_shards(folder: Path, jobs: list) -> None:
    """The preview: the first images of the first shard, 10 per label, as ``_grid.png``."""
    import pyarrow.parquet as pq

    from pipeline.images import decode_image, encode_png, image_grid

    if jobs:
        head = pq.read_table(jobs[0].out, columns=["image", "label"]).slice(0, 2000).to_pandas()
        pixels = np.stack([decode_image(b, jobs[0].out) for b in head["image"]])
        (folder / "_grid.png").write_bytes(encode_png(image_grid(pixels, head["label"].to_numpy())))


def sample_rows(loaded, rows: int, seed: int, g: GenerateConfig, dataset: str):
    raise ConditionError(f"{dataset} is an image dataset: "
                         "use sample_images(loaded, labels, seed) or the generate stage")


def generation_record(g: GenerateConfig, plan: GenerationPlan, stats: dict[str, int], loaded) -> dict:
    values = np.asarray(loaded.spec.labels)
    return {"modality": "image",
            "labels": {int(v): int(c) for v, c in zip(values, np.bincount(plan.labels, minlength=len(values)))},
            "drop_training_copies": g.drop_training_copies, "training_copies_dropped": stats.get("rejected_copies", 0)}


# ---------------------------------------------------------------------------------------------
# score


def evidence(cfg: Config, dataset: str, paths: StagePaths) -> ImageEvidence:
    from pipeline.images import pixels_of
    from pipeline.models.image import images_to_tensor
    from pipeline.training.loop import pick_device

    train, holdout, meta = load_prepared_images(paths)
    syn = read_synthetic(paths.synthetic)
    labels = np.asarray(meta["labels"])
    for where, frame in ((paths.synthetic, syn), (paths.holdout_data, holdout)):
        unknown = sorted(set(frame["label"].unique()) - set(labels.tolist()))
        if unknown:
            raise InputDataError(where, f"column label: value {unknown[0]} is not a training label")
    if len(holdout) < 10:
        raise InputDataError(paths.holdout_data, f"{len(holdout)} held-out images: too few for the real-vs-real floor")
    device = pick_device(cfg.train.device)

    def tensors(px: np.ndarray, frame: pd.DataFrame):
        data = images_to_tensor(px, np.searchsorted(labels, frame["label"].to_numpy()))
        return data[:, 1:].reshape(len(px), 1, *px.shape[1:]).to(device), data[:, 0].long().to(device)

    px_train, px_hold, px_syn = pixels_of(train), pixels_of(holdout), pixels_of(syn)
    (x_train, y_train), (x_hold, y_hold), (x_syn, y_syn) = (
        tensors(px_train, train), tensors(px_hold, holdout), tensors(px_syn, syn))
    return ImageEvidence(dataset, paths, labels, x_train, y_train, x_hold, y_hold, x_syn, y_syn, px_train, px_syn,
                         train["label"].to_numpy(), syn["label"].to_numpy(), cfg.score, cfg.seed, len(syn), px_hold)


def report(ev: ImageEvidence, metrics: dict, details: dict, drawn: dict) -> dict[str, str]:
    from pipeline.report import image_report

    log_df = pd.read_csv(ev.paths.train_log) if ev.paths.train_log.exists() else None
    return image_report(ev.dataset, metrics, {k: v.model_dump() for k, v in ev.settings.thresholds.items()},
                        drawn["sanity"], ev.px_train[:2000], ev.train_labels[:2000], ev.px_syn[:2000],
                        ev.syn_labels[:2000], drawn["evaluation"], log_df)


# ---------------------------------------------------------------------------------------------
# validate


def plan_details(first: SourceRows, ds: DatasetConfig, dataset: str, cfg: Config, holdout_rows: int) -> dict:
    """Nothing beyond the rows for images."""
    return {}


register_modality(sys.modules[__name__])
