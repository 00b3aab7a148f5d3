"""The data card of a release: what it was made from, how, how good it is, and what not to use it for.

Written by publish as ``_DATACARD.md`` in the release folder (the leading underscore keeps the
folder a clean Parquet dataset: readers skip ``_`` files) and embedded in the release's report.
"""

from __future__ import annotations

import html
import math

from pipeline.metrics import known_metrics
from pipeline.report import auto_summary, threshold_change_text, threshold_text

_HEADLINE = ("quality.overall", "quality.column_shapes", "quality.column_pair_trends", "coverage.category",
             "coverage.range", "detection.auc", "utility.tstr_score", "utility.trtr_score",
             "privacy.exact_match_rate", "privacy.dcr_share", "privacy.nndr_median",
             "image.label_accuracy", "image.fid", "image.fid_real_floor", "image.fid_ratio", "image.kid",
             "image.precision", "image.recall", "image.memorized_rate", "image.classifier_accuracy")


def _value(v) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.4f}"
    return "n/a" if v is None else str(v)


def _cell(text: object) -> str:
    return html.escape(str(text)).replace("|", "\\|")


def render_datacard(manifest: dict, thresholds: dict[str, dict]) -> str:
    m = manifest.get("metrics", {})
    training = manifest.get("training", {})
    params = manifest.get("params", {})
    model_cfg = params.get("model", {})
    lines = [
        f"# Data card: {_cell(manifest.get('dataset'))} {_cell(manifest.get('version'))}",
        "",
        f"Synthetic rows made by a generative model trained on real data. Released "
        f"{_cell(manifest.get('created_at'))}; {_value(manifest.get('rows'))} rows in "
        f"{len(manifest.get('files', []))} Parquet file(s).",
        "",
        "## Source",
        f"- file: `{_cell(manifest.get('source'))}`, sha256 `{_cell(manifest.get('source_hash'))}`",
        f"- real training rows: {_value(manifest.get('source_rows'))}; real holdout rows kept out of training: "
        f"{_value(manifest.get('holdout_rows'))} (sha256 `{_cell(manifest.get('holdout_hash'))}`)",
        "",
        "## How it was made",
        f"- model: `{_cell(manifest.get('model'))}` (model sha256 `{_cell(manifest.get('model_hash'))}`), "
        f"{_value(training.get('epochs'))} epochs in {_value(training.get('seconds'))} s on "
        f"{_cell(training.get('device'))}",
        *([f"- {_cell(auto_summary(training['auto']))}"] if training.get("auto") else []),
        f"- seed {manifest.get('seed')}; params sha `{_cell(manifest.get('params_hash'))}` "
        f"(all params in `_manifest.json`); "
        f"code `{_cell(manifest.get('code_version'))}`",
    ]
    if model_cfg.get("name") in ("gan", "ctgan"):
        gan = model_cfg.get("gan", {})
        lines.append(f"- generator {gan.get('generator_dims')}, critic {gan.get('discriminator_dims')}, "
                     f"pac {gan.get('pac')}, "
                     f"weight average {gan.get('ema_decay')}")
    if model_cfg.get("name") == "dcgan":
        d = model_cfg.get("dcgan", {})
        lines.append(f"- class-conditional DCGAN, width {d.get('width')}, noise {d.get('noise_dim')}, "
                     f"label loss {d.get('label_loss')}, weight average {d.get('ema_decay')}")
    run = manifest.get("run") or {}
    if run.get("flow_run_id"):
        lines.append(f"- orchestrated by {_cell(run.get('orchestrator'))}, flow `{_cell(run.get('flow'))}`, "
                     f"run `{_cell(run.get('flow_run_id'))}`")
    lines += ["", "## Quality, utility, privacy", "", "| metric | value | threshold | meaning |", "|---|---:|---|---|"]
    known = known_metrics()
    for key in _HEADLINE:
        if key not in m:
            continue
        bound = threshold_text(thresholds.get(key))
        lines.append(f"| `{key}` | {_value(m[key])} | {bound} | "
                     f"{_cell(known[key].description) if key in known else ''} |")
    lines += ["", f"Quality gate: **{'passed' if m.get('gate.passed') else 'not passed'}**. "
                  "The full report is `_report.html`.", ""]
    for what, reason in (m.get("gate.not_judged") or {}).items():
        lines += [f"Not judged: `{_cell(what.rstrip('.'))}`: {_cell(reason)}.", ""]
    gate = manifest.get("gate") or {}
    if gate.get("changed_at_publish"):
        who = gate.get("changed_by") or {}
        lines += [f"Thresholds changed at publish, after scoring "
                  f"(by {_cell(who.get('user'))} on {_cell(who.get('host'))}):"]
        lines += [f"- `{c['metric']}`: {threshold_change_text(c)}" for c in gate["changed_at_publish"]]
        lines.append("")
    if manifest.get("modality") == "image":
        lines += _IMAGE_USE
    else:
        lines += _TABLE_USE
    changes = manifest.get("schema_changes") or {}
    if changes.get("compatible") or changes.get("breaking"):
        lines += ["", "## Schema changes since the previous release"]
        lines += [f"- {_cell(c)}" for c in changes.get("breaking", []) + changes.get("compatible", [])]
    return "\n".join(lines) + "\n"


_IMAGE_USE = [
    "## Intended use",
    "- Augmenting or prototyping image classifiers, demos and tests where the real images may not be shared.",
    "- Each image has the label it was generated for; `image.label_accuracy` is how often an independent "
    "classifier agrees.",
    "",
    "## Known limits",
    "- Judged by a small classifier trained on the real images (no external feature network): FID and KID are "
    "comparable within this dataset's releases and against its real-vs-real floor, not with published FIDs.",
    "- Fine strokes, rare writing styles and unusual digits are under-represented (see `image.recall`).",
    "- Privacy: the share of generated images nearer a training image than unseen real ones are is shown "
    "(`image.memorized_rate`); this is an empirical check, not a formal guarantee such as differential privacy.",
]

_TABLE_USE = [
        "## Intended use",
        "- Development, testing, analytics and model prototyping where the real rows may not be shared.",
        "- Statistics of single columns and of associated pairs of columns follow the real data to the "
        "degree the scores above say; check the report's worst columns and pairs before relying on one.",
        "",
        "## Known limits",
        "- Not the real data: rare combinations, extreme values and exact totals are not reproduced "
        "(see `coverage.range` for how much of each numeric range is covered).",
        "- Relationships weaker than the model learned, and ones through columns it did not see, are lost; "
        "deterministic links between columns (e.g. one column encoding another) may be broken.",
        "- Privacy: no synthetic row equals a training row at the rate shown; this is an empirical check "
        "(exact matches, distance to closest record), not a formal guarantee such as differential privacy.",
        "- IDs are fresh values that do not link to real records.",
]


def embed_in_report(report_html: str, card_md: str) -> str:
    """The report with the data card as its last section (as preformatted text: no scripts)."""
    section = f"<h2>Data card</h2><pre style='white-space:pre-wrap'>{html.escape(card_md)}</pre>"
    if "</body>" in report_html:
        return report_html.replace("</body>", section + "</body>", 1)
    return report_html + section
