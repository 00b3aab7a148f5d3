"""The reversible per-column transform between a table and the model's numeric space.

* Numeric columns (continuous, integer, datetime) go through their empirical quantile function to a
  standard normal, scaled into (-1, 1) for a tanh output. Ties (a spike such as the zeros of
  ``capital-gain``) are spread uniformly over their probability interval, so the model sees a smooth
  marginal, and every value inside that interval maps back to the tied value exactly. This is a
  "mode-specific" normalisation without fitting mixtures: one sort per column, no EM. A column with
  fewer values than knots takes its sorted values as knots, so a value seen once is not a flat
  stretch that the inverse snaps synthetic values onto. A continuous column's synthetic values are
  rounded to the decimals its real values are written with (``decimals``).
* Missing numeric values add a two-way (present, missing) one-hot block.
* Categorical and boolean columns are one-hot, with missing as its own category. Beyond
  ``max_categories`` the rarest share one "other" slot, resolved back to one of those rare values
  in proportion to their counts, so generated categories only take values seen in the source.

The fitted state is plain JSON (no pickles): :meth:`state` / :meth:`from_state`. It also records
what value protection (``pipeline.protection``) reads at generate, so that generate reads no real
rows: the rows fitted on, each category's training count, and each numeric column's ``TAIL_ROWS``
lowest and highest training values (as value, count runs). A state saved before these has none
of them; it decodes as before.

With ``privacy`` (``train.privacy.epsilon`` set) every statistic is a differentially private
estimate instead (``pipeline.models.private_stats``): the state then records ``private`` (what was
spent) and each numeric column's ``clip`` bounds, and no tails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from pipeline.models.private_stats import Privacy, fit_columns
from pipeline.schema import (
    DISCRETE_KINDS,
    NUMERIC_KINDS,
    TableSchema,
    datetime_ns,
    nullable_dtype,
)

NORMAL_SCALE = 5.0  # z-scores are divided by this before tanh; ndtri(1e-6) = -4.75
_P_EPS = 1e-6
# A continuous column written with at most this many decimals gets its synthetic values rounded to
# them; one that needs more (measurements at full float precision) keeps them: rounding those to a
# fixed number of places would flatten its small values.
MAX_DECIMALS = 6
# A numeric column's lowest and highest training values recorded for value protection: enough for
# any k it uses (its default rule reaches this only at 10^8 rows), as mostlyai-engine keeps 1000.
TAIL_ROWS = 1000


@dataclass(frozen=True)
class Span:
    """A slice of the model's output: ``tanh`` (one scalar) or ``softmax`` (a one-hot block).

    ``role``: ``value`` (a numeric column's scalar), ``missing`` (its present/missing block) or
    ``category`` (a categorical or boolean column's one-hot block).
    """

    column: str
    start: int
    width: int
    activation: str
    role: str = "value"


def json_value(v: Any) -> Any:
    """``v`` as JSON holds it: NumPy scalars as Python ones (how categories are stored and looked up)."""
    if isinstance(v, (np.generic,)):
        return v.item()
    return v


def _runs(x: np.ndarray) -> list[list]:
    """``x`` (sorted) as [value, count] runs in its order: a spike of equal values is one pair."""
    values, counts = np.unique(x, return_counts=True)
    if len(x) > 1 and x[0] > x[-1]:
        values, counts = values[::-1], counts[::-1]
    return [[v, int(c)] for v, c in zip(values.tolist(), counts)]


def decimals(x: np.ndarray, dtype: str) -> int | None:
    """The fewest decimals (0 .. ``MAX_DECIMALS``) that write every value of ``x`` (finite floats,
    held as ``dtype``) exactly, or None when no such number does: the precision of a money column
    (2) or of whole numbers in a float column (0)."""
    eps = 4 * np.finfo(np.float32 if "32" in dtype or "16" in dtype else np.float64).eps
    for d in range(MAX_DECIMALS + 1):
        scaled = x * 10.0**d  # a float written with d decimals is an integer here, to its precision
        if np.all(np.abs(scaled - np.rint(scaled)) <= eps * np.maximum(np.abs(scaled), 1.0)):
            return d
    return None


class TableTransformer:
    def __init__(self, schema: TableSchema, knots: int = 1001, max_categories: int = 500):
        self.schema = schema
        self.n_knots = knots
        self.max_categories = max_categories
        self.columns: list[dict[str, Any]] = []
        self.rows: int | None = None  # rows fitted on (None: a state saved before it was kept)
        self.private: dict[str, Any] | None = None  # what a private fit spent (None: an exact fit)

    # -- fitting -----------------------------------------------------------------------------

    def fit(self, df: pd.DataFrame, privacy: Privacy | None = None) -> "TableTransformer":
        """Fit to ``df``: its exact statistics, or with ``privacy`` private estimates of them."""
        self.columns, self.rows = [], len(df)
        if privacy is not None:
            self.columns, self.private = fit_columns(self.schema, df, self.n_knots, self.max_categories, privacy)
            self._build_spans()
            return self
        for col in self.schema.modeled:
            s = df[col.name]
            if col.kind in NUMERIC_KINDS:
                x = self._to_float(s, col.kind)
                finite = np.sort(x[~np.isnan(x)])
                levels = np.linspace(0.0, 1.0, self.n_knots)
                # Knots are actual data values (inverted-CDF quantiles), so spikes stay exact. With
                # fewer values than knots those quantiles would repeat every value over several knots,
                # and the inverse would snap 9 in 10 synthetic values onto a real one (a 142-row
                # table): there the knots are the values themselves, so only a value that repeats
                # keeps a flat stretch and the others are joined by straight lines.
                idx = np.minimum((levels * len(finite)).astype(np.int64), len(finite) - 1)
                knots = finite if len(finite) < self.n_knots else finite[idx]
                self.columns.append({
                    "name": col.name, "kind": col.kind, "knots": knots.tolist(),
                    "has_missing": bool(np.isnan(x).any()), "unit": col.datetime_unit,
                    # Synthetic values are rounded to the real ones' decimals (integers and dates
                    # are whole numbers of their unit already).
                    **({"decimals": decimals(finite, col.dtype)} if col.kind == "continuous" else {}),
                    # For value protection: the extremes, from each end inwards.
                    "finite_rows": len(finite), "low": _runs(finite[:TAIL_ROWS]),
                    "high": _runs(finite[::-1][:TAIL_ROWS]),
                })
            elif col.kind in DISCRETE_KINDS:
                counts = s.astype(object).where(s.notna(), None).value_counts(dropna=True)
                values = [json_value(v) for v in counts.index]
                keep, tail = values[: self.max_categories - 1], values[self.max_categories - 1:]
                tail_counts = counts.to_numpy()[self.max_categories - 1:]
                if len(values) <= self.max_categories:
                    keep, tail, tail_counts = values, [], np.array([])
                self.columns.append({
                    "name": col.name, "kind": col.kind, "categories": keep,
                    "other": tail, "other_p": (tail_counts / tail_counts.sum()).tolist() if len(tail) else [],
                    "has_missing": bool(s.isna().any()),
                    "counts": counts.tolist(),  # of categories then other: value protection's rare ones
                })
        self._build_spans()
        return self

    def _build_spans(self) -> None:
        spans, pos = [], 0
        for c in self.columns:
            if c["kind"] in NUMERIC_KINDS:
                spans.append(Span(c["name"], pos, 1, "tanh", "value"))
                pos += 1
                if c["has_missing"]:
                    spans.append(Span(c["name"], pos, 2, "softmax", "missing"))
                    pos += 2
            else:
                width = len(c["categories"]) + bool(c["other"]) + c["has_missing"]
                spans.append(Span(c["name"], pos, width, "softmax", "category"))
                pos += width
        self.spans, self.width = spans, pos

    @staticmethod
    def _to_float(s: pd.Series, kind: str) -> np.ndarray:
        if kind == "datetime":
            return datetime_ns(s)
        return s.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)

    # -- forward -----------------------------------------------------------------------------

    def transform(self, df: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
        """Rows -> model space (float32). ``rng`` spreads tied values over their interval."""
        n = len(df)
        out = np.zeros((n, self.width), dtype=np.float32)
        span_iter = iter(self.spans)
        for c in self.columns:
            s = df[c["name"]]
            if c["kind"] in NUMERIC_KINDS:
                span = next(span_iter)
                x = self._to_float(s, c["kind"])
                miss = np.isnan(x)
                if "clip" in c:  # a private fit: values beyond its bounds are clipped to them
                    x = np.clip(x, *c["clip"])
                knots = np.asarray(c["knots"])
                levels = np.linspace(0.0, 1.0, len(knots))
                p = self._quantile_level(np.where(miss, knots[0], x), knots, levels, rng)
                # A missing value's scalar is noise: it carries nothing, and keeps the marginal normal.
                p = np.where(miss, rng.random(n), p)
                p = np.clip(p, _P_EPS, 1 - _P_EPS)
                out[:, span.start] = ndtri(p) / NORMAL_SCALE
                if c["has_missing"]:
                    span = next(span_iter)
                    out[np.arange(n), span.start + miss.astype(np.int64)] = 1.0
            else:
                span = next(span_iter)
                out[np.arange(n), span.start + self._codes(s, c, self.private is not None)] = 1.0
        return out

    @staticmethod
    def _quantile_level(x: np.ndarray, knots: np.ndarray, levels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The exact inverse of ``np.interp(p, levels, knots)``: a value between two knots gets the
        linearly interpolated level; a value equal to knots ``a..b`` a uniform level in
        ``[levels[a], levels[b]]`` (every one of which maps back to it)."""
        last = len(knots) - 1
        lo = np.searchsorted(knots, x, side="left")
        hi = np.searchsorted(knots, x, side="right")
        tied = hi > lo
        a, b = np.clip(lo, 0, last), np.clip(hi - 1, 0, last)
        p_tied = levels[a] + rng.random(len(x)) * (levels[b] - levels[a])
        j0, j1 = np.clip(lo - 1, 0, last), np.clip(lo, 0, last)
        gap = knots[j1] - knots[j0]
        frac = np.divide(x - knots[j0], gap, out=np.zeros_like(x), where=gap > 0)
        p_between = levels[j0] + frac * (levels[j1] - levels[j0])
        return np.where(tied, p_tied, p_between)

    @staticmethod
    def _codes(s: pd.Series, c: dict[str, Any], private: bool = False) -> np.ndarray:
        lookup = {v: i for i, v in enumerate(c["categories"])}
        other = len(c["categories"])
        missing = other + bool(c["other"])
        if private and not c["has_missing"]:  # its noisy count missed the few there are: the most common category
            missing = 0
        vals = s.astype(object).where(s.notna(), None).to_numpy()
        return np.fromiter(
            (missing if v is None else lookup.get(json_value(v), other) for v in vals), dtype=np.int64, count=len(vals)
        )

    # -- inverse -----------------------------------------------------------------------------

    def inverse_transform(self, data: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
        """Model space -> rows with the schema's columns (IDs excluded) and dtypes."""
        cols: dict[str, pd.Series] = {}
        span_iter = iter(self.spans)
        for c in self.columns:
            dtype = self.schema[c["name"]].dtype
            if c["kind"] in NUMERIC_KINDS:
                span = next(span_iter)
                knots = np.asarray(c["knots"])
                levels = np.linspace(0.0, 1.0, len(knots))
                p = ndtr(np.clip(data[:, span.start].astype(np.float64), -0.99999, 0.99999) * NORMAL_SCALE)
                x = np.interp(p, levels, knots)
                miss = np.zeros(len(x), dtype=bool)
                if c["has_missing"]:
                    span = next(span_iter)
                    miss = data[:, span.start + 1] > data[:, span.start]
                cols[c["name"]] = self._numeric_out(x, miss, c, dtype)
            else:
                span = next(span_iter)
                code = data[:, span.start:span.start + span.width].argmax(axis=1)
                cats = list(c["categories"])
                values = np.empty(len(code), dtype=object)
                known = code < len(cats)
                values[known] = np.asarray(cats, dtype=object)[code[known]] if cats else None
                is_other = code == len(cats) if c["other"] else np.zeros(len(code), bool)
                if is_other.any():
                    values[is_other] = rng.choice(np.asarray(c["other"], dtype=object), size=int(is_other.sum()),
                                                  p=c["other_p"])
                values[~known & ~is_other] = None
                cols[c["name"]] = self._discrete_out(values, dtype)
        return pd.DataFrame(cols)

    @staticmethod
    def _numeric_out(x: np.ndarray, miss: np.ndarray, c: dict[str, Any], dtype: str) -> pd.Series:
        if c["kind"] == "datetime":
            step = pd.Timedelta(1, unit=c["unit"] or "ns").value
            s = pd.Series((np.round(x / step) * step).astype(np.int64).astype("datetime64[ns]"))
            s[miss] = pd.NaT
            if "," in dtype:  # tz-aware: values were learned in UTC
                s = s.dt.tz_localize("UTC")
            return s.astype(dtype)
        if c["kind"] == "integer":
            x = np.round(x)
        elif c.get("decimals") is not None:  # None, or a model saved before decimals were kept: as made
            x = np.round(x, c["decimals"])
        s = pd.Series(x)
        s[miss] = np.nan
        return s.astype(nullable_dtype(dtype) if miss.any() else dtype)

    @staticmethod
    def _discrete_out(values: np.ndarray, dtype: str) -> pd.Series:
        s = pd.Series(values, dtype=object)
        if dtype == "object":
            return s
        return s.astype(nullable_dtype(dtype) if s.isna().any() else dtype)

    def grid(self, column: str) -> int | None:
        """The grid of a numeric column's synthetic values: decimals for a number (0 for integers;
        None: any float) or, for a date, its unit in nanoseconds."""
        c = next(c for c in self.columns if c["name"] == column)
        if c["kind"] == "datetime":
            return int(pd.Timedelta(1, unit=c["unit"] or "ns").value)
        return 0 if c["kind"] == "integer" else c.get("decimals")

    def category_slot(self, column: str, value: Any) -> tuple[Span, int]:
        """The one-hot block of a categorical column and the slot of ``value`` in it (conditions)."""
        for c in self.columns:
            if c["name"] != column:
                continue
            if c["kind"] in NUMERIC_KINDS:
                raise ValueError(f"column '{column}' is {c['kind']}: conditions take categorical or boolean columns")
            span = next(sp for sp in self.spans if sp.column == column)
            if value is None:
                if not c["has_missing"]:
                    raise ValueError(f"column '{column}' has no missing values to condition on")
                return span, span.width - 1
            values = [str(v) for v in c["categories"]]
            if str(value) in values:
                return span, values.index(str(value))
            if str(value) in [str(v) for v in c["other"]]:
                return span, len(c["categories"])
            raise ValueError(f"column '{column}' never takes the value {value!r} in the source")
        raise ValueError(f"no modelled column '{column}'")

    # -- persistence -------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {"knots": self.n_knots, "max_categories": self.max_categories, "columns": self.columns,
                **({"rows": self.rows} if self.rows is not None else {}),
                **({"private": self.private} if self.private is not None else {})}

    @classmethod
    def from_state(cls, schema: TableSchema, state: dict[str, Any]) -> "TableTransformer":
        t = cls(schema, state["knots"], state["max_categories"])
        t.columns, t.rows, t.private = state["columns"], state.get("rows"), state.get("private")
        t._build_spans()
        return t
