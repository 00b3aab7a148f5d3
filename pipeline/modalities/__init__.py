"""One handler per modality, so that no stage has an image twin of its table code.

A handler is a module (``table``, ``image``) that provides, for the stages:

- ingest: ``read(source, ds, dataset)`` and ``read_holdout(path, ds, dataset, first)`` (the rows,
  typed and checked), ``describe_prepared(train, first)`` (what ``schema.json`` adds) and
  ``ingest_summary``; ingest itself splits the holdout and writes, alike for both;
- train: ``training_data(paths, model_cfg, seed, device)``: the prepared training data as the
  tensor the models train on, with its codec (the fitted transformer, or the image spec) and what
  ``model.json`` records of it;
- generate: ``plan_generation(g, seed, loaded, paths)`` (a ``GenerationPlan``, with every check
  of the settings done before any worker starts), ``shard_table(loaded, job, g, stats)`` (one
  shard's rows as an Arrow table: the shard executor's only modality-specific step),
  ``finish_shards(folder, jobs)`` (extras such as the image preview grid) and
  ``generation_record(g, plan, stats, loaded)`` (what ``_generated.json`` adds); ``UNIT`` names the rows;
- score: ``evidence(cfg, dataset, paths)`` (what its metric suites read: the prepared data, the
  synthetic rows, the settings), ``report(evidence, metrics, details, drawn)`` (the report files)
  and ``MODALITY`` (the suites registered for it in ``pipeline.metrics`` run on that evidence).

The modality is read once, from the prepared data's ``schema.json`` (``modality_of``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from pipeline.artifacts import StagePaths, prepared_meta


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


def modality_named(name: str) -> ModuleType:
    """The handler of modality ``name`` (``table`` or ``image``)."""
    if name == "image":
        from pipeline.modalities import image as handler
    else:
        from pipeline.modalities import table as handler
    return handler


def modality_of(paths: StagePaths) -> ModuleType:
    """The handler of the dataset whose work folder is ``paths`` (from what ingest recorded)."""
    return modality_named(prepared_meta(paths).get("modality", "table"))
