"""Value protection: rare categories and extreme values of the training rows are not released as they are.

A category that few training rows have, or a number beyond all but a few of them (the one
millionaire's income, the one 97-year-old), identifies the person it came from, and a generative
model can reproduce it. So, as MOSTLY AI's engine does by default, generated rows go through a
rule of ``k``: a category seen in fewer than ``k`` training rows is *protected*: replaced by the
marker ``_RARE_`` where the column holds text, else (integer-coded or boolean categories) redrawn
from the other categories in proportion to their training counts; a number (continuous, integer,
datetime) below the ``k``-th smallest or above the ``k``-th largest training value is clipped to
it, so every value released has at least ``k`` training rows at or beyond it. IDs are fresh
already (``pipeline.ids``); missing values are no one's.

A column where nothing is common enough (every category rare, or fewer than ``2k`` numbers: no cut
leaves ``k`` rows on each side) is *withheld*: its values become the marker, or missing where the
column cannot hold the marker. Releasing it as made would release exactly the values this rule
exists for.

The training statistics come from the fitted transformer (``pipeline.models.transformer``), which
records them at fit time, so generate reads no real rows for this. Sampling applies the rule to
every draw, before conditions, constraints and the training-copy check see the rows
(``pipeline.sampling``), and counts per column the rows it changed (summed over shards: the same
whatever the worker count).

A differentially private model (``train.privacy.epsilon``) recorded no extremes: its numbers come
only from its private knots, inside private bounds, so they are not clipped here (``skipped`` in
the record says so); its categories' counts are noisy ones, every listed category passed a noisy
threshold, and the rule of ``k`` applies to those counts (post-processing, which DP allows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import ConditionError, ConfigError
from pipeline.models.transformer import TAIL_ROWS, TableTransformer, json_value
from pipeline.schema import NUMERIC_KINDS

MARKER = "_RARE_"  # MOSTLY AI's token for a protected category
MIN_K = 5
# What each row of a column can have had done to it (the marks ``apply`` returns), by stats key.
REPLACED, CLIPPED_LOW, CLIPPED_HIGH = 1, 2, 3
_COUNTED = {REPLACED: "replaced", CLIPPED_LOW: "clipped_low", CLIPPED_HIGH: "clipped_high"}
_STATS = "value_protection"  # prefix of its keys in the shard stats: value_protection:<what>:<column>


def default_k(rows: int) -> int:
    """The default ``k`` for ``rows`` training rows: ``max(5, ceil(sqrt(rows) / 10))``.

    Why: 5 is the base threshold of mostlyai-engine (which draws it from [5, 8) to hide it) and the
    usual k of k-anonymity: fewer than 5 people sharing a value is a group one can single out. It
    grows with the square root of the rows because a bigger table's tails are longer: the 5th
    largest income of a million rows is still one person far from the 6th, so the count behind the
    clip point has to grow with the table, while the share of rows it may clip, under ``k / rows =
    1 / (10 sqrt(rows))``, still shrinks (Adult's 32,561 training rows: k = 19, 0.06% per side;
    a million rows: k = 100, 0.01%), so the body of every distribution is untouched at any size.
    Capped at ``TAIL_ROWS``, the extremes a model records (reached at 10^8 rows)."""
    return min(TAIL_ROWS, max(MIN_K, math.ceil(math.sqrt(rows) / 10)))


@dataclass(frozen=True)
class Rule:
    """What protection does to one column. ``action``: ``clip`` (numbers to ``[low, high]``),
    ``marker`` or ``redraw`` (the ``rare`` categories), ``withhold`` (every value)."""

    column: str
    action: str
    kind: str = "categorical"  # the column's kind (clip: continuous, integer or datetime)
    rare: frozenset = frozenset()  # the protected categories (as the transformer keeps them)
    keep: tuple = ()  # redraw: the categories drawn instead, with their training shares ``p``
    p: tuple = ()
    low: Any = None  # clip: the bounds, as the column's dtype holds them
    high: Any = None
    low_float: float = -np.inf  # ... and as the transformer's floats (dates in nanoseconds)
    high_float: float = np.inf
    use_marker: bool = False  # withhold: the marker (text), else missing

    def describe(self) -> dict:
        """The rule as ``_generated.json`` records it (never the protected values themselves)."""
        if self.action == "clip":
            return {"action": "clip", "range": [_plain(self.low), _plain(self.high)]}
        out = {"action": self.action}
        if self.rare:
            out["categories"] = len(self.rare)
        if self.action == "withhold":
            out["as"] = MARKER if self.use_marker else "missing"
        return out


def _plain(v: Any) -> Any:
    """A bound as JSON holds it: a date as ISO text, a number as a Python number."""
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return v.item() if isinstance(v, np.generic) else v


def _kth(runs: list[list], k: int) -> float | None:
    """The ``k``-th value of [value, count] runs (from one end inwards); None if they hold fewer."""
    counts = np.cumsum([c for _, c in runs]) if runs else np.zeros(0)
    i = int(np.searchsorted(counts, k))
    return runs[i][0] if i < len(runs) else None


def _scalar(transformer: TableTransformer, c: dict, x: float) -> Any:
    """A training value ``x`` (a float) as the column's dtype holds it."""
    dtype = transformer.schema[c["name"]].dtype
    return transformer._numeric_out(np.array([x]), np.array([False]), c, dtype).iloc[0]


@dataclass(frozen=True)
class Protection:
    """The rules for one model at one ``k``: ``apply`` them to drawn rows, ``count`` their marks."""

    k: int
    rows: int  # training rows the counts are of
    k_set: bool  # k given by generate.value_protection_k (else default_k(rows))
    rules: tuple[Rule, ...]
    skipped: tuple[str, ...] = ()  # columns a private model recorded no extremes of (not clipped)

    def apply(self, frame: pd.DataFrame, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
        """``frame`` protected (in place), and what was done to each row of each rule's column: an
        int8 array [rows, rules] of 0 (nothing), ``REPLACED``, ``CLIPPED_LOW``, ``CLIPPED_HIGH``.
        ``rng`` draws the redrawn categories."""
        marks = np.zeros((len(frame), len(self.rules)), dtype=np.int8)
        for j, rule in enumerate(self.rules):
            s = frame[rule.column]
            if rule.action == "clip":
                x = TableTransformer._to_float(s, rule.kind)
                low, high = x < rule.low_float, x > rule.high_float  # missing values compare False
                frame[rule.column] = s.mask(low, rule.low).mask(high, rule.high)
                marks[low, j], marks[high, j] = CLIPPED_LOW, CLIPPED_HIGH
                continue
            hit = s.notna().to_numpy() if rule.action == "withhold" else _is_rare(s, rule.rare)
            marks[hit, j] = REPLACED
            if not hit.any():
                continue
            values = s.astype(object).to_numpy(copy=True)
            if rule.action == "redraw":
                values[hit] = np.asarray(rule.keep, dtype=object)[rng.choice(len(rule.keep), int(hit.sum()),
                                                                              p=rule.p)]
            else:
                values[hit] = MARKER if rule.action == "marker" or rule.use_marker else None
            frame[rule.column] = TableTransformer._discrete_out(values, str(s.dtype)).set_axis(s.index)
        return frame, marks

    def count(self, marks: np.ndarray, stats: dict[str, int]) -> None:
        """Add the rows ``marks`` says were changed, per column and what, to ``stats`` (shard stats
        are summed, so the totals do not depend on how the rows were split into shards)."""
        for j, rule in enumerate(self.rules):
            for code, what in _COUNTED.items():
                n = int((marks[:, j] == code).sum())
                if n:
                    key = f"{_STATS}:{what}:{rule.column}"
                    stats[key] = stats.get(key, 0) + n
        changed = int((marks > 0).any(axis=1).sum())
        if changed:
            stats[f"{_STATS}:rows"] = stats.get(f"{_STATS}:rows", 0) + changed

    def check_condition(self, column: str, value: Any) -> None:
        """Refuse (ConditionError) a condition on a value this protection never releases."""
        rule = next((r for r in self.rules if r.column == column and r.kind not in NUMERIC_KINDS), None)
        if rule is None or value is None:
            return
        if rule.action == "withhold" or str(value) in {str(v) for v in rule.rare}:  # as category_slot compares
            raise ConditionError(f"condition on '{column}': {value!r} is in fewer than k={self.k} training rows, so "
                                 "generate.value_protection never releases it; condition on a more common value, or "
                                 "set generate.value_protection=false")

    def record(self, stats: dict[str, int]) -> dict:
        """What ``_generated.json`` says: k and why, each protected column's rule and rows changed."""
        columns = {}
        for rule in self.rules:
            counts = {what: stats.get(f"{_STATS}:{what}:{rule.column}", 0) for what in _COUNTED.values()}
            shown = ("clipped_low", "clipped_high") if rule.action == "clip" else ("replaced",)
            columns[rule.column] = {**rule.describe(), **{what: counts[what] for what in shown}}
        return {"enabled": True, "k": self.k,
                "k_from": "generate.value_protection_k" if self.k_set else
                f"max(5, ceil(sqrt({self.rows:,} training rows) / 10))",
                "training_rows": self.rows, "rows_changed": stats.get(f"{_STATS}:rows", 0), "columns": columns,
                **({"skipped": {name: "differentially private model: no exact extremes recorded; its values lie "
                                      "within its private bounds" for name in self.skipped}} if self.skipped else {})}


def _is_rare(s: pd.Series, rare: frozenset) -> np.ndarray:
    """Which values of ``s`` are in ``rare`` (looked up once per distinct value)."""
    codes, uniques = pd.factorize(s.astype(object), use_na_sentinel=True)
    if not len(uniques):
        return np.zeros(len(s), dtype=bool)
    found = np.array([json_value(v) in rare for v in uniques], dtype=bool)
    return (codes >= 0) & found[np.maximum(codes, 0)]


def protection_for(transformer: TableTransformer, k: int | None = None) -> Protection:
    """The protection of a fitted transformer's columns at ``k`` (None: ``default_k`` of the rows it
    was fitted on). A model saved before the transformer kept its training counts cannot be
    protected: one line (ConfigError) says so and what to do."""
    private = transformer.private is not None
    missing = transformer.rows is None or any(
        ("low" not in c and not private) if c["kind"] in NUMERIC_KINDS else ("counts" not in c)
        for c in transformer.columns)
    if missing:
        raise ConfigError("generate.value_protection: this model was trained before it recorded the training counts "
                          "that value protection needs; retrain it, or set generate.value_protection=false")
    rows = transformer.rows
    given = k is not None
    k = k if given else default_k(rows)
    rules, skipped = [], []
    for c in transformer.columns:
        if private and c["kind"] in NUMERIC_KINDS:
            skipped.append(c["name"])
            continue
        rule = (_numeric_rule if c["kind"] in NUMERIC_KINDS else _category_rule)(transformer, c, k)
        if rule is not None:
            rules.append(rule)
    return Protection(k, rows, given, tuple(rules), tuple(skipped))


def _numeric_rule(transformer: TableTransformer, c: dict, k: int) -> Rule | None:
    n = c["finite_rows"]
    if n == 0:
        return None
    if n < 2 * k:  # no cut leaves k rows on each side
        return Rule(c["name"], "withhold", kind=c["kind"])
    low, high = _kth(c["low"], k), _kth(c["high"], k)
    if low is None or high is None:  # only when k > TAIL_ROWS, the extremes the model recorded
        raise ConfigError(f"generate.value_protection_k {k} is more than the {TAIL_ROWS} lowest and highest values a "
                          f"model records of column '{c['name']}'; lower generate.value_protection_k")
    return Rule(c["name"], "clip", kind=c["kind"], low=_scalar(transformer, c, low), high=_scalar(transformer, c, high),
                low_float=low, high_float=high)


def _category_rule(transformer: TableTransformer, c: dict, k: int) -> Rule | None:
    values = list(c["categories"]) + list(c["other"])
    counts = np.asarray(c["counts"], dtype=np.int64)
    if transformer.private is not None and c["kind"] != "boolean":  # the last: the values never listed, no one's
        values, counts = values[:-1], counts[:-1]
    rare = counts < k
    if not rare.any():
        return None
    text = transformer.schema[c["name"]].dtype == "object" and all(isinstance(v, str) for v in values)
    protected = frozenset(v for v, r in zip(values, rare) if r)
    if rare.all():
        return Rule(c["name"], "withhold", c["kind"], protected, use_marker=text)
    if text:
        return Rule(c["name"], "marker", c["kind"], protected)
    kept = counts[~rare]
    return Rule(c["name"], "redraw", c["kind"], protected, keep=tuple(v for v, r in zip(values, rare) if not r),
                p=tuple((kept / kept.sum()).tolist()))
