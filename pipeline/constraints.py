"""Inequality constraints between two columns (``ship_date >= order_date``), declared in params
(``datasets.<name>.constraints``), checked against the real rows at ingest and kept in every
generated row.

A model learns such an order only approximately (a short training breaks it in almost half the
rows), and a row that breaks it is both wrong and easy to detect. Ingest records the constraints in
the schema once both columns are numbers, or both dates, and the real rows keep them (all but
``MAX_BROKEN_SHARE``, so that a reversed comparison is caught). Sampling rejects the rows that
break one and draws again, as it does for rows that miss a condition; after ``REDRAWS`` draws it
repairs the rows still drawn broken (``repair``) instead, so every row keeps every constraint
without a loop that a model which always breaks one could not end. A row with either value missing
keeps a constraint, as an SQL ``CHECK`` does.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
_FORM = re.compile(r"^\s*(\S.*?)\s*(>=|<=|>|<)\s*(\S.*?)\s*$")
MAX_BROKEN_SHARE = 0.01  # of the real rows (with both values) that may break a declared constraint
REDRAWS = 5  # draws of a shard's rows in which broken rows are drawn again; later ones are repaired
NUMBER_KINDS = ("continuous", "integer")


@dataclass(frozen=True)
class Constraint:
    """``left op right`` between two columns; ``larger`` is the side that must not be below."""

    left: str
    op: str
    right: str

    @classmethod
    def parse(cls, text: str) -> Constraint:
        """``"ship_date >= order_date"`` -> Constraint; ValueError saying the accepted form."""
        m = _FORM.match(text) if isinstance(text, str) else None
        if m is None or re.search(r"[<>=!]", m.group(1) + m.group(3)):
            raise ValueError(f"{text!r} is not 'COLUMN OP COLUMN' with OP one of >=, >, <=, < "
                             "(e.g. 'ship_date >= order_date')")
        left, op, right = m.groups()
        if left == right:
            raise ValueError(f"{text!r} compares {left} with itself")
        return cls(left, op, right)

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"

    @property
    def strict(self) -> bool:
        return self.op in (">", "<")

    @property
    def larger(self) -> str:
        return self.left if self.op in (">=", ">") else self.right

    @property
    def smaller(self) -> str:
        return self.right if self.op in (">=", ">") else self.left


def parse_all(texts: list[str]) -> list[Constraint]:
    return [Constraint.parse(t) for t in texts]


def _values(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(values, missing): dates as int64 nanoseconds in UTC (exact), numbers as float64."""
    missing = s.isna().to_numpy()
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        if getattr(s.dt, "tz", None) is not None:
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        ns = s.astype("datetime64[ns]").to_numpy().view(np.int64).copy()
        ns[missing] = 0
        return ns, missing
    return s.to_numpy(dtype=np.float64, na_value=np.nan, copy=True), missing


def broken(frame: pd.DataFrame, c: Constraint) -> np.ndarray:
    """Rows of ``frame`` that break ``c`` (both values present and out of order)."""
    (a, ma), (b, mb) = _values(frame[c.left]), _values(frame[c.right])
    return ~ma & ~mb & ~OPS[c.op](a, b)


def kept(frame: pd.DataFrame, constraints: list[Constraint]) -> np.ndarray:
    """Rows of ``frame`` that keep every constraint."""
    ok = np.ones(len(frame), dtype=bool)
    for c in constraints:
        ok &= ~broken(frame, c)
    return ok


def check(frame: pd.DataFrame, constraints: list[Constraint], kinds: dict[str, str], key: str
          ) -> tuple[str, str] | None:
    """The first problem with ``constraints`` for these real rows, as (column, one line), or None
    when each compares two columns of the data of one family (numbers, or dates) that the rows
    keep. ``kinds``: column -> kind; ``key``: the params key the line names."""
    for c in constraints:
        for name in (c.left, c.right):
            if name not in kinds:
                return name, f"{key}: '{c}' names a column the data does not have (columns: {', '.join(kinds)})"
            if kinds[name] not in (*NUMBER_KINDS, "datetime"):
                what = "an ID (not learned)" if kinds[name] == "id" else kinds[name]
                return name, (f"{key}: '{c}': the column is {what}; a constraint compares two numeric columns "
                              "or two datetime columns")
        if (kinds[c.left] == "datetime") != (kinds[c.right] == "datetime"):
            return c.right, (f"{key}: '{c}' compares {c.left} ({kinds[c.left]}) with {c.right} "
                             f"({kinds[c.right]}); a constraint compares two numeric columns or two datetime columns")
        bad = int(broken(frame, c).sum())
        both = int((frame[c.left].notna() & frame[c.right].notna()).sum())
        if bad > MAX_BROKEN_SHARE * both:
            flipped = {">=": "<=", ">": "<", "<=": ">=", "<": ">"}[c.op]
            # The comparison the rows do keep, if one does (written the wrong way round, or strict
            # where the rows have equal values).
            keeps = [f"{c.left} {op} {c.right}" for op in dict.fromkeys((flipped, flipped[0] + "=", c.op[0] + "="))
                     if broken(frame, Constraint(c.left, op, c.right)).sum() <= MAX_BROKEN_SHARE * both]
            return c.left, (f"{key}: '{c}' is broken by {bad:,} of the {both:,} real rows that have both values "
                            f"({bad / both:.1%}; at most {MAX_BROKEN_SHARE:.0%} may break it)"
                            + (f": is it '{keeps[0]}'?" if keeps else ""))
    return None


# ---------------------------------------------------------------------------------------------
# Repair


def _up(x: np.ndarray, grid: int | None, date: bool, strict: bool) -> np.ndarray:
    """The least value on the column's grid that is >= x (> x when ``strict``): ``grid`` is the
    decimals of a number (None: any float) or the unit of a date in nanoseconds."""
    if date:
        return (x // grid + 1) * grid if strict else -((-x) // grid) * grid
    if grid is None:
        return np.nextafter(x, np.inf) if strict else x
    scale = 10.0**grid
    s = x * scale
    tol = 1e-9 * np.maximum(np.abs(s), 1.0)  # a value on the grid is an integer here, to float error
    return (np.floor(s + tol) + 1 if strict else np.ceil(s - tol)) / scale


def _down(x: np.ndarray, grid: int | None, date: bool, strict: bool) -> np.ndarray:
    """The greatest value on the column's grid that is <= x (< x when ``strict``)."""
    return -_up(-x, grid, date, strict)


def repair(frame: pd.DataFrame, constraints: list[Constraint], grids: dict[str, int | None],
           frozen: set[str] = frozenset()) -> np.ndarray:
    """Set the rows of ``frame`` that break a constraint so that they keep it, in place; returns
    which rows changed. First the two values are swapped (the row keeps the values the model made,
    so the columns' distributions barely move); what still breaks it (equal values under ``>``, a
    chain of constraints) has its larger side raised to the smaller one (one grid step above it for
    ``>``). Values stay on each column's grid (``grids``: ``TableTransformer.grid``). A column in
    ``frozen`` (one in a value link) is not changed: the other side moves, and a row where both are
    frozen is left broken (the sampler draws it again)."""
    names = list(dict.fromkeys(n for c in constraints for n in (c.left, c.right)))
    values = {n: _values(frame[n]) for n in names}
    date = {n: values[n][0].dtype == np.int64 for n in names}
    changed = np.zeros(len(frame), dtype=bool)
    touched: set[str] = set()

    def bad(c: Constraint) -> np.ndarray:
        (a, ma), (b, mb) = values[c.left], values[c.right]
        return ~ma & ~mb & ~OPS[c.op](a, b)

    for c in constraints:  # swap: order the pair
        big, small = c.larger, c.smaller
        rows = bad(c)
        if big in frozen or small in frozen or not rows.any():
            continue
        vb, vs = values[big][0], values[small][0]
        hi, lo = np.maximum(vb[rows], vs[rows]), np.minimum(vb[rows], vs[rows])
        vb[rows], vs[rows] = _up(hi, grids[big], date[big], False), _down(lo, grids[small], date[small], False)
        changed |= rows
        touched |= {big, small}
    for _ in range(len(constraints) + 1):  # raise: each pass moves values one way, so chains settle
        for c in constraints:
            rows = bad(c)
            if not rows.any():
                continue
            big, small = c.larger, c.smaller
            vb, vs = values[big][0], values[small][0]
            if big not in frozen:
                vb[rows] = _up(vs[rows], grids[big], date[big], c.strict)
                touched.add(big)
            elif small not in frozen:
                vs[rows] = _down(vb[rows], grids[small], date[small], c.strict)
                touched.add(small)
            else:
                continue
            changed |= rows
    for name in touched:
        frame[name] = _series(values[name][0], values[name][1], frame[name])
    return changed


def _series(v: np.ndarray, missing: np.ndarray, like: pd.Series) -> pd.Series:
    """Values from ``_values`` back in the dtype (and time zone) of ``like``."""
    if v.dtype == np.int64:
        s = pd.Series(v.view("datetime64[ns]"), index=like.index)
        s[missing] = pd.NaT
        tz = getattr(like.dt, "tz", None)
        return (s.dt.tz_localize("UTC").dt.tz_convert(tz) if tz is not None else s).astype(like.dtype)
    s = pd.Series(v, index=like.index)
    s[missing] = np.nan
    return s.astype(like.dtype)
