"""Fidelity, coverage and exact matches of a synthetic table too big for memory, from per-shard
partial statistics merged exactly (the real table fits in memory; the synthetic one is read one
shard at a time, twice).

Every statistic is additive over shards, so the merged scores are the whole-table scores of
``pipeline.metrics.fidelity`` and ``.coverage``:

* KSComplement: for each distinct real value v, the counts of synthetic values <= v and < v. The
  KS statistic is a supremum over all points; between two consecutive real values the real CDF is
  flat and the synthetic one rises, so the supremum there is reached at one of those two counts.
  Exact, with memory of the real column's distinct values.
* TVComplement, ContingencySimilarity, CategoryCoverage, MissingValueSimilarity: category and
  joint counts, null counts (exact). A mixed pair bins the continuous column on the synthetic
  column's own range (as SDMetrics), so the first pass finds each column's range and categories.
* CorrelationSimilarity: Pearson r from pairwise-complete sums of x, y, x^2, y^2 and xy, shifted by
  the real means (exact up to float rounding, ~1e-12), and each pair's value ranges on those rows
  (a column constant there has no correlation, as in the whole-table score).
* Exact matches: row hashes of each shard against the training rows'.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from pipeline.metrics.coverage import CoverageResult, mean_of, range_from_bounds
from pipeline.metrics.fidelity import (
    _SHAPE,
    MAX_CONTINGENCY_CELLS,
    FidelityResult,
    _bins,
    _pearson,
    contingency_pair,
    correlation_pair,
    numeric_values,
    sparse_contingency_pair,
    summarize,
    tv_from_counts,
)
from pipeline.rowhash import row_hashes
from pipeline.schema import DISCRETE_KINDS, TableSchema


class _Column:
    def __init__(self, name: str, kind: str, real: pd.Series):
        self.name, self.kind = name, kind
        self.continuous = _SHAPE.get(kind) == "continuous"
        self.modeled_shape = kind in _SHAPE
        self.real_nulls, self.real_n = int(real.isna().sum()), len(real)
        self.syn_nulls = self.syn_n = 0
        if self.continuous:
            self.real_values = numeric_values(real)
            r = np.round(self.real_values[~np.isnan(self.real_values)], 15)
            self.real_sorted = np.sort(r)
            self.grid = np.unique(r)
            self.le = np.zeros(len(self.grid), dtype=np.int64)
            self.lt = np.zeros(len(self.grid), dtype=np.int64)
            self.syn_finite = 0
            self.syn_min, self.syn_max = math.inf, -math.inf
        else:
            self.real = real
            self.syn_values: set = set()

    # -- pass 1: ranges and categories ------------------------------------------------------------
    def scan(self, s: pd.Series) -> None:
        self.syn_nulls += int(s.isna().sum())
        self.syn_n += len(s)
        if self.continuous:
            v = numeric_values(s)
            v = v[~np.isnan(v)]
            if len(v):
                self.syn_min, self.syn_max = min(self.syn_min, float(v.min())), max(self.syn_max, float(v.max()))
        else:
            self.syn_values.update(pd.unique(s.dropna()).tolist())

    def freeze(self) -> None:
        """After pass 1: fixed codes (real and synthetic categories, null last) and bin edges."""
        if self.continuous:
            self.edges = (np.histogram_bin_edges(np.array([self.syn_min, self.syn_max]))
                          if self.syn_max >= self.syn_min else np.array([0.0, 1.0]))
            self.real_codes, self.k = _bins(self.real_values), 12
        else:
            values = pd.Index(pd.unique(self.real.dropna())).append(pd.Index(list(self.syn_values))).unique()
            if self.real.dtype == bool or self.real.dtype.kind in "iuf":
                values = values.astype(object)
            self.index = pd.Index(values)
            self.na = len(values)
            self.k = len(values) + 1
            self.real_codes = self.codes(self.real)
            self.counts = np.zeros(self.k, dtype=np.int64)

    def codes(self, s: pd.Series) -> np.ndarray:
        if self.continuous:
            return np.digitize(numeric_values(s), self.edges)
        values = s.astype(object) if (s.dtype == bool or s.dtype.kind in "iuf") else s
        c = self.index.get_indexer(values.to_numpy())
        return np.where(pd.isna(values).to_numpy() | (c < 0), self.na, c)

    # -- pass 2: counts ---------------------------------------------------------------------------
    def add(self, s: pd.Series) -> np.ndarray:
        codes = self.codes(s)
        if self.continuous:
            v = numeric_values(s)
            v = np.sort(np.round(v[~np.isnan(v)], 15))
            self.le += np.searchsorted(v, self.grid, "right")
            self.lt += np.searchsorted(v, self.grid, "left")
            self.syn_finite += len(v)
        else:
            self.counts += np.bincount(codes, minlength=self.k)
        return codes

    def shape_score(self) -> float:
        if self.continuous:
            n_r, n_s = len(self.real_sorted), self.syn_finite
            if not n_r or not n_s:
                return float("nan")
            f_r = np.searchsorted(self.real_sorted, self.grid, "right") / n_r
            f_r_before = np.r_[0.0, f_r[:-1]]  # the real CDF just left of each grid value
            d = max(np.abs(f_r - self.le / n_s).max(), np.abs(f_r_before - self.lt / n_s).max())
            return float(1.0 - d)
        return tv_from_counts(np.bincount(self.real_codes, minlength=self.k), self.counts, self.na)


class StreamingScorer:
    """Feed every synthetic shard to ``scan`` (pass 1), call ``freeze``, feed every shard to ``add``
    (pass 2), then read ``fidelity()``, ``coverage()`` and ``exact_match_rate()``."""

    def __init__(self, real: pd.DataFrame, schema: TableSchema):
        self.schema = schema
        self.cols = {c.name: _Column(c.name, c.kind, real[c.name]) for c in schema.modeled}
        self.shaped = [c for c in schema.columns if c.kind in _SHAPE]
        self.pairs = list(itertools.combinations([c.name for c in self.shaped], 2))
        self.train_hashes = np.unique(row_hashes(real, [c.name for c in schema.modeled]))
        self.matches = self.rows = 0
        self.moments: dict[tuple[str, str], np.ndarray] = {}
        self.extent: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

    def scan(self, shard: pd.DataFrame) -> None:
        for name, col in self.cols.items():
            col.scan(shard[name])

    def freeze(self) -> None:
        for col in self.cols.values():
            col.freeze()
        # Joint counts per pair: a dense table, or (the cells that occur, their counts) for a pair
        # with too many cells for one.
        self.tables = {(a, b): np.zeros(self.cols[a].k * self.cols[b].k, dtype=np.int64)
                       if self.cols[a].k * self.cols[b].k <= MAX_CONTINGENCY_CELLS
                       else (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
                       for a, b in self.pairs if not (self.cols[a].continuous and self.cols[b].continuous)}
        self.shift = {n: float(np.nanmean(c.real_values)) if c.continuous and (~np.isnan(c.real_values)).any() else 0.0
                      for n, c in self.cols.items()}

    def add(self, shard: pd.DataFrame) -> None:
        codes = {name: col.add(shard[name]) for name, col in self.cols.items() if col.modeled_shape}
        for (a, b), table in self.tables.items():
            joint = codes[a].astype(np.int64) * self.cols[b].k + codes[b]
            if isinstance(table, tuple):
                new, counts = np.unique(joint, return_counts=True)
                cells, inverse = np.unique(np.concatenate([table[0], new]), return_inverse=True)
                self.tables[(a, b)] = (cells, np.bincount(inverse, weights=np.concatenate([table[1], counts]))
                                       .astype(np.int64))
            else:
                table += np.bincount(joint, minlength=len(table))
        values = {n: numeric_values(shard[n]) - self.shift[n] for n, c in self.cols.items() if c.continuous}
        for a, b in self.pairs:
            if (a, b) in self.tables:
                continue
            x, y = values[a], values[b]
            ok = ~(np.isnan(x) | np.isnan(y))
            x, y = x[ok], y[ok]
            m = np.array([len(x), x.sum(), y.sum(), x @ x, y @ y, x @ y])
            self.moments[(a, b)] = self.moments.get((a, b), 0) + m
            if len(x):  # ranges on the rows both have: a column constant there gives no correlation
                lo, hi = self.extent.get((a, b), (np.full(2, np.inf), np.full(2, -np.inf)))
                self.extent[(a, b)] = (np.minimum(lo, [x.min(), y.min()]), np.maximum(hi, [x.max(), y.max()]))
        self.matches += int(np.isin(row_hashes(shard, [c.name for c in self.schema.modeled]), self.train_hashes).sum())
        self.rows += len(shard)

    # -- results ----------------------------------------------------------------------------------
    def _real_r(self, a: str, b: str) -> float:
        return _pearson(self.cols[a].real_values, self.cols[b].real_values)

    def _syn_r(self, a: str, b: str) -> float:
        n, sx, sy, sxx, syy, sxy = self.moments.get((a, b), np.zeros(6))
        lo, hi = self.extent.get((a, b), (np.zeros(2), np.zeros(2)))
        if n < 2 or (lo == hi).any():
            return float("nan")
        vx, vy = sxx - sx * sx / n, syy - sy * sy / n
        if vx <= 0 or vy <= 0:
            return float("nan")
        return float(max(min((sxy - sx * sy / n) / math.sqrt(vx * vy), 1.0), -1.0))

    def fidelity(self) -> FidelityResult:
        shapes = {c.name: {"metric": "KSComplement" if self.cols[c.name].continuous else "TVComplement",
                           "score": self.cols[c.name].shape_score()} for c in self.shaped}
        pairs = []
        for a, b in self.pairs:
            if (a, b) not in self.tables:
                pairs.append(correlation_pair(a, b, self._real_r(a, b), self._syn_r(a, b)))
                continue
            kb = self.cols[b].k
            if isinstance(self.tables[(a, b)], tuple):
                pairs.append(sparse_contingency_pair(a, b, self.cols[a].real_codes, self.cols[b].real_codes,
                                                     *self.tables[(a, b)], kb))
                continue
            t_real = np.bincount(self.cols[a].real_codes * kb + self.cols[b].real_codes,
                                 minlength=len(self.tables[(a, b)]))
            pairs.append(contingency_pair(a, b, t_real, self.tables[(a, b)], kb))
        return summarize(shapes, pairs)

    def coverage(self) -> CoverageResult:
        columns: dict[str, dict] = {}
        for name, col in self.cols.items():
            entry = {"missing_value_similarity":
                     float(1.0 - abs(col.real_nulls / col.real_n - col.syn_nulls / col.syn_n))
                     if col.real_n and col.syn_n else float("nan")}
            if col.kind in DISCRETE_KINDS:
                real = pd.unique(col.real.dropna())
                entry["category_coverage"] = (float(pd.Index(real).isin(list(col.syn_values)).sum() / len(real))
                                              if len(real) else float("nan"))
            elif col.continuous:
                r = col.real_values[~np.isnan(col.real_values)]
                no_range = not len(r) or col.syn_max < col.syn_min  # no real values, or no synthetic ones
                entry["range_coverage"] = (float("nan") if no_range
                                           else range_from_bounds(r.min(), r.max(), col.syn_min, col.syn_max))
            columns[name] = entry
        pick = lambda key: mean_of([e[key] for e in columns.values() if key in e])  # noqa: E731
        return CoverageResult(pick("category_coverage"), pick("range_coverage"), pick("missing_value_similarity"),
                              columns)

    def exact_match_rate(self) -> float:
        return self.matches / self.rows if self.rows else float("nan")


def score_streaming(real: pd.DataFrame, shards: Callable[[], Iterable[pd.DataFrame]],
                    schema: TableSchema) -> StreamingScorer:
    """Run both passes over ``shards()`` (called twice; each call yields the shards in order)."""
    scorer = StreamingScorer(real, schema)
    for shard in shards():
        scorer.scan(shard)
    scorer.freeze()
    for shard in shards():
        scorer.add(shard)
    return scorer
