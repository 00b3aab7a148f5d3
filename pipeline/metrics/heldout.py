"""Fidelity against unseen rows: the synthetic rows' shapes and pair trends scored against the held-out
real rows, beside the training rows' own scores against the same rows.

``quality.column_shapes`` and ``quality.column_pair_trends`` compare the synthetic rows with the
training rows, so a model that copies its training rows scores best there. Against the holdout a
copy scores exactly what the training rows score (the baseline); a model that learnt the table
scores about the same, and one that learnt only its training sample's accidents less. On a large
table the two readings agree; on a small one (a few hundred rows) they part, and this one is the
reading that does not reward memorisation. The same SDMetrics definitions as the fidelity family
(``score_fidelity``), with the held-out rows as the real side. The pairs counted are those
``quality.column_pair_trends`` counts, the pairs associated in the training rows, for both sides
alike: not those associated in the holdout, whose Cramér's V is biased upwards on few rows (on a
49-row holdout an independent 10-category column against a number cut in 10 bins reads 0.43 on
average, and 400 draws of 400 over the 0.3 threshold, so nearly every mixed pair would count), and
so the two readings of a release score the same pairs. Both sides are compared on equal numbers of
rows (a seeded sample of the larger, at most ``MAX_ROWS``, as the other families sample; the same
draw for both, so that a row-for-row copy of the training rows is the same sample of them), so that
neither reads better for being bigger. A number in a mixed pair is cut on the held-out rows' bins
for both sides (``bins="real"``), not each side on its own range as the QualityReport does: there a
side whose extremes differ (value protection clips a small table's rarest values; a 49-row holdout
lacks them) has every value in other bins, and a pair scores near 0 however well its rows agree
(tips' ``size`` with each category: 0.04).
"""

from __future__ import annotations

import math

import numpy as np

from pipeline.metrics import SuiteResult, metric, register_suite
from pipeline.metrics.fidelity import score_fidelity

MAX_ROWS = 100_000  # rows a side: the holdout bounds the precision anyway
MIN_HOLDOUT = 2  # fewer held-out rows: nothing to compare with
TRAINING_ROWS = "the training rows"

FAMILY = [
    metric("quality.column_pair_trends_holdout", 0, 1,
           "column pair trends of the synthetic rows against the held-out real rows (the pairs column_pair_trends "
           "counts); real baseline: the training rows' own, which a copy of them scores exactly",
           baseline="quality.column_pair_trends_holdout_real", baseline_words=TRAINING_ROWS),
    metric("quality.column_pair_trends_holdout_real", 0, 1,
           "column pair trends of the training rows against the held-out rows: the baseline of "
           "column_pair_trends_holdout"),
    metric("quality.column_shapes_holdout", 0, 1,
           "column shapes of the synthetic rows against the held-out real rows; real baseline: the training rows' own",
           baseline="quality.column_shapes_holdout_real", baseline_words=TRAINING_ROWS),
    metric("quality.column_shapes_holdout_real", 0, 1,
           "column shapes of the training rows against the held-out rows: the baseline of column_shapes_holdout"),
]


@register_suite("heldout", "table", order=12, log=False, metrics=FAMILY)
def heldout_suite(ev) -> SuiteResult:
    """Shapes and pair trends against the holdout, of the synthetic rows and of the training rows, on
    equal seeded samples; not judged without held-out rows."""
    if len(ev.holdout) < MIN_HOLDOUT:
        reason = f"{len(ev.holdout)} holdout rows: no unseen real rows to compare with"
        return SuiteResult({m.key: float("nan") for m in FAMILY}, not_judged={m.key: reason for m in FAMILY})
    n = min(len(ev.syn), len(ev.train), MAX_ROWS)
    pick = lambda df, rows, seed: df.sample(n=rows, random_state=seed) if len(df) > rows else df  # noqa: E731
    syn, train = pick(ev.syn, n, ev.seed), pick(ev.train, n, ev.seed)  # one draw: a copy is the same sample
    holdout = pick(ev.holdout, MAX_ROWS, ev.seed + 2)
    # The pairs counted: those associated in the training rows (all of them up to MAX_ROWS), as the
    # fidelity family counts them.
    reference = pick(ev.train, MAX_ROWS, ev.seed)
    counted = {tuple(p["columns"]) for p in score_fidelity(reference, reference, ev.schema).pairs if p["counted"]}
    fid_syn = score_fidelity(holdout, syn, ev.schema, bins="real")
    fid_real = score_fidelity(holdout, train, ev.schema, bins="real")
    metrics = {"quality.column_pair_trends_holdout": _trends(fid_syn.pairs, counted),
               "quality.column_pair_trends_holdout_real": _trends(fid_real.pairs, counted),
               "quality.column_shapes_holdout": fid_syn.column_shapes,
               "quality.column_shapes_holdout_real": fid_real.column_shapes}
    not_judged = {}
    if not counted:
        reason = "no pair of columns is associated in the training rows: no pair trend to compare"
        not_judged = {k: reason for k in ("quality.column_pair_trends_holdout",
                                          "quality.column_pair_trends_holdout_real")}
    samples = {"holdout": len(holdout), "rows_per_side": n, "pairs_counted": len(counted)}
    return SuiteResult(metrics, {"samples": {"heldout_fidelity": samples}}, not_judged=not_judged)


def _trends(pairs: list[dict], counted: set[tuple]) -> float:
    """The mean score of the pairs in ``counted`` (NaN when none), as ``summarize`` averages its own."""
    scores = [p["score"] for p in pairs if tuple(p["columns"]) in counted and not math.isnan(p["score"])]
    return float(np.mean(scores)) if scores else float("nan")
