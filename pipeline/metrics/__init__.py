"""Metrics over (real, synthetic) tables, and the quality gate over their results.

Keys are stable dotted names (``quality.overall``). A metric family is one module of this package
(found by listing the package, nothing else to edit): it registers a suite, its compute function
with the metrics it reports, each with its bounds, description and place among the headlines, so
the score stage, thresholds, reports and the data card read them the same way. The gate is judged
here, once (``judge``).
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class MetricInfo:
    key: str
    lower: float
    upper: float
    description: str
    # Its place among its family's headline metrics (1 first; 0: not one). The data card and
    # ``releases show`` list the headlines family by family in this order; the score stage's log
    # line shows them too, for a family that logs (``register_suite``'s ``log``).
    headline: int = 0
    # What real data scores here, so that a figure is read against it: the key of a metric that
    # measures it on this run's own data (``privacy.exact_match_rate_holdout``: how often unseen real
    # rows repeat a training row), or a number it has by construction (0.5 for an attack no better
    # than chance). ``baseline_words`` say whose score it is; a gate failure, the report and the
    # data card show it beside the value.
    baseline: str | float | None = None
    baseline_words: str = "real baseline"

    def baseline_value(self, metrics: dict[str, object]) -> float | None:
        """The baseline's value for these ``metrics`` (None: no baseline, or not measured here)."""
        value = metrics.get(self.baseline) if isinstance(self.baseline, str) else self.baseline
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        return float(value)

    def baseline_text(self, metrics: dict[str, object]) -> str | None:
        """``unseen real rows: 0.2990`` (measured: four decimals, like the value) or ``chance: 0.5``
        (a fixed number as written); None without one."""
        value = self.baseline_value(metrics)
        if value is None:
            return None
        number = f"{value:.4f}" if isinstance(self.baseline, str) else f"{value:g}"
        return f"{self.baseline_words}: {number}"


@dataclass
class SuiteResult:
    """What one metric family computed: ``metrics`` (flat keys, into the metrics file and the gate),
    ``details`` (merged into ``details.json``: per-column and per-pair scores, the samples it used),
    ``files`` (more evidence written beside it), ``report`` (objects only the report draws) and
    ``not_judged`` (the metrics it could not judge here, and why)."""

    metrics: dict[str, object]
    details: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str | bytes] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    # Metrics it did not judge (a key, or a prefix ending in '.'), with the reason: their
    # thresholds are not applied, and the verdict says so.
    not_judged: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    name: str
    modality: str
    compute: Callable[[Any], SuiteResult]
    metrics: tuple[MetricInfo, ...]
    # Its place among the suites: the score stage runs them, and the metrics file keeps their keys, in this order.
    order: float
    log: bool | Callable[[dict], str] = True
    # It attacks the one seeded split of rows the privacy attacks share (``privacy.attack_rows``):
    # not judged on a holdout under ``score.privacy_min_holdout`` rows; validate's plan says on how
    # many rows it will run.
    attacks: bool = False

    def headlines(self) -> list[MetricInfo]:
        """Its headline metrics, in their declared order."""
        return sorted((info for info in self.metrics if info.headline), key=lambda info: info.headline)

    def summary(self, metrics: dict[str, object]) -> str:
        """Its words in the score stage's log line: its own (``log`` a function), none (``log``
        False), or its headline metrics that are numbers (``quality.overall 0.812``)."""
        if callable(self.log):
            return self.log(metrics)
        if not self.log:
            return ""
        return ", ".join(f"{info.key} {metrics[info.key]:.3f}" for info in self.headlines()
                         if isinstance(metrics.get(info.key), float))


SUITES: dict[str, Suite] = {}


def metric(key: str, lower: float, upper: float, description: str, headline: int = 0,
           baseline: str | float | None = None, baseline_words: str = "real baseline") -> MetricInfo:
    """One metric of a family: its key, range, description and headline place, and optionally the
    real baseline it is read against (``MetricInfo.baseline``)."""
    return MetricInfo(key, lower, upper, description, headline, baseline, baseline_words)


def register_suite(name: str, modality: str, metrics: list[MetricInfo], order: float = math.inf,
                   log: bool | Callable[[dict], str] = True, attacks: bool = False) -> Callable:
    """Register ``compute(evidence) -> SuiteResult`` as the metric family ``name`` of ``modality``
    (a registered modality's name: ``table``, ``image``), with the metrics it may report. The score
    stage runs every suite of the dataset's modality by ``order`` (after every numbered one by
    default, in the order they were registered); the gate, the report and the data card read the
    metrics' bounds, descriptions and headlines from here. ``log``: whether its headline metrics
    go in the score stage's log line, or a function of the metrics giving its words there.
    ``attacks``: it attacks the privacy attacks' shared split of rows (``Suite.attacks``)."""

    def add(compute: Callable[[Any], SuiteResult]) -> Callable[[Any], SuiteResult]:
        SUITES[name] = Suite(name, modality, compute, tuple(metrics), order, log, attacks)
        return compute

    return add


def load_families() -> None:
    """Import every module of this package: each metric family registers its suite on import."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def _ordered() -> list[Suite]:
    """Every suite by its declared order (ties in the order they were registered), whatever order
    the modules happened to be imported in."""
    load_families()
    return sorted(SUITES.values(), key=lambda s: s.order)


def known_metrics() -> dict[str, MetricInfo]:
    """Every registered metric by key, suite by suite."""
    return {info.key: info for suite in _ordered() for info in suite.metrics}


def headline_keys() -> list[str]:
    """The headline metrics' keys, suite by suite, each suite's in their declared order: the rows
    of the data card's and ``releases show``'s score tables."""
    return [info.key for suite in _ordered() for info in suite.headlines()]


def suites_for(modality: str) -> list[Suite]:
    return [s for s in _ordered() if s.modality == modality]


def privacy_suites(modality: str) -> list[Suite]:
    """The suites of ``modality`` that report privacy keys (``privacy.*``), in order."""
    return [s for s in suites_for(modality) if any(info.key.startswith("privacy.") for info in s.metrics)]


def summary(suites: list[Suite], metrics: dict[str, object]) -> str:
    """The scores of the score stage's log line: each suite's words (``Suite.summary``), in order."""
    return ", ".join(words for words in (suite.summary(metrics) for suite in suites) if words)


def check_thresholds(thresholds: dict) -> None:
    """A ConfigError naming the first threshold on a metric that does not exist, or with a bound
    outside the range its metric declares (a bound no score can reach means nothing)."""
    from pipeline.errors import ConfigError

    known = known_metrics()
    unknown = sorted(set(thresholds) - set(known))
    if unknown:
        raise ConfigError(f"score.thresholds: unknown metric '{unknown[0]}' (known: {', '.join(sorted(known))})")
    for key, th in thresholds.items():
        info = known[key]
        for bound in ("min", "max"):
            value = getattr(th, bound)
            if value is not None and not (math.isfinite(value) and info.lower <= value <= info.upper):
                raise ConfigError(f"score.thresholds: {key}.{bound} {value:g} is outside {key}'s range "
                                  f"[{info.lower:g}, {info.upper:g}]; set a bound inside it")


def not_judged_reason(metrics: dict[str, object], key: str) -> str | None:
    """Why ``key`` was not judged (``gate.not_judged``: keys or prefixes ending in '.'), if it was not."""
    for what, reason in (metrics.get("gate.not_judged") or {}).items():
        if key == what or (what.endswith(".") and key.startswith(what)):
            return reason
    return None


def evaluate_gate(metrics: dict[str, object], thresholds: dict[str, "object"]) -> tuple[bool, list[str]]:
    """Check every threshold; a key that was not computed fails the gate rather than passing it,
    unless its suite said it could not be judged here (``gate.not_judged``, with the reason). A
    failure of a metric with a real baseline names it beside the value
    (``privacy.exact_match_rate: 0.2650 > max 0.05 (unseen real rows: 0.2990)``): the verdict is the
    threshold's alone, the baseline says how far real data itself would get."""
    failures = []
    known = known_metrics()
    for key, th in thresholds.items():
        if not_judged_reason(metrics, key) is not None:
            continue
        value = metrics.get(key)
        if not isinstance(value, (int, float)) or value != value:  # missing, None or NaN
            failures.append(f"{key}: not computed")
            continue
        if any(b is not None and not math.isfinite(b) for b in (th.min, th.max)):  # never a pass by NaN
            failures.append(f"{key}: its threshold is not a finite number")
            continue
        baseline = known[key].baseline_text(metrics) if key in known else None
        said = f" ({baseline})" if baseline else ""
        if th.min is not None and value < th.min:
            failures.append(f"{key}: {value:.4f} < min {th.min}{said}")
        if th.max is not None and value > th.max:
            failures.append(f"{key}: {value:.4f} > max {th.max}{said}")
    return not failures, failures


def judge(metrics: dict[str, object], thresholds: dict) -> dict[str, object]:
    """``metrics`` with the gate's verdict added (``gate.passed``, ``gate.failures``): the one
    verdict the report, the data card, the flow and publish show."""
    passed, failures = evaluate_gate(metrics, thresholds)
    return {**metrics, "gate.passed": passed, "gate.failures": failures}
