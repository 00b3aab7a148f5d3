"""Generative models, registered by the name used in params (``model.name``).

A model is an ``nn.Module`` over the transformer's output layout that declares its training
phases (each with its own optimiser) and a loss per phase; the training loop only steps. New models
(CTGAN, TVAE, image GANs) plug in with ``@register_model("name")``.
"""

from __future__ import annotations

from typing import Callable

MODELS: dict[str, type] = {}
AUTO = "auto"  # model.name: auto trains candidates and keeps the best (pipeline/training/auto.py)


def register_model(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        cls.name = name
        MODELS[name] = cls
        return cls

    return deco


def check_model(name: str, modality: str, dataset: str) -> None:
    """A ConfigError unless ``name`` is a registered model for ``modality`` (the dataset's)."""
    from pipeline.errors import ConfigError

    if name == AUTO:
        if modality != "table":
            raise ConfigError(f"datasets.{dataset}: model 'auto' chooses among table models; {dataset} is an image "
                              "dataset (set datasets.{dataset}.overrides: {{model.name: dcgan}})")
        return
    if name not in MODELS:
        raise ConfigError(f"model.name '{name}' is not one of {sorted(MODELS)}")
    if MODELS[name].modality != modality:
        hint = ", ".join(sorted(n for n, m in MODELS.items() if m.modality == modality))
        raise ConfigError(f"datasets.{dataset}: model '{name}' is for {MODELS[name].modality}s but {dataset} is "
                          f"{'an image' if modality == 'image' else 'a table'} dataset "
                          f"(set datasets.{dataset}.overrides: {{model.name: ...}}, {hint})")


from pipeline.models import ctgan, diffusion, gan, image, tvae  # noqa: E402,F401  (register themselves)
