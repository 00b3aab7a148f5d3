"""The stage I/O contract: where every stage output lives and how it is read back.

A stage reads what an earlier stage wrote only through this module (never by importing that
stage), so the five stages stand side by side:

    <work>/<dataset>/prepared/train.parquet, holdout.parquet, schema.json   ingest
    <work>/<dataset>/model/model.pt, model.json; checkpoints/; train_log.csv;
    <work>/<dataset>/train_plots/<loss>.csv                                  train
    <work>/<dataset>/synthetic/part-00000.parquet ..., _generated.json       generate
    <work>/<dataset>/score/details.json, report.html, report.md              score (the record publish reads)
    <metrics>/<dataset>.json                                                 score (its numbers, for DVC)
    <release_root>/<dataset>/<version>/...                                   publish (pipeline.catalog)

Every write is atomic (``pipeline.files``); each stage records the settings it ran with beside its
outputs (a ``params`` entry), which is what a release's manifest reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.dataset as pads

from pipeline.errors import ConfigError, InputDataError
from pipeline.files import read_json
from pipeline.names import check_name
from pipeline.schema import TableSchema


@dataclass(frozen=True)
class StagePaths:
    """Where each stage of one dataset reads and writes (all under the work dir)."""

    root: Path

    @classmethod
    def of(cls, work_dir: str | Path, dataset: str) -> "StagePaths":
        return cls(Path(work_dir) / check_name(dataset))

    @property
    def prepared(self) -> Path:
        return self.root / "prepared"

    @property
    def train_data(self) -> Path:
        return self.prepared / "train.parquet"

    @property
    def holdout_data(self) -> Path:
        return self.prepared / "holdout.parquet"

    @property
    def schema(self) -> Path:
        return self.prepared / "schema.json"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def train_log(self) -> Path:
        return self.root / "train_log.csv"

    @property
    def train_plots(self) -> Path:
        """One CSV per loss column of the train log (epoch, loss): what ``dvc plots show`` draws."""
        return self.root / "train_plots"

    @property
    def synthetic(self) -> Path:
        return self.root / "synthetic"

    @property
    def generated(self) -> Path:
        """What generate recorded: rows, seeds, settings, the model's hash and the data's."""
        return self.synthetic / "_generated.json"

    def shards(self) -> list[Path]:
        return sorted(self.synthetic.glob("part-*.parquet"))

    @property
    def stage_seconds(self) -> Path:
        """Wall seconds of each stage's last run (the release manifest carries them)."""
        return self.root / "stage_seconds.json"

    @property
    def score(self) -> Path:
        return self.root / "score"

    @property
    def details(self) -> Path:
        return self.score / "details.json"


def shard_name(index: int) -> str:
    """The file name of shard ``index`` (of the synthetic data, and of a release)."""
    return f"part-{index:05d}.parquet"


def metrics_path(metrics_dir: str | Path, dataset: str) -> Path:
    """``<metrics>/<dataset>.json``: the score stage's scores, numbers only (``dvc metrics show``,
    ``dvc exp show``; git-tracked, so that experiments carry them). Its record is ``details.json``."""
    return Path(metrics_dir) / f"{check_name(dataset)}.json"


# The keys of the score stage's flat results that are not scores: the hash of the data scored and
# the verdict. ``details.json`` keeps them; the DVC metrics file (numbers only) never has them.
VERDICT_KEYS = ("synthetic_hash", "gate.passed", "gate.failures", "gate.not_judged")


def score_records(metrics: dict, details: dict) -> tuple[dict, dict]:
    """The score stage's two records of its flat results ``metrics``: ``details.json`` (``details``
    with every score under ``metrics``, text ones too such as ``utility.task``; the hash of the data
    scored under ``synthetic_hash``; the verdict under the thresholds it was scored with under
    ``gate``) and the DVC metrics file (the numbers alone; null: a score that came out NaN).
    ``load_scores`` reads the first back."""
    scores = {k: v for k, v in metrics.items() if k not in VERDICT_KEYS}
    record = {**details, "metrics": scores, "synthetic_hash": metrics["synthetic_hash"],
              "gate": {"passed": metrics["gate.passed"], "failures": metrics["gate.failures"],
                       "not_judged": metrics.get("gate.not_judged") or {}}}
    numbers = {k: v for k, v in scores.items()
               if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))}
    return record, numbers


def read_record(path: Path, stage: str) -> dict:
    """A JSON object a stage wrote; a one-line error naming the stage to run if it is missing or
    unreadable."""
    if not path.is_file():
        raise InputDataError(path, f"not found: run the {stage} stage first")
    try:
        data = read_json(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputDataError(path, f"not valid JSON ({exc}); re-run the {stage} stage") from None
    if not isinstance(data, dict):
        raise InputDataError(path, f"not a JSON object; re-run the {stage} stage")
    return data


def prepared_meta(paths: StagePaths) -> dict:
    """What ingest recorded (``schema.json``); its ``modality`` says which loader fits."""
    if not paths.schema.exists():
        raise InputDataError(paths.prepared, "no prepared data: run the ingest stage first")
    return read_json(paths.schema)


def _prepared_as(paths: StagePaths, modality: str, noun: str) -> dict:
    """What ingest recorded, when it prepared ``modality`` data (``noun``: what a reader asked for);
    a ConfigError naming what it did prepare otherwise."""
    meta = prepared_meta(paths)
    found = meta.get("modality", "table")  # records name their modality; none: a table
    if found != modality:
        a = "an" if found[:1] in "aeiou" else "a"
        raise ConfigError(f"{paths.root.name}: {a} {found} dataset (ingested to {paths.prepared}), not {noun}")
    return meta


def prepared_table_meta(paths: StagePaths) -> tuple[TableSchema, dict]:
    """What ingest recorded for a table: (its schema, ``schema.json``'s contents)."""
    meta = _prepared_as(paths, "table", "a table")
    return TableSchema.from_dict(meta), meta


def load_prepared(paths: StagePaths) -> tuple[pd.DataFrame, pd.DataFrame, TableSchema, dict]:
    """Read what ingest wrote for a table: (train, holdout, schema, schema.json contents)."""
    schema, meta = prepared_table_meta(paths)
    return pd.read_parquet(paths.train_data), pd.read_parquet(paths.holdout_data), schema, meta


def prepared_rows(paths: StagePaths) -> int:
    """How many rows the prepared training file holds (from its footer; nothing else is read)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(paths.train_data).metadata.num_rows


def read_rows_at(files: list[Path], positions) -> pd.DataFrame:
    """The rows at ``positions`` (ascending, counted across ``files`` in order), reading only the
    row groups that hold them: a seeded sample of the synthetic shards, or a training rank's share
    of a big table's sample, without reading the rest."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts, start, schema = [], 0, None
    for path in files:
        f = pq.ParquetFile(path)
        schema = schema or f.schema_arrow
        for g in range(f.metadata.num_row_groups):
            n = f.metadata.row_group(g).num_rows
            local = positions[(positions >= start) & (positions < start + n)] - start
            if len(local):
                parts.append(f.read_row_group(g).take(np.asarray(local)))
            start += n
    return (pa.concat_tables(parts) if parts else schema.empty_table()).to_pandas()


def load_prepared_images(paths: StagePaths) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Read what ingest wrote for images: (train, holdout, schema.json contents), frames in the
    image layout (``pipeline.images``)."""
    meta = _prepared_as(paths, "image", "images")
    return pd.read_parquet(paths.train_data), pd.read_parquet(paths.holdout_data), meta


def read_synthetic(path: Path) -> pd.DataFrame:
    """Every synthetic row (a Parquet file or a folder of shards)."""
    return pads.dataset(path, format="parquet").to_table().to_pandas()


def load_scores(paths: StagePaths) -> tuple[dict, dict]:
    """What the score stage recorded (``details.json``): (its scores as one flat mapping, as the gate
    reads them: every score, the hash of the data scored (``synthetic_hash``) and what could not be
    judged (``gate.not_judged``); the whole record). Not the DVC metrics file: the record travels
    with the rest of the score stage's output, so its scores and hash always belong together."""
    details = read_record(paths.details, "score")
    scores, gate = details.get("metrics"), details.get("gate")
    if not (isinstance(scores, dict) and isinstance(gate, dict) and isinstance(details.get("synthetic_hash"), str)):
        raise InputDataError(paths.details, "holds no scores (an older version wrote it?); re-run the score stage")
    not_judged = gate.get("not_judged") or {}
    return {**scores, "synthetic_hash": details["synthetic_hash"],
            **({"gate.not_judged": not_judged} if not_judged else {})}, details
