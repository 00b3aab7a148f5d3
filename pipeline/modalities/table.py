"""The table modality's handler: the training tensor (through the fitted transformer), the evidence
its metric suites read and its report.

Fidelity, coverage and exact matches are computed on every row; above ``score.in_memory_rows``
synthetic rows they come from merged per-shard statistics (``pipeline.metrics.streaming``) and the
other suites read a seeded sample. Metrics that train models (utility, detection) or are quadratic
in the rows (DCR) run on seeded samples whose sizes are ``score.*_rows``.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from pipeline.artifacts import (
    StagePaths,
    load_prepared,
    prepared_rows,
    prepared_table_meta,
    read_rows_at,
    read_synthetic,
)
from pipeline.config import Config, DatasetConfig, GenerateConfig, ScoreConfig
from pipeline.errors import ConfigError
from pipeline.files import sha256_file
from pipeline.ids import cover
from pipeline.modalities.base import GenerationPlan, SourceRows, TrainingData, bounded, bounded_positions
from pipeline.modalities.registry import register_modality
from pipeline.protection import protection_for
from pipeline.schema import TableSchema
from pipeline.settings import ModelSettings
from pipeline.sources import partition_root, read_source, read_whole
from pipeline.typed import conform, maybe_ids, prepare

log = logging.getLogger(__name__)

MODALITY = "table"
UNIT = "rows"
REPORT_ROWS = 200_000  # rows of each side the report's plots draw from
DEFAULT_MODEL = None  # an ad-hoc source (``run --source``) trains params' model.name
UNSCORED: tuple[str, ...] = ()  # every table threshold applies to a table
TIMED_ESTIMATE = True  # validate times a few steps of the model on a sample of the rows
# The data card's intended use and known limits of a table release (CARD_USE_DP: of one whose model
# was trained under differential privacy, which ships no report and has a guarantee).
_CARD_STATISTICS = ("- Statistics of single columns and of associated pairs of columns follow the real data to the "
                    "degree the scores above say; check the report's worst columns and pairs before relying on one")
_CARD_LIMITS = [
    "## Known limits",
    "- Not the real data: rare combinations, extreme values and exact totals are not reproduced "
    "(see `coverage.range` for how much of each numeric range is covered).",
    "- Relationships weaker than the model learned, and ones through columns it did not see, are lost; "
    "deterministic links between columns (e.g. one column encoding another) may be broken.",
]
_CARD_USE = "- Development, testing, analytics and model prototyping where the real rows may not be shared."
_CARD_IDS = "- IDs are fresh values that do not link to real records."
CARD_USE = [
    "## Intended use", _CARD_USE, _CARD_STATISTICS + ".", "", *_CARD_LIMITS,
    "- Privacy: the figures above are empirical evidence from the attacks named there, on seeded samples of "
    "this release, against real rows the model never saw; not a formal guarantee. The model is not trained "
    "with differential privacy: an attacker with more knowledge or a stronger attack may learn more, most of "
    "all about rare records.",
    _CARD_IDS,
]
CARD_USE_DP = [
    "## Intended use", _CARD_USE,
    _CARD_STATISTICS + " (the report that names them holds exact statistics of the real rows, so it stays in "
    "the work folder, outside the release).", "", *_CARD_LIMITS,
    "- Privacy: the differential privacy stated above, for what it covers (its \"not covered\" line); the "
    "attack figures are empirical checks of it, on seeded samples of this release.",
    _CARD_IDS,
]


def read_sample(files: list[Path], total: int, rows: int, seed: int) -> pd.DataFrame:
    """A seeded sample of ``rows`` of the ``total`` rows in ``files`` (in order), read shard by shard."""
    if rows >= total:
        return pads.dataset(files, format="parquet").to_table().to_pandas()
    return read_rows_at(files, np.sort(np.random.default_rng(seed).choice(total, rows, replace=False)))


def sample(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    return df if len(df) <= n else df.sample(n=n, random_state=seed).reset_index(drop=True)


@dataclass
class TableEvidence:
    """What the table suites read: the prepared ``train`` and ``holdout`` rows, the synthetic rows
    ``syn`` (all of them, or a seeded sample when ``streamed``), and the settings."""

    dataset: str
    paths: StagePaths
    train: pd.DataFrame
    holdout: pd.DataFrame
    syn: pd.DataFrame
    schema: TableSchema
    target: str | None
    task: str  # the target's utility task: auto, classification or regression
    settings: ScoreConfig
    seed: int
    rows: int  # every synthetic row
    streamed: bool
    real_rows: int = 0  # every training row (more than ``train`` holds when the source was streamed)
    _stream: object = field(default=None, repr=False)

    def stream(self):
        """The exact every-row statistics of the synthetic shards, computed once (two passes)."""
        if self._stream is None:
            from pipeline.metrics.streaming import score_streaming

            files = self.paths.shards()
            self._stream = score_streaming(self.train, lambda: (pq.read_table(f).to_pandas() for f in files),
                                           self.schema)
        return self._stream

    def sample(self, df: pd.DataFrame, n: int) -> pd.DataFrame:
        return sample(df, n, self.seed)


# ---------------------------------------------------------------------------------------------
# ingest


def source_parts(source) -> list:
    """The files a table source is read from: the file itself, or every file of a folder or glob
    (``read_parts`` reads several as one table; a big source is streamed)."""
    from pipeline.sources import source_parts

    return source_parts(source)


def read(source: Path, ds: DatasetConfig, dataset: str) -> SourceRows:
    """The source's rows as typed columns, with the schema inferred (or declared) for them."""
    raw = read_source(source, ds, dataset=dataset)
    frame, schema = prepare(raw, source, ds, dataset=dataset)
    return SourceRows(frame, sha256_file(source), schema, list(raw.columns))


def read_parts(parts: list, source, ds: DatasetConfig, dataset: str, folder: Path) -> SourceRows:
    """Several source files (a folder or glob of small files) as one table, in name order."""
    raw, source_hash = read_whole(parts, partition_root(source), ds, folder, dataset)
    frame, schema = prepare(raw, source, ds, dataset=dataset)
    return SourceRows(frame, source_hash, schema, list(raw.columns))


def read_holdout(path: Path, ds: DatasetConfig, dataset: str, first: SourceRows) -> SourceRows:
    """A separate holdout file, brought to the source's schema (its header may be missing: the
    source's column names are used)."""
    frame = conform(read_source(path, ds, column_names=first.columns, dataset=dataset), path, first.schema, ds)
    for col in first.schema.columns:
        if col.kind == "id":
            cover(col.stats, frame[col.name])
    return SourceRows(frame, sha256_file(path), first.schema, first.columns)


def describe_prepared(train: pd.DataFrame, first: SourceRows) -> dict:
    """What ``schema.json`` records of the prepared rows beyond the common keys: the schema."""
    return first.schema.to_dict()


def ingest_summary(train: pd.DataFrame, holdout: pd.DataFrame, first: SourceRows) -> str:
    return (f"{len(train)} training rows, {len(holdout)} holdout rows, kinds: "
            + ", ".join(f"{c.name}={c.kind}" for c in first.schema.columns))


# ---------------------------------------------------------------------------------------------
# train


def training_data(paths: StagePaths, model_cfg: ModelSettings, seed: int, device,
                  max_rows: int | None = None, rank_slice: tuple[int, int] | None = None,
                  privacy=None) -> TrainingData:
    """The training split (at most ``max_rows`` of it, a seeded sample) through the fitted
    transformer, on ``device``.

    ``privacy`` (a ``pipeline.models.private_stats.Privacy``; ``train.privacy.epsilon`` set): the
    transformer is fitted from private estimates, and model.json's schema carries no exact statistic
    of the rows. Refused (ConfigError) before any row is read when ingest found value links.

    ``rank_slice`` = (rank, world), under torchrun: this rank's block of those rows only. Rank 0 fits the
    transformer on all of them and sends it to the other ranks (as JSON); every rank reads (only the
    row groups that hold its block) and transforms its own block, so no rank holds the whole
    training tensor."""
    from pipeline.training.setup import fit_transformer, to_tensor, transform_table

    if privacy is not None:
        from pipeline.models.private_stats import check_private

        check_private(prepared_table_meta(paths)[0], privacy)  # schema.json alone: no row read yet
    if rank_slice is None:
        train_df, _, schema, meta = load_prepared(paths)
        total = int(meta.get("rows", len(train_df)))  # a streamed source's prepared rows are a sample of its rows
        train_df = bounded(train_df, max_rows, seed)
        transformer, tensor = transform_table(train_df, schema, model_cfg, seed, device, privacy)
        rows = len(train_df)
    else:
        from pipeline.models.transformer import TableTransformer
        from pipeline.training import distributed

        rank, world = rank_slice
        schema, meta = prepared_table_meta(paths)
        in_file = prepared_rows(paths)
        total = int(meta.get("rows", in_file))
        keep = bounded_positions(in_file, max_rows, seed)
        keep = np.arange(in_file) if keep is None else keep
        rows, n = len(keep), len(keep) // world  # every rank the same number of rows (and steps)
        state = None
        if rank == 0:  # all the rows, as one process would read them; its own block is their first n
            whole = bounded(pd.read_parquet(paths.train_data), max_rows, seed)
            state = fit_transformer(whole, schema, model_cfg).state()
            train_df = whole.iloc[:n].reset_index(drop=True)
            del whole
        else:
            train_df = read_rows_at([paths.train_data], keep[rank * n:(rank + 1) * n])
        transformer = TableTransformer.from_state(schema, distributed.broadcast_json(state, device))
        tensor = to_tensor(transformer, train_df, np.random.default_rng([seed, rank]), device)
    if privacy is not None:
        from pipeline.models.private_stats import inferred_kinds, public_schema

        # Ingest typed the columns from the values where column_types did not declare them: said, not refused.
        declared = ((meta.get("params") or {}).get("dataset") or {}).get("column_types") or {}
        transformer.private["inferred_kinds"] = inferred_kinds(schema, declared)
        schema = public_schema(schema)
    described = {"schema": schema.to_dict(), "transformer": transformer.state(),
                 **({"sampled_from_rows": total} if rows < total else {})}
    return TrainingData(transformer, tensor, described, meta["source_hash"], rows, train_df, schema,
                        rank_share=rank_slice is not None)


# ---------------------------------------------------------------------------------------------
# generate


def plan_generation(g: GenerateConfig, seed: int, loaded, paths: StagePaths) -> GenerationPlan:
    from pipeline.rowhash import row_hashes
    from pipeline.sampling import condition_group, condition_value

    exclude = None
    if g.drop_training_copies and "privacy" in loaded.info:
        raise ConfigError("generate.drop_training_copies compares each generated row with the real training rows, "
                          "outside the model's differential privacy (train.privacy); set it to false for this model")
    if g.drop_training_copies:  # every training row's hash (a streamed source's: shard by shard)
        modeled = [c.name for c in loaded.schema.modeled]
        shards = sorted((paths.prepared / "train").glob("part-*.parquet"))
        frames = (pd.read_parquet(f) for f in shards) if shards else [load_prepared(paths)[0]]
        exclude = np.unique(np.concatenate([row_hashes(f, modeled) for f in frames]))
    protection = value_protection(loaded, g)  # an old model, or a condition on a withheld value, fails here
    if g.conditions:
        condition_group(loaded, g.conditions)  # a bad condition fails before any worker starts
        for col, value in g.conditions.items() if protection else ():
            protection.check_condition(col, condition_value(loaded, col, value))
    return GenerationPlan(g.rows or int(loaded.info.get("sampled_from_rows", loaded.info["rows"])), exclude)


def value_protection(loaded, g: GenerateConfig):
    """The value protection (``pipeline.protection``) that ``g`` asks of this model; None when off."""
    return protection_for(loaded.transformer, g.value_protection_k) if g.value_protection else None


def shard_table(loaded, job, g: GenerateConfig, stats: dict[str, int]) -> pa.Table:
    from pipeline.sampling import sample_frame

    frame = sample_frame(loaded, job.rows, job.seed, start=job.start, conditions=g.conditions, exclude=job.exclude,
                         stats=stats, protection=value_protection(loaded, g))
    # One fixed schema for every shard: a shard whose text column happens to be all null must
    # still say 'string', or the folder stops being one readable dataset. Then the source's own
    # types where pandas had changed them (decimal, dictionary).
    return loaded.schema.to_release(pa.Table.from_pandas(frame, schema=loaded.schema.arrow(), preserve_index=False))


def finish_shards(folder: Path, jobs: list) -> None:
    """Nothing beyond the shards for a table."""


def sample_rows(loaded, rows: int, seed: int, g: GenerateConfig, dataset: str) -> pd.DataFrame:
    """``rows`` synthetic rows drawn with ``seed`` under ``g`` (its conditions and value protection:
    the Python API, ``generate.sample``)."""
    from pipeline.sampling import sample_frame

    return sample_frame(loaded, rows, seed, conditions=g.conditions, protection=value_protection(loaded, g))


def generation_record(g: GenerateConfig, plan: GenerationPlan, stats: dict[str, int], loaded) -> dict:
    record = {"conditions": g.conditions, "drop_training_copies": g.drop_training_copies,
              "rows_drawn": stats.get("drawn", plan.rows), "training_copies_dropped": stats.get("rejected_copies", 0)}
    if loaded.schema.constraints:  # rows that broke one: drawn again, or (after a few draws) repaired
        record.update({"constraints": loaded.schema.constraints,
                       "constraint_rows_redrawn": stats.get("constraint_rows_redrawn", 0),
                       "constraint_rows_repaired": stats.get("constraint_rows_repaired", 0)})
    protection = value_protection(loaded, g)
    record["value_protection"] = protection.record(stats) if protection else {"enabled": False}
    if protection:
        log.info("value protection (k=%d): %d of %d rows changed", protection.k,
                 record["value_protection"]["rows_changed"], plan.rows)
    return record


# ---------------------------------------------------------------------------------------------
# score


def evidence(cfg: Config, dataset: str, paths: StagePaths) -> TableEvidence:
    train, holdout, schema, meta = load_prepared(paths)
    sc, seed = cfg.score, cfg.seed
    total = pads.dataset(paths.synthetic, format="parquet").count_rows()
    streamed = total > sc.in_memory_rows
    if streamed:  # too many rows to hold: the suites that need rows read a seeded sample
        from pipeline.metrics.privacy import SYNTHETIC_FACTOR

        syn = read_sample(paths.shards(), total,
                          max(sc.utility_rows, sc.detection_rows, sc.precision_recall_rows, sc.privacy_rows,
                              sc.attack_rows * SYNTHETIC_FACTOR, REPORT_ROWS), seed)
    else:
        syn = read_synthetic(paths.synthetic)
    ds = cfg.dataset(dataset)
    return TableEvidence(dataset, paths, train, holdout, syn, schema, ds.target, ds.task, sc, seed, total, streamed,
                         int(meta.get("rows", len(train))))


def report(ev: TableEvidence, metrics: dict, details: dict, drawn: dict) -> dict[str, str]:
    """The report files' contents: {file name: text}."""
    from pipeline.files import read_json
    from pipeline.report import ReportInput, auto_summary, render_html, render_markdown

    log_df = pd.read_csv(ev.paths.train_log) if ev.paths.train_log.exists() else None
    samples, seed = details["samples"], ev.seed
    model_json = ev.paths.model / "model.json"
    chosen = auto_summary(read_json(model_json).get("auto")) if model_json.exists() else None
    every = samples["fidelity_coverage_exact_match"]
    real = (f"{len(ev.train):,} training rows" if ev.real_rows <= len(ev.train) else
            f"a seeded sample of {len(ev.train):,} of the {ev.real_rows:,} training rows (the source was streamed)")
    notes = [f"Fidelity, coverage and exact matches: all {every['synthetic']:,} synthetic and {real}"
             + (" (merged from per-shard statistics: the same scores as in memory)."
                if samples.get("synthetic_sample") else ".")]
    if chosen:
        notes.insert(0, chosen)
    if samples.get("synthetic_sample"):
        notes.append(f"The other metrics and the plots: a seeded sample of {samples['synthetic_sample']:,} "
                     f"synthetic rows (seed {seed}).")
    if samples.get("detection"):
        notes.append(f"Detection: {samples['detection']['rows_per_side']:,} rows per side, "
                     f"{samples['detection']['folds']}-fold cross-validation, seed {seed}.")
    if samples.get("precision_recall"):
        notes.append(f"Alpha-precision, beta-recall, authenticity: {samples['precision_recall']['rows_per_side']:,} "
                     f"rows per side, seed {seed}.")
    if samples.get("utility"):
        notes.append(f"Utility: models trained on at most {ev.settings.utility_rows:,} rows, seed {seed}.")
    if samples.get("privacy_dcr"):
        r = samples["privacy_dcr"]
        parts = r.get("train_parts", 1)
        trained = (f"{r['train']:,} training rows" if parts == 1
                   else f"each of {parts} disjoint samples of {r['train']:,} training rows (averaged)")
        notes.append(f"DCR: {r['synthetic']:,} synthetic rows; the share against {r['holdout']:,} holdout rows and "
                     f"{trained}, the medians and the plot against "
                     f"{r['train_reference']:,} training rows; seed {seed}.")
    inp = ReportInput(
        dataset=ev.dataset, metrics=metrics,
        thresholds={k: v.model_dump() for k, v in ev.settings.thresholds.items()},
        schema=ev.schema, real=ev.sample(ev.train, REPORT_ROWS), synthetic=ev.sample(ev.syn, REPORT_ROWS),
        columns=details.get("columns", {}), pairs=details.get("pairs", []),
        privacy_distances=drawn.get("privacy_distances", {}), details=details, train_log=log_df, notes=notes,
        value_protection=(read_json(ev.paths.generated).get("value_protection")
                          if ev.paths.generated.exists() else None),
    )
    return {"report.html": render_html(inp), "report.md": render_markdown(inp)}


# ---------------------------------------------------------------------------------------------
# validate


def plan_details(first: SourceRows, ds: DatasetConfig, dataset: str, cfg: Config, holdout_rows: int) -> dict:
    """What ``validate``'s plan shows of a table: its columns, the identifier warnings, the links and
    constraints kept, the target and its utility task."""
    frame, schema = first.frame, first.schema
    return {
        "columns": [{"name": c.name, "kind": c.kind, "nulls": int(frame[c.name].isna().sum()),
                     "distinct": int(frame[c.name].nunique(dropna=True))} for c in schema.columns],
        # (reading the source logged them as warnings already: the text plan does not repeat them)
        "maybe_ids": maybe_ids(frame, schema, ds, dataset),
        "links": [f"{link['from']} -> {link['to']}" for link in schema.links],
        "constraints": list(schema.constraints),
        "target": _plan_target(schema, ds, cfg, holdout_rows),
        "privacy": _plan_privacy(cfg, len(frame) - (0 if ds.holdout_source else holdout_rows), holdout_rows),
    }


def _plan_target(schema: TableSchema, ds: DatasetConfig, cfg: Config, holdout_rows: int) -> dict | None:
    if ds.target is None:
        return None
    from pipeline.metrics.utility import utility_task

    task = utility_task(schema, ds.target, ds.task)
    judged = holdout_rows >= cfg.score.utility_min_holdout
    return {"column": ds.target, "kind": schema[ds.target].kind, "task": task,
            "utility_judged": judged,
            **({} if judged else {"why_not": f"holdout of {holdout_rows} rows < score.utility_min_holdout "
                                             f"{cfg.score.utility_min_holdout}"})}


def _plan_privacy(cfg: Config, train_rows: int, holdout_rows: int) -> dict:
    """The privacy families that will run (every table suite reporting ``privacy.*`` keys) and, for
    those that attack the shared split, its rows, or why they will not be judged."""
    from pipeline.metrics import privacy_suites
    from pipeline.metrics.privacy import attack_sizes

    suites = privacy_suites(MODALITY)
    attacks = [s.name for s in suites if s.attacks]
    sc = cfg.score
    out: dict = {"suites": [s.name for s in suites], "attacks": attacks}
    if attacks and holdout_rows < sc.privacy_min_holdout:
        out["why_not"] = f"holdout of {holdout_rows} rows < score.privacy_min_holdout {sc.privacy_min_holdout}"
    elif attacks:
        out["rows"] = attack_sizes(train_rows, holdout_rows, cfg.generate.rows or train_rows, sc.attack_rows)
    return out


register_modality(sys.modules[__name__])
