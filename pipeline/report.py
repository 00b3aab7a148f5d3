"""The quality report of a release: one self-contained HTML file (plots embedded as PNG data URIs,
no script, no network) and a markdown summary (for Prefect artifacts and the data card).

A reviewer reads, top to bottom: the verdict and every score against its threshold; the worst
columns and pairs; real-vs-synthetic distributions per column; the pair-trend difference heatmap;
the privacy distances; the training loss curves.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.metrics import known_metrics, not_judged_reason
from pipeline.metrics.fidelity import numeric_values
from pipeline.schema import NUMERIC_KINDS, TableSchema

MAX_PLOTTED_COLUMNS = 36  # beyond this, the worst-scoring columns are plotted
TOP_CATEGORIES = 12
# Longest column name or category drawn in a figure: a figure grows with its labels (bbox "tight"),
# and one 10,000-character column name made a pair heatmap ask for gigabytes. The HTML tables keep
# every name whole.
LABEL_CHARS = 40
REAL, SYN, HOLD = "#4C72B0", "#DD8452", "#55A868"


@dataclass
class ReportInput:
    dataset: str
    metrics: dict[str, object]
    thresholds: dict[str, dict[str, float | None]]
    schema: TableSchema
    real: pd.DataFrame  # the real rows the synthetic ones were scored against (a sample at most)
    synthetic: pd.DataFrame
    columns: dict[str, dict]  # per-column shape scores (fidelity) merged with coverage
    pairs: list[dict]
    privacy_distances: dict[str, np.ndarray] = field(default_factory=dict)
    details: dict = field(default_factory=dict)  # details.json's: the privacy families' intervals and rows
    train_log: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)  # sampling and seeds, said plainly
    value_protection: dict | None = None  # what generate protected (``_generated.json``), if it says


def _fmt(v: object) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.4f}"
    if v is None:
        return "n/a"
    return str(v)


def threshold_text(th: dict[str, float | None] | None) -> str:
    if not th:
        return ""
    parts = []
    if th.get("min") is not None:
        parts.append(f"≥ {th['min']}")
    if th.get("max") is not None:
        parts.append(f"≤ {th['max']}")
    return " and ".join(parts)


def threshold_change_text(change: dict) -> str:
    """``≥ 0.7 → ≥ 0.6`` for one entry of a manifest's ``gate.changed_at_publish``."""
    return f"{threshold_text(change['from']) or 'none'} → {threshold_text(change['to']) or 'none'}"


def auto_summary(record: dict | None) -> str | None:
    """One line on a ``model.name: auto`` choice: the kept model and every candidate's figures."""
    if not record:
        return None
    margins = record.get("margins") or {}  # after cross-validation: each other candidate against the first
    parts = [f"{name} {c['score']:.3f} (shapes {c['shapes']:.3f}, trends {c['trends']:.3f}, detection AUC "
             f"{c['detection_auc']:.3f}; {_epochs(c['epochs'])} epochs, {c['train_seconds']:.0f} s"
             f"{_margin(margins.get(name))})"
             for name, c in record["candidates"].items()]
    rows = (f"{record['validation_rows']:,} training rows, each held out once" if record.get("folds")
            else f"{record['validation_rows']:,} rows carved from the training rows")
    return (f"model.name auto kept {record['chosen']}, by the {record['by']} ({rows}, not the holdout): "
            + "; ".join(parts) + ".")


def _margin(margin: dict | None) -> str:
    """``; +0.015 ± 0.013 a fold over the first`` for a candidate's ``auto.margins`` entry, else nothing."""
    return f"; {margin['gain']:+.3f} ± {margin['se']:.3f} a fold over the first" if margin else ""


def _epochs(epochs: int | list[int]) -> str:
    """``120``, or ``120-150`` for one training per fold."""
    if isinstance(epochs, int):
        return str(epochs)
    return str(epochs[0]) if min(epochs) == max(epochs) else f"{min(epochs)}-{max(epochs)}"


def value_protection_text(vp: dict | None, rows: object = None) -> str | None:
    """One paragraph on generate's value protection (its ``_generated.json`` entry): k and why, what
    it does, the rows it changed; None when the entry is missing (images, older generations)."""
    if not vp:
        return None
    if not vp.get("enabled"):
        return ("Value protection was off (generate.value_protection: false): rare categories and extreme "
                "values of the training rows may appear as they are.")
    changed = [f"{name} {_protected_rows(c)}" for name, c in vp.get("columns", {}).items() if _protected_rows(c)]
    of = f" of {rows:,}" if isinstance(rows, int) else ""
    return (f"Value protection, k = {vp['k']} ({vp['k_from']}): categories seen in fewer than k training rows "
            f"are replaced by _RARE_ (text) or redrawn from the common ones, numbers are clipped to the k-th "
            f"smallest and largest training value. Rows changed: {vp.get('rows_changed', 0):,}{of}"
            + (f" ({'; '.join(changed)})." if changed else "."))


def _protected_rows(c: dict) -> str:
    """``12 replaced (3 categories)`` or ``4 clipped low, 25 clipped high``: one column's counts."""
    if c.get("action") == "clip":
        return ", ".join(f"{c[k]:,} {k.replace('_', ' ')}" for k in ("clipped_low", "clipped_high") if c.get(k))
    if not c.get("replaced"):
        return ""
    how = {"marker": "replaced by _RARE_", "redraw": "redrawn"}.get(c.get("action"), f"withheld as {c.get('as')}")
    n = c.get("categories")
    return f"{c['replaced']:,} {how}" + (f" ({n} {'category' if n == 1 else 'categories'})" if n else "")


def _value_protection_table(vp: dict | None) -> list[str]:
    """The report's value protection section: the paragraph and, per protected column, what changed."""
    text = value_protection_text(vp)
    if text is None:
        return []
    rows = [[name, c["action"], _protected_rows(c) or "0"] for name, c in (vp.get("columns") or {}).items()]
    return ["<h2>Value protection</h2>", f"<p>{html.escape(text)}</p>"] + (
        [_table(["column", "rule", "rows changed"], rows)] if rows else [])


def _summary(metrics: dict, thresholds: dict) -> list[tuple[str, str, str, str, str, str]]:
    """Per metric: key, value, threshold, status, its real baseline (``MetricInfo.baseline``) and
    what it measures."""
    # The gate's verdict per key is in its failures ("key: reason"); the report does not re-judge.
    failed = {f.split(":", 1)[0] for f in metrics.get("gate.failures") or []}
    rows = []
    for key, info in known_metrics().items():
        if key not in metrics and key not in thresholds:
            continue
        status = ("FAIL" if key in failed else "pass") if key in thresholds else ""
        if key in thresholds and not_judged_reason(metrics, key) is not None:
            status = "not judged"
        rows.append((key, _fmt(metrics.get(key)), threshold_text(thresholds.get(key)), status,
                     info.baseline_text(metrics) or "", info.description))
    return rows


def worst_columns(inp: ReportInput, n: int = 5) -> list[tuple[str, str, float]]:
    scored = [(name, c.get("metric", ""), c["score"]) for name, c in inp.columns.items()
              if isinstance(c.get("score"), float) and not math.isnan(c["score"])]
    return sorted(scored, key=lambda t: t[2])[:n]


def worst_pairs(inp: ReportInput, n: int = 10) -> list[tuple[str, str, str, float]]:
    scored = [(p["columns"][0], p["columns"][1], p["metric"], p["score"]) for p in inp.pairs
              if p.get("counted") and not math.isnan(p["score"])]
    return sorted(scored, key=lambda t: t[3])[:n]


# -- privacy in plain words -------------------------------------------------------------------------
# One paragraph per privacy family present (its keys in the metrics): who the attacker is and what
# they hold, what the figure means, its real baseline, and the figure (with its 95% interval where
# the family's details hold one). The report and the data card read the same words.

ATTACKS_NOT_A_GUARANTEE = (
    "These figures are empirical evidence: what the attacks above achieved on seeded samples of this release, "
    "not a formal guarantee. The model is not trained with differential privacy, so a stronger or better "
    "informed attacker may do better, and the most exposed records (rare combinations, outliers) can leak "
    "even when the averages look like the real baseline.")
ATTACKS_UNDER_DP = (
    "These figures are empirical evidence: what the attacks above achieved on seeded samples of this release. "
    "The guarantee is the model's differential privacy (epsilon {epsilon:.3g}, delta {delta:.3g}), for what it "
    "covers: whatever an attacker, however informed, concludes about one training row, it would conclude with "
    "about the same probability (within a factor e^{epsilon:.3g}, except with probability {delta:.3g}) had that row "
    "not been trained on; the attacks check it, they do not make it.")


def attacks_caveat(metrics: dict) -> str:
    """What the attack figures are: empirical evidence only, or evidence beside the DP guarantee
    the metrics hold (``dp.epsilon``, ``dp.delta``: the model was trained under one)."""
    eps, delta = metrics.get("dp.epsilon"), metrics.get("dp.delta")
    if _finite(eps) and _finite(delta):
        return ATTACKS_UNDER_DP.format(epsilon=float(eps), delta=float(delta))
    return ATTACKS_NOT_A_GUARANTEE


def _interval(entry: object) -> tuple[float, float] | None:
    """A 95% interval from a family's details, read defensively: ``[low, high]``, or a mapping that
    holds one (``interval``, ``ci``, ``risk``) or ``low`` and ``high``."""
    if isinstance(entry, dict):
        held = (_interval(entry.get(key)) for key in ("interval", "ci", "risk"))
        return next((i for i in held if i is not None), None) or _interval([entry.get("low"), entry.get("high")])
    if isinstance(entry, (list, tuple)) and len(entry) == 2 and all(_finite(v) for v in entry):
        return float(entry[0]), float(entry[1])
    return None


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _figure(value: object, interval: tuple[float, float] | None = None) -> str:
    return _fmt(value) + (f" (95% interval {interval[0]:.4f} to {interval[1]:.4f})" if interval else "")


def _rows_said(sizes: object) -> str:
    """``on 5,000 training rows and 5,000 unseen real rows`` from ``AttackRows.sizes()``, if recorded."""
    sizes = _dict(sizes)
    if not all(_finite(sizes.get(k)) for k in ("members", "non_members")):
        return ""
    return f" on {int(sizes['members']):,} training rows and {int(sizes['non_members']):,} unseen real rows"


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _samples(details: dict, family: str) -> object:
    return _dict(details.get("samples")).get(family)


def _judged(metrics: dict, keys: list[str], figures: str) -> str:
    """``figures``, or why the family was not judged here (its first key's reason) instead."""
    reason = next((r for r in (not_judged_reason(metrics, k) for k in keys) if r is not None), None)
    return f"Not judged here: {reason}." if reason else figures


COPIES = ("The simplest attacker holds the released {unit} and a real record, and looks for it among them; a "
          "record that came out unchanged, or nearly, is found.")


def _copies_words(metrics: dict, details: dict, unit: str) -> str | None:
    if "privacy.exact_match_rate" not in metrics:
        return None
    one = unit[:-1] if unit.endswith("s") else unit
    text = (f"{_fmt(metrics.get('privacy.exact_match_rate'))} of the synthetic {unit} are identical to a training "
            f"{one}")
    if "privacy.exact_match_rate_holdout" in metrics:
        text += (f"; unseen real {unit} (the holdout) are identical to one at "
                 f"{_fmt(metrics.get('privacy.exact_match_rate_holdout'))}, the real baseline (real data repeats "
                 f"itself); the excess over it is {_fmt(metrics.get('privacy.exact_match_excess'))} (real baseline 0)")
    text += "."
    if "privacy.dcr_share" in metrics:
        text += (f" Distance to closest record: {_fmt(metrics.get('privacy.dcr_share'))} of the synthetic {unit} "
                 f"are nearer a training {one} than any holdout {one} (real baseline 0.5: no nearer the training "
                 "data than other real data; near 1: copies and near-copies).")
        if "privacy.dcr_share_marginals" in metrics:
            text += (f" {_fmt(metrics.get('privacy.dcr_share_marginals'))} is what {unit} that know only each column's "
                     "training values score: the part of the share a small training sample's own marginals explain.")
    below = _detection_below_chance(metrics, details, unit)
    if below:
        text += " " + below
    if "privacy.real_id_rate" in metrics:
        text += (f" {_fmt(metrics.get('privacy.real_id_rate'))} of the ID values released are real ones "
                 "(real baseline 0: fresh IDs).")
    return COPIES.format(unit=unit) + " " + _judged(metrics, ["privacy.exact_match_excess"], text)


def _detection_below_chance(metrics: dict, details: dict, unit: str) -> str | None:
    """What a detection AUC under chance by more than three times its noise says: the classifier,
    cross-validated on training and synthetic rows, calls a training row synthetic when a near-copy
    of it sat among the synthetic rows it learnt from (tips' default: 0.31 on 195 rows a side,
    benchmarks/README.md#a-small-tables-dcr-share-what-lowers-it-costs-pair-trends-tried-not-kept).
    Its noise on ``n`` rows a side when nothing tells them apart is taken as ``1 / (2 sqrt(n))``, 0.036
    at 195, wider than Mann-Whitney's 0.029 for a margin: Adult's held-out rows against its training
    rows, 195 a side, read 0.415-0.512 over 12 seeds (mean 0.482, sd 0.027: cross-validation reads a
    little under chance; ``python benchmarks/detectors.py --releases holdout --candidates default
    --skip-xgb --rows 195 --seeds 0 1 .. 11``), all above the 0.393 that three times it leaves."""
    auc = metrics.get("detection.auc")
    n = _dict(_samples(details, "detection")).get("rows_per_side")
    if not (_finite(auc) and _finite(n) and n > 0):
        return None
    noise = 0.5 / math.sqrt(n)
    if auc >= 0.5 - 3 * noise:
        return None
    return (f"The detection classifier's ROC AUC, {_fmt(auc)}, is under chance (0.5) by more than three times its "
            f"noise on {int(n):,} {unit} a side ({noise:.4f}): it calls training {unit} synthetic where near-copies "
            f"of them were among the synthetic {unit} it learnt from, so the release holds more near-copies of its "
            f"training {unit} than unseen real {unit} would: a sign of memorisation (read it with the distances above "
            "and the membership attacks), not of a fidelity better than real data's."
            + _heldout_words(metrics, details))


def _heldout_words(metrics: dict, details: dict) -> str:
    """Pair trends against the held-out rows beside the training rows' own (pipeline/metrics/heldout.py):
    the fidelity reading a copy of the training rows does not win; empty when not measured."""
    syn, real = (metrics.get(k) for k in ("quality.column_pair_trends_holdout",
                                          "quality.column_pair_trends_holdout_real"))
    if not (_finite(syn) and _finite(real)):
        return ""
    rows = _dict(_samples(details, "heldout_fidelity")).get("holdout")
    on = f", {int(rows):,} rows" if _finite(rows) else ""
    return (f" Against unseen real rows (the holdout{on}), where a copy of the training rows scores only what they do, "
            f"the synthetic rows' pair trends are {_fmt(syn)} and the training rows' own {_fmt(real)} "
            "(quality.column_pair_trends_holdout).")


MEMBERSHIP = ("The attacker holds the released rows, a real person's record and a sample of real records of the "
              "same population that were never trained on, and wants to tell whether that record was in the "
              "training data (being in it can be sensitive in itself). Two attacks score each record: its distance "
              "to the nearest synthetic row (copies and near-copies give training records away) and the density "
              "ratio (DOMIAS: how much denser the synthetic rows are around it than the real sample).")


def _membership_words(metrics: dict, details: dict, unit: str) -> str | None:
    keys = [k for k in ("privacy.mia_auc", "privacy.mia_tpr_at_fpr_1pct", "privacy.mia_tpr_at_fpr_01pct")
            if k in metrics]
    if not keys:
        return None
    found = _dict(details.get("membership"))
    attacks = {name: _dict(figs).get("auc") for name, figs in _dict(found.get("attacks")).items()}
    strongest = attacks.get(str(_dict(found.get("worst")).get("auc")))
    text = (f"The figure is the stronger attack's ROC AUC telling training rows from unseen ones"
            f"{_rows_said(_samples(details, 'membership'))}: "
            f"{_figure(metrics.get('privacy.mia_auc'), _interval(strongest))}; 0.5 is chance, the real baseline "
            "(unseen real rows released in place of synthetic ones score it), 1 a perfect attack. At a 1% "
            f"false-positive rate it finds {_fmt(metrics.get('privacy.mia_tpr_at_fpr_1pct'))} of the training rows "
            "(chance: 0.01)")
    if "privacy.mia_tpr_at_fpr_01pct" in metrics:
        text += f", at 0.1%: {_fmt(metrics.get('privacy.mia_tpr_at_fpr_01pct'))} (chance: 0.001)"
    text += "."
    each = [f"{name.replace('_', ' ')} {_figure(auc.get('estimate'), _interval(auc))}"
            for name, auc in attacks.items() if isinstance(auc, dict)]
    if each:
        text += " AUC by attack: " + "; ".join(each) + "."
    return MEMBERSHIP + " " + _judged(metrics, keys, text)


ANONYMITY = ("Anonymeter's three attacks (Giomi et al., 2023): the attacker holds the released rows and some "
             "attributes of real people. Singling out: a combination of values seen once in the synthetic rows picks "
             "out exactly one real training record; linkability: two parts of a record's columns, held separately, "
             "are joined through the synthetic rows; inference: a secret column is guessed from the others. Each risk "
             "is the attack's success on training records beyond its success on a control set of unseen real "
             "records, the real baseline by construction, scaled so that 0 means the release tells the attacker no "
             "more about people in the training data than about people outside it, 1 that every attack succeeds "
             "beyond it.")
ANONYMITY_RISKS = (("singling_out", "singling out"), ("linkability", "linkability"), ("inference", "inference"))


def _anonymity_words(metrics: dict, details: dict, unit: str) -> str | None:
    keys = [f"privacy.{name}_risk" for name, _ in ANONYMITY_RISKS if f"privacy.{name}_risk" in metrics]
    if not keys:
        return None
    found = _dict(details.get("anonymity"))
    figures = []
    for name, words in ANONYMITY_RISKS:
        key = f"privacy.{name}_risk"
        if key in metrics:
            interval, upper = _interval(found.get(name)), metrics.get(f"{key}_upper")
            bound = f" (95% upper bound {upper:.4f})" if interval is None and _finite(upper) else ""
            figures.append(f"{words} {_figure(metrics.get(key), interval)}{bound}")
    text = f"Risks{_rows_said(_samples(details, 'anonymity'))}: " + "; ".join(figures) + "."
    return ANONYMITY + " " + _judged(metrics, keys, text)


PRIVACY_FAMILIES = (("Copies and distances", _copies_words), ("Membership inference", _membership_words),
                    ("Anonymity", _anonymity_words))


def privacy_paragraphs(metrics: dict, details: dict | None = None, unit: str = "rows") -> list[tuple[str, str]]:
    """(title, paragraph) for each privacy family whose keys are in ``metrics`` (none for the others),
    with intervals from ``details`` (``details.json``) where it holds them."""
    details = details if isinstance(details, dict) else {}
    out = [(title, words(metrics, details, unit)) for title, words in PRIVACY_FAMILIES]
    return [(title, text) for title, text in out if text]


# -- plots -----------------------------------------------------------------------------------------


def short_labels(names: list[object], width: int = LABEL_CHARS) -> list[str]:
    """``names`` as text of at most ``width`` characters (cut with an ellipsis), as distinct as the
    names are: a cut that collides with another label ends in a number instead."""
    labels: dict[str, str] = {}
    for name in map(str, names):
        if name in labels:
            continue
        label, n = (name if len(name) <= width else name[:width - 1] + "…"), 1
        while label in labels.values():
            n += 1
            label = name[:width - len(f"…{n}")] + f"…{n}"
        labels[name] = label
    return [labels[str(name)] for name in names]


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    matplotlib.rcParams["text.parse_math"] = False  # column names and values are text, '$' included
    import matplotlib.pyplot as plt

    return plt


def plot_distributions(inp: ReportInput) -> str | None:
    cols = [c for c in inp.schema.modeled if c.name in inp.real.columns]
    if not cols:
        return None
    if len(cols) > MAX_PLOTTED_COLUMNS:
        order = {name: score for name, _, score in worst_columns(inp, n=len(cols))}
        cols = sorted(cols, key=lambda c: order.get(c.name, 1.0))[:MAX_PLOTTED_COLUMNS]
    plt = _plt()
    ncol = 3
    nrow = math.ceil(len(cols) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 2.8 * nrow), squeeze=False)
    for ax, c, label in zip(axes.flat, cols, short_labels([c.name for c in cols])):
        score = inp.columns.get(c.name, {}).get("score")
        ax.set_title(f"{label} ({c.kind})"
                     + (f"  score {score:.3f}" if isinstance(score, float) and score == score else ""),
                     fontsize=9)
        if c.kind in NUMERIC_KINDS:
            r, s = numeric_values(inp.real[c.name]), numeric_values(inp.synthetic[c.name])
            r, s = r[~np.isnan(r)], s[~np.isnan(s)]
            if not len(r):
                continue
            lo, hi = np.quantile(r, [0.005, 0.995])
            if lo == hi:
                lo, hi = lo - 0.5, hi + 0.5
            bins = np.linspace(lo, hi, 41)
            ax.hist(np.clip(r, lo, hi), bins=bins, density=True, color=REAL, alpha=0.45, label="real")
            ax.hist(np.clip(s, lo, hi), bins=bins, density=True, histtype="step", color=SYN, lw=1.6, label="synthetic")
            if c.kind == "datetime":
                ticks = np.linspace(lo, hi, 3)
                ax.set_xticks(ticks, [str(pd.Timestamp(int(t)).date()) for t in ticks])
        else:
            r = inp.real[c.name].astype(object).where(inp.real[c.name].notna(), "(null)").astype(str)
            s = inp.synthetic[c.name].astype(object).where(inp.synthetic[c.name].notna(), "(null)").astype(str)
            fr, fs = r.value_counts(normalize=True), s.value_counts(normalize=True)
            top = list(fr.index[:TOP_CATEGORIES])
            vr = [fr.get(k, 0.0) for k in top]
            vs = [fs.get(k, 0.0) for k in top]
            if len(fr) > len(top):
                top.append("(other)")
                vr.append(1 - sum(vr))
                vs.append(max(1 - sum(vs), 0.0))
            x = np.arange(len(top))
            ax.bar(x - 0.2, vr, 0.4, color=REAL, label="real")
            ax.bar(x + 0.2, vs, 0.4, color=SYN, label="synthetic")
            ax.set_xticks(x, short_labels(top, 14), rotation=60, ha="right", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(cols):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def plot_pair_heatmap(inp: ReportInput) -> str | None:
    names = [c.name for c in inp.schema.modeled]
    index = {n: i for i, n in enumerate(names)}
    m = np.full((len(names), len(names)), np.nan)
    for p in inp.pairs:
        a, b = p["columns"]
        if a in index and b in index and not math.isnan(p["score"]):
            m[index[a], index[b]] = m[index[b], index[a]] = 1 - p["score"]
    if np.isnan(m).all():
        return None
    plt = _plt()
    size = max(4.0, 0.38 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(m, cmap="Reds", vmin=0, vmax=max(0.3, float(np.nanmax(m))))
    labels = short_labels(names)
    ax.set_xticks(range(len(names)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), labels, fontsize=7)
    ax.set_title("pair trend difference, 1 - score (correlation or contingency)", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _png(fig)


def plot_training(log: pd.DataFrame | None) -> str | None:
    if log is None or log.empty or "epoch" not in log:
        return None
    series = [c for c in log.columns if c not in ("epoch", "seconds")]
    if not series:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(series), figsize=(3.6 * len(series), 2.8), squeeze=False)
    for ax, c, label in zip(axes.flat, series, short_labels(series)):
        ax.plot(log["epoch"], log[c], color=REAL)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _png(fig)


def plot_privacy(distances: dict[str, np.ndarray],
                 xlabel: str = "distance to closest record (mean per-column distance)",
                 unit: str = "row") -> str | None:
    if not distances or not any(len(v) for v in distances.values()):
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.0))
    hi = max(float(np.quantile(v, 0.99)) for v in distances.values() if len(v)) or 1.0
    bins = np.linspace(0, hi, 41)
    colors = {"synthetic_to_train": SYN, "holdout_to_train": HOLD}
    for name, v in distances.items():
        if len(v):
            ax.hist(np.clip(v, 0, hi), bins=bins, density=True, histtype="step", lw=1.6,
                    color=colors.get(name),
                    label=name.replace("_to_", f" {unit}s to closest ").replace("_", " ") + f" {unit}")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    return _png(fig)


# -- documents -----------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:14px} td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#1a7f37;font-weight:600} .FAIL{color:#cf222e;font-weight:700}
.verdict{display:inline-block;padding:.3em .8em;border-radius:4px;color:#fff;font-weight:700}
.ok{background:#1a7f37} .bad{background:#cf222e} .muted{color:#666;font-size:13px} img{max-width:100%}
"""  # noqa: E501 - CSS text: wrapping it would change the string


def _table(header: list[str], rows: list[list[str]], numeric: set[int] = frozenset(),
           classes: dict[int, bool] | None = None) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            cls = []
            if i in numeric:
                cls.append("num")
            if classes and classes.get(i) and v in ("pass", "FAIL"):
                cls.append(v)
            attr = f' class="{" ".join(cls)}"' if cls else ""
            cells.append(f"<td{attr}>{html.escape(v)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out) + "</table>"


# The verdict and the scores table sit between these markers, so that publish can render them
# again when it re-checks the gate against other thresholds (one verdict everywhere).
GATE_BEGIN, GATE_END = "<!-- gate:begin -->", "<!-- gate:end -->"


def gate_html(metrics: dict, thresholds: dict, unit: str, changes: list[str] = ()) -> str:
    """The verdict, the failing keys, any thresholds changed after scoring, and every score."""
    passed = bool(metrics.get("gate.passed"))
    failures = metrics.get("gate.failures") or []
    parts = [
        GATE_BEGIN,
        f"<p><span class='verdict {'ok' if passed else 'bad'}'>{'gate passed' if passed else 'gate FAILED'}</span> "
        f"&nbsp; {html.escape(_fmt(metrics.get('rows')))} synthetic {unit}"
        f" &middot; synthetic data sha256 <code>{html.escape(str(metrics.get('synthetic_hash', ''))[:16])}</code></p>",
    ]
    if failures:
        parts.append("<p class='FAIL'>" + "<br>".join(html.escape(f) for f in failures) + "</p>")
    for what, reason in (metrics.get("gate.not_judged") or {}).items():
        parts.append(f"<p class='muted'>Not judged: {html.escape(what.rstrip('.'))}: {html.escape(reason)}</p>")
    if changes:
        parts.append("<p class='FAIL'>Thresholds changed at publish, after scoring: "
                     + "<br>".join(html.escape(c) for c in changes) + "</p>")
    parts.append("<h2>Scores</h2>")
    parts.append(_table(["metric", "value", "threshold", "status", "real baseline", "what it measures"],
                        [list(r) for r in _summary(metrics, thresholds)], numeric={1}, classes={3: True}))
    parts.append(GATE_END)
    return "\n".join(parts)


def _html_head(dataset: str, metrics: dict, thresholds: dict, unit: str, notes: list[str]) -> list[str]:
    """The top of a report: title, verdict, failing keys, every score against its threshold."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Quality report: {html.escape(dataset)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Synthetic data quality: {html.escape(dataset)}</h1>",
        gate_html(metrics, thresholds, unit),
    ]
    if notes:
        parts.append("<p class='muted'>" + "<br>".join(html.escape(n) for n in notes) + "</p>")
    return parts


def _figures(parts: list[str], figures: list[tuple[str, str | None]]) -> None:
    for title, img in figures:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(f"<img alt='{html.escape(title)}' src='{img}'>" if img else "<p class='muted'>not available</p>")


def render_html(inp: ReportInput) -> str:
    parts = _html_head(inp.dataset, inp.metrics, inp.thresholds, "rows", inp.notes)
    parts.append("<h2>Worst columns and pairs</h2>")
    parts.append(_table(["column", "metric", "score"],
                        [[a, b, f"{s:.4f}"] for a, b, s in worst_columns(inp)], numeric={2}))
    parts.append(_table(["column", "column", "metric", "score"],
                        [[a, b, m, f"{s:.4f}"] for a, b, m, s in worst_pairs(inp)], numeric={3}))
    cov_rows = []
    for name, c in inp.columns.items():
        cov = c.get("category_coverage", c.get("range_coverage"))
        cov_rows.append([name, _fmt(c.get("score")), _fmt(cov), _fmt(c.get("missing_value_similarity"))])
    parts.append("<h2>Columns</h2>")
    parts.append(_table(["column", "shape score", "coverage (category or range)", "missing-value similarity"],
                        cov_rows, numeric={1, 2, 3}))
    parts += _value_protection_table(inp.value_protection)
    _figures(parts, [("Distributions, real vs synthetic", plot_distributions(inp)),
                     ("Column pair trends", plot_pair_heatmap(inp))])
    privacy = privacy_paragraphs(inp.metrics, inp.details)
    if privacy:
        parts.append("<h2>Privacy</h2>")
        parts += [f"<h3>{html.escape(title)}</h3><p>{html.escape(text)}</p>" for title, text in privacy]
        parts.append(f"<p class='muted'>{html.escape(attacks_caveat(inp.metrics))}</p>")
    _figures(parts, [("Privacy: distance to closest record", plot_privacy(inp.privacy_distances)),
                     ("Training", plot_training(inp.train_log))])
    parts.append("</body></html>")
    return "\n".join(parts)


def _md(text: object) -> str:
    """Text safe inside a markdown table cell or inline code span."""
    return html.escape(str(text)).replace("|", "\\|").replace("`", "'")


def gate_markdown(metrics: dict, thresholds: dict, unit: str, changes: list[str] = ()) -> str:
    passed = bool(metrics.get("gate.passed"))
    lines = [GATE_BEGIN,
             f"**Gate: {'passed' if passed else 'FAILED'}** · {_fmt(metrics.get('rows'))} synthetic {unit}", ""]
    for f in metrics.get("gate.failures") or []:
        lines.append(f"- failing: {_md(f)}")
    for what, reason in (metrics.get("gate.not_judged") or {}).items():
        lines.append(f"- not judged: {_md(what.rstrip('.'))}: {_md(reason)}")
    for c in changes:
        lines.append(f"- threshold changed at publish, after scoring: {_md(c)}")
    lines += ["", "| metric | value | threshold | status | real baseline |", "|---|---:|---|---|---|"]
    for key, value, th, status, baseline, _ in _summary(metrics, thresholds):
        lines.append(f"| `{key}` | {value} | {th} | {status} | {_md(baseline)} |")
    lines.append(GATE_END)
    return "\n".join(lines)


def regate(report: str, gate: str) -> str:
    """``report`` with its verdict section replaced by ``gate`` (inserted at the top if it has none)."""
    start, end = report.find(GATE_BEGIN), report.find(GATE_END)
    if start >= 0 and end > start:
        return report[:start] + gate + report[end + len(GATE_END):]
    at = report.find("<body>")
    at = at + len("<body>") if at >= 0 else 0
    return report[:at] + gate + "\n" + report[at:]


def _md_head(dataset: str, metrics: dict, thresholds: dict, unit: str) -> list[str]:
    return [f"## Synthetic data quality: {_md(dataset)}", "", gate_markdown(metrics, thresholds, unit)]


def render_markdown(inp: ReportInput) -> str:
    lines = _md_head(inp.dataset, inp.metrics, inp.thresholds, "rows")
    worst = worst_columns(inp, 3)
    if worst:
        lines += ["", "Worst columns: " + ", ".join(f"`{_md(a)}` {s:.3f}" for a, _, s in worst)]
    pairs = worst_pairs(inp, 3)
    if pairs:
        lines += ["", "Worst pairs: " + ", ".join(f"`{_md(a)}`/`{_md(b)}` {s:.3f}" for a, b, _, s in pairs)]
    privacy = privacy_paragraphs(inp.metrics, inp.details)
    if privacy:
        lines += ["", "### Privacy"] + [f"\n**{title}.** {html.escape(text, quote=False)}" for title, text in privacy]
        lines += ["", f"_{html.escape(attacks_caveat(inp.metrics), quote=False)}_"]
    if inp.notes:
        lines += [""] + [f"_{_md(n)}_" for n in inp.notes]
    protected = value_protection_text(inp.value_protection)
    if protected:
        lines += ["", _md(protected)]
    return "\n".join(lines) + "\n"


# -- images ----------------------------------------------------------------------------------------


def _grid_uri(pixels: np.ndarray, labels: np.ndarray, scale: int = 2) -> str | None:
    from pipeline.images import encode_png, image_grid

    if not len(pixels):
        return None
    grid = image_grid(pixels, labels)
    grid = np.kron(grid, np.ones((scale, scale), dtype=np.uint8))  # crisp pixels at twice the size
    return "data:image/png;base64," + base64.b64encode(encode_png(grid)).decode("ascii")


_SANITY = (("fid", "FID (lower is better)"), ("kid", "KID"), ("precision", "precision"), ("recall", "recall"),
           ("label_accuracy", "label accuracy"), ("memorized_rate", "memorised share"))


def image_report(dataset: str, metrics: dict, thresholds: dict, sanity: dict[str, dict], real_pixels: np.ndarray,
                 real_labels: np.ndarray, syn_pixels: np.ndarray, syn_labels: np.ndarray, evaluation,
                 train_log: pd.DataFrame | None) -> dict[str, str]:
    """The report of an image dataset: scores against thresholds, each metric for generated images
    beside its real-vs-real floor and noise ceiling, sample grids per label, nearest-training-image
    distances and the loss curves. Returns {file name: text}."""
    rows = evaluation.rows
    notes = [f"Evaluator: a CNN trained on the {rows['train']:,} real training images; its accuracy on "
             f"{rows['holdout']:,} held-out images is {evaluation.classifier_accuracy:.4f}. "
             f"FID, KID, precision and recall "
             f"compare sets of {rows['compared']:,} images of each kind with the training images (seeded samples of "
             f"equal size); the generated figures are the mean over {rows['synthetic_sets']} disjoint generated "
             f"set(s). Label accuracy and memorisation use all {rows['synthetic']:,} generated images.",
             f"Memorised: nearer (in pixels) to a training image than {evaluation.memorization_threshold:.2f}, "
             "the distance only the closest held-out real images come within."]
    header = ["metric", "generated", "real held-out (floor)", "uniform noise (ceiling)"]
    table = [[label, *(_fmt(sanity[k][key]) for k in ("synthetic", "floor", "ceiling"))] for key, label in _SANITY]
    parts = _html_head(dataset, metrics, thresholds, "images", notes)
    parts.append("<h2>Against real and noise</h2>")
    parts.append(_table(header, table, numeric={1, 2, 3}))
    distances = {"synthetic_to_train": evaluation.nearest["synthetic"],
                 "holdout_to_train": evaluation.nearest["holdout"]}
    _figures(parts, [("Generated samples, one row per label", _grid_uri(syn_pixels, syn_labels)),
                     ("Real training samples, one row per label", _grid_uri(real_pixels, real_labels)),
                     ("Privacy: pixel distance to the nearest training image",
                      plot_privacy(distances,
                                   "Euclidean pixel distance to the nearest training image "
                                   "(pixels scaled to [-1, 1])",
                                   unit="image")),
                     ("Training", plot_training(train_log))])
    parts.append("</body></html>")
    lines = _md_head(dataset, metrics, thresholds, "images")
    lines += ["", "| metric | " + " | ".join(header[1:]) + " |", "|---|---:|---:|---:|"]
    lines += ["| " + " | ".join(r) + " |" for r in table]
    lines += [""] + [f"_{_md(n)}_" for n in notes]
    return {"report.html": "\n".join(parts), "report.md": "\n".join(lines) + "\n"}
