"""The transformer's statistics as differentially private estimates (``train.privacy.epsilon`` set).

Every statistic of the training rows that ``TableTransformer`` keeps is a noisy count, so the
fitted state is (epsilon, delta)-DP with respect to the rows (add/remove one row; the number of rows
is public, as in Opacus and MOSTLY AI's engine). Every modelled column gets the same epsilon: the
largest for which its histograms composed are (epsilon, delta)-DP on their own, by sequential
composition or, where it is tighter, by Rényi DP (``statistics_plan``; with a dozen columns RDP's
allows each about 1.1 times sequential composition's even split, and in the run's one RDP account
with DP-SGD they cost far less than their own epsilon: ``pipeline.training.accounting``). Inside
a column each row falls in exactly one bin of a histogram (a value, or missing), so one histogram
is one Laplace mechanism of sensitivity 1, whatever its bins.
Every mechanism adds Laplace noise of scale 1 / epsilon.

* Numeric columns (continuous, integer, datetime): bounds ``datasets.<name>.bounds`` when declared,
  else estimated with half the column's epsilon from a noisy histogram over signed powers of two
  (the outer edges of the outermost buckets whose noisy count passes a threshold that an empty
  bucket passes with 1% chance in all, and at least ``MIN_BOUND_ROWS``); a side declared null
  (``[0, null]``) is estimated so, from the values clipped to the declared side. Then a noisy histogram of
  cells inside the bounds, with a missing bin: its counts clipped at zero, the knots the quantiles
  of its normalised CDF. Where a bound was estimated, the empty-looking cells at its end are
  dropped first: a power of two overshoots the range (an age of at most 90 gets 128), and the
  noise of the cells beyond would stretch the knots there. The cut stays inside the bucket that set
  the bound (its rows are there): after its outermost cell past the same kind of threshold, or,
  where none passes, where its noisy counts less half the noise's scale (an empty cell's expected
  share of noise once clipped at zero), summed from its inner edge, add up most; unless its cells
  add up to no more than their noise's spread (an empty bucket the estimate's noise passed).
  Declared bounds are the range as given, and no cell is dropped: at a small budget the threshold
  is hundreds of rows a cell, and dropping cut real tails (Adult at epsilon 3: no age above 61);
  a declared end is the first (last) knot whatever the noise of its cell.
  The cells:
  - integers and dates whose range allows one cell per value: one per value, and the knots are
    those values, repeated where one holds more than a knot's share, so a spike (hours-per-week's
    40) is spread over its levels as the exact fit spreads it;
  - else equal cells (about n x epsilon / 10 of them, 8 to ``MAX_CELLS``, so the noise of a cell
    stays near a tenth of its rows; for integers and dates none narrower than one unit), the mass
    uniform within each, so knots do not repeat; zero, when inside the range of an integer or
    continuous column, has a cell of no width of its own (a choice made without the data), so an
    amount's zeros (capital-gain) are repeated knots and spread too. Any other spike inside a cell
    is one point of the model space: where it lies in its cell the budget would have to pay for.
  Transform clips values to the bounds first, so nothing beyond them reaches the model, and the
  inverse gives only values between the first and last knot. A continuous column's synthetic
  values are not rounded (``decimals`` None): the decimals the real values are written with are a
  statistic of them.
* Missing values: the missing bin's noisy count; ``has_missing`` when it passes the known-bin
  threshold. A missing value in a column found without any is a random quantile (numbers) or the
  column's most common category.
* Categorical columns: the stability-based histogram, (epsilon, delta)-DP for an unknown domain: a
  value is listed when its noisy count passes ``1 + ln(1 / (2 delta)) / epsilon``. The rarest beyond
  ``max_categories - 1`` share the "other" slot by noisy counts; the values never listed are one
  more entry of it: the marker ``_RARE_`` where the column holds text, else missing. A boolean's
  domain is known: both values are listed, no threshold; so is a domain the user declares
  (``datasets.<name>.categories``, public knowledge such as a list of country codes): each of its
  values gets a noisy count (pure epsilon-DP, every row in one bin) and all are listed, however
  rare, and values outside it share the other slot.
* Value protection's tails (``low``/``high``, ``finite_rows``) are not recorded; category counts are
  the noisy ones.

The noise comes from numpy's ``Generator`` seeded by the run's secret noise seed
(``pipeline.training.private.secret_seed``: drawn from the operating system's secure source, kept
in the work folder, never released), not by the published ``seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import ConfigError
from pipeline.schema import DISCRETE_KINDS, NUMERIC_KINDS, ColumnSchema, TableSchema, datetime_ns

MECHANISM = "laplace"
MARKER = "_RARE_"  # pipeline.protection's marker: a category too rare to be listed privately
MAX_CELLS = 1000  # most cells a numeric column's noisy histogram has
MIN_CELLS = 8
# A bucket sets a bound only past this noisy count too, at any budget: at a large epsilon a few rows far
# out would otherwise stretch the range to themselves (post-processing: any threshold is private).
MIN_BOUND_ROWS = 5
CUT_SCALE = 0.5  # of the noise's scale: what a cell must add on average to be kept at an estimated end (_cut)
BOUNDS_SHARE = 0.5  # of a numeric column's epsilon, when its bounds are estimated
FAILURE = 0.01  # chance that any empty bin of a known domain passes its threshold
# Powers of two the bounds are estimated over: 2^-32 .. 2^500 either side of zero (numbers are at most
# 1e150 < 2^499 in size, schema.MAX_MAGNITUDE; dates in nanoseconds about 2^61).
_MIN_EXP, _MAX_EXP = -32, 500


@dataclass(frozen=True)
class Privacy:
    """What the private fit spends and knows: the preprocessing part of the budget
    (``pipeline.training.private.Budget``), the run's secret noise seed, the declared bounds
    (``datasets.<name>.bounds``: column -> [low, high], dates as ISO text) and the declared
    categories (``datasets.<name>.categories``: column -> its public list of values)."""

    epsilon: float
    delta: float
    seed: int
    bounds: dict[str, Any] = field(default_factory=dict)
    dataset: str = "<name>"  # for the refusals' settings
    categories: dict[str, list] = field(default_factory=dict)


def category_threshold(epsilon: float, delta: float) -> float:
    """The noisy count a value of an unknown domain must pass to be listed: with Laplace noise of
    scale 1 / epsilon, a value one row has passes with probability delta (add/remove)."""
    return 1.0 + math.log(1.0 / (2.0 * delta)) / epsilon


def known_threshold(epsilon: float, bins: int = 1) -> float:
    """The noisy count a bin of a known domain must pass: an empty one of ``bins`` passes with
    probability at most ``FAILURE`` in all. Any threshold is private here; this one keeps noise out."""
    return math.log(bins / (2.0 * FAILURE)) / epsilon


def fit_columns(schema: TableSchema, df: pd.DataFrame, knots: int, max_categories: int,
                privacy: Privacy) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The transformer's columns fitted from private estimates, and the record of what they spent."""
    modeled = schema.modeled
    rng = np.random.default_rng([privacy.seed, 29])
    unknown = sorted(set(privacy.bounds) - {c.name for c in modeled})
    if unknown:
        raise ConfigError(f"datasets.{privacy.dataset}.bounds names '{unknown[0]}', which is not a modelled column; "
                          "remove it or fix the name")
    for name in privacy.bounds:
        if schema[name].kind not in NUMERIC_KINDS:
            raise ConfigError(f"datasets.{privacy.dataset}.bounds.{name}: the column is {schema[name].kind}; bounds "
                              "are for continuous, integer and datetime columns: remove it")
    _check_categories(schema, privacy)
    plan = statistics_plan(schema, privacy)
    eps, delta = plan.column_epsilon, plan.column_delta
    columns, how = [], {}
    for col in modeled:
        if col.kind in NUMERIC_KINDS:
            c, how[col.name] = _numeric(col, df[col.name], knots, eps, rng, privacy, len(df))
        elif col.kind in DISCRETE_KINDS:
            c = _discrete(col, df[col.name], max_categories, eps, delta, rng, privacy.dataset,
                          privacy.categories.get(col.name))
        else:
            continue
        columns.append(c)
    record = {"epsilon": privacy.epsilon, "delta": privacy.delta, "mechanism": MECHANISM, "bounds": how,
              "epsilon_per_column": eps, "delta_per_column": delta,
              "laplace_epsilons": list(plan.laplace_epsilons), "threshold_delta": plan.threshold_delta}
    if privacy.categories:  # left out unset: the record of before they existed
        record["categories"] = {name: "declared" for name in privacy.categories}
    return columns, record


@dataclass(frozen=True)
class StatisticsPlan:
    """What the private fit's histograms spend, known from the schema and the declared knowledge
    alone (before any row is read): each column's epsilon and its histograms' pure epsilons (a
    numeric column whose range is estimated has two: ``BOUNDS_SHARE`` of its epsilon for the range,
    the rest for its cells), the delta of each column whose categories a threshold lists (an
    unknown domain), and those deltas summed."""

    column_epsilon: float
    column_delta: float
    laplace_epsilons: tuple[float, ...]
    threshold_delta: float


def statistics_plan(schema: TableSchema, privacy: Privacy) -> StatisticsPlan:
    """Each column's epsilon: the largest for which the histograms, composed, are on their own
    (``privacy.epsilon``, ``privacy.delta``)-DP, by the smaller of sequential composition's epsilon
    (their pure epsilons added) and the Rényi-DP accountant's at the delta the thresholds leave
    (``pipeline.training.accounting.statistics_epsilon``): never less than sequential composition's
    even split. Half of ``privacy.delta`` is the thresholds' (split evenly over the columns: a column
    of an unknown domain uses its part), the other half at least is the conversion's."""
    from pipeline.training.accounting import statistics_epsilon

    modeled = [c for c in schema.modeled if c.kind in NUMERIC_KINDS or c.kind in DISCRETE_KINDS]
    flat, unknown = [], 0
    for col in modeled:
        if col.kind in NUMERIC_KINDS and None in _declared_ends(col, privacy):
            flat += [BOUNDS_SHARE, 1.0 - BOUNDS_SHARE]
        else:
            flat.append(1.0)
            unknown += col.kind in DISCRETE_KINDS and col.kind != "boolean" and not privacy.categories.get(col.name)
    col_delta = privacy.delta / (2.0 * max(len(schema.modeled), 1))
    threshold = unknown * col_delta
    eps = statistics_epsilon(flat, privacy.epsilon, privacy.delta - threshold)
    return StatisticsPlan(eps, col_delta, tuple(eps * w for w in flat), threshold)


def _declared_ends(col: ColumnSchema, privacy: Privacy) -> tuple[float | None, float | None]:
    """A numeric column's declared ends (``datasets.<name>.bounds``), None for each the fit estimates
    (both when the column has no entry, a side given as null)."""
    if col.name not in privacy.bounds:
        return None, None
    return declared_bounds(col, privacy.bounds[col.name], privacy.dataset)


def _check_categories(schema: TableSchema, privacy: Privacy) -> None:
    """``datasets.<name>.categories`` names modelled categorical columns, with values of their type
    (text for a text column, numbers for a number-coded one): from the schema, not the rows."""
    key = f"datasets.{privacy.dataset}.categories"
    names = {c.name for c in schema.modeled}
    for name, values in privacy.categories.items():
        if name not in names:
            raise ConfigError(f"{key} names '{name}', which is not a modelled column; remove it or fix the name")
        col = schema[name]
        if col.kind not in DISCRETE_KINDS or col.kind == "boolean":
            raise ConfigError(f"{key}.{name}: the column is {col.kind}; declared categories are for categorical "
                              "columns (a boolean's two values are known already): remove it")
        text = col.dtype == "object"
        wrong = [v for v in values if isinstance(v, str) != text or isinstance(v, bool)]
        if wrong:
            raise ConfigError(f"{key}.{name}: {wrong[0]!r} is not a value of this {'text' if text else 'number-coded'} "
                              f"column; list its values as {'text' if text else 'numbers'}")
        if len(set(map(repr, values))) < len(values):
            raise ConfigError(f"{key}.{name} lists a value twice; list each value once")


# -- numbers -----------------------------------------------------------------------------------


def _as_float(s: pd.Series, kind: str) -> np.ndarray:
    if kind == "datetime":
        return datetime_ns(s)
    return s.astype("float64").to_numpy(dtype=np.float64, na_value=np.nan)


def declared_bounds(col: ColumnSchema, value: Any, dataset: str) -> tuple[float | None, float | None]:
    """``datasets.<name>.bounds.<column>`` as floats of the transformer (dates in nanoseconds); a
    side given as null (``[0, null]``: a known low, an unknown high) is None, to be estimated."""
    key = f"datasets.{dataset}.bounds.{col.name}"

    def number(v: Any) -> float | None:
        if v is None:
            return None
        if col.kind == "datetime":  # in UTC, as the transformer learns dates
            t = pd.Timestamp(v)
            return float((t.tz_convert("UTC").tz_localize(None) if t.tz is not None else t).value)
        return float(v)

    try:
        low, high = (number(v) for v in value)
    except (TypeError, ValueError):
        what = "two dates" if col.kind == "datetime" else "two numbers"
        raise ConfigError(f"{key}: {value!r} is not [low, high] ({what}, or null for a side to estimate); write e.g. "
                          "[0, 120] or [0, null]") from None
    if low is None and high is None:
        raise ConfigError(f"{key}: {value!r} declares neither side; give at least one (e.g. [0, null]) or remove it")
    if not all(math.isfinite(v) for v in (low, high) if v is not None) or (
            low is not None and high is not None and not low < high):
        raise ConfigError(f"{key}: {value!r} needs low < high, both finite; write e.g. [0, 120]")
    return low, high


def _bucket_edges() -> np.ndarray:
    """Edges of the signed power-of-two buckets: [-2^MAX, ..., -2^MIN, 2^MIN, ..., 2^MAX], with one
    bucket around zero."""
    pos = 2.0 ** np.arange(_MIN_EXP, _MAX_EXP + 1)
    return np.concatenate([-pos[::-1], pos])


def estimate_bounds(x: np.ndarray, eps: float,
                    rng: np.random.Generator) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The outermost buckets (start, end) of a noisy histogram of the finite values ``x`` over signed
    powers of two whose noisy count passes ``known_threshold``: the lowest and the highest; the bounds
    are the first's start and the second's end. None when none passes."""
    edges = _bucket_edges()
    counts = np.bincount(np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2),
                         minlength=len(edges) - 1).astype(np.float64)
    noisy = counts + rng.laplace(0.0, 1.0 / eps, len(counts))
    passed = np.flatnonzero(noisy > max(known_threshold(eps, len(counts)), MIN_BOUND_ROWS))
    if not len(passed):
        return None
    first, last = passed[0], passed[-1]
    return (float(edges[first]), float(edges[first + 1])), (float(edges[last]), float(edges[last + 1]))


def cell_edges(low: float, high: float, kind: str, unit_ns: int, cells: int) -> np.ndarray:
    """Edges of at most ``cells`` equal cells over ``[low, high]``; for integers and dates the
    range is widened by just under half a unit each side (so a value at a bound is inside its cell,
    and a value drawn there rounds back into the bounds), and no cell is narrower than one unit."""
    if kind in ("integer", "datetime"):
        unit = 1.0 if kind == "integer" else float(unit_ns)
        cells = min(cells, int((high - low) / unit) + 1)
        low, high = low - 0.499 * unit, high + 0.499 * unit
    return np.linspace(low, high, max(cells, 1) + 1)


def _numeric(col: ColumnSchema, s: pd.Series, knots: int, eps: float, rng: np.random.Generator,
             privacy: Privacy, rows: int) -> tuple[dict[str, Any], str]:
    x = _as_float(s, col.kind)
    miss = np.isnan(x)
    low, high = _declared_ends(col, privacy)
    # Which ends are estimated: a side declared as null is, with half the column's epsilon, as a
    # column without bounds (the declared side then clips the values before the estimate).
    estimated = (low is None, high is None)
    how = {(False, False): "declared", (False, True): "low declared", (True, False): "high declared",
           (True, True): "estimated"}[estimated]  # for the record: the code below reads ``estimated``
    eps_hist = eps * (1 - BOUNDS_SHARE) if any(estimated) else eps
    if any(estimated):
        finite = x[~miss]
        finite = np.clip(finite, low if low is not None else -np.inf, high if high is not None else np.inf)
        found = estimate_bounds(finite, eps * BOUNDS_SHARE, rng)
        if found is None:
            raise ConfigError(f"column '{col.name}': too few rows for a private estimate of its range at this budget; "
                              f"declare datasets.{privacy.dataset}.bounds.{col.name}: [low, high], raise "
                              "train.privacy.epsilon or train.privacy.preprocessing_share, or drop the column")
        low_bucket, high_bucket = found
        low = low_bucket[0] if low is None else low
        high = high_bucket[1] if high is None else high
        if not low < high:  # a declared side beyond the estimated other: the range is the declared value's unit
            low, high = (low, low + max(abs(low), 1.0)) if estimated[1] else (high - max(abs(high), 1.0), high)
    unit_ns = int(pd.Timedelta(1, unit=col.datetime_unit or "ns").value) if col.kind == "datetime" else 1
    # Fewer cells at a small budget: the noise of a cell (about 1 / epsilon rows) stays near a tenth of its rows.
    cells = int(np.clip(rows * eps_hist / 10.0, MIN_CELLS, MAX_CELLS))
    unit = {"integer": 1.0, "datetime": float(unit_ns)}.get(col.kind)
    # Integers and dates whose range the budget can give one cell per value (within twice the cells):
    # each cell holds one value, and the knots are those values, repeated where one holds more than a
    # knot's share, so a spike (hours-per-week's 40) is spread over its levels as the exact fit does.
    points = None
    if unit is not None and (high - low) / unit + 1 <= 2 * cells:
        points = np.arange(math.ceil(low / unit), math.floor(high / unit) + 1) * unit
        edges = np.append(points - unit / 2, points[-1] + unit / 2)
    else:
        edges = cell_edges(low, high, col.kind, unit_ns, cells)
    zero = None  # the index of zero's own cell, when it has one
    if points is None and col.kind != "datetime" and edges[0] <= 0 <= edges[-1]:
        # Zero gets a cell of its own, of no width (a choice made without the data): the zeros of an
        # amount (capital-gain) are then knots, repeated, and spread over their levels as ties.
        zero = int((edges < 0).sum())
        edges = np.concatenate([edges[edges < 0], [0.0, 0.0], edges[edges > 0]])
    clipped = np.clip(x[~miss], edges[0], edges[-1])
    cell = np.clip(np.searchsorted(edges, clipped, side="right") - 1, 0, len(edges) - 2)
    if zero is not None:
        cell[clipped == 0] = zero
    counts = np.append(np.bincount(cell, minlength=len(edges) - 1), miss.sum()).astype(np.float64)
    noisy = counts + rng.laplace(0.0, 1.0 / eps_hist, len(counts))  # one histogram: each row in one bin
    present, missing = np.maximum(noisy[:-1], 0.0), float(noisy[-1])
    # Estimated bounds: the knots span the cells up to the outermost that passes the known-bin
    # threshold (the noise of the empty cells between the range and its power of two would otherwise
    # stretch them there), cut inside the bucket that set the end (``_cut``). Declared ones: every
    # cell, the range as the user gave it.
    if any(estimated):  # only at an estimated end
        passed, cells_noisy = present > known_threshold(eps_hist, len(present)), noisy[:-1]
        if estimated[0]:
            present[:_cut(cells_noisy, passed, edges[1:] <= low_bucket[1], 1.0 / eps_hist, low=True)] = 0.0
        if estimated[1]:
            present[_cut(cells_noisy, passed, edges[:-1] >= high_bucket[0], 1.0 / eps_hist, low=False) + 1:] = 0.0
    clip = [float(edges[0]), float(edges[-1])] if points is None else [float(points[0]), float(points[-1])]
    q = quantile_knots(edges, present, knots) if points is None else value_knots(points, present, knots)
    # A declared end is the first (last) knot: the range is the user's, and whether the rarest values
    # at it come out should not turn on the noise of its cell (Adult's education-num 1, 51 rows).
    if not estimated[0]:
        q[0] = clip[0]
    if not estimated[1]:
        q[-1] = clip[1]
    return {
        "name": col.name, "kind": col.kind,
        "knots": q.tolist(),
        "has_missing": missing > known_threshold(eps_hist), "unit": col.datetime_unit,
        **({"decimals": None} if col.kind == "continuous" else {}),
        "clip": clip,  # what transform clips a real value to first
    }, how


def _cut(noisy: np.ndarray, passed: np.ndarray, bucket: np.ndarray, noise: float, low: bool) -> int:
    """The first (``low``) or last cell a histogram keeps at an estimated end (``noisy``: the cells'
    noisy counts, Laplace of scale ``noise``; ``passed``: which pass a cell's threshold; ``bucket``:
    which lie in the power of two that set the end). Inside that bucket, its outermost passing
    cell; where none passes, the cell at which the bucket's noisy counts less ``CUT_SCALE`` x
    ``noise`` each (what an empty cell adds on average once clipped at zero), summed from its inner
    edge outwards, are largest: beyond the rows that sum falls on average, so it stops near them.
    Unless the bucket's cells add up to no more than their noise's spread (an empty bucket whose
    noise passed the bounds' threshold, that estimate's 1 % failure): then, as for a range without
    such a bucket, the outermost passing cell, or every cell when none passes. Post-processing only.
    Cutting at the outermost passing cell anywhere made Adult's capital-loss all zeros at epsilon 3:
    its 1,212 rows in 1,024-2,048 set the end, spread over ten cells of 64 none of which passed."""
    cells = np.flatnonzero(bucket)
    inside = cells[passed[cells]]
    if len(inside):
        return int(inside[0] if low else inside[-1])
    if len(cells) and noisy[cells].sum() > noise * math.sqrt(2.0 * len(cells)):
        order = cells[::-1] if low else cells  # from the bucket's inner edge outwards
        return int(order[int(np.argmax(np.cumsum(noisy[order] - CUT_SCALE * noise)))])
    anywhere = np.flatnonzero(passed)
    if len(anywhere):
        return int(anywhere[0] if low else anywhere[-1])
    return 0 if low else len(noisy) - 1


def quantile_knots(edges: np.ndarray, weights: np.ndarray, knots: int) -> np.ndarray:
    """``knots`` quantiles (levels 0 .. 1) of the distribution with ``weights`` on the cells between
    ``edges``, uniform within each cell (a piecewise-linear CDF). Monotone; a knot repeats only in a
    cell of no width (an atom: zero's own cell) holding more than a knot's share; an empty cell is
    jumped over. Uniform when every weight is 0."""
    if not weights.sum() > 0:
        weights = np.ones_like(weights)
    cdf = np.concatenate([[0.0], np.cumsum(weights)])
    cdf /= cdf[-1]
    w = np.diff(cdf)
    levels = np.linspace(0.0, 1.0, knots)
    j = np.clip(np.searchsorted(cdf[1:], levels, side="left"), 0, len(w) - 1)  # the cell each level falls in
    j[0] = int(np.flatnonzero(w > 0)[0])  # level 0: where the first cell with weight starts
    frac = np.clip(np.divide(levels - cdf[j], w[j], out=np.zeros_like(levels), where=w[j] > 0), 0.0, 1.0)
    return np.maximum.accumulate(edges[j] + frac * (edges[j + 1] - edges[j]))


def value_knots(points: np.ndarray, weights: np.ndarray, knots: int) -> np.ndarray:
    """``knots`` quantiles (levels 0 .. 1) of the distribution with ``weights`` on ``points``: the
    first point whose CDF reaches each level (level 0: the first point with weight). Monotone; a
    point repeats only where its weight exceeds the levels' spacing. Uniform when every weight is 0."""
    if not weights.sum() > 0:
        weights = np.ones_like(weights)
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]  # not weights.sum(): its rounding can leave the CDF under 1 after the last weight
    idx = np.searchsorted(cdf, np.linspace(0.0, 1.0, knots), side="left")
    idx[0] = int(np.flatnonzero(weights > 0)[0])
    return points[np.minimum(idx, len(points) - 1)]


# -- categories --------------------------------------------------------------------------------


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _discrete(col: ColumnSchema, s: pd.Series, max_categories: int, eps: float, delta: float,
              rng: np.random.Generator, dataset: str, declared: list | None = None) -> dict[str, Any]:
    values = s.astype(object).where(s.notna(), None)
    counts = values.value_counts(dropna=True)
    n_missing = int(s.isna().sum())
    missing = n_missing + rng.laplace(0.0, 1.0 / eps)
    domain = [True, False] if col.kind == "boolean" else declared
    if domain:  # a known domain: every value listed, no threshold
        exact = np.array([int(counts.get(v, 0)) for v in domain], dtype=np.float64)
        noisy = exact + rng.laplace(0.0, 1.0 / eps, len(domain))
        listed, listed_noisy = domain, noisy
    else:
        # Only the values that occur get noise: the threshold makes that (epsilon, delta)-DP.
        noisy = counts.to_numpy(dtype=np.float64) + rng.laplace(0.0, 1.0 / eps, len(counts))
        keep = noisy > category_threshold(eps, delta)
        listed = [_plain(v) for v, k in zip(counts.index, keep) if k]
        listed_noisy = noisy[keep]
        if not listed:
            raise ConfigError(f"column '{col.name}': no category has enough rows to be listed privately at this "
                              "budget; raise train.privacy.epsilon or train.privacy.preprocessing_share, declare its "
                              f"values (datasets.{dataset}.categories.{col.name}) or drop the column "
                              f"(datasets.{dataset}.drop_columns)")
    order = np.argsort(-listed_noisy, kind="stable")  # by noisy count, as the exact fit orders by count
    listed, listed_noisy = [listed[i] for i in order], np.maximum(listed_noisy[order], 0.0)
    cut = len(listed) if len(listed) <= max_categories else max_categories - 1
    keep, tail, tail_noisy = listed[:cut], listed[cut:], listed_noisy[cut:]
    other, other_w = list(tail), list(tail_noisy)
    if col.kind != "boolean":  # the values never listed: one more entry of the other slot
        text = col.dtype == "object"
        rest = max(len(s) - listed_noisy.sum() - max(missing, 0.0), 0.0)
        other.append(MARKER if text else None)
        other_w.append(rest)
    w = np.asarray(other_w, dtype=np.float64)
    p = (w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / max(len(w), 1))).tolist()
    return {
        "name": col.name, "kind": col.kind, "categories": keep, "other": other, "other_p": p if other else [],
        "has_missing": bool(missing > known_threshold(eps)),
        "counts": [int(round(v)) for v in (*listed_noisy[:cut], *w)],  # noisy: of categories then other
    }


# -- what a private fit refuses ----------------------------------------------------------------


def check_private(schema: TableSchema, privacy: Privacy) -> None:
    """Refuse (ConfigError, one line) what a private fit cannot cover, from ``schema.json`` alone:
    value links (the value pairs ingest found by searching the real rows, kept as they are). (A fit
    over torchrun ranks, ``model.name: auto`` and other models are refused by the train stage.)"""
    key = f"datasets.{privacy.dataset}.keep_links"
    if schema.links:
        pairs = ", ".join(f"{link['from']} -> {link['to']}" for link in schema.links)
        raise ConfigError(f"train.privacy.epsilon: ingest found value links ({pairs}), exact value pairs of the real "
                          f"rows that no budget covers; set {key}: false and ingest again, or train.privacy.epsilon: "
                          "null")


# -- the schema model.json carries -------------------------------------------------------------


def public_schema(schema: TableSchema) -> TableSchema:
    """``schema`` without the exact statistics ingest recorded of the rows (null rates, distinct
    counts, min/max/mean, top values, an ID's format and largest value): a private model carries
    none. Fresh IDs are then ``syn-<n>`` text (or 1, 2, ... for integers), one per row, never missing."""
    cols = [ColumnSchema(c.name, c.kind, c.dtype, None, None, c.datetime_unit, {}) for c in schema.columns]
    return TableSchema(cols, schema.target, schema.arrow_schema, schema.release_schema, list(schema.links),
                       list(schema.constraints))


def inferred_kinds(schema: TableSchema, declared: dict[str, str]) -> list[str]:
    """The columns whose kind ingest inferred from the values (not in ``column_types``)."""
    return [c.name for c in schema.columns if c.name not in declared]
