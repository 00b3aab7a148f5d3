"""Fidelity with SDMetrics' definitions (QualityReport of sdmetrics 0.32), vectorised.

* Column shapes: KSComplement (numeric, datetime: 1 - two-sample KS statistic, nulls dropped) and
  TVComplement (categorical, boolean: 1 - total variation distance of the category frequencies).
* Column pair trends: CorrelationSimilarity (both continuous: 1 - |r_real - r_syn| / 2, Pearson,
  rows with a null in either dropped) and ContingencySimilarity (otherwise: 1 - total variation
  distance of the joint frequencies, nulls as their own cell; a continuous column is first cut into
  numpy's 10 histogram bins of its own values). As in the QualityReport, a pair counts towards the
  average only if the real data is associated: |r| > 0.5 or Cramér's V > 0.3.
* Overall: the mean of the two property scores.

Each column is encoded to integer codes once; a pair's contingency table is one ``bincount``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.metrics import SuiteResult, metric, register_suite
from pipeline.schema import TableSchema, datetime_ns

CORRELATION_THRESHOLD = 0.5
ASSOCIATION_THRESHOLD = 0.3
# A pair's joint counts are a dense table (codes of a x codes of b) up to this many cells; beyond,
# only the cells that occur are counted (two 100,000-value columns would ask for 10^10 cells).
MAX_CONTINGENCY_CELLS = 2**22
_SHAPE = {"continuous": "continuous", "integer": "continuous", "datetime": "continuous",
          "categorical": "discrete", "boolean": "discrete"}


@dataclass
class FidelityResult:
    column_shapes: float
    column_pair_trends: float
    column_pair_trends_all: float
    overall: float
    columns: dict[str, dict] = field(default_factory=dict)
    pairs: list[dict] = field(default_factory=list)


def numeric_values(s: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return datetime_ns(s)
    return pd.to_numeric(s).astype("float64").to_numpy(na_value=np.nan)


def ks_complement(real: np.ndarray, syn: np.ndarray) -> float:
    r = np.sort(np.round(real[~np.isnan(real)], 15))
    s = np.sort(np.round(syn[~np.isnan(syn)], 15))
    if not len(r) or not len(s):
        return float("nan")
    # The KS statistic is attained at an observed value: each side's distinct values suffice.
    grid = np.concatenate([r[np.r_[True, r[1:] != r[:-1]]], s[np.r_[True, s[1:] != s[:-1]]]])
    d = np.abs(np.searchsorted(r, grid, "right") / len(r) - np.searchsorted(s, grid, "right") / len(s)).max()
    return float(1.0 - d)


def tv_from_codes(code_r: np.ndarray, code_s: np.ndarray, k: int, na: int | None) -> float:
    return tv_from_counts(np.bincount(code_r, minlength=k), np.bincount(code_s, minlength=k), na)


def tv_from_counts(r: np.ndarray, s: np.ndarray, na: int | None) -> float:
    """1 - total variation distance of the category frequencies (counts per code), nulls dropped.
    SDMetrics' regularisation: a category only the synthetic side has gets a real count of 1e-6."""
    r, s = r.astype(float), s.astype(float)
    if na is not None:
        r[na] = s[na] = 0.0
    if not r.sum() or not s.sum():
        return float("nan")
    r[(r == 0) & (s > 0)] = 1e-6
    return float(1.0 - 0.5 * np.abs(s / s.sum() - r / r.sum()).sum())


def _edges(values: np.ndarray) -> np.ndarray:
    """The edges of 10 histogram bins of a column's finite values (two edges when it has none)."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return np.array([0.0, 1.0])
    try:
        return np.histogram_bin_edges(finite)
    except ValueError:  # a range too narrow at its magnitude for 10 distinct edges (1e17 and 1e17 + 8)
        return np.unique(np.linspace(finite.min(), finite.max(), 11))


def _bins(values: np.ndarray) -> np.ndarray:
    """np.digitize against 10 histogram bins of the column's own values (NaN -> 11)."""
    return np.digitize(values, _edges(values))


def _bins_on_real(real: np.ndarray, syn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sides cut on the real side's 10 bins, the outer edges open (SDMetrics 0.32's
    ``discretize_column``, which its ContingencySimilarity metric uses): a synthetic value past the
    real range falls in the end bin."""
    edges = _edges(real).astype(float)
    edges[0], edges[-1] = -np.inf, np.inf
    return np.digitize(real, edges), np.digitize(syn, edges)


def joint_codes(*series: pd.Series) -> tuple[list[np.ndarray], int, int | None]:
    """Integer codes shared by several columns (equal values, equal codes; null is a code of its
    own): ([codes per series], number of codes, the null code or None)."""
    both = pd.concat(series, ignore_index=True)
    if both.dtype == bool or both.dtype.kind in "iuf" or isinstance(both.dtype, pd.CategoricalDtype):
        both = both.astype(object)  # one code per value whatever the source dtype
    codes, uniques = pd.factorize(both.to_numpy(), use_na_sentinel=True)  # nulls -> -1 (one pass)
    k = len(uniques)
    na = None
    if (codes < 0).any():
        codes = np.where(codes < 0, k, codes)
        na, k = k, k + 1
    bounds = np.cumsum([0] + [len(x) for x in series])
    return [codes[a:b] for a, b in zip(bounds[:-1], bounds[1:])], max(k, 1), na


def _cramers_v(table: np.ndarray) -> float:
    table = table[table.sum(1) > 0][:, table.sum(0) > 0]
    if table.sum() == 0 or min(table.shape) < 2:
        return float("nan")
    n = table.sum()
    expected = np.outer(table.sum(1), table.sum(0)) / n
    chi2 = ((table - expected) ** 2 / expected).sum()
    return float(math.sqrt(chi2 / n / (min(table.shape) - 1)))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    xm, ym = x - x.mean(), y - y.mean()
    r = (xm @ ym) / math.sqrt((xm @ xm) * (ym @ ym))
    return float(max(min(r, 1.0), -1.0))


def _pearson_matrix(cols: dict[str, np.ndarray]) -> dict[tuple[str, str], float]:
    """Pearson r of every pair of columns: one matrix product for the columns without nulls,
    pairwise-complete rows for the rest."""
    names = list(cols)
    out: dict[tuple[str, str], float] = {}
    full = [n for n in names if not np.isnan(cols[n]).any()]
    if len(full) > 1 and len(cols[full[0]]) > 1:
        x = np.column_stack([cols[n] for n in full])
        xm = x - x.mean(0)
        cov = xm.T @ xm
        var = np.diag(cov).copy()
        const = np.array([np.all(cols[n] == cols[n][0]) for n in full])
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.clip(cov / np.sqrt(np.outer(var, var)), -1.0, 1.0)
        for i, a in enumerate(full):
            for j in range(i + 1, len(full)):
                value = float("nan") if const[i] or const[j] else float(r[i, j])
                out[(a, full[j])] = out[(full[j], a)] = value
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if (a, b) not in out:
                out[(a, b)] = out[(b, a)] = _pearson(cols[a], cols[b])
    return out


def score_fidelity(real: pd.DataFrame, syn: pd.DataFrame, schema: TableSchema,
                   bins: str = "own") -> FidelityResult:
    """Shapes and pair trends. ``bins``: how a number is cut for a mixed pair: ``own`` (the
    QualityReport, the score stage and the published figures), each side on its own range, so the
    synthetic side's edges move with its extremes; ``real`` (benchmarks), both on the real side's."""
    if bins not in ("own", "real"):
        raise ValueError(f"bins: {bins!r} is not 'own' or 'real'")
    cols = [c for c in schema.columns if c.kind in _SHAPE]
    shape_scores: dict[str, dict] = {}
    num_r, num_s, code_r, code_s, n_codes = {}, {}, {}, {}, {}
    for c in cols:
        if _SHAPE[c.kind] == "continuous":
            num_r[c.name], num_s[c.name] = numeric_values(real[c.name]), numeric_values(syn[c.name])
            score = ks_complement(num_r[c.name], num_s[c.name])
            shape_scores[c.name] = {"metric": "KSComplement", "score": score}
            # Discretised copies for mixed pairs: each side on its own values (the QualityReport) or on the real's.
            code_r[c.name], code_s[c.name] = ((_bins(num_r[c.name]), _bins(num_s[c.name])) if bins == "own"
                                              else _bins_on_real(num_r[c.name], num_s[c.name]))
            n_codes[c.name] = 12
        else:
            (cr, cs), k, na = joint_codes(real[c.name], syn[c.name])
            shape_scores[c.name] = {"metric": "TVComplement", "score": tv_from_codes(cr, cs, k, na)}
            code_r[c.name], code_s[c.name], n_codes[c.name] = cr, cs, k

    pairs = []
    corr_real, corr_syn = _pearson_matrix(num_r), _pearson_matrix(num_s)
    for a, b in itertools.combinations(cols, 2):
        if _SHAPE[a.kind] == _SHAPE[b.kind] == "continuous":
            pairs.append(correlation_pair(a.name, b.name, corr_real[(a.name, b.name)], corr_syn[(a.name, b.name)]))
            continue
        kb = n_codes[b.name]
        size = n_codes[a.name] * kb
        if size > MAX_CONTINGENCY_CELLS:
            syn_cells, syn_counts = np.unique(code_s[a.name] * kb + code_s[b.name], return_counts=True)
            pairs.append(sparse_contingency_pair(a.name, b.name, code_r[a.name], code_r[b.name], syn_cells,
                                                 syn_counts, kb))
            continue
        t_real = np.bincount(code_r[a.name] * kb + code_r[b.name], minlength=size)
        t_syn = np.bincount(code_s[a.name] * kb + code_s[b.name], minlength=size)
        pairs.append(contingency_pair(a.name, b.name, t_real, t_syn, kb))
    return summarize(shape_scores, pairs)


def correlation_pair(a: str, b: str, r_real: float, r_syn: float) -> dict:
    """CorrelationSimilarity of a pair from its real and synthetic Pearson r."""
    counts = not math.isnan(r_real) and abs(r_real) > CORRELATION_THRESHOLD
    return {"columns": [a, b], "metric": "CorrelationSimilarity", "score": 1 - abs(r_real - r_syn) / 2,
            "real": r_real, "synthetic": r_syn, "counted": bool(counts)}


def contingency_pair(a: str, b: str, t_real: np.ndarray, t_syn: np.ndarray, kb: int) -> dict:
    """ContingencySimilarity of a pair from its flattened joint counts (``kb`` codes of ``b``)."""
    score = 1 - 0.5 * np.abs(t_real / t_real.sum() - t_syn / t_syn.sum()).sum()
    v = _cramers_v(t_real.reshape(-1, kb).astype(float))
    counts = not math.isnan(v) and v > ASSOCIATION_THRESHOLD
    return {"columns": [a, b], "metric": "ContingencySimilarity", "score": float(score),
            "real_association": v, "counted": bool(counts)}


def sparse_contingency_pair(a: str, b: str, real_a: np.ndarray, real_b: np.ndarray, syn_cells: np.ndarray,
                            syn_counts: np.ndarray, kb: int) -> dict:
    """``contingency_pair`` from the cells that occur, for a pair too big for a dense table: the real
    rows' codes of ``a`` and ``b``, and the synthetic joint cells (``code_a * kb + code_b``, sorted)
    with their counts. The same figures: an empty cell adds nothing to the distance, and to
    Cramér's V's chi-square only its expected count (so chi2 = sum over occupied cells of o^2 / e - n)."""
    real_cells, real_counts = np.unique(real_a.astype(np.int64) * kb + real_b, return_counts=True)
    cells = np.union1d(real_cells, syn_cells)
    t_real, t_syn = np.zeros(len(cells)), np.zeros(len(cells))
    t_real[np.searchsorted(cells, real_cells)] = real_counts
    t_syn[np.searchsorted(cells, syn_cells)] = syn_counts
    score = 1 - 0.5 * np.abs(t_real / t_real.sum() - t_syn / t_syn.sum()).sum()
    n, rows, cols = len(real_a), np.bincount(real_a), np.bincount(real_b)
    dims = min(int((rows > 0).sum()), int((cols > 0).sum()))
    v = float("nan")
    if n and dims >= 2:
        expected = rows[real_cells // kb] * cols[real_cells % kb].astype(float) / n
        chi2 = max(float((real_counts ** 2 / expected).sum()) - n, 0.0)
        v = math.sqrt(chi2 / n / (dims - 1))
    counts = not math.isnan(v) and v > ASSOCIATION_THRESHOLD
    return {"columns": [a, b], "metric": "ContingencySimilarity", "score": float(score),
            "real_association": v, "counted": bool(counts)}


def summarize(shape_scores: dict[str, dict], pairs: list[dict]) -> FidelityResult:
    """The QualityReport's property scores and overall from per-column and per-pair scores."""
    shapes = float(np.nanmean([v["score"] for v in shape_scores.values()])) if shape_scores else float("nan")
    counted = [p["score"] for p in pairs if p["counted"]]
    trends = float(np.nanmean(counted)) if counted else float("nan")
    every = [p["score"] for p in pairs if not math.isnan(p["score"])]
    trends_all = float(np.mean(every)) if every else float("nan")
    parts = [x for x in (shapes, trends) if not math.isnan(x)]
    overall = float(np.mean(parts)) if parts else float("nan")
    return FidelityResult(shapes, trends, trends_all, overall, shape_scores, pairs)


@register_suite("fidelity", "table", order=10, metrics=[
    metric("quality.column_shapes", 0, 1,
           "mean KSComplement / TVComplement over columns (SDMetrics)", headline=2),
    metric("quality.column_pair_trends", 0, 1,
           "mean CorrelationSimilarity / ContingencySimilarity over associated pairs (SDMetrics QualityReport)",
           headline=3),
    metric("quality.column_pair_trends_all", 0, 1,
           "the same over every pair, with no association threshold"),
    metric("quality.overall", 0, 1,
           "mean of column shapes and column pair trends (SDMetrics QualityReport)", headline=1),
])
def fidelity_suite(ev) -> SuiteResult:
    """Shapes and pair trends on every row (merged per-shard statistics when the rows are streamed)."""
    fid = ev.stream().fidelity() if ev.streamed else score_fidelity(ev.train, ev.syn, ev.schema)
    metrics = {"quality.column_shapes": fid.column_shapes, "quality.column_pair_trends": fid.column_pair_trends,
               "quality.column_pair_trends_all": fid.column_pair_trends_all, "quality.overall": fid.overall}
    samples = {"fidelity_coverage_exact_match": {
        "real": len(ev.train), "synthetic": ev.rows,
        "method": "merged per-shard statistics" if ev.streamed else "in memory"},
        "synthetic_sample": len(ev.syn) if ev.streamed else None}
    return SuiteResult(metrics, {"samples": samples, "columns": fid.columns, "pairs": fid.pairs})
