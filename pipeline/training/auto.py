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

A small table's validation part is too few rows to rank the candidates (tips: 39 rows, and the
choice flipped with the seed). Below ``model.auto.min_validation_rows`` the candidates are
cross-validated instead: the training rows fall into ``model.auto.folds`` seeded folds, each
candidate trains once per fold on the other folds and samples as many rows as the fold has, and
the pooled samples are scored against every training row at once; the winner is then trained on
every training row (the ``refit`` record). There the first candidate (list the default model first)
is kept unless another beats it by more than the folds can tell apart: a candidate may replace it
only where its score on each fold, less the first one's on the same fold, averages more than one
standard error of those differences (Breiman's one-standard-error rule), and then the best pooled
score of those wins. On five folds of a few hundred rows the pooled scores of two good models can
differ by less than their noise (tips: ``diffusion`` 0.007-0.018 ahead pooled, behind fold by fold).
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


def split_folds(n: int, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` seeded (fitting rows, held-out rows) pairs of ``n`` rows, sorted indices, each row
    held out once."""
    order = np.random.default_rng([seed, 1]).permutation(n)
    return [(np.sort(np.setdiff1d(order, part)), np.sort(part)) for part in np.array_split(order, folds)]


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


def one_se_choice(results: dict[str, dict], first: str) -> tuple[str, dict[str, dict[str, float]]]:
    """The candidate kept after cross-validation: ``first`` unless others' fold scores beat its own
    on the same folds by more than one standard error of the differences (mean gain > sd / sqrt(k));
    of those and ``first``, the best pooled ``score``. Also each other candidate's gain, its standard
    error and whether it could replace ``first``."""
    base = np.asarray(results[first]["fold_scores"], dtype=np.float64)
    margins, eligible = {}, [first]
    for name, got in results.items():
        if name == first:
            continue
        gain = np.asarray(got["fold_scores"], dtype=np.float64) - base
        mean, se = float(gain.mean()), float(gain.std(ddof=1) / np.sqrt(len(gain)))
        margins[name] = {"gain": round(mean, 4), "se": round(se, 4), "beats_first": bool(mean > se)}
        if mean > se:
            eligible.append(name)
    return max(eligible, key=lambda n: results[n]["score"]), margins


def choose(frame: pd.DataFrame, tensor: torch.Tensor, transformer: TableTransformer, schema: TableSchema,
           model_cfg: ModelSettings, train_cfg: TrainSettings, seed: int, device: torch.device
           ) -> tuple[torch.nn.Module, TrainState, dict]:
    """Train every candidate, score each on the validation rows (or by cross-validation on a small
    table), return the best (its model and training state) and the record of all of them."""
    auto = model_cfg.auto
    fit_idx, val_idx = split_validation(len(frame), auto.validation_fraction, auto.validation_rows, seed)
    folds = split_folds(len(frame), auto.folds, seed) if len(val_idx) < auto.min_validation_rows else None
    parts = folds or [(fit_idx, val_idx)]
    # Each candidate's share of a budget, split again between its folds and the final training.
    share = train_cfg.budget_seconds / len(auto.candidates) if train_cfg.budget_seconds else None
    per_fit = share / (len(parts) + 1) if share and folds else share
    results, best = {}, None
    for name in auto.candidates:
        t0 = time.perf_counter()
        real, syn, epochs, fold_scores = [], [], [], []
        for k, (fit_rows, held_out) in enumerate(parts):
            torch.manual_seed(seed)
            model = build_model(model_cfg, train_cfg, transformer, name=name).to(device)
            state = fit(model, tensor[torch.from_numpy(fit_rows).to(tensor.device)],
                        replace(train_cfg, budget_seconds=per_fit), seed)
            loaded = LoadedModel(model, transformer, schema, {}, "")
            real.append(frame.iloc[held_out])
            syn.append(sample_frame(loaded, len(held_out), seed + k))
            epochs.append(state.epoch)
            if folds:
                fold_scores.append(candidate_figures(real[-1], syn[-1], schema, seed)["score"])
        train_s = time.perf_counter() - t0
        figures = candidate_figures(pd.concat(real, ignore_index=True), pd.concat(syn, ignore_index=True),
                                    schema, seed)
        results[name] = {**{k: round(v, 4) for k, v in figures.items()},
                         **({"fold_scores": [round(v, 4) for v in fold_scores]} if folds else {}),
                         "epochs": epochs[0] if len(epochs) == 1 else epochs, "train_seconds": round(train_s, 1)}
        log.info("auto: %s scored %.4f (shapes %.3f, trends %.3f, detection AUC %.3f) after %s epochs in %.0fs",
                 name, figures["score"], figures["shapes"], figures["trends"], figures["detection_auc"],
                 results[name]["epochs"], train_s)
        if best is None or figures["score"] > results[best[0]]["score"]:
            best = (name, model, state)
    name, model, state = best
    margins = None
    if folds:  # the first candidate unless another beats it by more than one standard error (refit below)
        name, margins = one_se_choice(results, auto.candidates[0])
    log.info("auto: kept %s", name)
    how = (f"over {len(folds)} folds of the training rows (fewer than {auto.min_validation_rows} validation rows), "
           f"{auto.candidates[0]} kept unless another beats it by more than one standard error of the folds"
           if folds else "on the validation rows")
    record = {"chosen": name, "by": f"mean of column shapes, pair trends and detection score {how}",
              **({"folds": len(folds), "margins": margins} if folds else {}),
              "fit_rows": len(parts[0][0]), "validation_rows": sum(len(held) for _, held in parts),
              "candidates": results}
    if auto.refit or folds:  # the winner again, from scratch, on every training row (its share of any budget)
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        model = build_model(model_cfg, train_cfg, transformer, name=name).to(device)
        state = fit(model, tensor, replace(train_cfg, budget_seconds=per_fit), seed)
        record["refit"] = {"rows": len(frame), "epochs": state.epoch,
                           "train_seconds": round(time.perf_counter() - t0, 1)}
        log.info("auto: %s trained again on all %d training rows (%d epochs)", name, len(frame), state.epoch)
    return model, state, record
