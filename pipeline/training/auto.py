"""``model.name: auto``: train each candidate table model, keep the best.

The training rows are split (seeded) into a fitting part and a validation part of
``model.auto.validation_fraction`` (at most ``validation_rows``); the holdout is never touched.
Each candidate trains on the fitting part with the ``train`` section's recipe (within its share of
``train.budget_seconds``, when set), samples as many rows as the validation part has, and is scored
against it with the score stage's own fidelity and detection: column shapes, pair trends and the
detection score (SDMetrics' ``1 - (2 max(auc, 0.5) - 1)``). The best mean of the three wins; every
candidate's figures go to ``model.json`` (``auto``), the report and the data card. The winner is
the model trained on the fitting part, or with ``model.auto.refit`` the winner trained again, from
scratch and with the same recipe, on every training row.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import torch

from pipeline.models.saved import LoadedModel
from pipeline.models.transformer import TableTransformer
from pipeline.sampling import sample_frame
from pipeline.schema import TableSchema
from pipeline.settings import ModelSettings, TrainSettings
from pipeline.training.loop import TrainState, fit
from pipeline.training.setup import build_model

log = logging.getLogger(__name__)


def split_validation(n: int, fraction: float, cap: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fitting rows, validation rows) as sorted indices of ``n`` rows."""
    order = np.random.default_rng([seed, 1]).permutation(n)
    n_val = min(max(int(round(n * fraction)), 1), cap, n - 2)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def candidate_figures(real: pd.DataFrame, syn: pd.DataFrame, schema: TableSchema, seed: int) -> dict[str, float]:
    from pipeline.metrics.detection import score_detection
    from pipeline.metrics.fidelity import score_fidelity

    fid = score_fidelity(real, syn, schema)
    det = score_detection(real, syn, schema, rows=len(real), seed=seed)
    figures = {"shapes": fid.column_shapes, "trends": fid.column_pair_trends, "detection_auc": det.auc,
               "detection_score": det.score}
    got = [v for v in (fid.column_shapes, fid.column_pair_trends, det.score) if v == v]
    figures["score"] = float(np.mean(got)) if got else float("nan")
    return figures


def choose(frame: pd.DataFrame, tensor: torch.Tensor, transformer: TableTransformer, schema: TableSchema,
           model_cfg: ModelSettings, train_cfg: TrainSettings, seed: int, device: torch.device
           ) -> tuple[torch.nn.Module, TrainState, dict]:
    """Train every candidate, score each on the validation rows, return the best (its model and
    training state) and the record of all of them."""
    auto = model_cfg.auto
    fit_idx, val_idx = split_validation(len(frame), auto.validation_fraction, auto.validation_rows, seed)
    real = frame.iloc[val_idx].reset_index(drop=True)
    data = tensor[torch.from_numpy(fit_idx).to(tensor.device)]
    share = train_cfg.budget_seconds / len(auto.candidates) if train_cfg.budget_seconds else None
    results, best = {}, None
    for name in auto.candidates:
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        model = build_model(model_cfg, train_cfg, transformer, name=name).to(device)
        state = fit(model, data, replace(train_cfg, budget_seconds=share), seed)
        train_s = time.perf_counter() - t0
        loaded = LoadedModel(model, transformer, schema, {}, "")
        syn = sample_frame(loaded, len(real), seed)
        figures = candidate_figures(real, syn, schema, seed)
        results[name] = {**{k: round(v, 4) for k, v in figures.items()}, "epochs": state.epoch,
                         "train_seconds": round(train_s, 1)}
        log.info("auto: %s scored %.4f (shapes %.3f, trends %.3f, detection AUC %.3f) after %d epochs in %.0fs",
                 name, figures["score"], figures["shapes"], figures["trends"], figures["detection_auc"],
                 state.epoch, train_s)
        if best is None or figures["score"] > results[best[0]]["score"]:
            best = (name, model, state)
    name, model, state = best
    log.info("auto: kept %s", name)
    record = {"chosen": name, "by": "mean of column shapes, pair trends and detection score on the validation rows",
              "fit_rows": len(fit_idx), "validation_rows": len(val_idx), "candidates": results}
    if auto.refit:  # the winner again, from scratch, on every training row (its share of any budget)
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        model = build_model(model_cfg, train_cfg, transformer, name=name).to(device)
        state = fit(model, tensor, replace(train_cfg, budget_seconds=share), seed)
        record["refit"] = {"rows": len(frame), "epochs": state.epoch,
                           "train_seconds": round(time.perf_counter() - t0, 1)}
        log.info("auto: %s trained again on all %d training rows (%d epochs)", name, len(frame), state.epoch)
    return model, state, record
