"""Turning a table (or a set of images) into what the training loop needs: the fitted transformer
(or image spec), the data tensor on the device, and the model. Shared by the train stage and the benchmarks; needs no pydantic (any
objects with the config sections' attributes will do, as on a bare GPU box)."""  # noqa: E501

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from pipeline.models.base import GenerativeModel
from pipeline.models.image import ImageSpec, images_to_tensor
from pipeline.models.private_stats import Privacy
from pipeline.models.registry import model_class
from pipeline.models.transformer import TableTransformer
from pipeline.schema import TableSchema
from pipeline.settings import ModelSettings, TrainSettings


def fit_transformer(df: pd.DataFrame, schema: TableSchema, model_cfg: ModelSettings,
                    privacy: Privacy | None = None) -> TableTransformer:
    """The per-column transform (quantile knots, category lists) fitted to ``df``; from private
    estimates with ``privacy``."""
    return TableTransformer(schema, model_cfg.quantile_knots, model_cfg.max_categories).fit(df, privacy)


def to_tensor(transformer: TableTransformer, df: pd.DataFrame, rng: np.random.Generator,
              device: torch.device) -> torch.Tensor:
    """``df`` through the fitted transform, on ``device``."""
    # The whole table lives on the device; batches are index lookups there.
    return torch.from_numpy(transformer.transform(df, rng)).to(device)


def transform_table(df: pd.DataFrame, schema: TableSchema, model_cfg: ModelSettings, seed: int,
                    device: torch.device, privacy: Privacy | None = None) -> tuple[TableTransformer, torch.Tensor]:
    """Fit the per-column transform (private with ``privacy``) and move the whole transformed table
    to ``device``."""
    transformer = fit_transformer(df, schema, model_cfg, privacy)
    return transformer, to_tensor(transformer, df, np.random.default_rng(seed), device)


def image_tensor(frame: pd.DataFrame, device: torch.device) -> tuple[ImageSpec, torch.Tensor]:
    """An image frame as the image models' tensor on ``device``, with its spec (size, label values)
    read from the frame."""
    from pipeline.images import pixels_of

    pixels = pixels_of(frame)
    labels = frame["label"].to_numpy()
    spec = ImageSpec(int(pixels.shape[1]), int(pixels.shape[2]), sorted(int(v) for v in np.unique(labels)))
    index = np.searchsorted(np.asarray(spec.labels), labels)
    return spec, images_to_tensor(pixels, index).to(device)


def build_model(model_cfg: ModelSettings, train_cfg: TrainSettings, codec: TableTransformer | ImageSpec,
                name: str | None = None) -> GenerativeModel:
    """The model named ``name`` (default ``model_cfg.name``) for the data ``codec`` encodes: over
    the fitted transformer's output layout, or for the images an ``ImageSpec`` describes."""
    return model_class(name or model_cfg.name).over(codec, model_cfg, train_cfg)
