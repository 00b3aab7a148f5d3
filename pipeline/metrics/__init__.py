"""Metrics over (real, synthetic) tables, and the quality gate over their results.

Keys are stable dotted names (``quality.overall``); each registered metric declares its goal
(maximise or minimise) and bounds, so thresholds and reports read them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MetricInfo:
    key: str
    goal: Literal["maximize", "minimize"]
    lower: float
    upper: float
    description: str


METRICS: dict[str, MetricInfo] = {}


def register_metric(key: str, goal: str, lower: float, upper: float, description: str) -> None:
    METRICS[key] = MetricInfo(key, goal, lower, upper, description)  # type: ignore[arg-type]


register_metric("quality.column_shapes", "maximize", 0, 1, "mean KSComplement / TVComplement over columns (SDMetrics)")
register_metric("quality.column_pair_trends", "maximize", 0, 1, "mean CorrelationSimilarity / ContingencySimilarity over associated pairs (SDMetrics QualityReport)")
register_metric("quality.column_pair_trends_all", "maximize", 0, 1, "the same over every pair, with no association threshold")
register_metric("quality.overall", "maximize", 0, 1, "mean of column shapes and column pair trends (SDMetrics QualityReport)")
register_metric("utility.tstr_score", "maximize", 0, 1, "model trained on synthetic, tested on real holdout")
register_metric("utility.trtr_score", "maximize", 0, 1, "the same model trained on real, tested on real holdout")
register_metric("utility.ratio", "maximize", 0, float("inf"), "tstr_score / trtr_score")
register_metric("privacy.exact_match_rate", "minimize", 0, 1, "share of synthetic rows identical to a training row")
register_metric("privacy.exact_match_rate_holdout", "minimize", 0, 1, "share of real holdout rows identical to a training row (reference)")


def evaluate_gate(metrics: dict[str, object], thresholds: dict[str, "object"]) -> tuple[bool, list[str]]:
    """Check every threshold; a key that was not computed fails the gate rather than passing it."""
    failures = []
    for key, th in thresholds.items():
        value = metrics.get(key)
        if not isinstance(value, (int, float)) or value != value:  # missing, None or NaN
            failures.append(f"{key}: not computed")
            continue
        if th.min is not None and value < th.min:
            failures.append(f"{key}: {value:.4f} < min {th.min}")
        if th.max is not None and value > th.max:
            failures.append(f"{key}: {value:.4f} > max {th.max}")
    return not failures, failures
