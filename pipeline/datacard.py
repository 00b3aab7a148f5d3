"""The data card of a release: what it was made from, how, how good it is, and what not to use it for.

Written by publish as ``_DATACARD.md`` in the release folder (the leading underscore keeps the
folder a clean Parquet dataset: readers skip ``_`` files) and embedded in the release's report.
"""

from __future__ import annotations

import html
import math

from pipeline.metrics import headline_keys, known_metrics, not_judged_reason
from pipeline.modalities.registry import modality_named
from pipeline.models.registry import models
from pipeline.report import (
    attacks_caveat,
    auto_summary,
    privacy_paragraphs,
    threshold_change_text,
    threshold_text,
    value_protection_text,
)


def _value(v) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.4f}"
    return "n/a" if v is None else str(v)


def _seconds(v, missing: str = "n/a") -> str:
    """Wall-clock seconds as a person reads them: "848 s", "3.2 s", "0.41 s" (never "847.6970 s")."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return missing
    return f"{v:,.0f} s" if v >= 10 else f"{v:.1f} s" if v >= 1 else f"{v:.2g} s"


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
        f"{_value(manifest.get('holdout_rows'))}, {holdout_origin(manifest, lambda s: f'`{_cell(s)}`')}",
        "",
        "## How it was made",
        f"- model: `{_cell(manifest.get('model'))}` (model sha256 `{_cell(manifest.get('model_hash'))}`), "
        f"{_value(training.get('epochs'))} epochs in {_seconds(training.get('seconds'))} on "
        f"{_cell(training.get('device'))}",
        *([f"- {_cell(auto_summary(training['auto']))}"] if training.get("auto") else []),
        f"- seed {manifest.get('seed')}; params sha `{_cell(manifest.get('params_hash'))}` "
        f"(all params in `_manifest.json`); "
        f"code `{_cell(manifest.get('code_version'))}`",
    ]
    model_class = models().get(model_cfg.get("name"))  # none for model.name auto: the card names the one kept
    described = model_class.card_line(model_cfg) if model_class else None
    if described:
        lines.append(f"- {described}")
    run = manifest.get("run") or {}
    if run.get("flow_run_id"):
        lines.append(f"- orchestrated by {_cell(run.get('orchestrator'))}, flow `{_cell(run.get('flow'))}`, "
                     f"run `{_cell(run.get('flow_run_id'))}`")
    lines += _value_protection(manifest)
    lines += dp_statement(manifest)
    lines += ["", "## Quality, utility, privacy", "", "| metric | value | real baseline | threshold | meaning |",
              "|---|---:|---|---|---|"]
    known = known_metrics()
    for key in headline_keys():
        if key not in m:
            continue
        bound = threshold_text(thresholds.get(key))
        baseline = known[key].baseline_text(m) if key in known else None
        lines.append(f"| `{key}` | {_value(m[key])} | {_cell(baseline or '')} | {bound} | "
                     f"{_cell(known[key].description) if key in known else ''} |")
    dp = (manifest.get("privacy") or {}).get("dp")
    lines += ["", f"Quality gate: **{'passed' if m.get('gate.passed') else 'not passed'}**. " +
              ("The full report stays in the work folder (`score/report.html`): its plots and figures are exact "
               "statistics of the real rows, outside the differential privacy." if dp
               else "The full report is `_report.html`."), ""]
    for what, reason in (m.get("gate.not_judged") or {}).items():
        lines += [f"Not judged: `{_cell(what.rstrip('.'))}`: {_cell(reason)}.", ""]
    gate = manifest.get("gate") or {}
    if gate.get("changed_at_publish"):
        who = gate.get("changed_by") or {}
        lines += [f"Thresholds changed at publish, after scoring "
                  f"(by {_cell(who.get('user'))} on {_cell(who.get('host'))}):"]
        lines += [f"- `{c['metric']}`: {threshold_change_text(c)}" for c in gate["changed_at_publish"]]
        lines.append("")
    if gate.get("overrides"):
        lines += ["Thresholds changed from params for this release (`--threshold`):"]
        for o in gate["overrides"]:
            change = {"from": {o["bound"]: o["params"]}, "to": {o["bound"]: o["used"]}}
            lines.append(f"- `{_cell(o['metric'])}`: {threshold_change_text(change)}")
        lines.append("")
    handler = modality_named(manifest.get("modality"))
    lines += privacy_statement(m, handler.UNIT, _dict(dp) or None)
    lines += handler.CARD_USE_DP if dp else handler.CARD_USE  # only tables train under DP
    changes = manifest.get("schema_changes") or {}
    if changes.get("compatible") or changes.get("breaking"):
        lines += ["", "## Schema changes since the previous release"]
        lines += [f"- {_cell(c)}" for c in changes.get("breaking", []) + changes.get("compatible", [])]
    return "\n".join(lines) + "\n"


def privacy_statement(metrics: dict, unit: str, dp: dict | None = None) -> list[str]:
    """The card's privacy section: what was measured and by which attacks (the privacy families whose
    keys the release holds, each in plain words with its figures and real baseline), and that this
    is empirical evidence, beside the guarantee where the model was trained under differential
    privacy (``dp``, the manifest's ``privacy.dp``: then the report with the rows each figure used is
    not released). Nothing when no privacy figure was measured."""
    paragraphs = privacy_paragraphs(metrics, unit=unit)
    if not paragraphs:
        return []
    lines = ["## Privacy", "",
             "Measured by attacks on this release: " + ", ".join(title.lower() for title, _ in paragraphs) + ".", ""]
    for title, text in paragraphs:
        lines += [f"**{title}.** {html.escape(text, quote=False)}", ""]
    where = ("The report with the rows each figure used and the attacks' intervals stays in the work folder."
             if dp else "The report (`_report.html`) gives the rows each figure used and the attacks' intervals.")
    guarantee = {"dp.epsilon": dp.get("epsilon"), "dp.delta": dp.get("delta")} if dp else {}
    return lines + [f"{attacks_caveat(metrics | guarantee)} {where}", ""]


def dp_statement(manifest: dict) -> list[str]:
    """The card's differential-privacy section: the guarantee, what it covers and assumes, and what
    each part spent (model.json's ``privacy.dp``, as train recorded it). Nothing without one."""
    dp = _dict(_dict(manifest.get("privacy")).get("dp"))
    if "epsilon" not in dp:
        return []
    pre, sgd, budget = _dict(dp.get("preprocessing")), _dict(dp.get("dp_sgd")), _dict(dp.get("budget"))
    joint = dp.get("composition") == "renyi"
    inferred = pre.get("inferred_kinds") or []
    lines = [
        "", "## Differential privacy", "",
        f"The model and every row generated from it are ({_sig(dp.get('epsilon'))}, {_sig(dp.get('delta'))})-"
        f"differentially private with respect to the {_value(manifest.get('source_rows'))} real training rows: "
        "adding or removing any one row changes the probability of any release by at most a factor of "
        f"e^{_sig(dp.get('epsilon'))}, except with probability {_sig(dp.get('delta'))} (budget: epsilon "
        f"{_sig(budget.get('epsilon'))}).",
        "",
        f"- preprocessing{', on its own,' if joint else ' spent'} epsilon {_sig(pre.get('epsilon'))}, delta "
        f"{_sig(pre.get('delta'))}: the transformer's quantile knots, category lists and missing rates are noisy "
        f"estimates ({_cell(pre.get('mechanism') or 'private estimates')})",
        f"- DP-SGD{', on its own,' if joint else ' spent'} epsilon "
        f"{_sig(sgd.get('sgd_alone_epsilon') if joint else sgd.get('epsilon'))}, delta {_sig(sgd.get('delta'))} "
        f"(Opacus, {_cell(sgd.get('accountant'))} accountant): noise multiplier {_sig(sgd.get('noise_multiplier'))}, "
        f"each row's gradient clipped to {_sig(sgd.get('max_grad_norm'))}, Poisson sampling rate "
        f"{_sig(sgd.get('sample_rate'))}, {_value(sgd.get('steps'))} steps",
        "- assumed: the number of training rows is public; "
        + ("the two parts are one Renyi-DP account (their RDP curves add up at every order, Mironov 2017, and the "
           "sum is converted to the guarantee above; the thresholds that list categories add their delta)"
           if joint else "the parts add up (sequential composition)")
        + "; noise from PyTorch's and NumPy's seeded generators, not a cryptographically secure source"
        + _declared(pre),
        "- not covered: the scores below and the gate's verdict (computed on real rows: aggregate figures, not "
        "rows)" + (f"; the column kinds ingest inferred from the values ({', '.join(map(str, inferred))}): "
                   "declare them in `column_types` so that they do not depend on the values" if inferred else ""),
    ]
    return lines


def _declared(pre: dict) -> str:
    """What the run took as public knowledge (``datasets.<name>.bounds`` and ``categories``): true of
    the population whatever the rows, or the guarantee does not hold as stated."""
    how = _dict(pre.get("bounds"))
    ranges = [f"{name}{'' if h == 'declared' else ' (' + h.split()[0] + ' end)'}" for name, h in how.items()
              if h in ("declared", "low declared", "high declared")]
    lists = list(_dict(pre.get("categories")))
    parts = ([f"the ranges of {', '.join(map(str, ranges))}"] if ranges else []) + (
        [f"the values of {', '.join(map(str, lists))}"] if lists else [])
    return ("; declared as public knowledge, not read from the rows: " + " and ".join(parts)) if parts else ""


def _value_protection(manifest: dict) -> list[str]:
    """The card's value protection paragraph (generate's record of it), if the release has one."""
    text = value_protection_text(_dict(manifest.get("value_protection")), manifest.get("rows"))
    return ["", "## Value protection", "", _cell(text)] if text else []


def release_summary(manifest: dict, latest: bool = False, ref: str | None = None) -> str:
    """What ``releases show`` prints: a release at a glance, from its manifest alone (headed by
    ``ref``, else the manifest's dataset@version). Whatever a hand-edited or older manifest lacks or
    mistypes shows as ``?``."""
    m = _dict(manifest)
    metrics, gate, training = _dict(m.get("metrics")), _dict(m.get("gate")), _dict(m.get("training"))
    seeds, run = _dict(m.get("seeds")), _dict(m.get("run"))
    schema = m.get("schema") if isinstance(m.get("schema"), list) else None
    epochs = training.get("epochs", _dict(_dict(m.get("params")).get("train")).get("epochs"))
    lines = [
        f"{ref or _plain(m.get('dataset')) + '@' + _plain(m.get('version'))}{'  (latest)' if latest else ''}",
        f"created  {_plain(m.get('created_at'))}",
        f"rows     {_num(m.get('rows'))} in {'?' if schema is None else len(schema)} columns "
        f"({_plain(m.get('modality'))})",
        f"source   {_plain(m.get('source'))} (sha256 {_plain(m.get('source_hash'))[:12]}): "
        f"{_num(m.get('source_rows'))} training rows; holdout {_num(m.get('holdout_rows'))} rows, "
        f"{holdout_origin(m, _plain)}",
        f"model    {_plain(m.get('model'))}: epochs {_num(epochs)}, seed {_num(seeds.get('train', m.get('seed')))} "
        f"({_seconds(training.get('seconds'), '? s')} on {_plain(training.get('device'))}); rows drawn with seed "
        f"{_num(m.get('seed'))}",
        f"lineage  model {_plain(m.get('model_hash'))[:12]}, params {_plain(m.get('params_hash'))}, "
        f"code {_plain(m.get('code_version'))}",
    ]
    if run.get("flow_run_id"):
        lines.append(f"run      {_plain(run.get('orchestrator'))} flow {_plain(run.get('flow'))}, "
                     f"run {_plain(run.get('flow_run_id'))}")
    dp = _dict(_dict(m.get("privacy")).get("dp"))
    if dp:
        sgd = _dict(dp.get("dp_sgd"))
        lines.append(f"privacy  ({_sig(dp.get('epsilon'))}, {_sig(dp.get('delta'))})-differentially private "
                     f"(DP-SGD, {_plain(sgd.get('accountant'))} accountant, noise multiplier "
                     f"{_sig(sgd.get('noise_multiplier'))}; the data card says what it covers)")
    thresholds = _dict(gate.get("thresholds"))
    headline = headline_keys()
    keys = [k for k in headline if k in metrics] + [k for k in thresholds if k not in headline]
    width = max([len(str(k)) for k in keys] + [6])
    bounds = {k: _bounds(thresholds.get(k)) for k in keys}
    bounds_width = max([len(b) for b in bounds.values()] + [9])
    lines += ["", f"{'scores':<{width + 2}}  {'value':>8}  threshold"]
    for key in keys:
        verdict = _verdict(metrics, key, _dict(thresholds[key])) if key in thresholds else ""
        lines.append(f"  {key:<{width}}  {_score(metrics.get(key)):>8}  {bounds[key]:<{bounds_width}}  {verdict}"
                     .rstrip())
    passed = gate.get("passed", metrics.get("gate.passed"))
    lines += ["", f"gate     {'passed' if passed is True else 'FAILED' if passed is False else '?'}"]
    failures = gate.get("failures")
    lines += [f"  failed: {_plain(f)}" for f in (failures if isinstance(failures, list) else [])]
    for o in gate.get("overrides") if isinstance(gate.get("overrides"), list) else []:
        o = _dict(o)
        lines.append(f"  changed by --threshold: {_plain(o.get('metric'))} {_bound_change(o)} (params -> used)")
    who = _dict(gate.get("changed_by"))
    for c in gate.get("changed_at_publish") if isinstance(gate.get("changed_at_publish"), list) else []:
        c = _dict(c)
        lines.append(f"  changed at publish, after scoring: {_plain(c.get('metric'))} "
                     f"{_bounds(_dict(c.get('from'))) or 'none'} -> {_bounds(_dict(c.get('to'))) or 'none'}")
    if who:
        lines.append(f"  changed by {_plain(who.get('user'))} on {_plain(who.get('host'))}: "
                     f"{_plain(who.get('command'))}")
    changes = _dict(m.get("schema_changes"))
    said = [c for k in ("breaking", "compatible") for c in (changes[k] if isinstance(changes.get(k), list) else [])]
    if said:
        lines += ["", f"schema changes since {_plain(changes.get('against'))}: " + "; ".join(map(_plain, said))]
    files = [_dict(f) for f in m.get("files")] if isinstance(m.get("files"), list) else []
    sizes = [f.get("bytes") for f in files]
    known = all(isinstance(b, int) and not isinstance(b, bool) for b in sizes)
    lines += ["", f"files    {len(files)}" + (f", {_size(sum(sizes))}" if files and known else "")]
    shown = files if len(files) <= 12 else files[:10]
    name_width = max([len(_plain(f.get("path"))) for f in shown] + [4])
    for f in shown:
        size = f.get("bytes")
        lines.append(f"  {_plain(f.get('path')):<{name_width}}  {_num(f.get('rows')):>12} rows  "
                     f"{_size(size) if isinstance(size, int) and not isinstance(size, bool) else '?':>10}")
    if len(shown) < len(files):
        lines.append(f"  ... {len(files) - len(shown)} more")
    reports = m.get("reports")
    if isinstance(reports, list) and reports:
        lines.append(f"reports  {', '.join(map(_plain, reports))}")
    return "\n".join(lines) + "\n"


def _plain(value) -> str:
    """One line of text for any value (``?`` for a missing one)."""
    return "?" if value is None else " ".join(str(value).split())


def _num(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "?"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def _sig(value) -> str:
    """A number to four significant figures (an epsilon, a delta, a sampling rate); ? if not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "?"
    return f"{value:.4g}"


def _score(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "?"
    return "nan" if value != value else f"{value:.3f}"


def _bounds(th: dict | None) -> str:
    """``>= 0.85``, ``<= 0.95`` or both, for a threshold entry ({min, max})."""
    th = _dict(th)
    parts = [f"{op} {th[k]}" for k, op in (("min", ">="), ("max", "<=")) if th.get(k) is not None]
    return " and ".join(parts)


def _verdict(metrics: dict, key: str, th: dict) -> str:
    """ok, FAIL, not judged (its suite said why) or ? (no score, or a bound that is no number)."""
    not_judged = metrics.get("gate.not_judged")
    if isinstance(not_judged, dict) and not_judged_reason({"gate.not_judged": not_judged}, key) is not None:
        return "not judged"
    value = metrics.get(key)
    bounds = [th.get("min"), th.get("max")]
    numbers = [b for b in [value, *bounds] if b is not None]
    if value is None or any(isinstance(b, bool) or not isinstance(b, (int, float)) for b in numbers) or value != value:
        return "?"
    low, high = bounds
    return "FAIL" if (low is not None and value < low) or (high is not None and value > high) else "ok"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def holdout_origin(manifest: dict, code=str) -> str:
    """Where a release's real holdout rows come from: their own file (named, with its hash) or a
    seeded split of the source (the fraction). ``code`` marks up file names and hashes."""
    params = _dict(manifest.get("params"))
    name = manifest.get("dataset")
    entry = _dict(_dict(params.get("datasets")).get(name if isinstance(name, str) else None))
    if manifest.get("holdout_hash") is not None or entry.get("holdout_source"):
        return (f"from {code(entry['holdout_source']) if entry.get('holdout_source') else 'their own file'} "
                f"(sha256 {code(manifest.get('holdout_hash') or '?')})")
    fraction = _dict(params.get("ingest")).get("holdout_fraction")
    if fraction is None and not entry:
        return "origin not recorded"
    return f"split from the source (ingest.holdout_fraction {'?' if fraction is None else fraction})"


def _dict(value) -> dict:
    """``value`` if it is a mapping, else empty: a hand-edited manifest may hold anything."""
    return value if isinstance(value, dict) else {}


def _bound_change(override: dict) -> str:
    """``>= 0.85 -> >= 0.4`` for one entry of a manifest's ``gate.overrides``."""
    op = {"min": ">=", "max": "<="}.get(override.get("bound"), "?")
    params, used = override.get("params"), override.get("used")
    return f"{'none' if params is None else f'{op} {params}'} -> {op} {'?' if used is None else used}"


def embed_in_report(report_html: str, card_md: str) -> str:
    """The report with the data card as its last section (as preformatted text: no scripts)."""
    section = f"<h2>Data card</h2><pre style='white-space:pre-wrap'>{html.escape(card_md)}</pre>"
    if "</body>" in report_html:
        return report_html.replace("</body>", section + "</body>", 1)
    return report_html + section
