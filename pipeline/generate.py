"""Stage 3, generate: sample N rows (or labelled images) from the trained model, streamed to Parquet shards.

Shard ``i`` is drawn from generators seeded by (seed, i) alone, so the same params give the same
rows, and shards could be made in any order or in parallel. Memory is bounded by one shard.
Output ``<work>/<dataset>/synthetic/part-00000.parquet, ...`` (replaced whole, atomically); for
images, in the source's layout (PNG bytes, label, height, width), with a preview grid ``_grid.png``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from pipeline.artifacts import StagePaths, shard_name
from pipeline.errors import ConditionError
from pipeline.io import atomic_dir, progress, sha256_files, write_json, write_parquet
from pipeline.metrics.privacy import row_hashes
from pipeline.models.image import ImageSpec
from pipeline.schema import TableSchema
from pipeline.training.loop import pick_device

if TYPE_CHECKING:  # sampling itself needs no pydantic: it runs on a bare GPU box (benchmarks/gpu_check.py)
    from pipeline.config import Config
    from pipeline.models.saved import LoadedModel

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
    from pipeline.models.saved import load_model

    cfg = cfg.for_dataset(dataset)
    loaded = load_model(StagePaths.of(cfg.work_dir, dataset).model, cfg, pick_device(cfg.train.device))
    if loaded.spec is not None:
        raise ConditionError(f"{dataset} is an image dataset: "
                             "use sample_images(loaded, labels, seed) or the generate stage")
    return sample_frame(loaded, rows, shard_seed(cfg.seed if seed is None else seed, 0), conditions=conditions)


# ---------------------------------------------------------------------------------------------
# Images


def label_plan(spec: ImageSpec, counts: np.ndarray, rows: int | None, mix: dict[int, float],
               per_label: int | None, seed: int) -> np.ndarray:
    """The label index of every image to make, in output order: exact counts for the mix (the
    training counts when ``mix`` is empty), by largest remainder, in a seeded order. It depends on
    nothing but its arguments, so any shard can be made alone."""
    if mix:
        unknown = sorted(set(mix) - set(spec.labels))
        if unknown:
            raise ConditionError(f"generate.labels: label {unknown[0]} is not one the model knows ({spec.labels})")
        weights = np.array([float(mix.get(v, 0.0)) for v in spec.labels])
        if (weights < 0).any() or weights.sum() <= 0:
            raise ConditionError(f"generate.labels: shares must be >= 0 and not all 0 (got {mix})")
    else:
        weights = np.asarray(counts, dtype=float)
    if per_label is not None:
        exact = np.where(weights > 0, per_label, 0)
    else:
        quota = weights / weights.sum() * rows
        exact = np.floor(quota).astype(np.int64)
        short = rows - int(exact.sum())
        exact[np.argsort(-(quota - exact), kind="stable")[:short]] += 1
    plan = np.repeat(np.arange(len(spec.labels)), exact)
    return plan[np.random.default_rng(seed).permutation(len(plan))]


def sample_images(loaded: LoadedModel, labels: np.ndarray, seed: int) -> np.ndarray:
    """[n, H, W] uint8 images for label indices ``labels``, from ``seed`` alone."""
    from pipeline.models.image import to_uint8

    device = next(loaded.model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    out = [to_uint8(loaded.model.sample(torch.from_numpy(labels[i:i + 4096]).to(device), gen))
           for i in range(0, len(labels), 4096)]
    return np.concatenate(out) if out else np.zeros((0, loaded.spec.height, loaded.spec.width), np.uint8)


def _generate_images(cfg: Config, dataset: str, loaded: LoadedModel, paths: StagePaths) -> GenerateResult:
    from pipeline.images import decode_image, encode_png, image_grid, pixel_hashes

    g = cfg.generate
    if g.conditions:
        raise ConditionError("generate.conditions is for tables; for images set generate.labels ({label: share})")
    spec = loaded.spec
    counts = loaded.model.label_counts.cpu().numpy()
    plan = label_plan(spec, counts, g.rows or int(loaded.info["rows"]), g.labels, g.rows_per_label, cfg.seed)
    rows, per = len(plan), g.rows_per_shard
    n_shards = (rows + per - 1) // per
    exclude = None
    if g.drop_training_copies:
        from pipeline.artifacts import load_prepared_images
        from pipeline.images import pixels_of

        exclude = np.unique(pixel_hashes(pixels_of(load_prepared_images(paths)[0])))
    values = np.asarray(spec.labels)
    t0 = time.perf_counter()
    with atomic_dir(paths.synthetic) as tmp:
        jobs = [ShardJob(i, len(plan[i * per:(i + 1) * per]), i * per, shard_seed(cfg.seed, i),
                         str(tmp / shard_name(i)), exclude, labels=plan[i * per:(i + 1) * per])
                for i in range(n_shards)]
        stats = make_shards(cfg, paths, jobs, loaded)
        if n_shards:  # the preview: the first images of the first shard, 10 per label
            import pyarrow.parquet as pq

            head = pq.read_table(jobs[0].out, columns=["image", "label"]).slice(0, 2000).to_pandas()
            pixels = np.stack([decode_image(b, jobs[0].out) for b in head["image"]])
            (tmp / "_grid.png").write_bytes(encode_png(image_grid(pixels, head["label"].to_numpy())))
        write_json(tmp / paths.generated.name, {
            "dataset": dataset, "rows": rows, "shards": n_shards, "seed": cfg.seed, "modality": "image",
            "labels": {int(v): int(c) for v, c in zip(values, np.bincount(plan, minlength=len(values)))},
            "drop_training_copies": g.drop_training_copies,
            "training_copies_dropped": stats.get("rejected_copies", 0),
            "workers": g.workers, "backend": g.backend if g.workers > 1 else "in-process",
            "model_hash": loaded.model_hash,
            "data_hash": sha256_files(sorted(tmp.glob("part-*.parquet"))),
            "params": {"seed": cfg.seed, "generate": cfg.generate.model_dump(mode="json")},  # what made these rows
        })
    seconds = time.perf_counter() - t0
    log.info("generated %d images of %s in %d shards in %.1fs (%.0f images/s)", rows, dataset, n_shards, seconds,
             rows / max(seconds, 1e-9))
    return GenerateResult(dataset, rows, n_shards, seconds)


# ---------------------------------------------------------------------------------------------
# Shards, in this process or across worker processes (local, or Dask)


@dataclass(frozen=True)
class ShardJob:
    """One output file: which shard, how many rows from which global row, its seed, where to write,
    and the training-row hashes to avoid (``exclude``). Images also carry their label indices."""

    index: int
    rows: int
    start: int
    seed: int
    out: str
    exclude: np.ndarray | None = None
    labels: np.ndarray | None = None


_WORKER_MODELS: dict[str, Any] = {}  # a worker loads each model once, not once per shard


def _worker_model(cfg: Config, paths: StagePaths) -> LoadedModel:
    from pipeline.models.saved import load_model

    key = str(paths.model)
    if key not in _WORKER_MODELS:
        _WORKER_MODELS.clear()
        _WORKER_MODELS[key] = load_model(paths.model, cfg, pick_device(cfg.train.device))
    return _WORKER_MODELS[key]


def write_shard(job: ShardJob, cfg: Config, paths: StagePaths, loaded: LoadedModel | None = None) -> dict[str, int]:
    """Make and write one shard; returns its counts. Depends only on the job, so any process
    (any worker count) writes the same bytes."""
    loaded = loaded or _worker_model(cfg, paths)
    stats: dict[str, int] = {}
    if loaded.spec is not None:
        from pipeline.images import IMAGE_ARROW_SCHEMA, frame_of, pixel_hashes

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
        table = pa.Table.from_pandas(frame, schema=IMAGE_ARROW_SCHEMA, preserve_index=False)
    else:
        frame = sample_frame(loaded, job.rows, job.seed, start=job.start, conditions=cfg.generate.conditions,
                             exclude=job.exclude, stats=stats)
        # One fixed schema for every shard: a shard whose text column happens to be all null
        # must still say 'string', or the folder stops being one readable dataset. Then the
        # source's own types where pandas had changed them (decimal, dictionary).
        table = loaded.schema.to_release(pa.Table.from_pandas(frame, schema=loaded.schema.arrow(),
                                                              preserve_index=False))
    write_parquet(table, Path(job.out))
    return stats


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)  # workers share the cores instead of each taking them all


def make_shards(cfg: Config, paths: StagePaths, jobs: list[ShardJob], loaded: LoadedModel) -> dict[str, int]:
    """Write every job's shard: in this process (``generate.workers: 1``), or on that many worker
    processes (``generate.backend: processes``) or Dask workers (``dask``). Returns summed counts."""
    g = cfg.generate
    if g.workers <= 1 or len(jobs) <= 1:
        results = [write_shard(job, cfg, paths, loaded) for job in progress(jobs, desc="generate", unit="shard")]
    elif g.backend == "processes":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        threads = max(1, (os.cpu_count() or 1) // g.workers)
        # spawn: a fresh interpreter per worker (forking a process that holds torch threads is unsafe).
        with ProcessPoolExecutor(g.workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_worker_init, initargs=(threads,)) as pool:
            results = list(pool.map(write_shard, jobs, [cfg] * len(jobs), [paths] * len(jobs)))
    else:
        from distributed import Client, LocalCluster

        # Workers write straight into the output folder: on a remote cluster it must be shared storage.
        cluster = None if g.dask_address else LocalCluster(n_workers=g.workers, threads_per_worker=1,
                                                           processes=True, dashboard_address=None)
        with Client(g.dask_address or cluster) as client:
            results = client.gather(client.map(write_shard, jobs, cfg=cfg, paths=paths, pure=False))
        if cluster is not None:
            cluster.close()
    total: dict[str, int] = {}
    for r in results:
        for k, v in r.items():
            total[k] = total.get(k, 0) + v
    return total


def run(cfg: Config, dataset: str) -> GenerateResult:
    from pipeline.models.saved import load_model

    cfg = cfg.for_dataset(dataset)
    paths = StagePaths.of(cfg.work_dir, dataset)
    device = pick_device(cfg.train.device)
    loaded = load_model(paths.model, cfg, device)
    if loaded.spec is not None:
        return _generate_images(cfg, dataset, loaded, paths)
    rows = cfg.generate.rows or int(loaded.info["rows"])
    per = cfg.generate.rows_per_shard
    n_shards = (rows + per - 1) // per
    exclude = None
    if cfg.generate.drop_training_copies:
        from pipeline.artifacts import load_prepared

        train = load_prepared(paths)[0]
        exclude = np.unique(row_hashes(train, [c.name for c in loaded.schema.modeled]))
    if cfg.generate.conditions:
        _condition_group(loaded, cfg.generate.conditions)  # a bad condition fails before any worker starts
    t0 = time.perf_counter()
    with atomic_dir(paths.synthetic) as tmp:
        jobs = [ShardJob(i, min(per, rows - i * per), i * per, shard_seed(cfg.seed, i),
                         str(tmp / shard_name(i)), exclude) for i in range(n_shards)]
        stats = make_shards(cfg, paths, jobs, loaded)
        write_json(tmp / paths.generated.name, {
            "dataset": dataset, "rows": rows, "shards": n_shards, "seed": cfg.seed,
            "conditions": cfg.generate.conditions,
            "drop_training_copies": cfg.generate.drop_training_copies,
            "rows_drawn": stats.get("drawn", rows),
            "training_copies_dropped": stats.get("rejected_copies", 0),
            "workers": cfg.generate.workers,
            "backend": cfg.generate.backend if cfg.generate.workers > 1 else "in-process",
            "model_hash": loaded.model_hash,
            "data_hash": sha256_files(sorted(tmp.glob("part-*.parquet"))),
            "params": {"seed": cfg.seed, "generate": cfg.generate.model_dump(mode="json")},  # what made these rows
        })
    seconds = time.perf_counter() - t0
    log.info("generated %d rows of %s in %d shards in %.1fs (%.0f rows/s)%s", rows, dataset, n_shards, seconds,
             rows / max(seconds, 1e-9), f"; dropped {stats.get('rejected_copies', 0)} copies of training rows"
             if cfg.generate.drop_training_copies else "")
    return GenerateResult(dataset, rows, n_shards, seconds)
