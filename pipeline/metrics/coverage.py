"""Coverage, with SDMetrics' definitions (sdmetrics 0.32 single-column metrics):

* CategoryCoverage (categorical, boolean): the share of the real column's categories that appear
  in the synthetic column (nulls ignored).
* RangeCoverage (numeric, datetime): how much of the real [min, max] the synthetic range covers,
  ``max(1 - (max((s_min - r_min) / (r_max - r_min), 0) + max((r_max - s_max) / (r_max - r_min), 0)), 0)``;
  undefined (NaN) for a constant real column.
* MissingValueSimilarity (every column): ``1 - |null share real - null share synthetic|``.

Each is a handful of vectorised reductions per column, so it runs on every row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.metrics import SuiteResult, metric, register_suite
from pipeline.metrics.fidelity import numeric_values
from pipeline.schema import DISCRETE_KINDS, NUMERIC_KINDS, TableSchema

_NUMERIC, _DISCRETE = NUMERIC_KINDS, DISCRETE_KINDS


@dataclass
class CoverageResult:
    category: float
    range: float
    missing_values: float
    columns: dict[str, dict] = field(default_factory=dict)


def category_coverage(real: pd.Series, syn: pd.Series) -> float:
    r = pd.unique(real.dropna())
    if not len(r):
        return float("nan")
    return float(pd.Index(r).isin(pd.unique(syn.dropna())).sum() / len(r))


def range_coverage(real: np.ndarray, syn: np.ndarray) -> float:
    r, s = real[~np.isnan(real)], syn[~np.isnan(syn)]
    if not len(r):
        return float("nan")
    if not len(s):
        return float("nan")  # as SDMetrics: an all-null synthetic column has no range to compare
    return range_from_bounds(r.min(), r.max(), s.min(), s.max())


def range_from_bounds(r_min: float, r_max: float, s_min: float, s_max: float) -> float:
    """RangeCoverage from the real and synthetic minima and maxima (NaN for a constant real column)."""
    if r_min == r_max:
        return float("nan")
    low = max((s_min - r_min) / (r_max - r_min), 0.0)
    high = max((r_max - s_max) / (r_max - r_min), 0.0)
    return float(max(1.0 - (low + high), 0.0))


def missing_value_similarity(real: pd.Series, syn: pd.Series) -> float:
    if not len(real) or not len(syn):
        return float("nan")
    return float(1.0 - abs(real.isna().mean() - syn.isna().mean()))


def mean_of(values: list[float]) -> float:
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def score_coverage(real: pd.DataFrame, syn: pd.DataFrame, schema: TableSchema) -> CoverageResult:
    columns: dict[str, dict] = {}
    for c in schema.modeled:
        entry = {"missing_value_similarity": missing_value_similarity(real[c.name], syn[c.name])}
        if c.kind in _DISCRETE:
            entry["category_coverage"] = category_coverage(real[c.name], syn[c.name])
        elif c.kind in _NUMERIC:
            entry["range_coverage"] = range_coverage(numeric_values(real[c.name]), numeric_values(syn[c.name]))
        columns[c.name] = entry
    pick = lambda key: mean_of([e[key] for e in columns.values() if key in e])  # noqa: E731
    return CoverageResult(pick("category_coverage"), pick("range_coverage"), pick("missing_value_similarity"), columns)


@register_suite("coverage", "table", order=20, log=False, metrics=[
    metric("coverage.category", 0, 1,
           "mean CategoryCoverage: share of real categories the synthetic data has (SDMetrics)", headline=1),
    metric("coverage.range", 0, 1,
           "mean RangeCoverage: share of the real numeric range the synthetic data spans (SDMetrics)", headline=2),
    metric("coverage.missing_values", 0, 1,
           "mean MissingValueSimilarity: 1 - |null share real - null share synthetic| (SDMetrics)"),
])
def coverage_suite(ev) -> SuiteResult:
    cov = ev.stream().coverage() if ev.streamed else score_coverage(ev.train, ev.syn, ev.schema)
    return SuiteResult({"coverage.category": cov.category, "coverage.range": cov.range,
                        "coverage.missing_values": cov.missing_values}, {"columns": cov.columns})
