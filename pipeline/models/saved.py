"""A trained model on disk: ``model.pt`` (a state dict, loaded with ``weights_only=True``) and
``model.json`` (model name and config, training config, transformer state and schema, or the image
spec). Loading rebuilds the network from the JSON and never unpickles anything."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.errors import InputDataError
from pipeline.files import read_json, sha256_file
from pipeline.models.base import GenerativeModel
from pipeline.models.image import ImageSpec
from pipeline.models.registry import model_class
from pipeline.models.transformer import TableTransformer
from pipeline.schema import TableSchema
from pipeline.settings import ModelSettings, TrainSettings, from_dict
from pipeline.training.loop import load_tensors
from pipeline.training.setup import build_model

# What model.json records about how long the run took, not about the model: never hashed, or the
# same training twice would be two models (and its rows, published twice, two releases).
TIMINGS = frozenset({"seconds", "transform_seconds", "train_seconds"})


def model_hash(model_dir: Path) -> str:
    """The hash that names a trained model in lineage: its weights (``model.pt``) and the settings
    that made them (``model.json`` without its wall-clock seconds), so that training again with the
    same data, settings and seed gives the same hash, and any other setting another one."""
    made_by = json.dumps(_without_timings(read_json(model_dir / "model.json")), sort_keys=True,
                         separators=(",", ":"))
    h = hashlib.sha256(sha256_file(model_dir / "model.pt").encode())
    h.update(made_by.encode())
    return h.hexdigest()


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


@dataclass
class LoadedModel:
    model: GenerativeModel
    transformer: TableTransformer | None  # tables
    schema: TableSchema | None            # tables
    info: dict
    model_hash: str
    spec: ImageSpec | None = None         # images

    @property
    def modality(self) -> str:
        """The modality of the data it makes (its model class's): which handler plans and writes it."""
        return self.model.modality


def load_model(model_dir: Path, device: torch.device | None = None) -> LoadedModel:
    """Rebuild a trained model from ``model.pt`` + ``model.json`` (no unpickling)."""
    if not (model_dir / "model.json").is_file() or not (model_dir / "model.pt").is_file():
        raise InputDataError(model_dir, "no trained model: run the train stage first")
    try:
        info = read_json(model_dir / "model.json")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputDataError(model_dir / "model.json", f"not valid JSON ({exc}); re-run the train stage") from None
    # What decodes its samples (the fitted transformer, the image spec), as its model class reads it.
    codec = model_class(info["model"]).read_codec(info)
    # The settings it was trained with, as it recorded them.
    model_cfg = from_dict(ModelSettings, info["model_config"])
    train_cfg = from_dict(TrainSettings, info["train_config"])
    model = build_model(model_cfg, train_cfg, codec, name=info["model"])
    state = load_tensors(model_dir / "model.pt", "re-run the train stage")
    try:
        model.load_inference_state(state)
    except (KeyError, RuntimeError) as exc:
        raise InputDataError(model_dir / "model.pt", f"does not fit {model_dir / 'model.json'} "
                                                     f"({str(exc).splitlines()[0]}); re-run the train stage") from None
    model = model.to(device or torch.device("cpu")).eval()
    decoders = {"transformer": None, "schema": None, **type(model).decoders(codec)}
    return LoadedModel(model, info=info, model_hash=model_hash(model_dir), **decoders)
