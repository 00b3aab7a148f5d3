"""Anonymeter's three risks of a release: singling out, linkability and inference (Giomi et al., "A
Unified Framework for Quantifying Privacy Risk in Synthetic Data", PoPETs 2023; statice/anonymeter).

The attacker holds the synthetic rows. Each attack is made twice, with the same synthetic rows:
against training rows (the ``members`` of the shared ``attack_rows`` split: anonymeter's original
data) and against as many real rows the model never saw (``non_members``: its control set). The
control attack succeeds as far as what the population has in common lets it; what succeeds beyond
that is what the release gives away about the rows it was trained on. Each risk is anonymeter's

    risk = (attack rate - control rate) / (1 - control rate),

both rates Wilson score estimates, its 95% interval their Wilson errors propagated to first order,
the point and both bounds clipped to [0, 1] (as anonymeter clips them; the unclipped value is in
the details: below 0 when the control rows were the easier targets).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd
import torch

from pipeline.metrics import SuiteResult, metric, register_suite
from pipeline.metrics.fidelity import joint_codes, numeric_values
from pipeline.metrics.privacy import (
    AttackRows,
    DistanceEncoding,
    NumericScale,
    attack_rows,
    encode_for_distance,
    numeric_difference,
)
from pipeline.schema import DISCRETE_KINDS, NUMERIC_KINDS, TableSchema

CONFIDENCE = 0.95
MULTIVARIATE_COLUMNS = 3  # anonymeter's n_cols: the columns a multivariate predicate joins
NEIGHBOURS = 1  # anonymeter's n_neighbors: targets are linked when their nearest synthetic rows are one row
TOLERANCE = 0.05  # a numeric secret is guessed when |guess - secret| <= 5% of |guess| (anonymeter's)
TOLERANT_KINDS = ("continuous", "integer")  # the other kinds' secrets are guessed only exactly
QUERY_BATCH = 1_000  # candidate predicates made and counted at a time (anonymeter's batch)
# Candidate multivariate predicates tried per predicate wanted, at most (anonymeter: 10 million in
# all): on Adult one candidate in 85 singles out a synthetic row (423,000 tried for 5,000). Fewer
# found count as failures, as in anonymeter; the details say how many were found.
MAX_ATTEMPTS = 200
CELLS = 2**22  # cells of one chunk's work (predicate hits, per-column distances): tens of MB
EQ, LE, GE, NULL = 0, 1, 2, 3  # a predicate's comparisons: == value, <= value, >= value, is null


# -- the risk and its interval ---------------------------------------------------------------


def wilson(successes: float, attacks: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """A success rate's Wilson score estimate and its error at ``confidence`` (anonymeter's
    ``success_rate``): (s + z²/2) / (n + z²) and z / (n + z²) * sqrt(s (n - s) / n + z²/4)."""
    z = NormalDist().inv_cdf(0.5 * (1.0 + confidence))
    denominator = attacks + z * z
    rate = (successes + 0.5 * z * z) / denominator
    return rate, z / denominator * math.sqrt(successes * (attacks - successes) / attacks + 0.25 * z * z)


@dataclass(frozen=True)
class Risk:
    """One attack's risk: ``value`` in [``low``, ``high``] (clipped to [0, 1]), ``residual``
    unclipped, the two Wilson rates and the counts they came from."""

    value: float
    low: float
    high: float
    residual: float
    attack_rate: float
    control_rate: float
    attacks: int
    successes: int
    control_attacks: int
    control_successes: int

    @classmethod
    def of(cls, successes: int, attacks: int, control_successes: int, control_attacks: int,
           confidence: float = CONFIDENCE) -> Risk:
        """Anonymeter's residual risk of ``successes`` of ``attacks`` on the targets against
        ``control_successes`` of ``control_attacks`` on the control rows (NaN without attacks)."""
        if attacks <= 0 or control_attacks <= 0:
            nan = float("nan")
            return cls(nan, nan, nan, nan, nan, nan, attacks, successes, control_attacks, control_successes)
        a, da = wilson(successes, attacks, confidence)
        c, dc = wilson(control_successes, control_attacks, confidence)  # c < 1: the estimate never reaches 1
        residual = (a - c) / (1.0 - c)
        error = math.hypot(da / (1.0 - c), dc * (a - 1.0) / (1.0 - c) ** 2)
        clip = lambda v: min(max(v, 0.0), 1.0)  # noqa: E731
        return cls(clip(residual), clip(residual - error), clip(residual + error), residual, a, c, attacks,
                   int(successes), control_attacks, int(control_successes))


NOT_MEASURED = Risk.of(0, 0, 0, 0)  # NaN: no attack could be made


# -- singling out ----------------------------------------------------------------------------


@dataclass
class Predicates:
    """Conjunctions of bounds, one a row: ``lo[i, j] <= value of column cols[i, j] <= hi[i, j]``,
    over values as ``predicate_values`` gives them (a null is +inf). Equality, ``<=``, ``>=`` and
    "is null" are each a pair of bounds (``bounds``)."""

    cols: np.ndarray  # [n, k] int64
    lo: np.ndarray  # [n, k] float64
    hi: np.ndarray  # [n, k] float64

    def __len__(self) -> int:
        return len(self.cols)

    def __getitem__(self, which) -> Predicates:
        return Predicates(self.cols[which], self.lo[which], self.hi[which])

    @staticmethod
    def bounds(op: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) of comparisons ``op`` (EQ, LE, GE, NULL) with ``value``: a null (+inf) is
        within no bound of a number, and "is null" is [inf, inf]."""
        lo = np.where((op == EQ) | (op == GE), value, np.where(op == NULL, np.inf, -np.inf))
        hi = np.where((op == EQ) | (op == LE), value, np.where(op == NULL, np.inf, np.finfo(np.float64).max))
        return lo, hi


def predicate_values(frames: list[pd.DataFrame], columns: list) -> list[np.ndarray]:
    """Each frame as [columns, rows] float64, as predicates read it: numbers (datetimes as
    nanoseconds), categories as codes shared by every frame, null as +inf (so is an infinite
    number); duplicate rows dropped (anonymeter's rows are unique: two equal rows are one
    individual to single out)."""
    out = [np.empty((len(f), len(columns))) for f in frames]
    for j, col in enumerate(columns):
        if col.kind in NUMERIC_KINDS:
            for o, f in zip(out, frames):
                o[:, j] = numeric_values(f[col.name])
        else:
            codes, _, na = joint_codes(*(f[col.name] for f in frames))
            for o, k in zip(out, codes):
                o[:, j] = np.where(k == na, np.nan, k) if na is not None else k
    return [np.ascontiguousarray(np.nan_to_num(pd.DataFrame(o).drop_duplicates().to_numpy(), nan=np.inf,
                                               posinf=np.inf).T) for o in out]


def count_matches(x: np.ndarray, predicates: Predicates, stop: int | None = None, block: int = 512) -> np.ndarray:
    """How many rows of ``x`` ([columns, rows], ``predicate_values``) each predicate holds for,
    counted up to ``stop`` (a count of ``stop`` means that many or more). Rows are read a block at
    a time and a predicate leaves the count once it reaches ``stop``: most candidates of a
    singling-out attack hold for many rows and leave after the first block."""
    counts = np.zeros(len(predicates), dtype=np.int64)
    alive = np.arange(len(predicates))
    width = max(predicates.cols.shape[1], 1)
    for start in range(0, x.shape[1], block):
        rows = x[:, start:start + block]
        per = max(1, CELLS // (rows.shape[1] * width))  # predicates at a time: bounded memory
        for first in range(0, len(alive), per):
            which = alive[first:first + per]
            p = predicates[which]
            v = rows[p.cols]  # [predicates, k, rows]
            counts[which] += ((v >= p.lo[..., None]) & (v <= p.hi[..., None])).all(axis=1).sum(axis=1)
        if stop is not None:
            alive = alive[counts[alive] < stop]
            if not len(alive):
                break
    return np.minimum(counts, stop) if stop is not None else counts


def singles_out(x: np.ndarray, predicates: Predicates) -> np.ndarray:
    """Which predicates hold for exactly one row of ``x``."""
    return count_matches(x, predicates, stop=2) == 1


def _new_singling_out(candidates: Predicates, syn: np.ndarray, wanted: int, seen: set) -> list[int]:
    """The candidates (in order) that single out one synthetic row and were not kept before, up to
    ``wanted``; their keys are added to ``seen``."""
    keep = []
    for i in np.flatnonzero(singles_out(syn, candidates)):
        if len(keep) >= wanted:
            break
        key = (candidates.cols[i].tobytes(), candidates.lo[i].tobytes(), candidates.hi[i].tobytes())
        if key not in seen:
            seen.add(key)
            keep.append(int(i))
    return keep


def univariate_predicates(syn: np.ndarray, numeric: np.ndarray, wanted: int, rng: np.random.Generator) -> Predicates:
    """Anonymeter's univariate attack: a column's only null, its minimum (<=) and maximum (>=),
    each value that occurs once; shuffled, kept where they single out one synthetic row."""
    cols, ops, vals = [], [], []
    for j, column in enumerate(syn):
        null = np.isposinf(column)
        values, counts = np.unique(column[~null], return_counts=True)
        found = [(NULL, np.inf)] if null.sum() == 1 else []
        if numeric[j] and len(values):
            found += [(LE, values[0]), (GE, values[-1])]
        found += [(EQ, v) for v in values[counts == 1]]
        cols += [j] * len(found)
        ops += [op for op, _ in found]
        vals += [v for _, v in found]
    order = rng.permutation(len(cols))[:, None]
    lo, hi = Predicates.bounds(np.array(ops, dtype=np.int64)[order], np.array(vals, dtype=np.float64)[order])
    candidates = Predicates(np.array(cols, dtype=np.int64)[order], lo, hi)
    return candidates[_new_singling_out(candidates, syn, wanted, set())]


def multivariate_predicates(syn: np.ndarray, numeric: np.ndarray, wanted: int, rng: np.random.Generator,
                            n_cols: int = MULTIVARIATE_COLUMNS) -> Predicates:
    """Anonymeter's multivariate attack: a random synthetic row's values on ``n_cols`` random
    columns, numbers as a bound towards their extreme side (>= above the synthetic median, <=
    otherwise), others equal, nulls null; kept where they single out one synthetic row, until
    ``wanted`` are found or ``MAX_ATTEMPTS`` per wanted were tried."""
    width, rows = syn.shape
    n_cols = min(n_cols, width)
    with np.errstate(all="ignore"):
        medians = np.array([np.median(c[~np.isposinf(c)]) if (~np.isposinf(c)).any() else 0.0 for c in syn])
    kept: list[Predicates] = []
    found, seen = 0, set()
    for _ in range(0, wanted * MAX_ATTEMPTS if rows else 0, QUERY_BATCH):
        cols = np.sort(np.argsort(rng.random((QUERY_BATCH, width)), axis=1)[:, :n_cols], axis=1)
        vals = syn[cols, rng.integers(0, rows, QUERY_BATCH)[:, None]]
        ops = np.where(np.isposinf(vals), NULL, np.where(~numeric[cols], EQ, np.where(vals > medians[cols], GE, LE)))
        batch = Predicates(cols, *Predicates.bounds(ops, vals))
        keep = _new_singling_out(batch, syn, wanted - found, seen)
        kept.append(batch[keep])
        found += len(keep)
        if found >= wanted:
            break
    if not kept:
        return Predicates(np.zeros((0, n_cols), np.int64), np.zeros((0, n_cols)), np.zeros((0, n_cols)))
    return Predicates(*(np.concatenate([getattr(p, name) for p in kept]) for name in ("cols", "lo", "hi")))


def singling_out(syn: np.ndarray, targets: np.ndarray, control: np.ndarray, numeric: np.ndarray, attacks: int,
                 seed: int) -> dict[str, tuple[Risk, int]]:
    """Both modes' risk and how many predicates singled out a synthetic row: a predicate succeeds
    when it holds for exactly one target (one control) row; the rate is over ``attacks``, the
    predicates asked for, as anonymeter counts it (fewer found count as failures)."""
    out = {}
    for stream, (mode, make) in enumerate((("univariate", univariate_predicates),
                                           ("multivariate", multivariate_predicates))):
        predicates = make(syn, numeric, attacks, np.random.default_rng((seed, stream)))
        out[mode] = (Risk.of(int(singles_out(targets, predicates).sum()), attacks,
                             int(singles_out(control, predicates).sum()), attacks), len(predicates))
    return out


# -- linkability and inference: nearest synthetic rows by a subset of the columns ------------


def nearest_by_columns(targets: DistanceEncoding, syn: DistanceEncoding, subsets: np.ndarray, k: int = 1
                       ) -> np.ndarray:
    """[len(targets), S, k]: each target's k nearest synthetic rows (positions) by the DCR distance
    (``privacy.nearest_distances``'s, numeric ranges from ``syn``) over the columns of each of the
    S column subsets (``subsets``: [columns, S] bool, columns in ``DistanceEncoding`` order:
    numeric, then categorical). Every subset from one pass: each chunk of targets' per-column
    terms are computed once and summed per subset by one matrix product; few, large tensor
    operations, as each one is a wait for every thread."""
    n_num = syn.numeric.shape[1]
    scaled = NumericScale.of(syn.numeric)
    syn_scaled, syn_nan = scaled(syn.numeric), syn.numeric.isnan()
    has_nan = (syn_nan.any(0) | targets.numeric.isnan().any(0)).tolist()
    constant = scaled.constant.tolist()
    weights = torch.from_numpy(subsets.T.astype(np.float32))  # [S, columns]
    rows = syn.numeric.shape[0]
    chunk = max(1, CELLS // max(rows * sum(subsets.shape), 1))  # terms and distances: [columns + S, chunk, rows]
    out = []
    for start in range(0, targets.numeric.shape[0], chunk):
        x = targets.numeric[start:start + chunk]
        codes = targets.codes[start:start + chunk]
        x_scaled, x_nan = scaled(x), x.isnan()
        terms = [numeric_difference(x_scaled[:, j], x_nan[:, j], syn_scaled[:, j], syn_nan[:, j], constant[j],
                                    has_nan[j]) for j in range(n_num)]
        terms = torch.stack(terms + [(codes[:, j, None] != syn.codes[None, :, j]).float()
                                     for j in range(codes.shape[1])])  # [columns, chunk, rows]
        distances = (weights @ terms.view(len(terms), -1)).view(weights.shape[0], len(x), rows)
        out.append(torch.topk(distances, k, dim=2, largest=False).indices.permute(1, 0, 2))
    return torch.cat(out).numpy() if out else np.zeros((0, subsets.shape[1], k), dtype=np.int64)


def guessed(guesses: np.ndarray, secrets: np.ndarray, tolerant: bool) -> np.ndarray:
    """Which guesses are right: both null, or equal; within ``TOLERANCE`` of the guess for a
    ``tolerant`` (numeric) secret."""
    both_null = np.isnan(guesses) & np.isnan(secrets)
    with np.errstate(invalid="ignore"):
        close = (np.abs(guesses - secrets) <= TOLERANCE * np.abs(guesses)) if tolerant else guesses == secrets
    return both_null | close


# -- the family ------------------------------------------------------------------------------


@dataclass
class AnonymityResult:
    singling_out: dict[str, Risk]  # univariate, multivariate
    linkability: Risk
    inference: dict[str, Risk]  # by secret column
    details: dict


def attacked_columns(schema: TableSchema) -> list:
    """The columns the attacks read, in ``DistanceEncoding``'s order (numeric, then categorical)."""
    cols = [c for c in schema.modeled if c.kind in NUMERIC_KINDS + DISCRETE_KINDS]
    return [c for c in cols if c.kind in NUMERIC_KINDS] + [c for c in cols if c.kind in DISCRETE_KINDS]


def linkability_halves(names: list[str], seed: int) -> tuple[list[str], list[str]]:
    """The columns shuffled (seeded) and cut in two halves: what each of the attacker's two
    datasets knows of a person."""
    order = [names[i] for i in np.random.default_rng((seed, 2)).permutation(len(names))]
    return order[:len(order) // 2], order[len(order) // 2:]


def score_anonymity(rows: AttackRows, schema: TableSchema, target: str | None = None, queries: int | None = None,
                    halves: tuple[list[str], list[str]] | None = None) -> AnonymityResult:
    """The three attacks with ``rows``' synthetic rows, on its members and as many of its
    non-members (the control): ``queries`` singling-out predicates per mode (as many as targets by
    default); linkability between two halves of the columns (``halves``, or ``linkability_halves``
    seeded by ``rows.seed``); inference of each column from the others. ``target``'s inference is
    called out in the details."""
    n = min(len(rows.members), len(rows.non_members))
    targets, control, syn = rows.members.iloc[:n], rows.non_members.iloc[:n], rows.syn
    cols = attacked_columns(schema)
    names = [c.name for c in cols]
    seed, queries = rows.seed, n if queries is None else queries
    halves = linkability_halves(names, seed) if halves is None else halves
    details: dict = {"rows": {"targets": n, "control": n, "synthetic": len(syn)}, "seed": seed,
                     "confidence": CONFIDENCE}

    # Singling out: predicates over the values as they are.
    singled = {"univariate": NOT_MEASURED, "multivariate": NOT_MEASURED}
    found = {}
    if n and len(syn) and cols:
        numeric = np.array([c.kind in NUMERIC_KINDS for c in cols], dtype=bool)
        for mode, (risk, made) in singling_out(*predicate_values([syn, targets, control], cols), numeric, queries,
                                               seed).items():
            singled[mode], found[mode] = risk, made
    details["singling_out"] = {"predicates_wanted": queries, **{
        mode: {**asdict(r), "predicates_found": found.get(mode, 0)} for mode, r in singled.items()}}

    # Linkability and inference: the nearest synthetic rows by each half, and by all columns but
    # each one in turn, from one pass over the targets and one over the control rows.
    in_half = np.array([[name in half for half in halves] for name in names], dtype=bool).reshape(-1, 2)
    subsets = np.concatenate([~np.eye(len(names), dtype=bool), in_half], axis=1)
    encoded = encode_for_distance([syn, targets, control], schema)
    near = ([nearest_by_columns(e, encoded[0], subsets, NEIGHBOURS) for e in encoded[1:]]
            if len(names) >= 2 and n and len(syn) >= NEIGHBOURS and in_half.any(axis=0).all() else [])
    linkability, inference = NOT_MEASURED, dict.fromkeys(names, NOT_MEASURED)
    if near:
        links = [(idx[:, -2, :, None] == idx[:, -1, None, :]).any(axis=(1, 2)).sum() for idx in near]
        linkability = Risk.of(int(links[0]), n, int(links[1]), n)
    random_link = 1.0 - math.comb(len(syn) - NEIGHBOURS, NEIGHBOURS) / math.comb(len(syn), NEIGHBOURS) if len(
        syn) >= NEIGHBOURS else float("nan")
    details["linkability"] = {**asdict(linkability), "columns": [list(h) for h in halves],
                              "neighbours": NEIGHBOURS, "random_guess_rate": random_link}

    values = [torch.cat([e.numeric, e.codes.double()], dim=1).numpy() for e in encoded]  # numbers, codes
    naive = np.random.default_rng((seed, 3)).integers(0, max(len(syn), 1), n)  # a random synthetic row's value
    by_chance = {}
    for j, col in enumerate(cols if near else []):
        tolerant = col.kind in TOLERANT_KINDS
        right = [guessed(values[0][idx[:, j, 0], j], v[:, j], tolerant).sum() for idx, v in zip(near, values[1:])]
        inference[col.name] = Risk.of(int(right[0]), n, int(right[1]), n)
        by_chance[col.name] = float(guessed(values[0][naive, j], values[1][:, j], tolerant).mean())
    measured = [c for c in names if inference[c].value == inference[c].value]
    details["inference"] = {
        "columns": {c: {**asdict(r), "random_guess_rate": by_chance.get(c)} for c, r in inference.items()},
        "worst_column": max(measured, key=lambda c: inference[c].value, default=None),
        "target": target if target in inference else None,
        "target_risk": asdict(inference[target]) if target in inference else None, "tolerance": TOLERANCE}
    return AnonymityResult(singled, linkability, inference, details)


RISKS = ("singling_out", "linkability", "inference")
KEYS = [f"privacy.{name}_risk{end}" for name in RISKS for end in ("", "_upper")]


def _worst(risks: dict[str, Risk]) -> tuple[float, float]:
    """The worst point risk and the largest upper bound (an upper bound of the worst risk)."""
    points = [r.value for r in risks.values() if r.value == r.value]
    uppers = [r.high for r in risks.values() if r.high == r.high]
    return (max(points), max(uppers)) if points else (float("nan"), float("nan"))


@register_suite("anonymity", "table", order=57, log=False, attacks=True, metrics=[
    metric("privacy.singling_out_risk", 0, 1,
           "anonymeter's singling-out risk: how much more often predicates made from the synthetic rows isolate "
           "exactly one training row than one unseen real row (worse of univariate and multivariate)", headline=1,
           baseline=0.0, baseline_words="the control set"),
    metric("privacy.linkability_risk", 0, 1,
           "anonymeter's linkability risk: how much more often the synthetic rows join a training row's two halves of "
           "columns (the same nearest synthetic row) than an unseen real row's", headline=2,
           baseline=0.0, baseline_words="the control set"),
    metric("privacy.inference_risk", 0, 1,
           "anonymeter's inference risk, worst column: how much better the nearest synthetic row on the other "
           "columns guesses a training row's value than an unseen real row's", headline=3,
           baseline=0.0, baseline_words="the control set"),
    metric("privacy.singling_out_risk_upper", 0, 1, "95% upper bound of privacy.singling_out_risk"),
    metric("privacy.linkability_risk_upper", 0, 1, "95% upper bound of privacy.linkability_risk"),
    metric("privacy.inference_risk_upper", 0, 1,
           "95% upper bound of privacy.inference_risk (the largest of the columns' upper bounds)"),
])
def anonymity_suite(ev) -> SuiteResult:
    """The three risks on the privacy attacks' shared rows; not judged on a holdout too small to
    be a control set."""
    if len(ev.holdout) < ev.settings.privacy_min_holdout:
        reason = (f"{len(ev.holdout)} holdout rows, fewer than score.privacy_min_holdout "
                  f"({ev.settings.privacy_min_holdout}): the attacks need unseen real rows as a control")
        return SuiteResult(dict.fromkeys(KEYS, float("nan")), {"samples": {"anonymity": None}, "anonymity": None},
                           not_judged=dict.fromkeys(KEYS, reason))
    rows = attack_rows(ev.train, ev.holdout, ev.syn, rows=ev.settings.attack_rows, seed=ev.seed)
    r = score_anonymity(rows, ev.schema, ev.target)
    metrics = {}
    for name, risks in (("singling_out", r.singling_out), ("linkability", {"": r.linkability}),
                        ("inference", r.inference)):
        metrics[f"privacy.{name}_risk"], metrics[f"privacy.{name}_risk_upper"] = _worst(risks)
    return SuiteResult(metrics, {"samples": {"anonymity": r.details["rows"]}, "anonymity": r.details})
