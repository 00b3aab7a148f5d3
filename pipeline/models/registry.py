"""The model registry: a model class registers itself by the name used in params (``model.name``)
with ``@register_model("name")``; the registry finds the models by importing every module of
``pipeline.models``, so a new model is one module and nothing else to edit."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Callable

_MODELS: dict[str, type] = {}
_found = False  # whether the modules of pipeline.models have been imported
AUTO = "auto"  # model.name: auto trains candidates and keeps the best (pipeline/training/auto.py)
AUTO_MODALITY = "table"  # the modality of the models auto chooses among


def register_model(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        cls.name = name
        _MODELS[name] = cls
        return cls

    return deco


def models() -> dict[str, type]:
    """Every registered model class by name (the modules of ``pipeline.models`` imported first:
    each registers its models)."""
    global _found
    if not _found:
        package = __name__.rpartition(".")[0]
        for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
            importlib.import_module(f"{package}.{module.name}")
        _found = True
    return _MODELS


def private_models() -> str:
    """The models that train with DP-SGD (``private``), for a refusal: "autoregressive or diffusion or tvae"."""
    return " or ".join(sorted(name for name, cls in models().items() if getattr(cls, "private", False)))


def model_class(name: str) -> type:
    """The model class registered as ``name`` (a KeyError if none is)."""
    return models()[name]


def _a(modality: str) -> str:
    return f"{'an' if modality[:1] in 'aeiou' else 'a'} {modality}"


def check_model(name: str, modality: str, dataset: str) -> None:
    """A ConfigError unless ``name`` is a registered model for ``modality`` (the dataset's)."""
    from pipeline.errors import ConfigError

    known = models()
    for_modality = ", ".join(sorted(n for n, m in known.items() if m.modality == modality))
    if name == AUTO:
        if modality != AUTO_MODALITY:
            raise ConfigError(f"datasets.{dataset}: model 'auto' chooses among {AUTO_MODALITY} models; {dataset} is "
                              f"{_a(modality)} dataset (set datasets.{dataset}.overrides: {{model.name: ...}}, "
                              f"{for_modality})")
        return
    if name not in known:
        raise ConfigError(f"model.name '{name}' is not one of {sorted(known)}")
    if known[name].modality != modality:
        raise ConfigError(f"datasets.{dataset}: model '{name}' is for {known[name].modality}s but {dataset} is "
                          f"{_a(modality)} dataset (set datasets.{dataset}.overrides: {{model.name: ...}}, "
                          f"{for_modality})")
