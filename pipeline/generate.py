"""Stage 3, generate: sample N rows from the trained model, streamed to Parquet shards.

Shard ``i`` is drawn from generators seeded by (seed, i) alone, so the same params give the same
rows, and shards could be made in any order or in parallel. Memory is bounded by one shard.
Output ``<work>/<dataset>/synthetic/part-00000.parquet, ...`` (replaced whole, atomically).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from pipeline.config import Config
from pipeline.io import StagePaths, atomic_dir, sha256_files, write_json, write_parquet
from pipeline.schema import TableSchema
from pipeline.train import LoadedModel, load_model
from pipeline.training.loop import pick_device

log = logging.getLogger(__name__)


@dataclass
class GenerateResult:
    dataset: str
    rows: int
    shards: int
    seconds: float


def shard_seed(seed: int, shard: int) -> int:
    """A seed for shard ``shard`` that depends on nothing else (63-bit, via SeedSequence)."""
    return int(np.random.SeedSequence([seed, shard]).generate_state(1, dtype=np.uint64)[0] >> 1)


def fresh_ids(col, start: int, n: int) -> pd.Series:
    """Unique IDs for rows ``start .. start+n`` of the whole output: integers above every real ID
    (so none can be linked to a real row), or ``syn-<n>`` text."""
    idx = np.arange(start, start + n, dtype=np.int64)
    if col.dtype.lower().startswith(("int", "uint")):
        return pd.Series(idx + 1 + int(col.stats.get("max", 0)), dtype=col.dtype)
    return pd.Series([f"syn-{i:09d}" for i in idx], dtype=object)


def sample_frame(loaded: LoadedModel, n: int, seed: int, start: int = 0) -> pd.DataFrame:
    """``n`` synthetic rows in the source's column order and dtypes, from ``seed`` alone."""
    device = next(loaded.model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    raw = loaded.model.sample(n, gen).float().cpu().numpy()
    frame = loaded.transformer.inverse_transform(raw, np.random.default_rng(seed))
    schema: TableSchema = loaded.schema
    out = {}
    for col in schema.columns:
        out[col.name] = fresh_ids(col, start, n) if col.kind == "id" else frame[col.name]
    return pd.DataFrame(out)


def run(cfg: Config, dataset: str) -> GenerateResult:
    paths = StagePaths.of(cfg.work_dir, dataset)
    device = pick_device(cfg.train.device)
    loaded = load_model(paths.model, cfg, device)
    rows = cfg.generate.rows or int(loaded.info["rows"])
    per = cfg.generate.rows_per_shard
    n_shards = (rows + per - 1) // per
    arrow_schema = loaded.schema.arrow()
    t0 = time.perf_counter()
    with atomic_dir(paths.synthetic) as tmp:
        for i in tqdm(range(n_shards), desc="generate", unit="shard", disable=None):
            n = min(per, rows - i * per)
            frame = sample_frame(loaded, n, shard_seed(cfg.seed, i), start=i * per)
            # One fixed schema for every shard: a shard whose text column happens to be all null
            # must still say 'string', or the folder stops being one readable dataset.
            table = pa.Table.from_pandas(frame, schema=arrow_schema, preserve_index=False)
            write_parquet(table, tmp / f"part-{i:05d}.parquet")
        write_json(tmp / "_generated.json", {
            "dataset": dataset, "rows": rows, "shards": n_shards, "seed": cfg.seed,
            "model_hash": loaded.model_hash,
            "data_hash": sha256_files(sorted(tmp.glob("part-*.parquet"))),
        })
    seconds = time.perf_counter() - t0
    log.info("generated %d rows of %s in %d shards in %.1fs (%.0f rows/s)", rows, dataset, n_shards, seconds,
             rows / max(seconds, 1e-9))
    return GenerateResult(dataset, rows, n_shards, seconds)
