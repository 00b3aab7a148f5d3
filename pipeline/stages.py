"""The five stages, in order: the one table that the CLI (``pipeline/__main__.py``), the Prefect
flows (``flows/``) and ``dvc.yaml`` run. Nothing else imports a stage module.

Each stage is a function ``run(cfg, dataset, **kwargs)`` that reads its inputs from the work folder
and writes its outputs there (``pipeline.files.StagePaths`` names them). ``run_stage`` adds what every
stage gets alike: the leftovers of dead runs removed first, and its wall time kept for the manifest.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from pipeline import cancel, logs, progress
from pipeline.artifacts import StagePaths
from pipeline.config import Config
from pipeline.files import read_json, remove_leftovers, write_json
from pipeline.options import Option, flow_kwargs
from pipeline.runtime import thread_limits, threads_available
from pipeline.stores import check_writable

log = logging.getLogger("pipeline")


# Each stage module is imported on first use, so ``--help`` and the flow's definition stay fast.
def ingest(cfg: Config, dataset: str, **kwargs: Any) -> Any:
    from pipeline import ingest as stage

    return stage.run(cfg, dataset, **kwargs)


def train(cfg: Config, dataset: str, **kwargs: Any) -> Any:
    from pipeline import train as stage

    return stage.run(cfg, dataset, **kwargs)


def generate(cfg: Config, dataset: str, **kwargs: Any) -> Any:
    from pipeline import generate as stage

    return stage.run(cfg, dataset, **kwargs)


def score(cfg: Config, dataset: str, **kwargs: Any) -> Any:
    from pipeline import score as stage

    return stage.run(cfg, dataset, **kwargs)


def publish(cfg: Config, dataset: str, **kwargs: Any) -> Any:
    from pipeline import publish as stage

    return stage.run(cfg, dataset, **kwargs)


def resumable_epochs(cfg: Config, dataset: str) -> int:
    """Epochs in ``dataset``'s checkpoint that ``train --resume`` would continue (0: none to
    continue): what the command line names after a Ctrl-C."""
    from pipeline import train as stage

    return stage.resumable_epochs(cfg, dataset)


@dataclass(frozen=True)
class Stage:
    name: str
    help: str
    run: Callable[..., Any]

    def options(self) -> tuple[Option, ...]:
        """The stage's own command-line options, declared in its module (``OPTIONS``; none if it has
        none): read only when its command is used, so ``--help`` imports no stage."""
        return tuple(getattr(importlib.import_module(f"pipeline.{self.name}"), "OPTIONS", ()))

    def flow_kwargs(self) -> dict[str, Any]:
        """What a flow run gives the stage's ``run`` for its options (train: resume if compatible)."""
        return flow_kwargs(self.options())


STAGES = (
    Stage("ingest", "read the source CSV/Parquet, infer the schema, write prepared Parquet + schema.json", ingest),
    Stage("train", "fit the transformer and the model; write model.pt + model.json and the loss log", train),
    Stage("generate", "sample synthetic rows to Parquet shards", generate),
    Stage("score", "score fidelity, utility and privacy; write the verdict and metrics/<dataset>.json (DVC)", score),
    Stage("publish", "release the synthetic data as a new immutable version if it passed the gate", publish),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
TORCH_STAGES = ("train", "generate", "score")  # the stages whose torch threads runtime.threads caps
_BY_NAME = {s.name: s for s in STAGES}


def stage(name: str) -> Stage:
    return _BY_NAME[name]


def check_config(cfg: Config, datasets: list[str] | None = None) -> None:
    """The checks that need the registries (a model name, metric names in thresholds, a model for
    the dataset's modality), for ``datasets`` (default: all) as each would run: before any stage,
    so a typo fails in a second, not after training."""
    from pipeline.errors import ConfigError
    from pipeline.metrics import check_thresholds
    from pipeline.modalities.registry import modalities
    from pipeline.models.registry import AUTO, AUTO_MODALITY, check_model

    for name in datasets if datasets is not None else list(cfg.datasets):
        resolved = cfg.for_dataset(name)
        if resolved.dataset(name).modality not in modalities():
            raise ConfigError(f"datasets.{name}.modality '{resolved.dataset(name).modality}' is not one of "
                              f"{sorted(modalities())}")
        private = resolved.train.privacy.model if resolved.train.privacy.epsilon is not None else None
        if private and resolved.model.name == private:  # it stands in for model.name: its own key in an error
            check_private_model(private)
        check_model(resolved.model.name, resolved.dataset(name).modality, name)
        for candidate in resolved.model.auto.candidates if resolved.model.name == AUTO else ():
            check_model(candidate, AUTO_MODALITY, name)
        check_thresholds(resolved.score.thresholds)
        check_machine(resolved)


def check_private_model(name: str) -> None:
    """A ConfigError unless ``name`` (``train.privacy.model``) is a table model DP-SGD trains."""
    from pipeline.errors import ConfigError
    from pipeline.models.registry import models, private_models

    if not getattr(models().get(name), "private", False):
        raise ConfigError(f"train.privacy.model '{name}' is not a model DP-SGD trains; set it to {private_models()}, "
                          "or null to train model.name")


def check_machine(cfg: Config) -> None:
    """Settings far beyond this machine are refused in one line before anything runs: more threads
    than four per usable core, or a network whose weights and optimiser state (about 20 bytes a
    weight: the weights, their gradients, two Adam moments and the average) exceed its memory."""
    from pipeline.errors import ConfigError
    from pipeline.runtime import usable_cores

    cores = usable_cores()
    if cfg.runtime.threads > 4 * cores:
        raise ConfigError(f"runtime.threads {cfg.runtime.threads} is far beyond this machine's {cores} usable "
                          f"core(s); set it to at most {4 * cores}, or 0 for one per core")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    for section, settings in cfg.model.model_dump().items():
        for key, dims in (settings.items() if isinstance(settings, dict) else ()):
            if not key.endswith("_dims") or not dims:
                continue
            weights = sum(a * b for a, b in zip(dims, dims[1:]))  # the layers between the widths
            if memory and 20 * weights > memory:
                raise ConfigError(f"model.{section}.{key} {dims}: about {20 * weights / 2**30:,.0f} GiB to train, "
                                  f"more than this machine's {memory / 2**30:,.0f} GiB; use narrower layers")


def check_outputs_writable(cfg: Config) -> None:
    """Every folder a run writes (work, metrics, releases) can be written: checked before hours of
    training, not found out at publish. The release root may be an fsspec URL (an object store)."""
    for key, folder in (("work_dir", cfg.work_dir), ("metrics_dir", cfg.metrics_dir),
                        ("publish.release_root", cfg.publish.release_root)):
        check_writable(folder, key, urls=key == "publish.release_root")


def run_stage(name: str, cfg: Config, dataset: str, **kwargs: Any) -> Any:
    """Run one stage of one dataset with the config resolved for it (once, here), its log lines
    stamped with the dataset and stage, its CPU threads capped (``runtime.threads``); its wall time
    goes to ``<work>/<dataset>/stage_seconds.json`` (the release manifest carries them)."""
    cancel.check()  # a run stopped between stages starts no other
    paths = StagePaths.of(cfg.work_dir, dataset)
    for gone in remove_leftovers(paths.root) + remove_leftovers(cfg.metrics_dir, depth=0):
        log.info("cleaned up %s, left by a run that died (removed, or put back as the newest whole copy)", gone)
    t0 = time.perf_counter()
    resolved = cfg.for_dataset(dataset)  # the config resolved once, here
    progress.set_cadence(resolved.runtime.progress_seconds)
    with logs.stage_context(dataset, name), thread_limits(threads_available(resolved), torch_too=name in TORCH_STAGES):
        result = stage(name).run(resolved, dataset, **kwargs)
        seconds = read_json(paths.stage_seconds) if paths.stage_seconds.exists() and name != "ingest" else {}
        seconds[name] = round(time.perf_counter() - t0, 3)
        log.info("%s %s done in %.1fs", name, dataset, seconds[name], extra={"fields": {"seconds": seconds[name]}})
    # publish reads them (its own time is its run's business); of torchrun's ranks, rank 0 writes.
    if name != "publish" and os.environ.get("RANK", "0") == "0":
        write_json(paths.stage_seconds, seconds)
    return result
