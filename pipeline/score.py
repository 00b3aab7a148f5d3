"""Stage 4, score: fidelity, coverage, detection, utility and privacy of the synthetic rows, the
quality gate, and the report.

Writes ``metrics/<dataset>.json`` (flat keys, declared as DVC metrics; the gate verdict included)
and, in ``<work>/<dataset>/score/``, ``details.json`` (per-column and per-pair scores, samples and
seeds), ``report.html`` (self-contained) and ``report.md``. Scoring always writes its verdict; it
is the publish stage that refuses a failing release.

Fidelity, coverage and exact matches are computed on every row. Metrics that train models
(utility, detection) or are quadratic in the rows (DCR) run on seeded samples whose sizes are
``score.*_rows``; the sizes and the seed are in ``details.json`` and the report.
"""

from __future__ import annotations

import io
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from pipeline.artifacts import (
    StagePaths,
    load_prepared,
    metrics_path,
    prepared_meta,
    read_synthetic,
)
from pipeline.config import Config
from pipeline.errors import InputDataError
from pipeline.io import atomic_path, read_json, write_json
from pipeline.metrics import evaluate_gate
from pipeline.metrics.coverage import score_coverage
from pipeline.metrics.detection import score_detection
from pipeline.metrics.fidelity import score_fidelity
from pipeline.metrics.privacy import exact_match_rate, score_dcr
from pipeline.metrics.streaming import score_streaming
from pipeline.metrics.utility import score_utility

log = logging.getLogger(__name__)


@dataclass
class ScoreResult:
    dataset: str
    metrics: dict
    passed: bool
    failures: list[str]


REPORT_ROWS = 200_000  # rows of each side the report's plots draw from


def read_sample(files: list[Path], total: int, rows: int, seed: int) -> pd.DataFrame:
    """A seeded sample of ``rows`` of the ``total`` rows in ``files`` (in order), read shard by shard."""
    if rows >= total:
        return pads.dataset(files, format="parquet").to_table().to_pandas()
    pick = np.sort(np.random.default_rng(seed).choice(total, rows, replace=False))
    parts, start = [], 0
    for f in files:
        n = pq.ParquetFile(f).metadata.num_rows
        local = pick[(pick >= start) & (pick < start + n)] - start
        if len(local):
            parts.append(pq.read_table(f).take(local))
        start += n
    return pa.concat_tables(parts).to_pandas()


def _sample(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    return df if len(df) <= n else df.sample(n=n, random_state=seed).reset_index(drop=True)


def _clean(v):
    if isinstance(v, (np.floating, np.integer)):
        v = v.item()
    return None if isinstance(v, float) and math.isnan(v) else v


def run(cfg: Config, dataset: str) -> ScoreResult:
    cfg = cfg.for_dataset(dataset)
    paths = StagePaths.of(cfg.work_dir, dataset)
    if not paths.synthetic.exists():
        raise InputDataError(paths.synthetic, "no synthetic data: run the generate stage first")
    if prepared_meta(paths).get("modality") == "image":
        return _score_images(cfg, dataset, paths)
    train, holdout, schema, meta = load_prepared(paths)
    t0 = time.perf_counter()
    sc, seed = cfg.score, cfg.seed
    timings: dict[str, float] = {}

    def timed(name, fn, *a, **k):
        t = time.perf_counter()
        out = fn(*a, **k)
        timings[name] = round(time.perf_counter() - t, 3)
        return out

    total = pads.dataset(paths.synthetic, format="parquet").count_rows()
    streamed = total > sc.in_memory_rows
    if streamed:
        # Too many rows to hold: exact scores from per-shard statistics, the rest on a seeded sample.
        files = sorted(paths.synthetic.glob("part-*.parquet"))
        scorer = timed("fidelity_coverage_exact_match", score_streaming, train,
                       lambda: (pq.read_table(f).to_pandas() for f in files), schema)
        fid, cov, exact = scorer.fidelity(), scorer.coverage(), scorer.exact_match_rate()
        sample_rows = max(sc.utility_rows, sc.detection_rows, sc.privacy_rows, REPORT_ROWS)
        syn = read_sample(files, total, sample_rows, seed)
    else:
        syn = read_synthetic(paths.synthetic)
        fid = timed("fidelity", score_fidelity, train, syn, schema)
        cov = timed("coverage", score_coverage, train, syn, schema)
    metrics: dict[str, object] = {
        "rows": total,
        # Which synthetic data these scores are for: publish releases only exactly that data.
        "synthetic_hash": read_json(paths.generated)["data_hash"],
        "quality.column_shapes": fid.column_shapes,
        "quality.column_pair_trends": fid.column_pair_trends,
        "quality.column_pair_trends_all": fid.column_pair_trends_all,
        "quality.overall": fid.overall,
        "coverage.category": cov.category,
        "coverage.range": cov.range,
        "coverage.missing_values": cov.missing_values,
    }
    det = timed("detection", score_detection, train, syn, schema, rows=sc.detection_rows, seed=seed)
    metrics.update({"detection.auc": det.auc, "detection.score": det.score})
    target = cfg.dataset(dataset).target
    utility = None
    if target and len(holdout):
        utility = timed("utility", score_utility, _sample(train, sc.utility_rows, seed),
                        _sample(holdout, sc.utility_rows, seed), _sample(syn, sc.utility_rows, seed), schema, target)
        metrics.update({
            "utility.task": utility.task,
            "utility.metric": utility.metric,
            "utility.tstr_score": utility.tstr,
            "utility.trtr_score": utility.trtr,
            "utility.ratio": utility.tstr / utility.trtr if utility.trtr else None,
        })
    modeled = [c.name for c in schema.modeled]
    metrics["privacy.exact_match_rate"] = (exact if streamed
                                           else timed("exact_match", exact_match_rate, train, syn, modeled))
    privacy = None
    if len(holdout):
        metrics["privacy.exact_match_rate_holdout"] = exact_match_rate(train, holdout, modeled)
        privacy = timed("dcr", score_dcr, train, holdout, syn, schema, rows=sc.privacy_rows, seed=seed)
        metrics.update({
            "privacy.dcr_share": privacy.dcr_share,
            "privacy.dcr_protection": privacy.dcr_protection,
            "privacy.dcr_median": privacy.dcr_median,
            "privacy.dcr_holdout_median": privacy.dcr_holdout_median,
            "privacy.nndr_median": privacy.nndr_median,
        })
    metrics, passed, failures = _verdict(metrics, sc.thresholds, t0)

    samples = {
        "seed": seed,
        "fidelity_coverage_exact_match": {"real": len(train), "synthetic": total,
                                          "method": "merged per-shard statistics" if streamed else "in memory"},
        "synthetic_sample": len(syn) if streamed else None,
        "utility": {"rows": min(sc.utility_rows, len(syn))} if utility else None,
        "detection": {"rows_per_side": det.rows_per_side, "folds": det.folds},
        "privacy_dcr": privacy.rows if privacy else None,
    }
    columns = {name: {**fid.columns.get(name, {}), **cov.columns.get(name, {})} for name in cov.columns}
    # Everything is computed before anything is written; the metrics file (what publish reads)
    # is written last, so a failure leaves no new verdict beside old evidence or the reverse.
    reports = {}
    if sc.report:
        t = time.perf_counter()
        reports = render_report(cfg, dataset, metrics, columns, fid.pairs, train, syn, schema, privacy, samples)
        timings["report"] = round(time.perf_counter() - t, 3)
    _write(cfg, dataset, paths, metrics, reports, {
        "dataset": dataset,
        "samples": samples,
        "seconds": timings,
        "utility": asdict(utility) if utility else None,
        "thresholds": {k: v.model_dump() for k, v in sc.thresholds.items()},
        "params": {"seed": seed, "score": sc.model_dump(mode="json")},  # what these scores were made with
        "columns": {k: {kk: _clean(vv) for kk, vv in v.items()} for k, v in columns.items()},
        "pairs": [{k: _clean(v) for k, v in p.items()} for p in fid.pairs],
    })
    log.info("score %s: overall %.3f, shapes %.3f, pairs %.3f, detection AUC %.3f, gate %s%s (%s)", dataset,
             fid.overall, fid.column_shapes, fid.column_pair_trends, det.auc, "passed" if passed else "FAILED",
             "" if passed else f" ({'; '.join(failures)})", ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    return ScoreResult(dataset, metrics, passed, failures)


def _verdict(metrics: dict, thresholds: dict, t0: float) -> tuple[dict, bool, list[str]]:
    metrics = {k: _clean(v) for k, v in metrics.items()}
    passed, failures = evaluate_gate(metrics, thresholds)
    metrics["gate.passed"] = passed
    metrics["gate.failures"] = failures
    metrics["score.seconds"] = round(time.perf_counter() - t0, 3)
    return metrics, passed, failures


def _write(cfg: Config, dataset: str, paths: StagePaths, metrics: dict, files: dict[str, str | bytes],
           details: dict) -> None:
    """Replace the evidence (``details.json`` and ``files``: reports, the image evaluator), then
    write the verdict (the metrics file publish reads) last, so a failure leaves no new verdict
    beside old evidence or the reverse."""
    paths.score.mkdir(parents=True, exist_ok=True)
    verdict = metrics_path(cfg.metrics_dir, dataset)
    # No verdict while the evidence is being replaced: publish refuses to run without one.
    verdict.unlink(missing_ok=True)
    for name in ("report.html", "report.md"):
        (paths.score / name).unlink(missing_ok=True)
    write_json(paths.details, details)
    for name, content in files.items():
        with atomic_path(paths.score / name) as tmp:
            tmp.write_bytes(content) if isinstance(content, bytes) else tmp.write_text(content, encoding="utf-8")
    write_json(verdict, metrics)


# ---------------------------------------------------------------------------------------------
# Images


def _score_images(cfg: Config, dataset: str, paths: StagePaths) -> ScoreResult:
    """FID, KID, precision/recall, label accuracy and memorisation of generated images, each with
    its real-vs-real floor and noise ceiling (``pipeline.metrics.image``)."""
    import torch

    from pipeline.artifacts import load_prepared_images
    from pipeline.images import pixel_hashes, pixels_of
    from pipeline.metrics.image import evaluate_images, fid_ratio, train_evaluator
    from pipeline.models.image import images_to_tensor
    from pipeline.training.loop import pick_device

    t0 = time.perf_counter()
    sc, seed = cfg.score, cfg.seed
    train, holdout, meta = load_prepared_images(paths)
    syn = read_synthetic(paths.synthetic)
    labels = np.asarray(meta["labels"])
    for where, frame in ((paths.synthetic, syn), (paths.holdout_data, holdout)):
        unknown = sorted(set(frame["label"].unique()) - set(labels.tolist()))
        if unknown:
            raise InputDataError(where, f"column label: value {unknown[0]} is not a training label")
    if len(holdout) < 10:
        raise InputDataError(paths.holdout_data, f"{len(holdout)} held-out images: too few for the real-vs-real floor")
    device = pick_device(cfg.train.device)

    def tensors(px: np.ndarray, frame: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        data = images_to_tensor(px, np.searchsorted(labels, frame["label"].to_numpy()))
        return data[:, 1:].reshape(len(px), 1, *px.shape[1:]).to(device), data[:, 0].long().to(device)

    px_train, px_syn = pixels_of(train), pixels_of(syn)
    (x_train, y_train), (x_hold, y_hold), (x_syn, y_syn) = (
        tensors(px_train, train), tensors(pixels_of(holdout), holdout), tensors(px_syn, syn))
    t = time.perf_counter()
    evaluator = train_evaluator(x_train, y_train, len(labels), sc.classifier_epochs, seed)
    evaluator_seconds = round(time.perf_counter() - t, 3)
    evaluator = evaluator.cpu()  # the statistics run on CPU tensors (float64 covariances, cdist in chunks)
    ev = evaluate_images(evaluator, x_train.cpu(), x_hold.cpu(), y_hold.cpu(), x_syn.cpu(), y_syn.cpu(),
                         rows=sc.image_rows, seed=seed, memorization_quantile=sc.memorization_quantile)
    s, floor = ev.synthetic, ev.floor
    metrics: dict[str, object] = {
        "rows": len(syn),
        "synthetic_hash": read_json(paths.generated)["data_hash"],
        "image.fid": s.fid,
        "image.fid_real_floor": floor.fid,
        "image.fid_ratio": fid_ratio(s.fid, floor.fid),
        "image.kid": s.kid,
        "image.precision": s.precision,
        "image.recall": s.recall,
        "image.label_accuracy": s.label_accuracy,
        "image.classifier_accuracy": ev.classifier_accuracy,
        "image.memorized_rate": s.memorized_rate,
        "privacy.exact_match_rate": float(np.isin(pixel_hashes(px_syn), pixel_hashes(px_train)).mean()),
    }
    metrics, passed, failures = _verdict(metrics, sc.thresholds, t0)
    sanity = {name: asdict(getattr(ev, name)) for name in ("synthetic", "floor", "ceiling")}
    details = {
        "dataset": dataset, "modality": "image",
        "samples": {"seed": seed, **ev.rows},
        "seconds": {"evaluator": evaluator_seconds, **ev.seconds},
        "evaluator": {"epochs": sc.classifier_epochs, "holdout_accuracy": ev.classifier_accuracy,
                      "features": 128, "file": "evaluator.pt"},
        "memorization": {"quantile": sc.memorization_quantile, "threshold": ev.memorization_threshold},
        "sanity": sanity,
        "synthetic_sets": ev.synthetic_sets,
        "thresholds": {k: v.model_dump() for k, v in sc.thresholds.items()},
        "params": {"seed": seed, "score": sc.model_dump(mode="json")},
    }
    files: dict[str, str | bytes] = {}
    if sc.report:
        from pipeline.report import image_report

        log_df = pd.read_csv(paths.train_log) if paths.train_log.exists() else None
        files = image_report(dataset, metrics, {k: v.model_dump() for k, v in sc.thresholds.items()}, sanity,
                               px_train[:2000], train["label"].to_numpy()[:2000],
                               px_syn[:2000], syn["label"].to_numpy()[:2000], ev, log_df)
    buf = io.BytesIO()
    torch.save(evaluator.state_dict(), buf)  # the evaluator is an artifact too: its judgement can be re-checked
    files["evaluator.pt"] = buf.getvalue()
    _write(cfg, dataset, paths, metrics, files, details)
    log.info("score %s: FID %.2f (real floor %.2f, ratio %.2f), label accuracy %.3f, precision %.3f, recall %.3f, "
             "memorised %.4f, gate %s%s", dataset, s.fid, floor.fid, metrics["image.fid_ratio"], s.label_accuracy,
             s.precision, s.recall, s.memorized_rate, "passed" if passed else "FAILED",
             "" if passed else f" ({'; '.join(failures)})")
    return ScoreResult(dataset, metrics, passed, failures)


def render_report(cfg: Config, dataset: str, metrics: dict, columns: dict, pairs: list[dict], real: pd.DataFrame,
                  syn: pd.DataFrame, schema, privacy, samples: dict) -> dict[str, str]:
    """The report files' contents: {file name: text}."""
    from pipeline.report import ReportInput, render_html, render_markdown

    paths = StagePaths.of(cfg.work_dir, dataset)
    log_df = pd.read_csv(paths.train_log) if paths.train_log.exists() else None
    seed = samples["seed"]
    every = samples["fidelity_coverage_exact_match"]
    notes = [f"Fidelity, coverage and exact matches: all {every['synthetic']:,} synthetic and "
             f"{len(real):,} training rows"
             + (" (merged from per-shard statistics: the same scores as in memory)."
                if samples.get("synthetic_sample") else ".")]
    if samples.get("synthetic_sample"):
        notes.append(f"The other metrics and the plots: a seeded sample of "
                     f"{samples['synthetic_sample']:,} synthetic rows "
                     f"(seed {samples['seed']}).")
    if samples["detection"]:
        notes.append(f"Detection: {samples['detection']['rows_per_side']:,} rows per side, "
                     f"{samples['detection']['folds']}-fold cross-validation, seed {seed}.")
    if samples["utility"]:
        notes.append(f"Utility: models trained on at most {cfg.score.utility_rows:,} rows, seed {seed}.")
    if samples["privacy_dcr"]:
        r = samples["privacy_dcr"]
        notes.append(f"DCR: {r['synthetic']:,} synthetic rows; the share against equal samples of {r['train']:,} "
                     f"training and {r['holdout']:,} holdout rows, the medians and the plot against "
                     f"{r['train_reference']:,} training rows; seed {seed}.")
    inp = ReportInput(
        dataset=dataset, metrics=metrics,
        thresholds={k: v.model_dump() for k, v in cfg.score.thresholds.items()},
        schema=schema, real=_sample(real, REPORT_ROWS, seed), synthetic=_sample(syn, REPORT_ROWS, seed),
        columns=columns, pairs=pairs,
        privacy_distances=privacy.distances if privacy else {}, train_log=log_df, notes=notes,
    )
    return {"report.html": render_html(inp), "report.md": render_markdown(inp)}
