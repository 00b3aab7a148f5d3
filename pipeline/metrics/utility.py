"""Machine-learning utility: train on synthetic, test on real (TSTR) against train on real (TRTR).

The task follows the target's kind: a categorical or boolean target is classification (ROC AUC
when binary, macro F1 otherwise), and so is an integer target with at most ``MAX_CLASS_CODES``
(10) distinct values in the real data (the schema's ``n_unique``): a label coded 1/2 or a 1-5
rating, where predicting 1.5 means nothing. Any other numeric target is regression (R^2).
``datasets.<name>.task`` overrides the choice for a numeric target (its values rounded to class
codes for classification). The
model is scikit-learn's HistGradientBoosting with a fixed seed; categoricals are native
categorical features.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.metrics import f1_score, r2_score, roc_auc_score

from pipeline.metrics import SuiteResult, metric, register_suite
from pipeline.metrics.fidelity import numeric_values
from pipeline.schema import DISCRETE_KINDS, TableSchema

_MAX_NATIVE_CATEGORIES = 250  # HistGradientBoosting's limit is 255 bins
MAX_CLASS_CODES = 10  # an integer target with this many distinct values or fewer is a class label


@dataclass
class UtilityResult:
    task: str
    metric: str
    tstr: float
    trtr: float


def features(frames: list[pd.DataFrame], schema: TableSchema, exclude: tuple[str, ...] = ()
             ) -> tuple[list[pd.DataFrame], list[bool]]:
    """Model inputs for each frame: numbers as floats, categories as shared integer codes (NaN for
    nulls), and which columns are categorical (native categories up to HistGradientBoosting's limit)."""
    cols = [c for c in schema.modeled if c.name not in exclude]
    out: list[dict[str, object]] = [{} for _ in frames]
    is_cat = []
    for c in cols:
        if c.kind in DISCRETE_KINDS:
            cats = pd.Index(pd.concat([f[c.name] for f in frames], ignore_index=True).dropna().unique())
            for o, f in zip(out, frames):
                codes = pd.Categorical(f[c.name], categories=cats).codes.astype(float)
                codes[codes < 0] = np.nan
                o[c.name] = codes
            is_cat.append(len(cats) <= _MAX_NATIVE_CATEGORIES)
        else:
            for o, f in zip(out, frames):
                o[c.name] = numeric_values(f[c.name])
            is_cat.append(False)
    return [pd.DataFrame(o) for o in out], is_cat


def _fit_score(task: str, metric: str, X, y, Xt, yt, is_cat, classes) -> float:
    empty = X.columns[X.isna().all()]
    if len(empty):
        # A column with no value on the training side (a DP release may hold none of a rare number)
        # carries nothing to learn; scikit-learn cannot bin it, so it becomes one constant.
        X = X.assign(**{c: 0.0 for c in empty})
    if task == "regression":
        model = HistGradientBoostingRegressor(random_state=0, categorical_features=is_cat or None)
        model.fit(X, y)
        return float(r2_score(yt, model.predict(Xt)))
    labels, counts = np.unique(y, return_counts=True)
    if (counts < 2).any() and (counts >= 2).any():
        # A class of one row (a DP release's one "other" label) cannot be learned, and breaks the
        # stratified split of HistGradientBoosting's early stopping: its row is left out.
        keep = np.isin(y, labels[counts >= 2])
        X, y, labels = X[keep], y[keep], labels[counts >= 2]
    if len(labels) < 2:
        # A synthetic target with one class predicts nothing: chance level.
        return 0.5 if metric == "roc_auc" else float(f1_score(yt, np.full(len(yt), y[0]), average="macro"))
    model = HistGradientBoostingClassifier(random_state=0, categorical_features=is_cat or None)
    model.fit(X, y)
    if metric == "roc_auc":
        proba = model.predict_proba(Xt)
        pos = list(model.classes_).index(classes[1]) if classes[1] in model.classes_ else None
        return float(roc_auc_score(yt == classes[1], proba[:, pos])) if pos is not None else 0.5
    return float(f1_score(yt, model.predict(Xt), average="macro"))


def utility_task(schema: TableSchema, target: str, task: str = "auto") -> str:
    """``classification`` or ``regression`` for ``target``: ``task`` when given, else by its kind."""
    kind = schema[target].kind
    if task != "auto":
        return task
    if kind in DISCRETE_KINDS or (kind == "integer" and schema[target].n_unique <= MAX_CLASS_CODES):
        return "classification"
    return "regression"


def score_utility(train: pd.DataFrame, holdout: pd.DataFrame, syn: pd.DataFrame,
                  schema: TableSchema, target: str, task: str = "auto") -> UtilityResult:
    kind = schema[target].kind
    task = utility_task(schema, target, task)
    frames = [f[f[target].notna()] for f in (train, holdout, syn)]
    (X_tr, X_ho, X_syn), is_cat = features(frames, schema, exclude=(target,))
    if kind in DISCRETE_KINDS:
        y_tr, y_ho, y_syn = (f[target].astype(str).to_numpy() for f in frames)
        classes = sorted(np.unique(y_tr))
        task, metric = "classification", "roc_auc" if len(classes) == 2 else "f1_macro"
    elif task == "classification":
        # Numbers taken as class codes, compared as integers: 2 and 2.0 (a float-typed source) are
        # the same class (a generated 1.97 is class 2).
        y_tr, y_ho, y_syn = (np.round(numeric_values(f[target])).astype(np.int64) for f in frames)
        classes = sorted(np.unique(y_tr))
        task, metric = "classification", "roc_auc" if len(classes) == 2 else "f1_macro"
    else:
        y_tr, y_ho, y_syn = (numeric_values(f[target]) for f in frames)
        classes, task, metric = [], "regression", "r2"
    trtr = _fit_score(task, metric, X_tr, y_tr, X_ho, y_ho, is_cat, classes)
    tstr = _fit_score(task, metric, X_syn, y_syn, X_ho, y_ho, is_cat, classes)
    return UtilityResult(task, metric, tstr, trtr)


@register_suite("utility", "table", order=40, log=False, metrics=[
    metric("utility.tstr_score", 0, 1, "model trained on synthetic, tested on real holdout", headline=1),
    metric("utility.trtr_score", 0, 1, "the same model trained on real, tested on real holdout", headline=2),
    metric("utility.ratio", 0, float("inf"), "tstr_score / trtr_score"),
])
def utility_suite(ev) -> SuiteResult:
    """TSTR against TRTR on seeded samples; nothing when there is no target or no holdout, and not
    judged (its thresholds not applied, the reason said) on a holdout too small to tell."""
    if not ev.target or not len(ev.holdout):
        return SuiteResult({}, {"samples": {"utility": None}, "utility": None})
    if len(ev.holdout) < ev.settings.utility_min_holdout:
        reason = (f"{len(ev.holdout)} holdout rows, fewer than score.utility_min_holdout "
                  f"({ev.settings.utility_min_holdout}): a utility score on so few rows is noise")
        return SuiteResult({}, {"samples": {"utility": None}, "utility": None},
                           not_judged={"utility.": reason})
    rows = ev.settings.utility_rows
    u = score_utility(ev.sample(ev.train, rows), ev.sample(ev.holdout, rows), ev.sample(ev.syn, rows), ev.schema,
                      ev.target, ev.task)
    return SuiteResult({"utility.task": u.task, "utility.metric": u.metric, "utility.tstr_score": u.tstr,
                        "utility.trtr_score": u.trtr, "utility.ratio": u.tstr / u.trtr if u.trtr else None},
                       {"samples": {"utility": {"rows": min(rows, len(ev.syn))}}, "utility": asdict(u)})
