"""Membership inference: can an attacker holding the synthetic rows tell which real rows trained the model?

Every attack plays on the privacy attacks' one seeded split (``privacy.attack_rows``): it scores
each target, training rows (``members``, label 1) and as many unseen real rows (``non_members``,
label 0), higher meaning "a member", and is judged by how well the scores separate the two: ROC
AUC (0.5: a coin toss; 1: every member found) and the true-positive rate at a false-positive rate
of 1% and 0.1% (the share of members an attacker finds while wrongly accusing one unseen row in a
hundred or in a thousand: an attack can be useless on average and still sure of a few rows).

The feature space: the model's own per-column transform (``TableTransformer``), fitted on the
attacker's ``reference`` rows, never on a training row. Numeric columns become standard normal
scores through the reference's quantiles, categorical and boolean columns one-hot blocks (a
category the reference lacks, or a missing value, gets its own slot); ID columns are not features.
Two rows drawn independently differ by about 2 in squared distance per column either way (2 for
numbers, up to 2 for categories), so no kind of column outweighs the others. Tied values (the zeros
of ``capital-gain``) go to the middle of their quantile interval, not to a random point of it as
in training: a copied row is then at distance 0 from its original. Distances are Euclidean there.

The attacks:

* ``distance`` (DCR, as in the MIDST challenge): minus the distance from the target to its nearest
  synthetic row. It assumes that a model that memorised a row generates something close to it.
* ``density_ratio`` (DOMIAS, van Breugel et al. 2023): log p_syn(x) - log p_ref(x), the synthetic
  rows' density at the target against the population's (the reference rows'). It assumes that
  overfitting shows as a density the synthetic rows put on training rows beyond what the population
  has there, so a target in a crowded part of the population is not mistaken for a member. The
  densities are k-nearest-neighbour estimates, p(x) ~ k / (N r_k(x)^d); the score used,
  log r_k,ref(x) - log r_k,syn(x), orders the targets the same (d > 0; the N terms are one constant).
* ``dcr_difference``: distance to the nearest reference row minus distance to the nearest
  synthetic row, the same comparison with k = 1 (one neighbour: sharper on copies, noisier).

The headline keys are the worst attack's: the highest AUC and the highest TPRs over the attacks.
Each figure has a seeded percentile bootstrap 95% interval over the targets (members and
non-members resampled separately, ``RESAMPLES`` times): in ``details.json`` under ``membership``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from pipeline.metrics import SuiteResult, metric, register_suite
from pipeline.metrics.privacy import AttackRows, attack_rows
from pipeline.models.transformer import NORMAL_SCALE, TableTransformer
from pipeline.schema import DISCRETE_KINDS, TableSchema

ATTACKS = ("distance", "density_ratio", "dcr_difference")
# The false-positive rates the TPRs are read at, by the name their keys end in.
FPRS = {"1pct": 0.01, "01pct": 0.001}
NEIGHBOURS = 5  # k of the density estimates: small, so the estimate stays local
RESAMPLES = 200
# Bootstrap resamples are computed in blocks of at most this many (resample x target) cells, so
# memory stays bounded whatever ``score.attack_rows`` is.
BOOTSTRAP_CELLS = 2**22
KEYS = {"auc": "privacy.mia_auc", **{f"tpr_at_fpr_{name}": f"privacy.mia_tpr_at_fpr_{name}" for name in FPRS}}


# -- the feature space ----------------------------------------------------------------------------


class _Midpoint:
    """An ``rng`` for ``TableTransformer.transform`` that draws 0.5 every time: a tied value at the
    middle of its quantile interval, a missing number's score at 0 (the same row, the same point)."""

    def random(self, n: int) -> np.ndarray:
        return np.full(n, 0.5)


def attack_space(rows: AttackRows, schema: TableSchema) -> dict[str, torch.Tensor]:
    """The members, non-members, reference and synthetic rows as float64 points of the transform
    fitted on the reference rows (see the module's docstring): {role: [n, width]}."""
    frames = {"members": rows.members, "non_members": rows.non_members, "reference": rows.reference,
              "syn": rows.syn}
    state = TableTransformer(schema).fit(rows.reference).state()
    # The layout holds every value of the four sets: a slot for each category and missing value
    # the reference lacks (the transform has none for them); the knots are the reference's alone.
    for c in state["columns"]:
        values = pd.concat([f[c["name"]] for f in frames.values()], ignore_index=True)
        c["has_missing"] = c["has_missing"] or bool(values.isna().any())
        if c["kind"] in DISCRETE_KINDS and not c["other"]:
            known = set(c["categories"])
            c["categories"] = c["categories"] + [v for v in (_plain(v) for v in values.dropna().unique())
                                                 if v not in known]
    transformer = TableTransformer.from_state(schema, state)
    scale = np.ones(transformer.width)
    for span in transformer.spans:
        if span.activation == "tanh":  # the transform's z / NORMAL_SCALE, back to a standard normal score
            scale[span.start] = NORMAL_SCALE
    return {role: torch.from_numpy(transformer.transform(f, _Midpoint()).astype(np.float64) * scale)
            for role, f in frames.items()}


def _plain(v: object) -> object:
    return v.item() if isinstance(v, np.generic) else v


def neighbour_distances(x: torch.Tensor, reference: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """[len(x), k]: each row's k smallest Euclidean distances to ``reference`` (ascending), in chunks
    of rows so memory is ``chunk x len(reference)``."""
    return torch.cat([torch.cdist(x[i:i + chunk], reference).topk(k, dim=1, largest=False).values
                      for i in range(0, len(x), chunk)])


def attack_scores(targets: torch.Tensor, syn: torch.Tensor, reference: torch.Tensor,
                  k: int = NEIGHBOURS) -> dict[str, np.ndarray]:
    """Each attack's score per target (higher: more likely a member)."""
    k = min(k, len(syn), len(reference))
    to_syn, to_ref = neighbour_distances(targets, syn, k), neighbour_distances(targets, reference, k)
    floor = 1e-9  # a radius of 0 (k copies) is the densest there is, not log 0
    return {
        "distance": (-to_syn[:, 0]).numpy(),
        "density_ratio": (to_ref[:, k - 1].clamp_min(floor).log() - to_syn[:, k - 1].clamp_min(floor).log()).numpy(),
        "dcr_difference": (to_ref[:, 0] - to_syn[:, 0]).numpy(),
    }


# -- ROC figures ----------------------------------------------------------------------------------


def roc_figures(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray,
                fprs: tuple[float, ...] = tuple(FPRS.values())) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC [B] and TPR at each of ``fprs`` [B, len(fprs)] of ``scores`` (higher: label 1), once
    for each row of ``weights`` [B, n] (how often each target counts: ones for the figures
    themselves, bootstrap counts for a resample).

    The ROC curve steps through the distinct scores from the highest (tied scores are one step, a
    diagonal segment), from (0, 0) to (1, 1); the AUC is the area under it (a tie counts one half,
    as in the Mann-Whitney statistic). The TPR at a false-positive rate f is read on the curve: the
    last point at or below f joined by a straight line to the next one (a mix of the two thresholds
    reaches every point between them), so a curve whose first step already passes f gives a share
    of that step, not 0."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order].astype(bool)
    w = weights[:, order].astype(np.float64)
    ends = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]  # the last target of each tied group
    tp = np.cumsum(np.where(y, w, 0.0), axis=1)[:, ends]
    fp = np.cumsum(np.where(y, 0.0, w), axis=1)[:, ends]
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.c_[np.zeros(len(w)), tp / tp[:, -1:]]
        fpr = np.c_[np.zeros(len(w)), fp / fp[:, -1:]]
    auc = (np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]) / 2).sum(1)
    at = np.empty((len(w), len(fprs)))
    rows = np.arange(len(w))
    for j, f in enumerate(fprs):
        i = np.minimum((fpr <= f).sum(1) - 1, fpr.shape[1] - 2)  # the last point at or below f
        x0, x1, y0, y1 = fpr[rows, i], fpr[rows, i + 1], tpr[rows, i], tpr[rows, i + 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(x1 > x0, (f - x0) / (x1 - x0), 1.0)
        at[:, j] = y0 + np.clip(share, 0.0, 1.0) * (y1 - y0)
    return auc, at


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, fpr: float) -> float:
    """The true-positive rate at false-positive rate ``fpr`` on the ROC curve (``roc_figures``)."""
    return float(roc_figures(scores, labels, np.ones((1, len(scores))), (fpr,))[1][0, 0])


def bootstrap_weights(labels: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """[resamples, len(labels)]: how often each target is drawn when the positives and the negatives
    are each resampled with replacement (each side keeps its size)."""
    out = np.zeros((resamples, len(labels)))
    for side in (np.flatnonzero(labels == 1), np.flatnonzero(labels != 1)):
        n = len(side)
        picks = rng.integers(0, n, size=(resamples, n)) + np.arange(resamples)[:, None] * n
        out[:, side] = np.bincount(picks.ravel(), minlength=resamples * n).reshape(resamples, n)
    return out


@dataclass
class Figure:
    estimate: float
    low: float  # the bootstrap 95% interval
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high}


def attack_figures(scores: np.ndarray, labels: np.ndarray, resamples: int, seed: int) -> dict[str, Figure]:
    """AUC and the TPRs at ``FPRS`` of one attack, each with a seeded percentile bootstrap 95%
    interval over the targets (``resamples`` resamples, in blocks of bounded memory)."""
    auc, at = roc_figures(scores, labels, np.ones((1, len(scores))))
    rng = np.random.default_rng(seed)
    block = max(1, BOOTSTRAP_CELLS // max(len(scores), 1))
    boot_auc, boot_at = [], []
    for start in range(0, resamples, block):
        a, t = roc_figures(scores, labels, bootstrap_weights(labels, min(block, resamples - start), rng))
        boot_auc.append(a)
        boot_at.append(t)
    draws = np.c_[np.concatenate(boot_auc), np.concatenate(boot_at)]
    low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    point = np.r_[auc, at[0]]
    names = ["auc", *(f"tpr_at_fpr_{name}" for name in FPRS)]
    return {name: Figure(float(point[i]), float(low[i]), float(high[i])) for i, name in enumerate(names)}


# -- the attacks on a split -----------------------------------------------------------------------


@dataclass
class MembershipResult:
    attacks: dict[str, dict[str, Figure]]  # {attack: {auc | tpr_at_fpr_1pct | ..: Figure}}
    rows: dict[str, int]
    seed: int

    def worst(self, figure: str) -> tuple[str, float]:
        """The attack with the highest ``figure`` (an attacker picks the one that works), and it."""
        name = max(self.attacks, key=lambda a: self.attacks[a][figure].estimate)
        return name, self.attacks[name][figure].estimate


def score_membership(rows: AttackRows, schema: TableSchema, k: int = NEIGHBOURS, resamples: int = RESAMPLES,
                     seed: int = 0) -> MembershipResult:
    """Every attack in ``ATTACKS`` on the split ``rows`` (members label 1, non-members label 0),
    with the targets as they come (both sides are already seeded samples). Needs rows in each role."""
    points = attack_space(rows, schema)
    targets = torch.cat([points["members"], points["non_members"]])
    labels = np.r_[np.ones(len(rows.members)), np.zeros(len(rows.non_members))]
    scores = attack_scores(targets, points["syn"], points["reference"], k)
    # Each attack resamples the same targets: their intervals are comparable draw for draw.
    attacks = {name: attack_figures(scores[name], labels, resamples, seed) for name in ATTACKS}
    return MembershipResult(attacks, rows.sizes(), seed)


def _not_judged(reason: str, sizes: dict | None) -> SuiteResult:
    return SuiteResult({key: float("nan") for key in KEYS.values()},
                       {"samples": {"membership": sizes}, "membership": None},
                       not_judged={key: reason for key in KEYS.values()})


@register_suite("membership", "table", order=55, attacks=True, metrics=[
    metric("privacy.mia_auc", 0, 1,
           "ROC AUC of the strongest membership-inference attack telling training rows from unseen real rows by the "
           "synthetic rows (0.5 = it cannot)", headline=1, baseline=0.5, baseline_words="chance"),
    metric("privacy.mia_tpr_at_fpr_1pct", 0, 1,
           "share of training rows the strongest attack finds while flagging 1% of unseen real rows (0.01 = chance)",
           headline=2, baseline=0.01, baseline_words="chance"),
    metric("privacy.mia_tpr_at_fpr_01pct", 0, 1,
           "share of training rows the strongest attack finds while flagging 0.1% of unseen real rows (0.001 = "
           "chance)", baseline=0.001, baseline_words="chance"),
])
def membership_suite(ev) -> SuiteResult:
    """The attacks on the shared split; not judged (NaN, the reason said) on a holdout under
    ``score.privacy_min_holdout`` rows, or with nothing to attack with."""
    if len(ev.holdout) < ev.settings.privacy_min_holdout:
        return _not_judged(f"{len(ev.holdout)} holdout rows, fewer than score.privacy_min_holdout "
                           f"({ev.settings.privacy_min_holdout}): membership attacks need unseen real rows", None)
    rows = attack_rows(ev.train, ev.holdout, ev.syn, rows=ev.settings.attack_rows, seed=ev.seed)
    if not len(rows.syn) or not len(rows.members) or not ev.schema.modeled:
        return _not_judged("no synthetic rows, training rows or modelled columns to attack with", rows.sizes())
    result = score_membership(rows, ev.schema, seed=ev.seed)
    metrics, worst = {}, {}
    for figure, key in KEYS.items():
        worst[figure], metrics[key] = result.worst(figure)
    details = {"feature_space": "the model's column transform fitted on the reference rows", "neighbours": NEIGHBOURS,
               "resamples": RESAMPLES, "fpr_resolution": 1 / len(rows.non_members), "worst": worst,
               "attacks": {name: {figure: f.as_dict() for figure, f in figs.items()}
                           for name, figs in result.attacks.items()}}
    return SuiteResult(metrics, {"samples": {"membership": result.rows}, "membership": details})
