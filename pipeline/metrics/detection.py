"""Detection: can a classifier tell real rows from synthetic ones?

Equal-sized seeded samples of real and synthetic rows (at most ``rows`` each: training is the
cost, so large tables are subsampled), labelled 0/1, scored by a gradient-boosted tree classifier
(scikit-learn's HistGradientBoosting) with stratified k-fold cross-validation. ``auc`` is the mean
out-of-fold ROC AUC: 0.5 means the synthetic rows are indistinguishable; 1.0 means every row is told
apart. ``score`` is SDMetrics' normalisation of a detection AUC, ``1 - (max(auc, 0.5) * 2 - 1)``
(1 is best).

The classifier is at least as strong as the C2ST protocol of the tabular-synthesis papers (xgboost
with its defaults, 5 folds; ``benchmarks/detectors.py`` measures both): 5 folds, a fixed 200 trees
of depth up to 6 at learning rate 0.2 and **no early stopping**, on up to ``score.detection_rows``
(50,000) rows per side. scikit-learn stops early by
default above 10,000 rows, and on a near-indistinguishable pair the validation loss stalls within a
few trees, so the default classifier stopped before it had learned what tells the sides apart.
Categories are the shared integer codes of ``features()`` (a null its own value), as native
categories.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from pipeline.metrics import SuiteResult, metric, register_suite
from pipeline.metrics.fidelity import numeric_values
from pipeline.metrics.utility import features
from pipeline.schema import DISCRETE_KINDS, TableSchema

FOLDS = 5
# The classifier's settings (HistGradientBoostingClassifier keywords); benchmarks/detectors.py compares
# these with others and with xgboost.
NATIVE_CATEGORIES = True
_MISSING = "\x00missing"  # a category no value spells: sorts first, code 0
CLASSIFIER = {"early_stopping": False, "max_iter": 200, "learning_rate": 0.2, "max_depth": 6, "max_leaf_nodes": None}


@dataclass
class DetectionResult:
    auc: float
    score: float
    rows_per_side: int
    folds: int
    seed: int


def score_detection(real: pd.DataFrame, syn: pd.DataFrame, schema: TableSchema, rows: int = 50_000,
                    seed: int = 0, folds: int = FOLDS, classifier: dict | None = None,
                    native_categories: bool = NATIVE_CATEGORIES) -> DetectionResult:
    """Cross-validated AUC of a classifier telling ``real`` from ``syn`` rows (``classifier``: its
    HistGradientBoostingClassifier keywords, default ``CLASSIFIER``; ``native_categories``: category
    codes split as categories, else as ordered numbers)."""
    n = min(len(real), len(syn), rows)
    if n < 2 * folds:
        return DetectionResult(float("nan"), float("nan"), n, folds, seed)
    real = real.sample(n=n, random_state=seed) if len(real) > n else real
    syn = syn.sample(n=n, random_state=seed) if len(syn) > n else syn
    if native_categories:
        (x_real, x_syn), is_cat = features([real, syn], schema)
        x = pd.concat([x_real, x_syn], ignore_index=True)
    else:
        x, is_cat = ordinal_codes(pd.concat([real, syn], ignore_index=True), schema), []
    y = np.r_[np.zeros(n), np.ones(n)]
    settings = CLASSIFIER if classifier is None else classifier
    aucs = []
    for fit_idx, test_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        model = HistGradientBoostingClassifier(random_state=seed, **settings,
                                               categorical_features=(is_cat or None) if native_categories else None)
        model.fit(x.iloc[fit_idx], y[fit_idx])
        aucs.append(roc_auc_score(y[test_idx], model.predict_proba(x.iloc[test_idx])[:, 1]))
    auc = float(np.mean(aucs))
    return DetectionResult(auc, sdmetrics_score(auc), n, folds, seed)


def ordinal_codes(frame: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """The papers' coding: each category's rank among its column's sorted values (as text), a missing
    value its own category; numbers as they are (a missing number stays NaN, which the trees route)."""
    out = {}
    for c in schema.modeled:
        col = frame[c.name]
        if c.kind in DISCRETE_KINDS:
            text = col.astype("object").where(col.notna(), _MISSING).astype(str)
            out[c.name] = pd.Categorical(text, categories=sorted(text.unique())).codes.astype("float64")
        else:
            out[c.name] = numeric_values(col)
    return pd.DataFrame(out, index=frame.index)


def sdmetrics_score(auc: float) -> float:
    """SDMetrics' detection score of a ROC AUC: 1 - (max(auc, 0.5) * 2 - 1) (1 is best)."""
    return 1.0 - (max(auc, 0.5) * 2 - 1)


@register_suite("detection", "table", order=30, metrics=[
    metric("detection.auc", 0, 1,
           "cross-validated ROC AUC of a classifier telling real from synthetic rows (0.5 = indistinguishable)",
           headline=1),
    metric("detection.score", 0, 1,
           "1 - (max(detection AUC, 0.5) * 2 - 1), SDMetrics' detection normalisation"),
])
def detection_suite(ev) -> SuiteResult:
    det = score_detection(ev.train, ev.syn, ev.schema, rows=ev.settings.detection_rows, seed=ev.seed)
    return SuiteResult({"detection.auc": det.auc, "detection.score": det.score},
                       {"samples": {"detection": {"rows_per_side": det.rows_per_side, "folds": det.folds}}})
