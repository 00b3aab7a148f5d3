"""What every modality handler shares: the rows ingest read, the generation plan, the training
data, and the seeded bound on the training rows (``train.max_rows``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class SourceRows:
    """A source read by ingest: its rows, the hash of the file(s), and for tables the schema and the
    raw column names (a headerless holdout file takes them)."""

    frame: Any  # pandas DataFrame
    source_hash: str
    schema: Any = None  # TableSchema (tables)
    columns: list | None = None


@dataclass
class GenerationPlan:
    """What generate makes: ``rows`` in all, the training-row hashes to avoid (``exclude``) and,
    for images, the label index of every image in output order."""

    rows: int
    exclude: Any = None  # np.ndarray | None
    labels: Any = None  # np.ndarray | None


@dataclass
class TrainingData:
    codec: Any  # TableTransformer | ImageSpec: how rows become the tensor and back
    tensor: Any  # torch.Tensor on the training device
    described: dict  # what model.json records to decode samples (schema + transformer, or the image spec)
    source_hash: str
    rows: int
    frame: Any = None  # the training rows (tables: model.name auto scores its candidates on a part of them)
    schema: Any = None
    rank_share: bool = False  # the tensor holds this rank's share of the rows only (torchrun)


def bounded_positions(total: int, max_rows: int | None, seed: int):
    """The positions (ascending) of the rows ``bounded`` keeps of ``total``; None for all of them."""
    if not max_rows or total <= max_rows:
        return None
    import numpy as np

    return np.sort(np.random.default_rng([seed, 2]).choice(total, size=max_rows, replace=False))


def bounded(frame, max_rows: int | None, seed: int):
    """At most ``max_rows`` of ``frame``'s rows, a seeded sample kept in source order
    (``train.max_rows``: a bounded training set for a big table); the frame itself when it fits."""
    keep = bounded_positions(len(frame), max_rows, seed)
    return frame if keep is None else frame.iloc[keep].reset_index(drop=True)
