"""Generative models, registered by the name used in params (``model.name``).

A model is an ``nn.Module`` over the transformer's output layout that declares its training
phases (each with its own optimiser) and a loss per phase; the training loop only steps. New models
(CTGAN, TVAE, image GANs) plug in with ``@register_model("name")``.
"""

from __future__ import annotations

from typing import Callable

MODELS: dict[str, type] = {}


def register_model(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        cls.name = name
        MODELS[name] = cls
        return cls

    return deco


from pipeline.models import ctgan, gan, image, tvae  # noqa: E402,F401  (register themselves)
