"""Metrics over (real, synthetic) tables, and the quality gate over their results.

Keys are stable dotted names (``quality.overall``). A metric family (one module of FAMILIES)
registers a suite: its compute function with the metrics it reports, each with its goal (maximise
or minimise), bounds, description and whether it is a headline, so the score stage, thresholds and
reports read them the same way. The gate is judged here, once (``judge``).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal


@dataclass(frozen=True)
class MetricInfo:
    key: str
    goal: Literal["maximize", "minimize"]
    lower: float
    upper: float
    description: str
    headline: bool = False  # in the score stage's log line and at the top of summaries


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


SUITES: dict[str, Suite] = {}
# The modules whose suites the score stage runs, in this order (the metrics file keeps it).
FAMILIES = ("fidelity", "coverage", "detection", "utility", "privacy", "image")


def metric(key: str, goal: str, lower: float, upper: float, description: str, headline: bool = False) -> MetricInfo:
    return MetricInfo(key, goal, lower, upper, description, headline)  # type: ignore[arg-type]


def register_suite(name: str, modality: str, metrics: list[MetricInfo]) -> Callable:
    """Register ``compute(evidence) -> SuiteResult`` as the metric family ``name`` of ``modality``
    (``table`` or ``image``), with the metrics it may report. The score stage runs every suite of
    the dataset's modality; the gate, the report and the data card read the metrics' goals, bounds
    and descriptions from here. A metric family is one module (see FAMILIES)."""

    def add(compute: Callable[[Any], SuiteResult]) -> Callable[[Any], SuiteResult]:
        SUITES[name] = Suite(name, modality, compute, tuple(metrics))
        return compute

    return add


def load_families() -> None:
    """Import every metric family module (each registers its suite on import)."""
    for family in FAMILIES:
        importlib.import_module(f"pipeline.metrics.{family}")


def _ordered() -> list[Suite]:
    """Every suite in FAMILIES order (then any registered elsewhere, in the order they were),
    whatever order the modules happened to be imported in."""
    load_families()
    rank = {name: i for i, name in enumerate(FAMILIES)}
    return sorted(SUITES.values(), key=lambda s: rank.get(s.name, len(rank)))


def known_metrics() -> dict[str, MetricInfo]:
    """Every registered metric by key, suite by suite."""
    return {info.key: info for suite in _ordered() for info in suite.metrics}


def suites_for(modality: str) -> list[Suite]:
    return [s for s in _ordered() if s.modality == modality]


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
    unless its suite said it could not be judged here (``gate.not_judged``, with the reason)."""
    failures = []
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
        if th.min is not None and value < th.min:
            failures.append(f"{key}: {value:.4f} < min {th.min}")
        if th.max is not None and value > th.max:
            failures.append(f"{key}: {value:.4f} > max {th.max}")
    return not failures, failures


def judge(metrics: dict[str, object], thresholds: dict) -> dict[str, object]:
    """``metrics`` with the gate's verdict added (``gate.passed``, ``gate.failures``): the one
    verdict the report, the data card, the flow and publish show."""
    passed, failures = evaluate_gate(metrics, thresholds)
    return {**metrics, "gate.passed": passed, "gate.failures": failures}
