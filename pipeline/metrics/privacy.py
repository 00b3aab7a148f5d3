"""Privacy: synthetic rows that copy a training row exactly, real ID values released, and how close
synthetic rows come to training rows (distance to closest record, DCR) compared with how close
unseen real rows come."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from pipeline.metrics import SuiteResult, metric, register_suite
from pipeline.metrics.fidelity import joint_codes, numeric_values
from pipeline.rowhash import row_hashes
from pipeline.schema import DISCRETE_KINDS, NUMERIC_KINDS, TableSchema

_DISTANCE_KINDS = NUMERIC_KINDS + DISCRETE_KINDS
MAX_TRAIN_PARTS = 4  # the share's training samples: a 80/20 split's training rows are four holdouts
# Categorical mismatches are one matrix product over one-hot codes, for columns of at most
# MAX_ONE_HOT codes and while the reference's one-hot matrix stays under ONE_HOT_CELLS cells (256 MB
# of float32). Any other categorical column is compared code by code, one chunk of rows at a time:
# the same 0/1 per column (counts of whole mismatches, exact in float32 either way), so the
# distances do not depend on which way a column went; only the memory does. A 100,000-value
# column one-hot encoded asked for 8 GB.
MAX_ONE_HOT = 1_000
ONE_HOT_CELLS = 2**26


def exact_match_rate(train: pd.DataFrame, other: pd.DataFrame, columns: list[str]) -> float:
    """Share of rows of ``other`` that equal some training row on every one of ``columns``."""
    if len(other) == 0:
        return float("nan")
    return float(np.isin(row_hashes(other, columns), row_hashes(train, columns)).mean())


def real_ids_released(real: list[pd.DataFrame], syn: pd.DataFrame, columns: list[str]) -> dict[str, dict]:
    """Per ID column: how many of its synthetic values (nulls aside) equal a real value of the same
    column in any of the ``real`` frames (``released``, 0 when generation made them fresh), of
    ``values``."""
    out = {}
    for name in columns:
        values = syn[name].dropna()
        known = pd.concat([f[name].dropna() for f in real]).unique()
        out[name] = {"released": int(values.isin(known).sum()), "values": len(values)}
    return out


def real_id_rate(released: dict[str, dict]) -> float:
    """``real_ids_released``'s counts pooled over the columns: the share of synthetic ID values that are real."""
    total = sum(r["values"] for r in released.values())
    return sum(r["released"] for r in released.values()) / total if total else float("nan")


# -- the privacy attacks' rows ----------------------------------------------------------------


@dataclass
class AttackRows:
    """The rows every privacy attack plays with, one seeded split shared by all of them.

    ``members``: training rows (what an attack should not be able to tell apart); ``non_members``:
    real rows the model never saw, as many (the membership attacks' negatives, anonymeter's
    control set); ``reference``: other unseen real rows, the attacker's sample of the population
    (a density-ratio attack compares the synthetic rows' density with theirs); ``syn``: the
    synthetic rows attacked with. The holdout is shuffled once and cut in two halves (reference,
    non-members), so no row plays two roles; each real role holds at most ``rows``, the synthetic
    one up to ``SYNTHETIC_FACTOR`` times as many (``attack_rows``)."""

    members: pd.DataFrame
    non_members: pd.DataFrame
    reference: pd.DataFrame
    syn: pd.DataFrame
    seed: int

    def sizes(self) -> dict[str, int]:
        return {"members": len(self.members), "non_members": len(self.non_members),
                "reference": len(self.reference), "synthetic": len(self.syn)}


# The attacker holds the release, not a sample of it: attacked with a sample, a release that copies
# its training rows looks safer than it is (Adult, a copier of 19,536 training rows: membership AUC
# 0.635 with 5,000 of its rows, 1.000 with all of them; benchmarks/privacy_gate.py). So the
# synthetic role holds up to this many times ``score.attack_rows`` rows (all of most releases);
# the nearest-row searches are linear in it.
SYNTHETIC_FACTOR = 8


def attack_rows(train: pd.DataFrame, holdout: pd.DataFrame, syn: pd.DataFrame, rows: int, seed: int) -> AttackRows:
    """The seeded split of ``AttackRows`` (the same rows for the same data, ``rows`` and seed). The
    synthetic rows are drawn with a seed of their own, so that a release listing its training rows
    in their order is not attacked with exactly the members it copies."""
    shuffled = holdout.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    half = len(shuffled) // 2
    non_members = shuffled.iloc[:min(half, rows)].reset_index(drop=True)
    reference = shuffled.iloc[half:half + min(len(shuffled) - half, rows)].reset_index(drop=True)
    pick = lambda df, n: (df.sample(n=n, random_state=seed) if len(df) > n else df).reset_index(drop=True)  # noqa: E731
    syn = syn.sample(n=rows * SYNTHETIC_FACTOR, random_state=seed + 1) if len(syn) > rows * SYNTHETIC_FACTOR else syn
    return AttackRows(pick(train, len(non_members)), non_members, reference, syn.reset_index(drop=True), seed)


def attack_sizes(train: int, holdout: int, syn: int, rows: int) -> dict[str, int]:
    """``attack_rows(...).sizes()`` from the row counts alone (validate's plan, before any row exists)."""
    non_members = min(holdout // 2, rows)
    return {"members": min(train, non_members), "non_members": non_members,
            "reference": min(holdout - holdout // 2, rows), "synthetic": min(syn, rows * SYNTHETIC_FACTOR)}


# -- distance to closest record ------------------------------------------------------------------


@dataclass
class DistanceEncoding:
    """Rows as numbers for SDMetrics' DCR distance: per numeric column |a - b| / range (capped at 1;
    0/1 for a constant column; 1 when one side is null, 0 when both are), per categorical column
    0 if equal else 1 (nulls equal each other); a row distance is the mean over the columns."""

    numeric: torch.Tensor  # [n, k] float64, NaN for null
    codes: torch.Tensor  # [n, m] int64 category codes (null is a code)
    n_columns: int


def _numeric_distance_columns(schema: TableSchema) -> list[str]:
    return [c.name for c in schema.modeled if c.kind in NUMERIC_KINDS]


def encode_for_distance(frames: list[pd.DataFrame], schema: TableSchema) -> list[DistanceEncoding]:
    cols = [c for c in schema.modeled if c.kind in _DISTANCE_KINDS]
    num = _numeric_distance_columns(schema)
    cat = [c.name for c in cols if c.kind in DISCRETE_KINDS]
    codes = {name: joint_codes(*(f[name] for f in frames))[0] for name in cat}
    out = []
    for i, f in enumerate(frames):
        x = np.column_stack([numeric_values(f[name]) for name in num]) if num else np.zeros((len(f), 0))
        k = np.column_stack([codes[name][i] for name in cat]) if cat else np.zeros((len(f), 0), dtype=np.int64)
        out.append(DistanceEncoding(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)),
                                    torch.from_numpy(np.ascontiguousarray(k, dtype=np.int64)), len(cols)))
    return out


@dataclass
class NumericScale:
    """The reference rows' numeric ranges, SDMetrics' DCR scaling: a column offset by its minimum and
    divided by its range (``constant``: a constant or all-null column, where any difference counts 1)."""

    lo: torch.Tensor
    scale: torch.Tensor
    constant: torch.Tensor

    @classmethod
    def of(cls, reference: torch.Tensor) -> "NumericScale":
        lo = torch.nan_to_num(reference, nan=float("inf")).amin(0)
        hi = torch.nan_to_num(reference, nan=float("-inf")).amax(0)
        span = hi - lo
        constant = ~(span > 0)
        lo = torch.where(torch.isfinite(lo), lo, torch.zeros_like(lo))
        return cls(lo, torch.where(constant, torch.ones_like(span), span), constant)

    @classmethod
    def of_frame(cls, frame: pd.DataFrame, schema: TableSchema) -> "NumericScale":
        """``of`` the rows of ``frame`` in ``encode_for_distance``'s numeric columns, one column at a
        time (no copy of the whole frame)."""
        names = _numeric_distance_columns(schema)
        lo, hi = torch.zeros(len(names), dtype=torch.float64), torch.zeros(len(names), dtype=torch.float64)
        for j, name in enumerate(names):
            x = numeric_values(frame[name])
            x = x[~np.isnan(x)]
            lo[j], hi[j] = (float(x.min()), float(x.max())) if len(x) else (np.nan, np.nan)
        return cls.of(torch.stack([lo, hi]))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # Offset and scaled in float64, then compared in float32 (distances are sums of at most a
        # few dozen terms in [0, 1]). Clamping changes nothing: a difference counts at most 1.
        return ((x - self.lo) / self.scale).clamp(-2.0, 3.0).nan_to_num(0.0).float()


def numeric_difference(x: torch.Tensor, x_nan: torch.Tensor, ref: torch.Tensor, ref_nan: torch.Tensor,
                       constant: bool, has_nan: bool) -> torch.Tensor:
    """[len(x), len(ref)]: one numeric column's term of the DCR distance, from scaled values
    (``NumericScale``): |a - b| capped at 1 (0/1 for a constant column), 1 when one side is null, 0
    when both are (``has_nan``: whether either side holds a null)."""
    diff = (x[:, None] - ref[None, :]).abs_()
    diff = (diff > 0).float() if constant else diff.clamp_max_(1.0)
    if has_nan:  # null handling only where a null occurs
        one_null = x_nan[:, None] ^ ref_nan[None, :]
        both_null = x_nan[:, None] & ref_nan[None, :]
        diff = torch.where(one_null, 1.0, torch.where(both_null, 0.0, diff))
    return diff


def nearest_distances(data: DistanceEncoding, reference: DistanceEncoding, k: int = 1,
                      chunk: int = 256, scale: NumericScale | None = None) -> np.ndarray:
    """[len(data), k]: each data row's k smallest distances to the reference rows (ascending).

    Numeric ranges come from the reference, as in SDMetrics' ``calculate_dcr``, unless ``scale``
    gives them (distances to two reference sets compared with each other need one scale). Chunked over data
    rows, so memory is ``chunk x len(reference)``; categorical mismatches are one matrix product
    (columns of very many categories: one comparison each, ``one_hot_columns``).
    """
    if data.numeric.shape[0] == 0:
        return np.zeros((0, k))
    if data.n_columns == 0:
        raise ValueError("no column to measure distances on")
    if reference.numeric.shape[0] < k:
        raise ValueError(f"need at least {k} reference rows, got {reference.numeric.shape[0]}")
    scaled = NumericScale.of(reference.numeric) if scale is None else scale
    ref_scaled, ref_nan = scaled(reference.numeric), reference.numeric.isnan()
    # One-hot of the categorical codes (column j's codes offset by the counts before it), so
    # "same category" counts are one matrix product; the columns left out compare codes directly.
    width = data.codes.shape[1]
    hot, direct = one_hot_columns(data.codes, reference.codes)
    keep = sorted(hot)
    counts = [hot[j] for j in keep]
    offsets = (torch.tensor([0] + counts[:-1], dtype=torch.int64).cumsum(0) if counts
               else torch.zeros(0, dtype=torch.int64))
    total_width = sum(counts)

    def one_hot(codes: torch.Tensor) -> torch.Tensor:
        m = torch.zeros(codes.shape[0], total_width)
        if counts:
            m.scatter_(1, codes + offsets, 1.0)
        return m

    ref_hot = one_hot(reference.codes[:, keep]).T.contiguous()
    has_nan = (ref_nan.any(0) | data.numeric.isnan().any(0)).tolist()
    constant = scaled.constant.tolist()
    out = []
    for start in range(0, data.numeric.shape[0], chunk):
        x = data.numeric[start:start + chunk]
        codes = data.codes[start:start + chunk]
        total = width - one_hot(codes[:, keep]) @ ref_hot  # categorical mismatches
        for j in direct:
            total -= (codes[:, j, None] == reference.codes[None, :, j]).to(total.dtype)
        x_scaled, x_nan = scaled(x), x.isnan()
        for j in range(x.shape[1]):
            total += numeric_difference(x_scaled[:, j], x_nan[:, j], ref_scaled[:, j], ref_nan[:, j], constant[j],
                                        has_nan[j])
        out.append(torch.topk(total, k, dim=1, largest=False).values / max(data.n_columns, 1))
    return torch.cat(out).double().numpy()


def one_hot_columns(data_codes: torch.Tensor, reference_codes: torch.Tensor) -> tuple[dict[int, int], list[int]]:
    """Which categorical columns go one-hot ({column: its number of codes}) and which are compared
    code by code: one-hot for the columns of at most ``MAX_ONE_HOT`` codes, fewest codes first,
    while the reference rows x the one-hot width stays within ``ONE_HOT_CELLS``."""
    rows = max(reference_codes.shape[0], 1)
    counts = {j: int(max(data_codes[:, j].max().item() if len(data_codes) else 0,
                         reference_codes[:, j].max().item() if len(reference_codes) else 0)) + 1
              for j in range(data_codes.shape[1])}
    hot, used = {}, 0
    for j in sorted(counts, key=lambda j: (counts[j], j)):
        if counts[j] <= MAX_ONE_HOT and (used + counts[j]) * rows <= ONE_HOT_CELLS:
            hot[j], used = counts[j], used + counts[j]
    return hot, [j for j in counts if j not in hot]


@dataclass
class PrivacyResult:
    dcr_share: float  # share of synthetic rows closer to train than to holdout (0.5 ideal)
    dcr_protection: float  # SDMetrics DCROverfittingProtection's formula: min((1 - share) * 2, 1)
    dcr_median: float  # synthetic -> train
    dcr_holdout_median: float  # holdout -> train: the distance a fresh real row has
    nndr_median: float  # synthetic rows' nearest / second-nearest training distance
    distances: dict[str, np.ndarray]
    rows: dict[str, int]
    seed: int
    # The share of rows that know only each column's training values (``marginal_rows``): what the
    # training sample's own marginals put on dcr_share, whatever the model.
    dcr_share_marginals: float = float("nan")


def marginal_rows(train: pd.DataFrame, schema: TableSchema, n: int, seed: int) -> pd.DataFrame:
    """``n`` rows whose every column is drawn from the training rows' distribution of that column on
    its own (seeded): a release that learned each column's distribution in the training sample and
    nothing of its rows. A category is a training row's; a number comes from the training values'
    quantile function, linear between them (as the transform draws), missing at their rate, since a
    training row's exact value would make every such row a partial copy of one training row."""
    rng = np.random.default_rng(seed)
    out: dict[str, object] = {}
    for c in schema.modeled:
        if c.kind not in _DISTANCE_KINDS:
            continue
        if c.kind in NUMERIC_KINDS:
            x = numeric_values(train[c.name])
            finite = np.sort(x[~np.isnan(x)])
            values = np.full(n, np.nan)
            if len(finite):
                present = rng.random(n) >= 1.0 - len(finite) / len(x)
                values[present] = np.interp(rng.random(int(present.sum())), np.linspace(0.0, 1.0, len(finite)),
                                            finite)
            out[c.name] = values
        else:
            out[c.name] = train[c.name].iloc[rng.integers(0, len(train), n)].reset_index(drop=True)
    return pd.DataFrame(out)


def score_dcr(train: pd.DataFrame, holdout: pd.DataFrame, syn: pd.DataFrame, schema: TableSchema,
              rows: int = 5_000, seed: int = 0, reference_rows: int = 100_000,
              scale: str = "train", marginals: bool = True) -> PrivacyResult:
    """DCR on seeded samples of ``rows`` synthetic rows.

    The share: each synthetic row against a holdout sample and a training sample of the same size
    (an equal size makes 0.5 what a model that copies nothing scores), as big as the holdout. With
    more training rows than that, the training rows are cut into up to ``MAX_TRAIN_PARTS`` disjoint
    samples of that size and the share is averaged over them (``reference_rows`` training rows at
    most in all). Which few thousand reference rows happen to be drawn moves the share far more than
    the synthetic rows do:
    on one Adult release, 5,000-row reference samples gave 0.50 to 0.58 over six seeds, the whole
    holdout against two halves of the training rows 0.49 to 0.51.

    Every distance here is on one scale: each numeric column's range over all the training rows
    (TabSyn's DCR scales alike). SDMetrics' DCROverfittingProtection divides by each reference
    set's own range instead, so a holdout whose sample missed a column's extremes reads as farther
    from everything: half of the training rows scored as a release of the other half (real rows
    no model saw) gave a share of 0.537 on Default's suite split, 0.655 on sklearn's wine table (36
    holdout rows) and 0.415 on Magic that way, 0.49-0.52 on one scale (``benchmarks/README.md``,
    "The DCR share's one scale"). ``scale="reference"`` measures
    SDMetrics' way, for that comparison (``benchmarks/dcr_scale.py``).

    The marginals' share: the same share for as many ``marginal_rows`` as synthetic rows. A small
    training sample's class mix and ranges differ from its holdout's by chance, and any model that
    learns the sample shares them (``marginals=False``: not measured, NaN).

    The medians and NNDR: the same synthetic rows against up to ``reference_rows`` training rows
    (all of them for most tables), so that a near-copy of any training row is seen. Quadratic,
    hence sampled."""
    if scale not in ("train", "reference"):
        raise ValueError(f"score_dcr: scale must be 'train' or 'reference', not {scale!r}")
    n_ref = min(len(train), len(holdout), reference_rows)
    parts = max(1, min(MAX_TRAIN_PARTS, round(len(train) / n_ref))) if n_ref else 1
    n_ref = min(n_ref, len(train) // parts, reference_rows // parts)  # at most reference_rows training rows in all
    pick = lambda df, n: df.sample(n=n, random_state=seed) if len(df) > n else df  # noqa: E731
    shuffled = train.sample(n=n_ref * parts, random_state=seed)  # shuffled even when it is every row
    tr_parts = [shuffled.iloc[i * n_ref:(i + 1) * n_ref] for i in range(parts)]
    ho, sy = pick(holdout, n_ref), pick(syn, rows)
    ho_query, tr_all = pick(holdout, rows), pick(train, reference_rows)
    marg = [marginal_rows(train, schema, len(sy) if len(train) else 0, seed)] if marginals else []
    e_ho, e_sy, e_hq, e_all, *e_parts = encode_for_distance([ho, sy, ho_query, tr_all, *tr_parts, *marg], schema)
    e_mg = e_parts.pop() if marginals else None
    if n_ref == 0 or not len(sy) or not e_sy.n_columns:
        nan = float("nan")
        return PrivacyResult(nan, nan, nan, nan, nan, {}, {"synthetic": len(sy), "train": n_ref, "holdout": n_ref,
                                                          "train_parts": parts, "train_reference": len(tr_all)}, seed)
    common = NumericScale.of_frame(train, schema) if scale == "train" else None

    def share_of(rows: DistanceEncoding) -> float:
        to_holdout = nearest_distances(rows, e_ho, k=1, scale=common)[:, 0]
        return float(np.mean([(nearest_distances(rows, e, k=1, scale=common)[:, 0] < to_holdout).mean()
                              for e in e_parts]))

    share = share_of(e_sy)
    syn_train = nearest_distances(e_sy, e_all, k=min(2, len(tr_all)), scale=common)
    hold_train = nearest_distances(e_hq, e_all, k=1, scale=common)[:, 0]
    d1 = syn_train[:, 0]
    if syn_train.shape[1] > 1:
        d2 = syn_train[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            # A copy of a training row is a near-copy (0) even when that row occurs twice (0 / 0);
            # two equally near distinct neighbours give 1.
            ratio = np.where(d1 == 0, 0.0, np.where(d2 > 0, d1 / d2, 1.0))
    else:
        ratio = np.array([])
    return PrivacyResult(
        dcr_share=share,
        dcr_protection=min((1.0 - share) * 2, 1.0) if share == share else float("nan"),
        dcr_median=float(np.median(d1)),
        dcr_holdout_median=float(np.median(hold_train)) if len(hold_train) else float("nan"),
        nndr_median=float(np.median(ratio)) if len(ratio) else float("nan"),
        # Like against like: each a row set's distances to the same training rows.
        distances={"synthetic_to_train": d1, "holdout_to_train": hold_train},
        rows={"synthetic": len(sy), "train": n_ref, "holdout": len(ho), "train_parts": parts,
              "train_reference": len(tr_all)},
        seed=seed,
        dcr_share_marginals=share_of(e_mg) if e_mg is not None else float("nan"),
    )


# Each privacy metric is read against what real data scores (``baseline``): unseen real rows (the
# holdout) in place of the synthetic ones, measured on this data or known by construction.
UNSEEN = "unseen real rows"


@register_suite("privacy", "table", order=50, log=False, metrics=[
    metric("privacy.exact_match_rate", 0, 1,
           "share of synthetic rows identical to a training row (real baseline: exact_match_rate_holdout, as real data "
           "repeats itself)", headline=1,
           baseline="privacy.exact_match_rate_holdout", baseline_words=UNSEEN),
    metric("privacy.exact_match_excess", -1, 1,
           "exact_match_rate minus exact_match_rate_holdout: how much more often synthetic rows repeat a training "
           "row than unseen real rows do (real baseline 0; below 0: less often; not judged without a holdout)",
           headline=2, baseline=0.0, baseline_words=UNSEEN),
    metric("privacy.exact_match_rate_holdout", 0, 1,
           "share of real holdout rows identical to a training row: the real baseline of exact_match_rate"),
    metric("privacy.real_id_rate", 0, 1,
           "share of synthetic ID values (columns of kind id) equal to a real training or holdout ID of the "
           "same column (only with ID columns; real baseline 0: generation makes fresh IDs)",
           baseline=0.0, baseline_words="fresh IDs"),
    metric("privacy.dcr_share", 0, 1,
           "share of synthetic rows closer to a training row than to any holdout row (real baseline 0.5: unseen real "
           "rows are no closer to train than to other unseen rows; near 1: copies)", headline=3,
           baseline=0.5, baseline_words=UNSEEN),
    metric("privacy.dcr_share_marginals", 0, 1,
           "dcr_share of rows that know only each column's training values (every column drawn from the training "
           "rows on its own): how much of dcr_share the training sample's own marginals explain, whatever the model "
           "(about 0.5 on a large table; above it on a small one, whose sample differs from its holdout by chance)"),
    metric("privacy.dcr_protection", 0, 1,
           "min((1 - dcr_share) * 2, 1): SDMetrics DCROverfittingProtection's formula, on one scale for both "
           "sides (real baseline 1)",
           baseline=1.0, baseline_words=UNSEEN),
    metric("privacy.dcr_median", 0, 1,
           "median distance of a synthetic row to its closest training row (SDMetrics DCR distance; real baseline: "
           "dcr_holdout_median)", baseline="privacy.dcr_holdout_median", baseline_words=UNSEEN),
    metric("privacy.dcr_holdout_median", 0, 1,
           "median distance of a real holdout row to its closest training row: the real baseline of dcr_median"),
    metric("privacy.nndr_median", 0, 1,
           "median ratio of a synthetic row's nearest to second-nearest training distance (near 0: a near-copy of "
           "one row; no real baseline measured)", headline=4),
])
def privacy_suite(ev) -> SuiteResult:
    """Exact copies on every row, against how often unseen real rows repeat a training row; real
    IDs released (in the synthetic rows scored: a seeded sample of a big release); DCR on seeded
    samples, against the holdout. Without a holdout the baselines are missing: the excess is NaN
    and not judged (the reason said), DCR is not computed."""
    modeled = [c.name for c in ev.schema.modeled]
    metrics: dict[str, object] = {"privacy.exact_match_rate": (ev.stream().exact_match_rate() if ev.streamed
                                                               else exact_match_rate(ev.train, ev.syn, modeled))}
    ids = [c.name for c in ev.schema.columns if c.kind == "id"]
    released = real_ids_released([ev.train, ev.holdout], ev.syn, ids) if ids else {}
    if ids:
        metrics["privacy.real_id_rate"] = real_id_rate(released)
    details = {"real_ids_released": released} if ids else {}
    # A threshold on it for a table without IDs (one gate for every dataset) is skipped, not failed.
    not_judged = ({"privacy.real_id_rate": "no column of kind id"}
                  if not ids and "privacy.real_id_rate" in ev.settings.thresholds else {})
    if not len(ev.holdout):
        metrics["privacy.exact_match_excess"] = float("nan")
        not_judged["privacy.exact_match_excess"] = ("no holdout rows: how often unseen real rows repeat a training "
                                                    "row (the baseline) is unknown")
        return SuiteResult(metrics, {"samples": {"privacy_dcr": None}, **details}, not_judged=not_judged)
    holdout_rate = exact_match_rate(ev.train, ev.holdout, modeled)
    metrics["privacy.exact_match_rate_holdout"] = holdout_rate
    metrics["privacy.exact_match_excess"] = metrics["privacy.exact_match_rate"] - holdout_rate
    p = score_dcr(ev.train, ev.holdout, ev.syn, ev.schema, rows=ev.settings.privacy_rows, seed=ev.seed)
    metrics.update({"privacy.dcr_share": p.dcr_share, "privacy.dcr_share_marginals": p.dcr_share_marginals,
                    "privacy.dcr_protection": p.dcr_protection,
                    "privacy.dcr_median": p.dcr_median, "privacy.dcr_holdout_median": p.dcr_holdout_median,
                    "privacy.nndr_median": p.nndr_median})
    return SuiteResult(metrics, {"samples": {"privacy_dcr": p.rows}, **details},
                       report={"privacy_distances": p.distances}, not_judged=not_judged)
