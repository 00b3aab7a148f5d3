"""Stage 3, generate: sample N rows (or labelled images) from the trained model, streamed to Parquet shards.

Shard ``i`` is drawn from generators seeded by (seed, i) alone, so the same params give the same
rows, and shards could be made in any order or in parallel. Memory is bounded by one shard.
Output ``<work>/<dataset>/synthetic/part-00000.parquet, ...`` (replaced whole, atomically); for
images, in the source's layout (PNG bytes, label, height, width), with a preview grid ``_grid.png``.
The rows come from ``pipeline.sampling``; the shards are written by ``pipeline.shards`` (in this
process, worker processes or Dask); this stage plans them and records what made them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from pipeline.artifacts import StagePaths, prepared_rows, shard_name
from pipeline.errors import ConfigError
from pipeline.files import atomic_dir, free_mb, sha256_files, write_json
from pipeline.modalities import modality_named
from pipeline.options import Option
from pipeline.progress import rate_text
from pipeline.sampling import shard_seed
from pipeline.shards import ShardJob, make_shards
from pipeline.training.loop import pick_device

if TYPE_CHECKING:
    from pipeline.config import Config

# This stage's own command-line options (the CLI adds them; --condition sets generate.conditions).
OPTIONS = (
    Option("--condition", "fix a categorical column's value in every row (repeatable), e.g. income='>50K'",
           {"action": "append", "default": [], "metavar": "COLUMN=VALUE"}, sets="generate.conditions"),
)

log = logging.getLogger(__name__)
# A generate run lists its shards up front (one job, one future on the workers, each), and a row
# count beyond any disk says a typo: 10**15 rows once planned 10^7 shard jobs (4.2 GB) before failing.
MAX_GENERATE_SHARDS = 100_000
MAX_GENERATE_ROWS = 10**12


@dataclass
class GenerateResult:
    dataset: str
    rows: int
    shards: int
    seconds: float


def sample(cfg: Config, dataset: str, rows: int, conditions: dict[str, Any] | None = None,
           seed: int | None = None) -> pd.DataFrame:
    """Python API: ``rows`` synthetic rows of a trained dataset, optionally with fixed values.

    >>> sample(load_config(), "adult", 10_000, {"income": ">50K"})  # doctest: +SKIP
    """
    from pipeline.models.saved import load_model

    cfg = cfg.for_dataset(dataset)
    loaded = load_model(StagePaths.of(cfg.work_dir, dataset).model, pick_device(cfg.train.device))
    g = cfg.generate.model_copy(update={"conditions": conditions or {}})  # its value protection too
    loaded.model.use_sampling(g)
    return modality_named(loaded.modality).sample_rows(loaded, rows, shard_seed(cfg.seed if seed is None else seed, 0),
                                                       g, dataset)


def run(cfg: Config, dataset: str) -> GenerateResult:
    from pipeline.models.saved import load_model

    cfg = cfg.for_dataset(dataset)  # itself when resolved already (run_stage resolves it)
    paths = StagePaths.of(cfg.work_dir, dataset)
    g = cfg.generate
    # A plan that cannot finish is refused in one line before anything is planned or written: an
    # image plan lists a label per row, and the shard jobs below are a list.
    check_generation(cfg, paths, g.rows or 0)
    loaded = load_model(paths.model, pick_device(cfg.train.device))
    handler = modality_named(loaded.modality)
    sampling = loaded.model.use_sampling(g)  # the steps it samples with (workers set theirs from g too)
    plan = handler.plan_generation(g, cfg.seed, loaded, paths)
    check_generation(cfg, paths, plan.rows)  # as many as the source, or rows_per_label of each label
    rows, per = plan.rows, g.rows_per_shard
    n_shards = (rows + per - 1) // per
    t0 = time.perf_counter()
    with atomic_dir(paths.synthetic) as tmp:
        jobs = [ShardJob(i, min(per, rows - i * per), i * per, shard_seed(cfg.seed, i), str(tmp / shard_name(i)),
                         plan.exclude, labels=None if plan.labels is None else plan.labels[i * per:(i + 1) * per])
                for i in range(n_shards)]
        stats = make_shards(cfg, paths, jobs, loaded)
        handler.finish_shards(tmp, jobs)
        write_json(tmp / paths.generated.name, {
            "dataset": dataset, "rows": rows, "shards": n_shards, "seed": cfg.seed,
            **handler.generation_record(g, plan, stats, loaded),
            **({"sampling": sampling} if sampling else {}),
            "workers": g.workers,
            "backend": g.backend if g.workers > 1 else "in-process",
            "model_hash": loaded.model_hash,
            "data_hash": sha256_files(sorted(tmp.glob("part-*.parquet"))),
            "params": {"seed": cfg.seed, "generate": g.model_dump(mode="json")},  # what made these rows
        })
    seconds = time.perf_counter() - t0
    unit = handler.UNIT
    rate = rate_text(rows, seconds, unit)
    log.info("generated %d %s of %s in %d shards in %.1fs%s%s", rows, unit, dataset, n_shards, seconds,
             f" ({rate})" if rate else "", f"; dropped {stats.get('rejected_copies', 0)} copies of training "
             f"{unit}" if g.drop_training_copies else "")
    return GenerateResult(dataset, rows, n_shards, seconds)


def check_generation(cfg: Config, paths: StagePaths, rows: int) -> None:
    """Refuse in one line naming ``generate.rows`` (a ConfigError) a generation that cannot finish:
    more rows or shards than a run makes, or more output than the work folder has free (about the
    prepared training Parquet's bytes per row, times ``rows``). The generate stage runs it before it
    plans or writes anything; ``python -m pipeline validate`` shows the same free space
    (``pipeline.files.free_mb``)."""
    per = cfg.generate.rows_per_shard
    if rows > MAX_GENERATE_ROWS:
        raise ConfigError(f"generate.rows {rows:,} is more than {MAX_GENERATE_ROWS:,}, the most one generate run "
                          "makes; lower generate.rows")
    shards = -(-rows // per)
    if shards > MAX_GENERATE_SHARDS:
        raise ConfigError(f"generate.rows {rows:,} in shards of generate.rows_per_shard {per:,} is {shards:,} "
                          f"shards, more than {MAX_GENERATE_SHARDS:,}; lower generate.rows or raise "
                          "generate.rows_per_shard")
    in_file = prepared_rows(paths) if paths.train_data.is_file() else 0
    if not in_file:
        return
    free = free_mb(cfg.work_dir)
    need = rows * paths.train_data.stat().st_size / in_file / 2**20
    if need > free:
        raise ConfigError(f"generate.rows {rows:,}: about {need:,.0f} MB of synthetic data, {free:,.0f} MB free in "
                          f"{cfg.work_dir}; lower generate.rows, or free some space or set work_dir elsewhere")
