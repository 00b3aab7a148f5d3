"""Stage 4, score: how faithful, useful and private the synthetic rows are, the quality gate, and
the report.

The stage reads the modality once (``pipeline.modalities``), builds that handler's evidence, runs
every metric suite registered for the modality (``pipeline.metrics``: fidelity, coverage,
detection, utility and privacy for tables; the image suite for images), judges the gate and
writes; its log line shows each suite's headline scores. A new metric is one suite in one module;
this file does not change.

Writes, in ``<work>/<dataset>/score/``, ``details.json`` (the record publish reads: every score,
the hash of the data scored, the verdict under the thresholds it ran with, per-column and per-pair
scores, samples and seeds, seconds per suite), ``report.html`` (self-contained), ``report.md`` and
any evidence a suite keeps (the image evaluator); and ``metrics/<dataset>.json``, the scores'
numbers under flat keys (DVC metrics: what ``dvc exp show`` compares). Scoring always writes its
verdict; publish judges again under the thresholds in force then (a threshold is no DVC param of
this stage: changing one re-runs publish only) and refuses a failing release.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline import cancel
from pipeline.artifacts import StagePaths, metrics_path, score_records
from pipeline.config import Config
from pipeline.errors import InputDataError
from pipeline.files import atomic_path, read_json, write_json
from pipeline.metrics import judge, suites_for, summary
from pipeline.modalities import modality_of
from pipeline.progress import Progress

log = logging.getLogger(__name__)


@dataclass
class ScoreResult:
    dataset: str
    metrics: dict
    passed: bool
    failures: list[str]


def run(cfg: Config, dataset: str) -> ScoreResult:
    cfg = cfg.for_dataset(dataset)  # itself when resolved already (run_stage resolves it)
    paths = StagePaths.of(cfg.work_dir, dataset)
    if not paths.synthetic.exists():
        raise InputDataError(paths.synthetic, "no synthetic data: run the generate stage first")
    t0 = time.perf_counter()
    handler = modality_of(paths)
    evidence = handler.evidence(cfg, dataset, paths)
    metrics: dict[str, object] = {
        "rows": evidence.rows,
        # Which synthetic data these scores are for: publish releases only exactly that data.
        "synthetic_hash": read_json(paths.generated)["data_hash"],
    }
    details: dict[str, Any] = {"dataset": dataset, "samples": {"seed": cfg.seed}, "seconds": {}}
    files: dict[str, str | bytes] = {}
    drawn: dict[str, Any] = {}  # what only the report reads (distances, pixel sets)
    not_judged: dict[str, str] = {}
    suites = suites_for(handler.MODALITY)
    with Progress("score", len(suites), "metric family") as bar:
        for suite in suites:
            cancel.check()
            bar.now(suite.name)
            t = time.perf_counter()
            out = suite.compute(evidence)
            metrics.update(out.metrics)
            _merge(details, out.details)
            files.update(out.files)
            drawn.update(out.report)
            not_judged.update(out.not_judged)
            details["seconds"][suite.name] = round(time.perf_counter() - t, 3)
            log.info("score %s: %s in %.1fs", dataset, suite.name, details["seconds"][suite.name],
                     extra={"fields": {"family": suite.name, "seconds": details["seconds"][suite.name]}})
            bar.advance(1)
    # A threshold on a metric only another modality's suites measure (the default gate's attack keys
    # for an image source) is not judged here, and the verdict says why, rather than "not computed".
    measured = {info.key for suite in suites for info in suite.metrics} | set(metrics)
    for key in cfg.score.thresholds:
        if key not in measured:
            not_judged.setdefault(key, f"not measured on {handler.MODALITY} data")
    if not_judged:
        metrics["gate.not_judged"] = not_judged
    metrics = judge({k: _clean(v) for k, v in metrics.items()}, cfg.score.thresholds)
    metrics["score.seconds"] = round(time.perf_counter() - t0, 3)
    details.update(thresholds={k: v.model_dump() for k, v in cfg.score.thresholds.items()},
                   params={"seed": cfg.seed, "score": cfg.score.model_dump(mode="json")})  # what made these scores
    if cfg.score.report:
        t = time.perf_counter()
        files.update(handler.report(evidence, metrics, details, drawn))
        details["seconds"]["report"] = round(time.perf_counter() - t, 3)
    cancel.check()  # a cancelled score writes nothing: the last whole record stays or none does
    with cancel.deferred():  # the record is replaced whole, not cut off between its files
        _write(cfg, dataset, paths, metrics, files, _clean(details))
    log.info("score %s: %s, gate %s%s (%s)", dataset, summary(suites, metrics),
             "passed" if metrics["gate.passed"] else "FAILED",
             "" if metrics["gate.passed"] else f" ({'; '.join(metrics['gate.failures'])})",
             ", ".join(f"{k} {v:.1f}s" for k, v in details["seconds"].items()))
    return ScoreResult(dataset, metrics, metrics["gate.passed"], metrics["gate.failures"])


def _merge(into: dict, new: dict) -> None:
    """Merge a suite's details: nested mappings (``samples``, ``columns`` and each column) merge,
    anything else is set."""
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _clean(v):
    """JSON-ready: numpy scalars as Python numbers, NaN as null, through lists and mappings."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        v = v.item()
    return None if isinstance(v, float) and math.isnan(v) else v


def _write(cfg: Config, dataset: str, paths: StagePaths, metrics: dict, files: dict[str, str | bytes],
           details: dict) -> None:
    """Replace the evidence (``files``: reports, the image evaluator) and the DVC metrics file,
    then write the record publish reads (``details.json``: scores, data hash, verdict) last, so a
    failure leaves no new record beside old evidence or the reverse."""
    paths.score.mkdir(parents=True, exist_ok=True)
    record, numbers = score_records(metrics, details)
    # No record while the evidence is being replaced: publish refuses to run without one.
    paths.details.unlink(missing_ok=True)
    metrics_path(cfg.metrics_dir, dataset).unlink(missing_ok=True)
    for name in ("report.html", "report.md"):
        (paths.score / name).unlink(missing_ok=True)
    for name, content in files.items():
        with atomic_path(paths.score / name) as tmp:
            tmp.write_bytes(content) if isinstance(content, bytes) else tmp.write_text(content, encoding="utf-8")
    write_json(metrics_path(cfg.metrics_dir, dataset), numbers)
    write_json(paths.details, record)
