"""Stage 3, generate: sample N rows from the trained model, streamed to Parquet shards.

Shard ``i`` is drawn from generators seeded by (seed, i) alone, so the same params give the same
rows, and shards could be made in any order or in parallel. Memory is bounded by one shard.
Output ``<work>/<dataset>/synthetic/part-00000.parquet, ...`` (replaced whole, atomically).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from pipeline.errors import ConditionError
from pipeline.io import StagePaths, atomic_dir, progress, sha256_files, write_json, write_parquet
from pipeline.metrics.privacy import row_hashes
from pipeline.schema import TableSchema
from pipeline.training.loop import pick_device

if TYPE_CHECKING:  # sampling itself needs no pydantic: it runs on a bare GPU box (benchmarks/gpu_check.py)
    from pipeline.config import Config
    from pipeline.train import LoadedModel

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


def _draw(loaded: LoadedModel, n: int, seed: int, condition: tuple[int, int] | None) -> pd.DataFrame:
    device = next(loaded.model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    raw = loaded.model.sample(n, gen, condition).float().cpu().numpy()
    return loaded.transformer.inverse_transform(raw, np.random.default_rng(seed))


def _matches(frame: pd.DataFrame, conditions: dict[str, Any]) -> np.ndarray:
    keep = np.ones(len(frame), dtype=bool)
    for col, value in conditions.items():
        s = frame[col]
        keep &= s.isna().to_numpy() if value is None else (s.astype(str) == str(value)).to_numpy()
    return keep


def sample_frame(loaded: LoadedModel, n: int, seed: int, start: int = 0,
                 conditions: dict[str, Any] | None = None, exclude: np.ndarray | None = None,
                 max_tries: int = 100, stats: dict[str, int] | None = None) -> pd.DataFrame:
    """``n`` synthetic rows in the source's column order and dtypes, from ``seed`` alone.

    ``conditions`` ({column: value}, categorical or boolean columns) fixes values: a conditional
    model is steered to the first one, and rows that miss any are rejected and redrawn, so every
    returned row honours all of them. ``exclude`` (row hashes of the modeled columns, as
    ``pipeline.metrics.privacy.row_hashes`` makes them) rejects and redraws rows equal to any of
    those rows: the training rows, so that no released row copies one. ``stats`` (if given) counts
    the rows ``drawn`` and ``rejected_copies``.
    """
    stats = stats if stats is not None else {}
    stats.setdefault("drawn", 0)
    stats.setdefault("rejected_copies", 0)
    if not conditions and exclude is None:
        frame = _draw(loaded, n, seed, None)
        stats["drawn"] += n
    else:
        group = _condition_group(loaded, conditions) if conditions else None
        modeled = [c.name for c in loaded.schema.modeled]
        parts, have, total, batch = [], 0, 0, max(n, 256) if conditions else n
        for attempt in range(max_tries):
            # Without conditions the first draw is the unfiltered one, so filtering only removes rows.
            rows = _draw(loaded, batch, seed if not conditions and attempt == 0 else shard_seed(seed, attempt), group)
            ok = _matches(rows, conditions or {})
            if exclude is not None:
                copies = np.isin(row_hashes(rows, modeled), exclude)
                stats["rejected_copies"] += int((copies & ok).sum())
                ok &= ~copies
            parts.append(rows[ok])
            have, total = have + int(ok.sum()), total + batch
            stats["drawn"] += batch
            if have >= n:
                break
            # Draw enough for the rest at the acceptance rate seen so far, at most 4 shards' worth.
            rate = max(have, 1) / total
            batch = int(min(max((n - have) / rate * 1.2, 256), 4 * max(n, 256)))
        if have < n:
            what = f"met {conditions}" if conditions else "differed from every training row"
            raise ConditionError(f"only {have} of {n} rows {what} after {max_tries} draws: "
                                 "the model rarely makes such rows")
        frame = pd.concat(parts, ignore_index=True).iloc[:n].reset_index(drop=True)
    schema: TableSchema = loaded.schema
    out = {}
    for col in schema.columns:
        out[col.name] = fresh_ids(col, start, n) if col.kind == "id" else frame[col.name]
    return pd.DataFrame(out)


def _condition_group(loaded: LoadedModel, conditions: dict[str, Any]) -> tuple[int, int]:
    """Check the conditions against the schema; the first one as (group index, slot) for the model."""
    first = None
    for col, value in conditions.items():
        if col not in loaded.schema.names:
            raise ConditionError(f"condition on '{col}': no such column")
        try:
            span, slot = loaded.transformer.category_slot(col, value)
        except ValueError as exc:
            raise ConditionError(f"condition on '{col}': {exc}") from None
        if first is None:
            first = (loaded.model.layout.groups.index(span), slot)
    return first


def sample(cfg: Config, dataset: str, rows: int, conditions: dict[str, Any] | None = None,
           seed: int | None = None) -> pd.DataFrame:
    """Python API: ``rows`` synthetic rows of a trained dataset, optionally with fixed values.

    >>> sample(load_config(), "adult", 10_000, {"income": ">50K"})  # doctest: +SKIP
    """
    from pipeline.train import load_model

    loaded = load_model(StagePaths.of(cfg.work_dir, dataset).model, cfg, pick_device(cfg.train.device))
    return sample_frame(loaded, rows, shard_seed(cfg.seed if seed is None else seed, 0), conditions=conditions)


def run(cfg: Config, dataset: str) -> GenerateResult:
    from pipeline.train import load_model

    paths = StagePaths.of(cfg.work_dir, dataset)
    device = pick_device(cfg.train.device)
    loaded = load_model(paths.model, cfg, device)
    rows = cfg.generate.rows or int(loaded.info["rows"])
    per = cfg.generate.rows_per_shard
    n_shards = (rows + per - 1) // per
    arrow_schema = loaded.schema.arrow()
    exclude = None
    if cfg.generate.drop_training_copies:
        from pipeline.ingest import load_prepared

        train = load_prepared(paths)[0]
        exclude = np.unique(row_hashes(train, [c.name for c in loaded.schema.modeled]))
    stats: dict[str, int] = {}
    t0 = time.perf_counter()
    with atomic_dir(paths.synthetic) as tmp:
        for i in progress(range(n_shards), desc="generate", unit="shard"):
            n = min(per, rows - i * per)
            frame = sample_frame(loaded, n, shard_seed(cfg.seed, i), start=i * per,
                                 conditions=cfg.generate.conditions, exclude=exclude, stats=stats)
            # One fixed schema for every shard: a shard whose text column happens to be all null
            # must still say 'string', or the folder stops being one readable dataset.
            table = pa.Table.from_pandas(frame, schema=arrow_schema, preserve_index=False)
            write_parquet(table, tmp / f"part-{i:05d}.parquet")
        write_json(tmp / "_generated.json", {
            "dataset": dataset, "rows": rows, "shards": n_shards, "seed": cfg.seed,
            "conditions": cfg.generate.conditions,
            "drop_training_copies": cfg.generate.drop_training_copies,
            "rows_drawn": stats.get("drawn", rows),
            "training_copies_dropped": stats.get("rejected_copies", 0),
            "model_hash": loaded.model_hash,
            "data_hash": sha256_files(sorted(tmp.glob("part-*.parquet"))),
        })
    seconds = time.perf_counter() - t0
    log.info("generated %d rows of %s in %d shards in %.1fs (%.0f rows/s)%s", rows, dataset, n_shards, seconds,
             rows / max(seconds, 1e-9), f"; dropped {stats['rejected_copies']} copies of training rows"
             if cfg.generate.drop_training_copies else "")
    return GenerateResult(dataset, rows, n_shards, seconds)
