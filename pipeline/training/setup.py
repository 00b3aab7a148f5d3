"""Turning a table into what the training loop needs: the fitted transformer, the data tensor on
the device, and the model. Shared by the train stage and the benchmarks; needs no pydantic (any
objects with the config sections' attributes will do, as on a bare GPU box)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from pipeline.models import MODELS
from pipeline.models.base import OutputLayout, TabularModel
from pipeline.models.transformer import TableTransformer
from pipeline.schema import TableSchema

if TYPE_CHECKING:
    from pipeline.config import ModelConfig, TrainConfig


def transform_table(df: pd.DataFrame, schema: TableSchema, model_cfg: ModelConfig, seed: int,
                    device: torch.device) -> tuple[TableTransformer, torch.Tensor]:
    """Fit the per-column transform and move the whole transformed table to ``device``."""
    transformer = TableTransformer(schema, model_cfg.quantile_knots, model_cfg.max_categories).fit(df)
    data = transformer.transform(df, np.random.default_rng(seed))
    # The whole table lives on the device; batches are index lookups there.
    return transformer, torch.from_numpy(data).to(device)


def build_model(model_cfg: ModelConfig, train_cfg: TrainConfig, transformer: TableTransformer,
                name: str | None = None) -> TabularModel:
    """The model named ``name`` (default ``model_cfg.name``) over the transformer's output layout."""
    layout = OutputLayout(transformer.spans, transformer.width)
    return MODELS[name or model_cfg.name](layout, model_cfg, train_cfg)
