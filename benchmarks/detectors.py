"""Detection classifiers against the C2ST protocol of the papers, on Adult (issue 28, item 3): which
releases each one tells from the real training rows, and at what cost.

    python benchmarks/detectors.py [--model-work DIR | --epochs E] [--release PATH ...]
        [--seeds 0] [--rows N] [--xgb-python PATH] [--skip-xgb] [--candidates current default ...]

Real rows: Adult's prepared training rows (``data/adult/train.parquet`` through our ingest, in a
temporary folder). Releases, each judged against those rows:
- ``holdout``: Adult's held-out real rows (``data/adult/test.parquet``): every detector should read ~0.5;
- ``marginals``: each column resampled from the training rows on its own (seeded): right shapes, no
  relations between columns;
- ``noisy copy``: the training rows with ``--share`` (2%) of each column's values changed: a number
  moved by Gaussian noise of ``--noise`` (0.1) standard deviations (integers rounded back), a
  category redrawn from its column. Each changed row's twin is among the real rows, so a classifier
  that learns rows reads *below* 0.5 here (a copy's sign; SDMetrics' score clips it to 1.0);
- ``noisy holdout``: the held-out real rows changed the same way: a subtle difference without twins
  (a stronger detector reads further above 0.5);
- ``model``: a model's release: the synthetic rows in ``--model-work`` (a work
  folder where `pipeline run --dataset adult` ran), or, with ``--epochs E``, a model trained here for
  E epochs in a temporary folder (``python -m pipeline run --dataset adult --set train.epochs=E``);
- each ``--release PATH`` (a Parquet file or folder of shards with Adult's columns).

Detectors (each: mean out-of-fold ROC AUC, seconds):
- ours, one per ``--candidates`` name (``CANDIDATES``: HistGradientBoosting settings and folds;
  ``current`` is the detector before issue 28, ``default`` is ``pipeline.metrics.detection``'s), on
  at most ``--rows`` rows per side (the score stage's ``score.detection_rows``);
- ``xgb``: the papers' protocol, run by ``_xgb_runner.py`` in its own virtual environment
  (``--xgb-python``; default $XGB_PYTHON, else /work/venvs/xgb/bin/python): xgboost's defaults,
  ordinal codes with a missing value its own category, 5-fold stratified, all rows (equal per side).
Prints a line per (release, detector), a table of AUCs (and SDMetrics' detection score of each) and,
last, one JSON line ``{release: {detector: {"auc": .., "score": .., "seconds": ..}}}`` (mean over seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.artifacts import StagePaths, load_prepared, read_synthetic  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.metrics.detection import CLASSIFIER, FOLDS, NATIVE_CATEGORIES, score_detection, sdmetrics_score  # noqa: E402
from pipeline.schema import DISCRETE_KINDS  # noqa: E402
from pipeline.stages import run_stage  # noqa: E402

PARAMS = REPO / "params.yaml"
RUNNER = REPO / "benchmarks" / "_xgb_runner.py"
DEFAULT_XGB = "/work/venvs/xgb/bin/python"
XGB_LIKE = {"early_stopping": False, "max_iter": 100, "learning_rate": 0.3, "max_depth": 6, "max_leaf_nodes": None}
# name: (folds, HistGradientBoostingClassifier keywords, categories as native categories, rows per side:
# None = --rows)
CANDIDATES = {
    "current": (3, {}, True, 20_000),
    "no_early_stop": (5, {"early_stopping": False}, True, None),
    "default": (FOLDS, CLASSIFIER, NATIVE_CATEGORIES, None),
    "xgb_like": (5, XGB_LIKE, True, None),
    "xgb_like_ord": (5, XGB_LIKE, False, None),
    "deep": (5, {"early_stopping": False, "max_iter": 300, "learning_rate": 0.1, "max_leaf_nodes": 127}, True, None),
}


def marginals(train: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Each column drawn from the training rows on its own."""
    return pd.DataFrame({c: train[c].to_numpy()[rng.integers(0, len(train), len(train))] for c in train.columns})


def noisy_copy(train: pd.DataFrame, schema, rng: np.random.Generator, noise: float, share: float) -> pd.DataFrame:
    """The training rows with ``share`` of each column's values changed: a number moved by Gaussian
    noise of ``noise`` standard deviations (an integer rounded back), a category redrawn from its column."""
    out = train.copy()
    for col in schema.modeled:
        x = out[col.name]
        hit = rng.random(len(x)) < share
        if col.kind in ("continuous", "integer"):
            v = x.astype("float64")
            moved = v + hit * rng.normal(0, noise * float(np.nanstd(v)), len(x))
            out[col.name] = (np.round(moved) if col.kind == "integer" else moved).astype(x.dtype)
        elif col.kind in DISCRETE_KINDS:
            out.loc[hit, col.name] = x.to_numpy()[rng.integers(0, len(x), int(hit.sum()))]
    return out


def model_release(epochs: int, seed: int, folder: Path) -> pd.DataFrame:
    """The default model's release after ``epochs`` epochs, made by the CLI in ``folder``."""
    sets = [f"work_dir={folder / 'work'}", f"metrics_dir={folder / 'metrics'}",
            f"publish.release_root={folder / 'releases'}", f"train.epochs={epochs}", f"seed={seed}",
            "score.report=false"]
    cmd = [sys.executable, "-m", "pipeline", "run", "--dataset", "adult", "-q"]
    for s in sets:
        cmd += ["--set", s]
    subprocess.run(cmd, cwd=REPO, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    return read_synthetic(StagePaths.of(folder / "work", "adult").synthetic)


def xgb_auc(python: str, real: pd.DataFrame, syn: pd.DataFrame, seed: int, folder: Path) -> dict:
    """The papers' protocol on these rows, in xgboost's own environment."""
    real.to_parquet(folder / "real.parquet", index=False)
    syn[list(real.columns)].to_parquet(folder / "syn.parquet", index=False)
    out = subprocess.run([python, str(RUNNER), "--real", str(folder / "real.parquet"),
                          "--syn", str(folder / "syn.parquet"), "--seed", str(seed)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-work", type=Path, default=None, help="a work folder holding adult's synthetic rows")
    ap.add_argument("--epochs", type=int, default=None, help="train the default model this many epochs here")
    ap.add_argument("--release", type=Path, nargs="*", default=[], help="more releases to judge (Parquet)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--rows", type=int, default=None, help="rows per side for our detectors (default: "
                    "params.yaml's score.detection_rows)")
    ap.add_argument("--noise", type=float, default=0.1, help="the noisy copy's noise, in standard deviations")
    ap.add_argument("--share", type=float, default=0.02, help="the share of each column the noisy copy changes")
    ap.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    ap.add_argument("--releases", nargs="+", default=None, help="only these of the built-in releases")
    ap.add_argument("--xgb-python", default=os.environ.get("XGB_PYTHON", DEFAULT_XGB))
    ap.add_argument("--skip-xgb", action="store_true")
    args = ap.parse_args()

    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cfg = load_config(PARAMS, {"work_dir": str(folder / "work"), "metrics_dir": str(folder / "metrics"),
                                  "datasets.adult.source": str(REPO / "data/adult/train.parquet"),
                                  "datasets.adult.holdout_source": str(REPO / "data/adult/test.parquet")})
        run_stage("ingest", cfg, "adult")
        train, holdout, schema, _ = load_prepared(StagePaths.of(cfg.work_dir, "adult"))
        rows = args.rows or cfg.score.detection_rows
        for seed in args.seeds:
            rng = np.random.default_rng(seed)
            releases = {"holdout": holdout, "marginals": marginals(train, rng),
                        "noisy copy": noisy_copy(train, schema, rng, args.noise, args.share),
                        "noisy holdout": noisy_copy(holdout, schema, rng, args.noise, args.share)}
            if args.model_work is not None:
                releases["model"] = read_synthetic(StagePaths.of(args.model_work, "adult").synthetic)
            elif args.epochs is not None:
                releases[f"model ({args.epochs} epochs)"] = model_release(args.epochs, seed, folder / "model")
            for path in args.release:
                releases[path.name] = read_synthetic(path)
            if args.releases:
                releases = {k: v for k, v in releases.items() if k in args.releases or k not in
                            ("holdout", "marginals", "noisy copy", "noisy holdout")}
            for name, syn in releases.items():
                syn = syn[list(train.columns)].astype(train.dtypes.to_dict())
                for cand in args.candidates:
                    folds, settings, native, cand_rows = CANDIDATES[cand]
                    t = time.perf_counter()
                    auc = score_detection(train, syn, schema, rows=cand_rows or rows, seed=seed, folds=folds,
                                          classifier=settings, native_categories=native).auc
                    record(results, name, cand, seed, auc, time.perf_counter() - t)
                if not args.skip_xgb:
                    out = xgb_auc(args.xgb_python, train, syn, seed, folder)
                    record(results, name, "xgb", seed, out["auc"], out["seconds"])
    summary = {r: {d: {k: float(np.mean([s[k] for s in by_seed.values()])) for k in ("auc", "score", "seconds")}
                   for d, by_seed in dets.items()} for r, dets in results.items()}
    detectors = list(dict.fromkeys(d for dets in summary.values() for d in dets))
    print(f"\n{'release':24s} " + " ".join(f"{d:>16s}" for d in detectors))
    for r, dets in summary.items():
        print(f"{r:24s} " + " ".join(f"{dets[d]['auc']:7.3f} ({dets[d]['score']:.3f})" if d in dets else f"{'':16s}"
                                     for d in detectors))
    print(f"{'seconds (mean)':24s} " + " ".join(
        f"{np.mean([dets[d]['seconds'] for dets in summary.values() if d in dets]):16.1f}" for d in detectors))
    print("AUC (SDMetrics detection score); 0.5 (1.000) = indistinguishable")
    print(json.dumps(summary))


def record(results: dict, release: str, detector: str, seed: int, auc: float, seconds: float) -> None:
    results.setdefault(release, {}).setdefault(detector, {})[seed] = {
        "auc": auc, "score": sdmetrics_score(auc), "seconds": round(seconds, 2)}
    print(f"{release:24s} {detector:14s} seed {seed}: AUC {auc:.3f} ({seconds:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
