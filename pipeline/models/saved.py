"""A trained model on disk: ``model.pt`` (a state dict, loaded with ``weights_only=True``) and
``model.json`` (model name and config, training config, transformer state and schema, or the image
spec). Loading rebuilds the network from the JSON and never unpickles anything."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.errors import InputDataError
from pipeline.io import read_json, sha256_files
from pipeline.models.base import GenerativeModel
from pipeline.models.image import ImageSpec
from pipeline.models.transformer import TableTransformer
from pipeline.schema import TableSchema
from pipeline.settings import ModelSettings, TrainSettings, from_dict
from pipeline.training.loop import load_tensors
from pipeline.training.setup import build_model


def model_hash(model_dir: Path) -> str:
    """The hash that names a trained model (its weights and metadata) in lineage."""
    return sha256_files([model_dir / "model.pt", model_dir / "model.json"])


@dataclass
class LoadedModel:
    model: GenerativeModel
    transformer: TableTransformer | None  # tables
    schema: TableSchema | None            # tables
    info: dict
    model_hash: str
    spec: ImageSpec | None = None         # images


def load_model(model_dir: Path, device: torch.device | None = None) -> LoadedModel:
    """Rebuild a trained model from ``model.pt`` + ``model.json`` (no unpickling)."""
    if not (model_dir / "model.json").is_file() or not (model_dir / "model.pt").is_file():
        raise InputDataError(model_dir, "no trained model: run the train stage first")
    try:
        info = read_json(model_dir / "model.json")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputDataError(model_dir / "model.json", f"not valid JSON ({exc}); re-run the train stage") from None
    schema = transformer = spec = None
    if "image_spec" in info:
        spec = ImageSpec.from_dict(info["image_spec"])
    else:
        schema = TableSchema.from_dict(info["schema"])
        transformer = TableTransformer.from_state(schema, info["transformer"])
    # The settings it was trained with, as it recorded them.
    model_cfg = from_dict(ModelSettings, info["model_config"])
    train_cfg = from_dict(TrainSettings, info["train_config"])
    model = build_model(model_cfg, train_cfg, spec or transformer, name=info["model"])
    state = load_tensors(model_dir / "model.pt", "re-run the train stage")
    try:
        model.load_inference_state(state)
    except (KeyError, RuntimeError) as exc:
        raise InputDataError(model_dir / "model.pt", f"does not fit {model_dir / 'model.json'} "
                                                     f"({str(exc).splitlines()[0]}); re-run the train stage") from None
    model = model.to(device or torch.device("cpu")).eval()
    return LoadedModel(model, transformer, schema, info, model_hash(model_dir), spec)
