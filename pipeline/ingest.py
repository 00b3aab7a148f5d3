"""Stage 1, ingest: read the source, type and check it, keep a holdout, write prepared Parquet.

The modality's handler reads the source (``pipeline.modalities``: a table through
``pipeline.sources`` (format, compression, encoding, CSV dialect) and ``pipeline.schema`` (typed
columns); images through ``pipeline.images``); this stage splits off the holdout and writes, alike
for both. A source given as an fsspec URL (``s3://``, ``gs://``, ...) is fetched once into the work
folder and read there like a local file (``pipeline.stores.local_copy``; errors name the URL).
Output (one directory, written atomically): ``train.parquet`` (the rows the model learns),
``holdout.parquet`` (real rows kept out of training, for utility and privacy scoring) and
``schema.json``. Any problem with the input raises InputDataError naming the file, the column and
the reason, and nothing is written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.artifacts import StagePaths
from pipeline.config import Config
from pipeline.errors import InputDataError
from pipeline.files import atomic_dir, write_json
from pipeline.modalities import modality_named
from pipeline.schema import TableSchema
from pipeline.stores import local_copy, location
from pipeline.streamed import streamed_rows

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    dataset: str
    rows: int
    holdout_rows: int
    schema: TableSchema | None  # None for images
    source_hash: str


# ---------------------------------------------------------------------------------------------
# Schema


def ingest_params(cfg: Config, dataset: str) -> dict:
    """The settings ingest ran with: the dataset's entry, the ``ingest`` section and the seed."""
    ds = cfg.dataset(dataset)
    # bounds and categories are train's (train.privacy); unset, they are left out so schema.json is as
    # before they existed.
    unset = {key for key in ("bounds", "categories") if not getattr(ds, key)}
    return {"seed": cfg.seed, "dataset": ds.model_dump(mode="json", exclude=unset or None),
            "ingest": cfg.ingest.model_dump(mode="json")}


def run(cfg: Config, dataset: str) -> IngestResult:
    """Read the dataset's source (and holdout), type and check it, write the prepared directory."""
    ds = cfg.dataset(dataset)
    paths = StagePaths.of(cfg.work_dir, dataset)
    handler = modality_named(ds.modality)
    source = location(ds.source)  # a path, or an fsspec URL (s3://...) as written
    parts = handler.source_parts(source)
    rows = streamed_rows(cfg, ds, parts, paths.root)
    if rows is not None:
        return _run_streamed(cfg, dataset, parts, rows, paths)
    if parts != [source]:  # a folder or glob of small files: one frame, in name order
        first = handler.read_parts(parts, source, ds, dataset, paths.root)
    else:
        # An object in a store is fetched once into the work folder and read as a local file there.
        with local_copy(source, paths.root) as source_file:
            first = handler.read(source_file, ds, dataset)
    if ds.holdout_source:
        with local_copy(location(ds.holdout_source), paths.root) as holdout_file:
            train, holdout = first.frame, handler.read_holdout(holdout_file, ds, dataset, first)
        holdout_hash, holdout = holdout.source_hash, holdout.frame
    else:
        train, holdout = split_holdout(first.frame, cfg.ingest.holdout_fraction, cfg.seed, source, handler.UNIT)
        holdout_hash = None
    meta = {
        "dataset": dataset,
        "params": ingest_params(cfg, dataset),  # what this prepared data was made with
        "source": str(source),
        "source_hash": first.source_hash,
        "holdout_source": ds.holdout_source,
        "holdout_hash": holdout_hash,
        "rows": len(train),
        "holdout_rows": len(holdout),
        **handler.describe_prepared(train, first),
    }
    with atomic_dir(paths.prepared) as tmp:
        train.to_parquet(tmp / "train.parquet", index=False)
        holdout.to_parquet(tmp / "holdout.parquet", index=False)
        write_json(tmp / "schema.json", meta)
    log.info("ingest %s: %s", dataset, handler.ingest_summary(train, holdout, first))
    return IngestResult(dataset, len(train), len(holdout), first.schema, first.source_hash)


def _run_streamed(cfg: Config, dataset: str, parts: list, rows: int, paths: StagePaths) -> IngestResult:
    """A source too big for one frame, read in batches (``pipeline.streamed``)."""
    from pipeline import streamed

    ds = cfg.dataset(dataset)
    log.info("ingest %s: %s rows in %d file(s), more than ingest.stream_rows (%s): streamed in batches of %s",
             dataset, f"{rows:,}", len(parts), f"{cfg.ingest.stream_rows:,}", f"{cfg.ingest.batch_rows:,}")
    with atomic_dir(paths.prepared) as tmp:
        got = streamed.run(cfg, dataset, parts, rows, tmp, paths.root)
        schema, (source_hash, holdout_hash) = got.pop("schema"), got.pop("hashes")  # of the bytes read
        meta = {
            "dataset": dataset,
            "params": ingest_params(cfg, dataset),
            "source": str(ds.source),
            "source_hash": source_hash,
            "holdout_source": ds.holdout_source,
            "holdout_hash": holdout_hash,
            **got,
            **schema.to_dict(),
        }
        write_json(tmp / "schema.json", meta)
    s = got["streamed"]
    log.info("ingest %s: %s training rows, %s holdout rows in %d shards; samples of %s and %s rows; kinds: %s",
             dataset, f"{got['rows']:,}", f"{got['holdout_rows']:,}", s["shards"], f"{s['sample_rows']:,}",
             f"{s['holdout_sample_rows']:,}", ", ".join(f"{c.name}={c.kind}" for c in schema.columns))
    return IngestResult(dataset, got["rows"], got["holdout_rows"], schema, meta["source_hash"])


def split_holdout(frame: pd.DataFrame, fraction: float, seed: int, source: str | Path, unit: str
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout): a seeded share ``fraction`` of the rows held out, both in source order."""
    n_hold = int(round(len(frame) * fraction))
    if len(frame) - n_hold < 2:
        raise InputDataError(source, f"only {len(frame)} {unit}: too few to train on")
    order = np.random.default_rng(seed).permutation(len(frame))
    holdout = frame.iloc[np.sort(order[:n_hold])].reset_index(drop=True)
    train = frame.iloc[np.sort(order[n_hold:])].reset_index(drop=True)
    return train, holdout
