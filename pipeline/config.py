"""The one typed configuration, mirroring params.yaml; its defaults are params.yaml's.

The ``model`` and ``train`` sections are generated from ``pipeline.settings`` (their one
definition: fields, defaults, bounds, descriptions); the others are declared here. Every section
forbids unknown keys, so a typo fails loudly with the key's dotted path. Any key can be overridden
with ``--set dotted.key=value``; the value is parsed as YAML (``--set train.epochs=3``,
``--set model.gan.generator_dims=[128,128]``).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin, get_type_hints

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from pipeline.errors import ConfigError
from pipeline.names import name_problem
from pipeline.settings import CHECKS, DEFAULT_CLIP, ModelSettings, TrainSettings, from_dict, model_section

# Sections a dataset's ``overrides`` may set (the others are about the whole run, not one dataset).
OVERRIDABLE = ("model", "train", "generate", "score")
# The ``--threshold`` texts, carried in the overrides dict (not a params key) so that whatever passes
# overrides on (the flows, their deployments, a worker re-reading the config) passes them on too.
THRESHOLD_EDITS = "--threshold"
MOVED = {"train.threads": "runtime.threads",  # keys an older params.yaml may still have
         "train.lr_decay_epochs": "train.lr_decay, a share of train.epochs: 0.5 = the last half"}
class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader reading ``1e-5`` as the number YAML 1.2 says it is (YAML 1.1, which
    PyYAML follows, wants ``1.0e-5`` and reads ``1e-5`` as text, which a number setting refuses)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def load_yaml(text: str) -> Any:
    """A params text (a file, a ``--set`` value) as data: YAML, numbers as in YAML 1.2."""
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass


ColumnKind = Literal["continuous", "integer", "categorical", "boolean", "datetime", "id"]


class _Section(BaseModel):
    # strict: a wrong type is an error, never coerced (epochs: true is not 1)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True)


class CsvOptions(_Section):
    """How to read a CSV; ``auto`` values are detected from the file's first lines."""

    header: bool | Literal["auto"] = "auto"
    sep: str = Field("auto", pattern=r"^(auto|.|\\t|\\s\+)$", description="one character, \\t, \\s+ or auto")
    na_values: list[str] | Literal["auto"] = "auto"
    encoding: str = "utf-8"
    names: list[str] | None = Field(
        default=None, description="the column names of a headerless file, in order (its first line is then a row); "
                                  "as many as the file has columns")

    @field_validator("names")
    @classmethod
    def _distinct_names(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value or any(not n.strip() for n in value):
                raise ValueError("give every column a non-empty name (or drop csv.names for a file with a header)")
            dupes = sorted({n for n in value if value.count(n) > 1})
            if dupes:
                raise ValueError(f"{dupes[0]!r} is named twice: each column needs its own name")
        return value

    @model_validator(mode="after")
    def _headerless(self) -> "CsvOptions":
        if self.names is not None and self.header is True:
            raise ValueError("names are for a headerless file: set csv.header to false (or auto), or drop csv.names "
                             "to keep the header's names")
        return self


class DatasetConfig(_Section):
    source: str = Field(description="CSV or Parquet file with the real rows; for images: an idx file, "
                                    "a folder of <label>/ subfolders of PNGs, or a Parquet of image bytes + label")
    modality: str = "table"  # a registered modality (pipeline.modalities), checked by stages.check_config
    holdout_source: str | None = Field(
        default=None, description="real rows kept out of training (a test split) for utility scoring"
    )
    format: Literal["auto", "csv", "parquet"] = "auto"
    target: str | None = Field(default=None, description="column predicted by the utility score")
    task: Literal["auto", "classification", "regression"] = Field(
        "auto", description="the utility task for the target; auto: categorical, boolean and integer targets with "
                            "at most 10 distinct values are classification, other numbers regression")
    csv: CsvOptions = CsvOptions()
    column_types: dict[str, ColumnKind] = Field(default_factory=dict)
    drop_columns: list[str] = Field(default_factory=list)
    keep_links: bool = Field(True, description="find columns another column fixes in every row (education -> "
                                               "education-num) and keep them so in generated rows")
    constraints: list[str] = Field(
        default_factory=list, description="inequalities between two numeric or two datetime columns kept in every "
                                          "generated row: 'A >= B', 'A > B', 'A <= B' or 'A < B' (e.g. "
                                          "'ship_date >= order_date'); ingest refuses one the real rows break")
    bounds: dict[str, Annotated[list[float | str | None], Field(min_length=2, max_length=2)]] = Field(
        default_factory=dict, description="train.privacy.epsilon set: a numeric column's [low, high] (dates as ISO "
                                          "text), public knowledge that saves the budget of estimating its range; "
                                          "values outside are clipped. A side given as null ([0, null]) and unset "
                                          "columns' ranges are estimated privately")
    categories: dict[str, Annotated[list[str | int | float], Field(min_length=1)]] = Field(
        default_factory=dict, description="train.privacy.epsilon set: a categorical column's values as public "
                                          "knowledge (a known domain, e.g. country codes): every one is listed "
                                          "without a noisy threshold, so rare ones are kept; values outside share "
                                          "the other slot. Unset columns' values are listed privately")
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="settings this dataset runs with instead of the shared sections, as dotted keys "
                    "(e.g. {model.name: dcgan, train.epochs: 30}); a --set on the command line still wins")

    @field_validator("constraints")
    @classmethod
    def _constraint_form(cls, value: list[str]) -> list[str]:
        """Each one 'COLUMN OP COLUMN'; which columns exist and what the rows say, ingest checks."""
        if value:
            from pipeline.constraints import parse_all  # numpy and pandas only when there are some

            parse_all(value)
        return value


class IngestConfig(_Section):
    holdout_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="used when no holdout_source")
    stream_rows: int = Field(1_000_000, ge=0, description="a source with more rows is read in batches, never whole")
    batch_rows: int = Field(200_000, ge=1, description="rows per record batch of a streamed source")
    sample_rows: int = Field(1_000_000, ge=2, description=(
        "streamed source: the seeded sample of training (and holdout) rows the later stages read"))


class _Settings(_Section):
    """A section made from a ``pipeline.settings`` dataclass by ``settings_section``."""

    _plain: ClassVar[type] = object

    def settings(self) -> Any:
        """The plain settings the models and the loop take (``pipeline.settings``)."""
        return from_dict(self._plain, self.model_dump(mode="json"))


def settings_section(plain: type) -> type[_Settings]:
    """The validated section of the settings dataclass ``plain`` (``GanSettings`` -> ``GanConfig``):
    its fields, types, defaults, bounds and descriptions, as ``pipeline.settings`` declares them
    once; a nested settings class becomes a nested section."""
    hints = get_type_hints(plain)
    made: dict[str, Any] = {}
    for f in dataclasses.fields(plain):
        kind = hints[f.name]
        checks = {k: v for k, v in f.metadata.items() if k in CHECKS}
        if "each" in f.metadata:  # bounds of every item of a list
            (item,) = get_args(kind)
            kind = list[Annotated[item, Field(**f.metadata["each"])]]
        bounds = {k: checks.pop(k) for k in ("ge", "gt", "le", "lt") if k in checks}
        if bounds and get_origin(kind) in (Union, UnionType):  # ``int | Literal["auto"]``: the number is bounded
            kind = Union[tuple(Annotated[a, Field(**bounds)] if a in (int, float) else a for a in get_args(kind))]
        else:
            checks.update(bounds)
        if dataclasses.is_dataclass(kind):
            kind = settings_section(kind)
            made[f.name] = (kind, Field(default_factory=kind, **checks))
        elif f.default_factory is not dataclasses.MISSING:
            made[f.name] = (kind, Field(default_factory=f.default_factory, **checks))
        else:
            made[f.name] = (kind, Field(f.default, **checks))
    section = create_model(plain.__name__.removesuffix("Settings") + "Config", __base__=_Settings,
                           __doc__=plain.__doc__, __module__=__name__, **made)
    section._plain = plain
    # Importable by name (pickle finds a class by its module and name: worker processes get the config)
    globals()[section.__name__] = section
    return section


# The model and train sections, generated: pipeline.settings is their one definition.
ModelConfig = settings_section(ModelSettings)
TrainConfig = settings_section(TrainSettings)


class GenerateConfig(_Section):
    rows: int | None = Field(None, ge=1, description="rows to generate; null = as many as the source")
    rows_per_shard: int = Field(100_000, ge=1)
    conditions: dict[str, str | int | bool | None] = Field(
        default_factory=dict, description="fixed values of categorical columns, e.g. {income: '>50K'}")
    drop_training_copies: bool = Field(
        False, description="drop generated rows identical to a training row (and draw more in their place)")
    labels: dict[Annotated[int, Strict(False)], Annotated[float, Strict(False)]] = Field(
        default_factory=dict, description="images: the label mix, {label: share} (e.g. {3: 1} for only threes); "
                                          "empty = the training data's mix")
    rows_per_label: int | None = Field(None, ge=1, description="images: this many of each label (of the mix), "
                                                               "instead of `rows` in all")
    workers: int = Field(1, ge=1, description="processes that make shards in parallel (the output is the same bytes "
                                              "whatever the count)")
    backend: Literal["processes", "dask"] = Field("processes", description="where the workers run: local processes, "
                                                                         "or a Dask cluster")
    dask_address: str | None = Field(None, description="dask: an existing scheduler (tcp://host:8786); null = a "
                                                       "local cluster of `workers` processes")
    sample_steps: int | None = Field(
        None, ge=1, le=10_000, description="denoising steps per row of a diffusion model (fewer: faster, further "
                                           "from the trained model); null = the model's own, "
                                           "model.diffusion.sample_steps as it was trained")
    sample_precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="the diffusion denoiser's arithmetic when sampling: bfloat16 (autocast) about doubles "
                            "the rows/s on a CPU with native bf16 products; auto = bfloat16 on such a CPU or a "
                            "GPU, else float32 (_generated.json records which ran)")
    value_protection: bool = Field(
        True, description="tables: a category seen in fewer than k training rows is replaced (by _RARE_ in a text "
                          "column, else redrawn from the common ones), and numbers beyond the k-th smallest or "
                          "largest training value are clipped to it (pipeline.protection)")
    value_protection_k: int | None = Field(
        None, ge=2, le=1000, description="the k of value protection; null = from the training rows, max(5, "
                                         "ceil(sqrt(rows) / 10)); at most 1000, the extremes a model records")


class Threshold(_Section):
    """Bounds of one gate metric. Finite numbers only (a NaN bound would pass everything); that
    each lies inside its metric's range is checked against the registry
    (``pipeline.metrics.check_thresholds``)."""

    min: float | None = Field(None, allow_inf_nan=False)
    max: float | None = Field(None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> "Threshold":
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}: the gate could never pass")
        return self


# params.yaml's gate, the default of score.thresholds (a params file without one is judged the same).
GATE = {"quality.overall": {"min": 0.70}, "quality.column_pair_trends": {"min": 0.85}, "detection.auc": {"max": 0.95},
        "utility.ratio": {"min": 0.85}, "privacy.dcr_share": {"max": 0.60},
        "privacy.exact_match_excess": {"max": 0.05}, "privacy.mia_auc": {"max": 0.60},
        "privacy.mia_tpr_at_fpr_1pct": {"max": 0.10}, "privacy.singling_out_risk": {"max": 0.10},
        "privacy.linkability_risk": {"max": 0.10}}


class ScoreConfig(_Section):
    utility_rows: int = Field(200_000, ge=100, description="rows the utility models train on (seeded subsample)")
    detection_rows: int = Field(50_000, ge=100, description="rows per side for the detection classifier")
    precision_recall_rows: int = Field(10_000, ge=10, description="rows per side for alpha-precision, beta-recall "
                                       "and authenticity (nearest neighbours: the cost grows with its square)")
    privacy_rows: int = Field(5_000, ge=10, description="synthetic rows for DCR (the share compares them with the "
                              "holdout and disjoint training samples of its size)")
    attack_rows: int = Field(5_000, ge=10, description="rows in each real role of the privacy attacks (training "
                             "members, unseen non-members, the attacker's reference rows; seeded samples); the "
                             "attacker holds up to 8 times as many synthetic rows")
    privacy_min_holdout: int = Field(
        200, ge=2, description="below this many holdout rows, the privacy attacks are reported as not judged (with "
                               "the reason) and their thresholds are not applied: they need unseen real rows to "
                               "compare with")
    report: bool = Field(True, description="write report.html and report.md")
    in_memory_rows: int = Field(5_000_000, ge=1, description="above this many synthetic rows, fidelity, coverage and "
                                "exact matches are merged from per-shard statistics (the same scores, bounded "
                                "memory) and the sampled metrics read a seeded sample of the shards")
    image_rows: int = Field(10_000, ge=10, description="images: generated and held-out images compared by FID, KID, "
                                                       "precision and recall (equal seeded samples)")
    classifier_epochs: int = Field(3, ge=1, description="images: epochs of the evaluator CNN trained on the real "
                                                        "training images")
    memorization_quantile: float = Field(0.01, gt=0, lt=1,
                                         description="images: memorised = nearer a training image than all but this "
                                                     "share of unseen real images are")
    utility_min_holdout: int = Field(
        200, ge=1, description="below this many holdout rows, utility is reported as not judged (with the reason) "
                               "and its thresholds are not applied: a score on fewer rows is a coin toss")
    thresholds: dict[str, Threshold] = Field(
        default_factory=lambda: {k: Threshold(**v) for k, v in GATE.items()},
        description="the gate: {metric: {min, max}}, metrics by dotted key ({quality.overall: {min: 0.7}}) or nested "
                    "as DVC's -S writes them ({quality: {overall: {min: 0.7}}}); kept by dotted key")

    @field_validator("thresholds", mode="before")
    @classmethod
    def _dotted(cls, value: Any) -> Any:
        return flat_thresholds(value)


def flat_thresholds(tree: Any) -> Any:
    """``score.thresholds`` by dotted metric key, whichever form it was written in: dotted
    (``{quality.overall: {min: 0.7}}``), nested (``{quality: {overall: {min: 0.7}}}``: what
    ``dvc exp run -S score.thresholds.quality.overall.min=0.7`` writes) or both. A mapping is a metric's
    bounds when it has ``min`` or ``max``, is empty, or holds anything but mappings; else a group of
    metrics. A metric given both ways is a ValueError (which bound would win is anyone's guess).
    Anything but a mapping is returned as it is, for the validation to name."""
    if not isinstance(tree, dict):
        return tree
    flat: dict[str, Any] = {}
    spelled: dict[str, str] = {}

    def walk(node: dict, prefix: str, path: str) -> None:
        for key, value in node.items():
            name, where = f"{prefix}{key}", f"{path}{': ' if path else ''}{key}"
            group = (isinstance(value, dict) and value and not {"min", "max"} & set(value)
                     and all(isinstance(v, (dict, Threshold)) for v in value.values()))
            if group:
                walk(value, f"{name}.", where)
            elif name in flat:
                raise ValueError(f"{name} is given twice, as '{spelled[name]}' and as '{where}': write it once "
                                 "(params.yaml's form is nested, the form `dvc exp run -S` sets)")
            else:
                flat[name], spelled[name] = value, where

    walk(tree, "", "")
    return flat


class PublishConfig(_Section):
    release_root: str = "releases"
    allow_breaking_changes: bool = Field(
        False, description="release even if the schema breaks latest's (a column removed, a type narrowed)")


class NightlyConfig(_Section):
    """The scheduled run (``flows/nightly.py``); the stages themselves read the other sections."""

    cron: str = Field("0 2 * * *", description="when the nightly deployment runs (cron, in `timezone`)")
    timezone: str = "UTC"
    datasets: list[str] = Field(default_factory=list, description="datasets to run; empty = every dataset")
    keep_releases: int | None = Field(14, ge=1, description="releases kept per dataset (the newest; latest never "
                                                            "pruned); null = all")
    new_seed: bool = Field(True, description="each nightly run draws its own seed (recorded in the manifest)")
    task_runner: Literal["sequential", "threads", "dask"] = "sequential"
    max_workers: int = Field(2, ge=1, description="threads, or dask LocalCluster workers")
    dask_address: str | None = Field(None,
                                     description="an existing Dask scheduler (tcp://host:8786); null = a LocalCluster")
    retries: int = Field(2, ge=0, description="retries per stage for transient failures (I/O), with back-off")
    retry_delay_seconds: float = Field(10.0, ge=0)
    lock_wait_seconds: float = Field(0.0, ge=0, description="how long a run waits for another run of the same dataset")


class RuntimeConfig(_Section):
    """How a run uses this machine and talks to its operator (never what the run makes, so DVC's
    stages do not depend on it)."""

    threads: int = Field(0, ge=0, le=4096,
                         description="CPU threads of every stage (torch, the scoring models, detection, generation "
                                     "workers); 0 = the cores this process may use (CPU affinity and cgroup quota)")
    progress_seconds: float = Field(10.0, gt=0, description="off a terminal (DVC, Prefect, a log file), a progress "
                                                            "line at most this often")


class Config(_Section):
    seed: int = Field(42, ge=0, le=2**31 - 1, description="the run's seed; the stages derive theirs from it")
    work_dir: str = "work"
    metrics_dir: str = "metrics"
    datasets: dict[str, DatasetConfig]
    ingest: IngestConfig = IngestConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    generate: GenerateConfig = GenerateConfig()
    score: ScoreConfig = ScoreConfig()
    publish: PublishConfig = PublishConfig()
    nightly: NightlyConfig = NightlyConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    # --threshold edits (metric, bound, value), applied when a dataset's config is resolved; and, on
    # a resolved config, what they changed (``threshold_overrides``). Not params: never dumped.
    _threshold_edits: tuple[tuple[str, str, float], ...] = PrivateAttr(default=())
    _threshold_overrides: list[dict[str, Any]] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _checks(self) -> "Config":
        # Names checked against the model and metric registries: pipeline.stages.check_config
        # (config stays free of torch and of the registries).
        dist = self.train.distributed
        if dist.nnodes > 1 and not dist.rdzv_endpoint:
            raise ValueError("train.distributed.nnodes > 1 needs train.distributed.rdzv_endpoint (host:port of node 0)")
        # A model whose settings have a ``pac`` (the critic judges that many rows together) needs
        # batches of a multiple of it: whichever model that is, by what its settings declare.
        names = {self.model.name} | (set(self.model.auto.candidates) if self.model.name == "auto" else set())
        for section in sorted({model_section(name) for name in names} - {None}):
            pac = getattr(getattr(self.model, section), "pac", None)
            if pac and self.train.batch_size % pac:
                raise ValueError(f"train.batch_size ({self.train.batch_size}) must be a multiple of "
                                 f"model.{section}.pac ({pac})")
        for name, ds in self.datasets.items():
            problem = name_problem(name)
            if problem is not None:
                raise ValueError(f"datasets: the name {name!r} {problem} (it becomes a folder name)")
            bad = [k for k in ds.overrides if k.split(".")[0] not in OVERRIDABLE or "." not in k]
            if bad:
                raise ValueError(f"datasets.{name}.overrides: '{bad[0]}' is not a dotted key of "
                                 f"{', '.join(OVERRIDABLE)} (e.g. train.epochs)")
        return self

    def dataset(self, name: str) -> DatasetConfig:
        if name not in self.datasets:
            raise ConfigError(f"dataset '{name}' is not in params (datasets: {', '.join(self.datasets) or 'none'})")
        return self.datasets[name]

    def for_dataset(self, name: str) -> "Config":
        """The config ``name`` runs with: its ``overrides`` applied over the shared sections (the
        command line's ``--set`` values were folded into them at load: the most specific setting
        wins, and the command line over everything). The result has only this dataset, with no
        overrides left, so resolving it again gives itself."""
        ds = self.dataset(name)
        tree = self.to_dict()
        if not ds.overrides and not self._threshold_edits and not _dp_stand_ins(tree, ds.modality):
            return self
        for key, value in ds.overrides.items():
            set_dotted(tree, key, copy.deepcopy(value))  # a copy: the edits below must not reach params
        # A DP run of a table takes train.privacy's model and batch_size (when set) in place of the shared
        # ones; a DP run's clip `auto` becomes its model's.
        for key, value in _dp_stand_ins(tree, ds.modality).items():
            set_dotted(tree, key, value)
        # The resolved config is this dataset's alone (the shared sections now fit it, not the others).
        tree["datasets"] = {name: {**tree["datasets"][name], "overrides": {}}}
        # --threshold last: it wins over the dataset's own thresholds too, one bound at a time.
        changed = _edit_thresholds(tree["score"]["thresholds"], self._threshold_edits)
        try:
            resolved = Config.model_validate(tree)
        except ValidationError as exc:
            raise ConfigError(_format_validation_error(exc, f"datasets.{name}.overrides")) from None
        resolved._threshold_overrides = changed
        return resolved

    def threshold_overrides(self, name: str) -> list[dict[str, Any]]:
        """The bounds ``--threshold`` changed for dataset ``name``: ``[{metric, bound, params, used}]``,
        ``params`` being the value params.yaml (with ``--set``) gives it (None: no such bound)."""
        return copy.deepcopy(self.for_dataset(name)._threshold_overrides)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def fingerprint(self, *sections: str) -> str:
        """A short stable hash of the named sections (all when none), for lineage and resume checks."""
        data = self.to_dict()
        if sections:
            data = {s: data[s] for s in sections}
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# What a DP run of a table takes from train.privacy (its key) in place of a shared setting (a dotted key).
_DP_STAND_INS = {"model": "model.name", "batch_size": "train.batch_size"}


def _dp_stand_ins(tree: dict[str, Any], modality: str) -> dict[str, Any]:
    """{dotted key: value} that ``train.privacy`` puts in place of the settings of ``tree`` (the
    config as a dict) for a DP run: of a table, each of ``_DP_STAND_INS`` that is set (not null) and
    differs; of any, a ``max_grad_norm`` of ``auto`` as the number of the model the run trains
    (its section's ``private.max_grad_norm``, ``DEFAULT_CLIP`` for a model without one). Empty without
    epsilon."""
    privacy = tree["train"]["privacy"]
    if privacy["epsilon"] is None:
        return {}
    out = {}
    if modality == "table":
        out = {place: privacy[own] for own, place in _DP_STAND_INS.items()
               if privacy[own] and privacy[own] != _get_dotted(tree, place)}
    if privacy["max_grad_norm"] == "auto":
        section = model_section(out.get("model.name", tree["model"]["name"]))
        recipe = tree["model"][section].get("private", {}) if section else {}
        out["train.privacy.max_grad_norm"] = recipe.get("max_grad_norm", DEFAULT_CLIP)
    return out


def _get_dotted(tree: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        tree = tree[part]
    return tree


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {key}: '{'.'.join(parts[: i + 1])}' is a value, not a section")
        node = nxt
    node[parts[-1]] = value


def parse_overrides(items: list[str] | None, thresholds: list[str] | None = None) -> dict[str, Any]:
    """Turn ``["train.epochs=3", ...]`` into ``{"train.epochs": 3}`` (values parsed as YAML); the
    ``--threshold`` texts, checked, go under ``THRESHOLD_EDITS``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected dotted.key=value")
        try:
            out[key.strip()] = load_yaml(raw) if raw.strip() else None
        except ValueError as exc:  # e.g. an integer of more digits than Python converts
            raise ConfigError(f"--set {key}: value {raw[:40]!r}{'...' if len(raw) > 40 else ''} cannot be read "
                              f"({' '.join(str(exc).split()[:12])})") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML ({exc})") from None
    for text in thresholds or []:
        parse_threshold(text)
    if thresholds:
        out[THRESHOLD_EDITS] = list(thresholds)
    return out


def parse_threshold(text: str) -> tuple[str, str, float]:
    """``'utility.tstr_score>=0.4'`` -> ``("utility.tstr_score", "min", 0.4)``; ``<=`` sets the max.
    Whether the metric exists is checked with the registry (``pipeline.metrics.check_thresholds``)."""
    found = re.fullmatch(r"\s*([^\s<>=]+)\s*(>=|<=)\s*([^\s<>=]+)\s*", str(text))
    try:
        value = float(found.group(3)) if found else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConfigError(f"--threshold {text!r}: expected METRIC>=NUMBER or METRIC<=NUMBER "
                          "(e.g. 'utility.tstr_score>=0.4')")
    return found.group(1), "min" if found.group(2) == ">=" else "max", value


def _edit_thresholds(thresholds: dict[str, Any], edits: tuple[tuple[str, str, float], ...]) -> list[dict[str, Any]]:
    """Set each edit's one bound in ``thresholds`` (dumped ``score.thresholds``), keeping the metric's
    other bound and the other metrics; returns what changed, ``[{metric, bound, params, used}]``."""
    if not edits or not isinstance(thresholds, dict):
        return []  # nothing to edit, or not a mapping: the validation that follows names it
    try:  # a dataset's own thresholds come as written (maybe nested): edited by dotted key
        flat = flat_thresholds(thresholds)
    except ValueError:
        flat = None  # a metric given both ways: the validation that follows says so
    if flat is not None:
        thresholds.clear()
        thresholds.update(flat)
    before = copy.deepcopy(thresholds)
    for metric, bound, value in edits:
        thresholds[metric] = {"min": None, "max": None, **thresholds.get(metric, {}), bound: value}
    changed = []
    for metric, bound in dict.fromkeys((m, b) for m, b, _ in edits):
        params, used = before.get(metric, {}).get(bound), thresholds[metric][bound]
        if params != used:
            changed.append({"metric": metric, "bound": bound, "params": params, "used": used})
    return changed


def _format_validation_error(exc: ValidationError, origin: str) -> str:
    """One line per key; a value that fits no member of a union (``int | 'auto'``) is one line that
    names what each would take: ``train.epochs: Input should be a valid integer, or 'auto' (got 'x')``."""
    found: dict[str, tuple[list[str], str]] = {}
    for err in exc.errors():
        parts = [str(p) for p in err["loc"] if not _union_member(p)]
        loc = ".".join(parts) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + (f" (moved to {MOVED[loc]})" if loc in MOVED else "")
        got = ""
        if "input" in err and err["type"] not in ("extra_forbidden", "missing"):
            if not isinstance(err["input"], dict):
                shown = repr(err["input"])
                got = f" (got {shown if len(shown) <= 80 else shown[:60] + '...'})"
        msgs, _ = found.setdefault(loc, ([], got))
        msgs.append(msg if not msgs else msg.removeprefix("Input should be "))
    return "\n".join(f"{origin}: {loc}: {', or '.join(msgs)}{got}" for loc, (msgs, got) in found.items())


UNION_MEMBERS = {"int", "float", "str", "bool", "none", "constrained-int", "constrained-float", "constrained-str"}


def _union_member(part: object) -> bool:
    """A location part pydantic adds for one member of a union (``constrained-int``,
    ``literal['auto']``, ``list[str]``), not a key."""
    return isinstance(part, str) and ("[" in part or part in UNION_MEMBERS)


def fold_overrides(dataset_overrides: dict[str, Any], cli: dict[str, Any]) -> dict[str, Any]:
    """A dataset's ``overrides`` with the command line's ``--set`` values put over them: a ``--set``
    of the same key replaces it, one inside it is set within it, one of a section around it drops
    it (the command line wins over a dataset's own settings, as it does over the shared ones)."""
    out = copy.deepcopy(dataset_overrides)
    for key, value in cli.items():
        for own in list(out):
            if key == own or own.startswith(key + "."):
                del out[own]
            elif key.startswith(own + "."):
                if not isinstance(out[own], dict):
                    raise ConfigError(f"--set {key}: '{own}' is a value in a dataset's overrides, not a section")
                set_dotted(out[own], key[len(own) + 1:], value)
    return out


def build_config(raw: dict[str, Any], overrides: dict[str, Any] | None = None, origin: str = "params") -> Config:
    """The one resolution of params + ``--set``: the overrides applied to the tree (and folded into
    every dataset's own overrides, so that they win there too), validated once; then each dataset's
    resolved config is built, so a bad dataset fails now, before any stage runs. The ``--threshold``
    edits (``THRESHOLD_EDITS``) are applied as each dataset's config is resolved, over its own."""
    overrides = dict(overrides or {})
    edits = tuple(parse_threshold(t) for t in overrides.pop(THRESHOLD_EDITS, None) or ())
    tree = copy.deepcopy(raw) if raw else {}
    for key, value in overrides.items():
        set_dotted(tree, key, value)
    cli = {k: v for k, v in overrides.items() if k.split(".")[0] != "datasets"}
    for ds in (tree.get("datasets") or {}).values() if isinstance(tree.get("datasets"), dict) else ():
        if isinstance(ds, dict) and isinstance(ds.get("overrides"), dict) and cli:
            ds["overrides"] = fold_overrides(ds["overrides"], cli)
    try:
        cfg = Config.model_validate(tree)
    except ValidationError as exc:
        if overrides:
            # Blame the params file only when it is wrong on its own; else the --set values are.
            try:
                Config.model_validate(copy.deepcopy(raw) if raw else {})
                origin = "--set"
            except ValidationError:
                pass
        raise ConfigError(_format_validation_error(exc, origin)) from None
    cfg._threshold_edits = edits
    for name in cfg.datasets:
        cfg.for_dataset(name)
    return cfg


def load_config(path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None) -> Config:
    """Load params.yaml, apply ``--set`` overrides, validate; errors name the file and key."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: params file not found")
    if not path.is_file():
        raise ConfigError(f"{path}: is a directory, not a params file (--params takes a YAML file such as params.yaml)")
    try:
        raw = load_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    except (OSError, ValueError) as exc:  # ValueError: undecodable bytes, an integer of too many digits
        raise ConfigError(f"{path}: cannot be read ({' '.join(str(exc).split()[:20])})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return build_config(raw, overrides, origin=str(path))
