"""Generative models, registered by the name used in params (``model.name``).

A model is an ``nn.Module`` over the transformer's output layout (or an image spec) that declares
its training phases (each with its own optimiser) and a loss per phase; the training loop only
steps. A new model is one module here with ``@register_model("name")`` (``registry.py`` finds it).
"""

from pipeline.models.registry import AUTO, check_model, model_class, models, register_model

__all__ = ["AUTO", "check_model", "model_class", "models", "register_model"]
