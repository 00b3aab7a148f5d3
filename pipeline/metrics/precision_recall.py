"""Alpha-precision, beta-recall and authenticity (Alaa et al., "How faithful is your synthetic
data?", ICML 2022), computed as synthcity's ``AlphaPrecision`` computes its ``*_naive`` keys, the
figures TabSyn, TabDiff and TabPC publish, so that ours read on their scale.

Equal-sized seeded samples of training and synthetic rows (at most ``rows`` each: nearest
neighbours cost the square of the rows) become one feature matrix as those papers build it:
numbers as they are, then each category one-hot (the target's last), the last column left out
(synthcity takes a loader's last column for its target and drops it: in that layout, the target's
last one-hot column), every column min-max scaled by the real rows. Then, for 30 levels alpha in
[0, 1]:

- alpha-precision: the real rows' ball about their mean holding a share alpha of them; the share of
  synthetic rows inside it should be alpha too. The score is 1 minus the mean gap between the two
  curves, relative to the mean alpha: 1 when the synthetic rows fill the real ball as real rows do.
- beta-recall: a real row is covered when its nearest synthetic row is nearer than its nearest
  other real row; at level beta, only when that synthetic row also lies in the synthetic rows' own
  ball of that share (about their mean). Scored as alpha-precision: 1 when the share covered at
  each level is the level itself. Independent draws of the same distribution cover about half the
  rows (a real row's nearest neighbour is as likely synthetic as real), so real data itself scores
  about 0.5 (the papers' Adult figures are .48-.53).
- authenticity: the share of synthetic rows farther from their nearest real row than that real row
  is from its own nearest other real row (the paper's definition; 0 for copies, about 0.5 for
  independent draws). synthcity's ``authenticity_naive`` pairs each real row's nearest synthetic
  row with the nearest-real distance of the real row at the synthetic row's index; that is not the
  paper's quantity, so we do not copy it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from pipeline.metrics import SuiteResult, metric, register_suite
from pipeline.metrics.fidelity import numeric_values
from pipeline.schema import DISCRETE_KINDS, NUMERIC_KINDS, TableSchema

LEVELS = 30  # synthcity's alphas: np.linspace(0, 1, 30)
MAX_CATEGORIES = 100  # one-hot columns of one categorical column at most (``one_hot``; Adult has 42)


@dataclass
class PrecisionRecallResult:
    alpha_precision: float
    beta_recall: float
    authenticity: float
    rows_per_side: int
    features: int


def one_hot(real: pd.Series, syn: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """0/1 columns of the real rows' categories in sorted order, as scikit-learn's OneHotEncoder
    makes them (nulls a category of their own; a category the real rows lack: all zeros). Past
    ``MAX_CATEGORIES`` the rarer ones, and any value not among those kept, share one last column:
    memory and time grow with the width, and the papers' tables stay far below it."""
    real, syn = real.astype("string").fillna("nan"), syn.astype("string").fillna("nan")
    counts = real.value_counts()
    cats = pd.Index(sorted(counts.index[:MAX_CATEGORIES]))
    pooled = len(counts) > len(cats)
    out = []
    for values in (real, syn):
        codes = cats.get_indexer(values)
        hot = np.zeros((len(values), len(cats) + pooled))
        hot[np.flatnonzero(codes >= 0), codes[codes >= 0]] = 1.0
        if pooled:
            hot[codes < 0, -1] = 1.0
        out.append(hot)
    return out[0], out[1]


def feature_matrix(real: pd.DataFrame, syn: pd.DataFrame, schema: TableSchema, target: str | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The two samples as TabSyn's evaluation hands them to synthcity, min-max scaled by the real
    rows: numeric columns, then each category column one-hot (``one_hot``; ``target`` last), less
    the last column. A numeric null (the papers' tables have none) becomes the real rows' mean,
    with a 0/1 column saying it was null."""
    numeric = [c.name for c in schema.modeled if c.kind in NUMERIC_KINDS]
    discrete = [c.name for c in schema.modeled if c.kind in DISCRETE_KINDS]
    if target in discrete:
        discrete = [c for c in discrete if c != target] + [target]
    blocks: list[tuple[np.ndarray, np.ndarray]] = []
    for name in numeric:
        r, s = numeric_values(real[name]), numeric_values(syn[name])
        r_nan, s_nan = np.isnan(r), np.isnan(s)
        if r_nan.any() or s_nan.any():
            fill = float(np.nanmean(r)) if not r_nan.all() else 0.0
            blocks.append((np.where(r_nan, fill, r)[:, None], np.where(s_nan, fill, s)[:, None]))
            blocks.append((r_nan[:, None].astype(float), s_nan[:, None].astype(float)))
        else:
            blocks.append((r[:, None], s[:, None]))
    blocks += [one_hot(real[name], syn[name]) for name in discrete]
    x_real = np.hstack([r for r, _ in blocks])[:, :-1]
    x_syn = np.hstack([s for _, s in blocks])[:, :-1]
    low, span = x_real.min(axis=0), np.ptp(x_real, axis=0)
    span[span == 0] = 1.0  # a constant column is only shifted, as MinMaxScaler does
    return (x_real - low) / span, (x_syn - low) / span


def curve_score(levels: np.ndarray, curve: np.ndarray) -> float:
    """1 - (sum of |curve - level|) / (sum of levels): 1 when the curve is the diagonal."""
    return float(1.0 - np.abs(levels - curve).sum() / levels.sum())


def precision_recall(x_real: np.ndarray, x_syn: np.ndarray) -> tuple[float, float, float]:
    """(alpha-precision, beta-recall, authenticity) of equal-sized feature matrices."""
    levels = np.linspace(0.0, 1.0, LEVELS)
    center = x_real.mean(axis=0)
    real_radii = np.quantile(np.linalg.norm(x_real - center, axis=1), levels)
    syn_to_center = np.linalg.norm(x_syn - center, axis=1)
    alpha_curve = (syn_to_center[None, :] <= real_radii[:, None]).mean(axis=1)

    # scikit-learn's brute-force neighbour search (its fast reduction, on every core). Neighbour 0
    # of a real row among the real rows is itself, or a duplicate: distance 0 either way.
    real_to_real = NearestNeighbors(n_neighbors=2).fit(x_real).kneighbors(x_real)[0][:, 1]
    real_to_syn, nearest_syn = (a[:, 0] for a in NearestNeighbors(n_neighbors=1).fit(x_syn).kneighbors(x_real))
    syn_to_real, nearest_real = (a[:, 0] for a in NearestNeighbors(n_neighbors=1).fit(x_real).kneighbors(x_syn))
    covered = real_to_syn <= real_to_real
    nearest_to_center = np.linalg.norm(x_syn[nearest_syn] - x_syn.mean(axis=0), axis=1)
    syn_radii = np.quantile(nearest_to_center, levels)
    beta_curve = (covered[None, :] & (nearest_to_center[None, :] <= syn_radii[:, None])).mean(axis=1)

    authentic = syn_to_real > real_to_real[nearest_real]
    return curve_score(levels, alpha_curve), curve_score(levels, beta_curve), float(authentic.mean())


def score_precision_recall(real: pd.DataFrame, syn: pd.DataFrame, schema: TableSchema, target: str | None = None,
                           rows: int = 10_000, seed: int = 0) -> PrecisionRecallResult:
    """The three scores on seeded samples of ``min(len(real), len(syn), rows)`` rows each (NaN under
    two rows a side, or with no column to measure)."""
    n = min(len(real), len(syn), rows)
    real = real.sample(n=n, random_state=seed) if len(real) > n else real
    syn = syn.sample(n=n, random_state=seed) if len(syn) > n else syn
    x_real, x_syn = feature_matrix(real, syn, schema, target) if n else (np.empty((0, 0)),) * 2
    if n < 2 or x_real.shape[1] == 0:
        return PrecisionRecallResult(float("nan"), float("nan"), float("nan"), n, x_real.shape[1])
    return PrecisionRecallResult(*precision_recall(x_real, x_syn), n, x_real.shape[1])


@register_suite("precision_recall", "table", order=15, metrics=[
    metric("quality.alpha_precision", 0, 1,
           "synthetic rows inside the real rows' alpha-support as often as real rows are (Alaa et al. 2022, "
           "synthcity's naive variant as TabSyn reports it; 1 = as typical as real rows)", headline=1),
    metric("quality.beta_recall", 0, 1,
           "real rows whose nearest neighbour is a typical synthetic row rather than another real row, against "
           "the beta share expected (synthcity's naive variant; unseen real rows score about 0.5)", headline=2),
    metric("quality.authenticity", 0, 1,
           "synthetic rows farther from their nearest real row than it is from its own nearest real row "
           "(0 = copies; independent draws about 0.5)"),
])
def precision_recall_suite(ev) -> SuiteResult:
    pr = score_precision_recall(ev.train, ev.syn, ev.schema, ev.target, rows=ev.settings.precision_recall_rows,
                                seed=ev.seed)
    return SuiteResult({"quality.alpha_precision": pr.alpha_precision, "quality.beta_recall": pr.beta_recall,
                        "quality.authenticity": pr.authenticity},
                       {"samples": {"precision_recall": {"rows_per_side": pr.rows_per_side,
                                                         "features": pr.features}}})
