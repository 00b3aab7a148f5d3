"""Stage 4, score: fidelity, utility and privacy of the synthetic rows, and the quality gate.

Writes ``metrics/<dataset>.json`` (flat keys, declared as DVC metrics; the gate verdict included)
and ``<work>/<dataset>/score/details.json`` (per-column and per-pair scores). Scoring always writes
its verdict; it is the publish stage that refuses a failing release.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as pads

from pipeline.config import Config
from pipeline.errors import InputDataError
from pipeline.ingest import load_prepared
from pipeline.io import StagePaths, read_json, write_json
from pipeline.metrics import evaluate_gate
from pipeline.metrics.fidelity import score_fidelity
from pipeline.metrics.privacy import exact_match_rate
from pipeline.metrics.utility import score_utility

log = logging.getLogger(__name__)


@dataclass
class ScoreResult:
    dataset: str
    metrics: dict
    passed: bool
    failures: list[str]


def read_sample(path: Path, n: int, seed: int) -> tuple[pd.DataFrame, int]:
    """A seeded uniform sample of at most ``n`` rows from a Parquet file or folder of shards,
    reading one shard at a time. Returns (sample, total rows)."""
    dataset = pads.dataset(path, format="parquet")
    fragments = list(dataset.get_fragments())
    counts = [f.count_rows() for f in fragments]
    total = sum(counts)
    if total <= n:
        return dataset.to_table().to_pandas(), total
    picks = np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))
    parts, offset = [], 0
    for frag, count in zip(fragments, counts):
        local = picks[(picks >= offset) & (picks < offset + count)] - offset
        if len(local):
            parts.append(frag.to_table().take(local).to_pandas())
        offset += count
    return pd.concat(parts, ignore_index=True), total


def _sample(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    return df if len(df) <= n else df.sample(n=n, random_state=seed).reset_index(drop=True)


def _clean(v):
    return None if isinstance(v, float) and math.isnan(v) else v


def run(cfg: Config, dataset: str) -> ScoreResult:
    paths = StagePaths.of(cfg.work_dir, dataset)
    train, holdout, schema, meta = load_prepared(paths)
    if not paths.synthetic.exists():
        raise InputDataError(paths.synthetic, "no synthetic data: run the generate stage first")
    t0 = time.perf_counter()
    n = cfg.score.max_rows
    syn, syn_rows = read_sample(paths.synthetic, n, cfg.seed)
    real = _sample(train, n, cfg.seed)

    fid = score_fidelity(real, syn, schema)
    metrics: dict[str, object] = {
        "rows": syn_rows,
        # Which synthetic data these scores are for: publish releases only exactly that data.
        "synthetic_hash": read_json(paths.synthetic / "_generated.json")["data_hash"],
        "quality.column_shapes": fid.column_shapes,
        "quality.column_pair_trends": fid.column_pair_trends,
        "quality.column_pair_trends_all": fid.column_pair_trends_all,
        "quality.overall": fid.overall,
    }
    target = cfg.dataset(dataset).target
    utility = None
    if target and len(holdout):
        utility = score_utility(_sample(train, n, cfg.seed), _sample(holdout, n, cfg.seed), syn, schema, target)
        metrics.update({
            "utility.tstr_score": utility.tstr,
            "utility.trtr_score": utility.trtr,
            "utility.ratio": utility.tstr / utility.trtr if utility.trtr else None,
        })
    modeled = [c.name for c in schema.modeled]
    metrics["privacy.exact_match_rate"] = exact_match_rate(train, syn, modeled)
    if len(holdout):
        metrics["privacy.exact_match_rate_holdout"] = exact_match_rate(train, _sample(holdout, n, cfg.seed), modeled)
    metrics = {k: _clean(v) for k, v in metrics.items()}
    passed, failures = evaluate_gate(metrics, cfg.score.thresholds)
    metrics["gate.passed"] = passed
    metrics["gate.failures"] = failures
    seconds = time.perf_counter() - t0
    metrics["score.seconds"] = round(seconds, 3)

    write_json(Path(cfg.metrics_dir) / f"{dataset}.json", metrics)
    write_json(paths.score / "details.json", {
        "dataset": dataset,
        "sample_rows": {"real": len(real), "synthetic": len(syn)},
        "seed": cfg.seed,
        "utility": asdict(utility) if utility else None,
        "thresholds": {k: v.model_dump() for k, v in cfg.score.thresholds.items()},
        "columns": fid.columns,
        "pairs": fid.pairs,
    })
    log.info("score %s: overall %.3f, shapes %.3f, pairs %.3f, gate %s%s", dataset, fid.overall,
             fid.column_shapes, fid.column_pair_trends, "passed" if passed else "FAILED",
             "" if passed else f" ({'; '.join(failures)})")
    return ScoreResult(dataset, metrics, passed, failures)


def load_metrics(cfg: Config, dataset: str) -> dict:
    path = Path(cfg.metrics_dir) / f"{dataset}.json"
    if not path.exists():
        raise InputDataError(path, "no metrics: run the score stage first")
    return read_json(path)
