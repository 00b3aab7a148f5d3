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


def check_thresholds(thresholds: dict) -> None:
    """A ConfigError naming the first threshold on a metric that does not exist."""
    from pipeline.errors import ConfigError

    unknown = sorted(set(thresholds) - set(METRICS))
    if unknown:
        raise ConfigError(f"score.thresholds: unknown metric '{unknown[0]}' (known: {', '.join(sorted(METRICS))})")


def register_metric(key: str, goal: str, lower: float, upper: float, description: str) -> None:
    METRICS[key] = MetricInfo(key, goal, lower, upper, description)  # type: ignore[arg-type]


register_metric("quality.column_shapes", "maximize", 0, 1, "mean KSComplement / TVComplement over columns (SDMetrics)")
register_metric("quality.column_pair_trends", "maximize", 0, 1, "mean CorrelationSimilarity / ContingencySimilarity over associated pairs (SDMetrics QualityReport)")
register_metric("quality.column_pair_trends_all", "maximize", 0, 1, "the same over every pair, with no association threshold")
register_metric("quality.overall", "maximize", 0, 1, "mean of column shapes and column pair trends (SDMetrics QualityReport)")
register_metric("coverage.category", "maximize", 0, 1, "mean CategoryCoverage: share of real categories the synthetic data has (SDMetrics)")
register_metric("coverage.range", "maximize", 0, 1, "mean RangeCoverage: share of the real numeric range the synthetic data spans (SDMetrics)")
register_metric("coverage.missing_values", "maximize", 0, 1, "mean MissingValueSimilarity: 1 - |null share real - null share synthetic| (SDMetrics)")
register_metric("detection.auc", "minimize", 0, 1, "cross-validated ROC AUC of a classifier telling real from synthetic rows (0.5 = indistinguishable)")
register_metric("detection.score", "maximize", 0, 1, "1 - (max(detection AUC, 0.5) * 2 - 1), SDMetrics' detection normalisation")
register_metric("utility.tstr_score", "maximize", 0, 1, "model trained on synthetic, tested on real holdout")
register_metric("utility.trtr_score", "maximize", 0, 1, "the same model trained on real, tested on real holdout")
register_metric("utility.ratio", "maximize", 0, float("inf"), "tstr_score / trtr_score")
register_metric("privacy.exact_match_rate", "minimize", 0, 1, "share of synthetic rows identical to a training row")
register_metric("privacy.exact_match_rate_holdout", "minimize", 0, 1, "share of real holdout rows identical to a training row (reference)")
register_metric("privacy.dcr_share", "minimize", 0, 1, "share of synthetic rows closer to a training row than to any holdout row (0.5 = no closer to train than unseen data)")
register_metric("privacy.dcr_protection", "maximize", 0, 1, "min((1 - dcr_share) * 2, 1): SDMetrics DCROverfittingProtection")
register_metric("privacy.dcr_median", "maximize", 0, 1, "median distance of a synthetic row to its closest training row (SDMetrics DCR distance)")
register_metric("privacy.dcr_holdout_median", "maximize", 0, 1, "median distance of a real holdout row to its closest training row (reference)")
register_metric("privacy.nndr_median", "maximize", 0, 1, "median ratio of a synthetic row's nearest to second-nearest training distance (near 0: a near-copy of one row)")

# Images (pipeline.metrics.image): read each against its real-vs-real floor, in the report.
register_metric("image.fid", "minimize", 0, float("inf"), "Fréchet distance of generated to real training images in the evaluator's feature space")
register_metric("image.fid_real_floor", "minimize", 0, float("inf"), "the same for real held-out images (what a perfect generator scores)")
register_metric("image.fid_ratio", "minimize", 0, float("inf"), "image.fid / image.fid_real_floor (1 = as close as unseen real images)")
register_metric("image.kid", "minimize", float("-inf"), float("inf"), "kernel inception distance (unbiased MMD^2, cubic kernel) in the evaluator's feature space")
register_metric("image.precision", "maximize", 0, 1, "share of generated images inside the real images' k-NN manifold (fidelity)")
register_metric("image.recall", "maximize", 0, 1, "share of real images inside the generated images' k-NN manifold (diversity)")
register_metric("image.label_accuracy", "maximize", 0, 1, "the evaluator's accuracy on generated images against their requested labels")
register_metric("image.classifier_accuracy", "maximize", 0, 1, "the evaluator's accuracy on real held-out images (how far its judgement goes)")
register_metric("image.memorized_rate", "minimize", 0, 1, "share of generated images nearer a training image than most unseen real images are")


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
