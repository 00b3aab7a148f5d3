"""Where the default privacy gate stands: releases that copy their training rows (exactly, and with
small noise on the numbers), real rows the model never saw released as if synthetic, and the
model's own release, each scored by every privacy family and judged by a gate.

    python benchmarks/privacy_gate.py --work-dir work --dataset adult [--seeds 0 1 2]

The copier and unseen-rows releases are made from the prepared training rows alone: they are cut
(seeded) into the rows the "copier" was trained on (its members) and rows it never saw (the
unseen release), and the holdout stays the holdout. The model's release is judged against every
training row, as the score stage judges it. The gate is the privacy keys of ``score.thresholds``
(params.yaml, ``--params``). Prints a table and, last, one JSON line ``{release: {seed: {key: value}}}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.artifacts import StagePaths, load_prepared, read_synthetic
from pipeline.config import load_config
from pipeline.metrics import judge, suites_for
from pipeline.modalities.table import TableEvidence

KEYS = ["privacy.exact_match_excess", "privacy.dcr_share", "privacy.mia_auc", "privacy.mia_tpr_at_fpr_1pct",
        "privacy.singling_out_risk", "privacy.linkability_risk", "privacy.inference_risk",
        "privacy.inference_risk_upper"]


def noisy(frame: pd.DataFrame, schema, rng: np.random.Generator, scale: float) -> pd.DataFrame:
    """``frame`` with Gaussian noise of ``scale`` times each continuous or integer column's standard
    deviation (integers rounded back): a copier that hides behind small perturbations."""
    out = frame.copy()
    for col in schema.modeled:
        if col.kind in ("continuous", "integer") and col.name in out:
            x = out[col.name].astype("float64")
            moved = x + rng.normal(0, scale * float(np.nanstd(x)), len(x))
            out[col.name] = (np.round(moved) if col.kind == "integer" else moved).astype(out[col.name].dtype)
    return out


def privacy_scores(train, holdout, syn, schema, settings, seed: int) -> dict:
    ev = TableEvidence("bench", None, train, holdout, syn, schema, None, "auto", settings, seed, len(syn), False,
                       len(train))
    metrics: dict = {}
    for suite in suites_for("table"):
        if any(info.key.startswith("privacy.") for info in suite.metrics):
            metrics.update(suite.compute(ev).metrics)
    return metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work-dir", default="work")
    ap.add_argument("--dataset", default="adult")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--noise", type=float, default=0.05, help="the noisy copier's noise, in standard deviations")
    ap.add_argument("--members", type=float, default=0.6, help="share of the training rows the copier copies")
    args = ap.parse_args()
    cfg = load_config(Path(args.params))
    settings = cfg.score
    # The gate's privacy keys only: the other families are not run here.
    settings.thresholds = {k: v for k, v in settings.thresholds.items() if k.startswith("privacy.")}
    paths = StagePaths.of(args.work_dir, args.dataset)
    train, holdout, schema, _ = load_prepared(paths)
    model_rows = read_synthetic(paths.synthetic) if paths.synthetic.exists() else None
    results: dict = {}
    for seed in args.seeds:
        shuffled = train.sample(frac=1.0, random_state=seed + 1000).reset_index(drop=True)
        cut = int(len(shuffled) * args.members)
        members, unseen = shuffled.iloc[:cut].reset_index(drop=True), shuffled.iloc[cut:].reset_index(drop=True)
        copies = members.sample(frac=1.0, random_state=seed + 2000).reset_index(drop=True)
        releases = {
            "copier (exact)": (members, copies),
            f"copier (noise {args.noise:g} sd)": (members, noisy(copies, schema, np.random.default_rng(seed),
                                                                 args.noise)),
            "unseen real rows": (members, unseen),
        }
        if model_rows is not None:
            releases["model release"] = (train, model_rows)
        for name, (tr, syn) in releases.items():
            t = time.perf_counter()
            m = judge(privacy_scores(tr, holdout, syn, schema, settings, seed), settings.thresholds)
            row = {k: m.get(k) for k in KEYS}
            row.update(seconds=round(time.perf_counter() - t, 1), gate_passed=m["gate.passed"],
                       failures=m["gate.failures"])
            results.setdefault(name, {})[seed] = row
            figures = ", ".join(f"{k.removeprefix('privacy.')} {v:.3f}" for k, v in row.items() if isinstance(v, float))
            print(f"{name:26s} seed {seed}: {figures}"
                  + f"; gate {'passed' if row['gate_passed'] else 'FAILED'} {row['failures']}", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
