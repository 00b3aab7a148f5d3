"""The modality registry: each handler registers itself (``register_modality``) and is found by
importing every module of ``pipeline.modalities``, so a new modality is one handler module and no
stage changes. The modality is read once, from the prepared data's ``schema.json`` (``modality_of``)
or from a trained model (``LoadedModel.modality``)."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

from pipeline.artifacts import StagePaths, prepared_meta
from pipeline.errors import ConfigError

DEFAULT = "table"  # the modality of a dataset (and of a record) that names none
_HANDLERS: dict[str, Any] = {}
_found = False  # whether the modules of pipeline.modalities have been imported


def register_modality(handler: Any) -> Any:
    """Register ``handler`` (a module, or any object, offering what the ``pipeline.modalities``
    docstring lists) under its ``MODALITY``; a handler module ends with
    ``register_modality(sys.modules[__name__])``."""
    _HANDLERS[handler.MODALITY] = handler
    return handler


def modalities() -> dict[str, Any]:
    """Every registered handler by modality name (the modules of ``pipeline.modalities`` imported
    first: each handler module registers itself)."""
    global _found
    if not _found:
        package = __name__.rpartition(".")[0]
        for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
            importlib.import_module(f"{package}.{module.name}")
        _found = True
    return _HANDLERS


def modality_named(name: str | None) -> Any:
    """The handler of modality ``name`` (the default one for None); a ConfigError naming the
    registered ones for another."""
    handlers = modalities()
    if (name or DEFAULT) not in handlers:
        raise ConfigError(f"modality '{name}' is not one of {sorted(handlers)}")
    return handlers[name or DEFAULT]


def modality_of(paths: StagePaths) -> Any:
    """The handler of the dataset whose work folder is ``paths`` (from what ingest recorded)."""
    return modality_named(prepared_meta(paths).get("modality", DEFAULT))
