"""Detection: can a classifier tell real rows from synthetic ones?

Equal-sized seeded samples of real and synthetic rows (at most ``rows`` each: training is the
cost, so large tables are subsampled), labelled 0/1, scored by a HistGradientBoosting classifier
with stratified k-fold cross-validation. ``auc`` is the mean out-of-fold ROC AUC: 0.5 means the
synthetic rows are indistinguishable; 1.0 means every row is told apart. ``score`` is SDMetrics'
normalisation of a detection AUC, ``1 - (max(auc, 0.5) * 2 - 1)`` (1 is best).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from pipeline.metrics import SuiteResult, metric, register_suite
from pipeline.metrics.utility import features
from pipeline.schema import TableSchema


@dataclass
class DetectionResult:
    auc: float
    score: float
    rows_per_side: int
    folds: int
    seed: int


def score_detection(real: pd.DataFrame, syn: pd.DataFrame, schema: TableSchema, rows: int = 20_000,
                    seed: int = 0, folds: int = 3) -> DetectionResult:
    n = min(len(real), len(syn), rows)
    if n < 2 * folds:
        return DetectionResult(float("nan"), float("nan"), n, folds, seed)
    real = real.sample(n=n, random_state=seed) if len(real) > n else real
    syn = syn.sample(n=n, random_state=seed) if len(syn) > n else syn
    (x_real, x_syn), is_cat = features([real, syn], schema)
    x = pd.concat([x_real, x_syn], ignore_index=True)
    y = np.r_[np.zeros(len(x_real)), np.ones(len(x_syn))]
    aucs = []
    for fit_idx, test_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        model = HistGradientBoostingClassifier(random_state=seed, categorical_features=is_cat or None)
        model.fit(x.iloc[fit_idx], y[fit_idx])
        aucs.append(roc_auc_score(y[test_idx], model.predict_proba(x.iloc[test_idx])[:, 1]))
    auc = float(np.mean(aucs))
    return DetectionResult(auc, 1.0 - (max(auc, 0.5) * 2 - 1), n, folds, seed)


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
