"""Our CTGAN and TVAE against the `ctgan` package's, on Adult, same machine, same epochs, one run.

    pip install ctgan sdmetrics psutil        # benchmark-only dependencies (the `bench` extra)
    python benchmarks/vs_ctgan.py --epochs 30

Each side runs in its own process (peak memory is that process tree's, ctgan's joblib workers
included). Quality is SDMetrics' own QualityReport on a fixed sample; utility is TSTR ROC AUC for
`income` on the real test split. Time-to-quality: our wall time, transform included and quality
checks excluded, until our model first reaches the quality ctgan's model reached after N epochs,
against ctgan's fit time for N epochs. Speedups are theirs / ours (> 1: we are faster).
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
TRAIN = REPO / "data/adult/train.parquet"
TEST = REPO / "data/adult/test.parquet"
TARGET = "income"
SAMPLE_ROWS = 100_000


class PeakRSS:
    """Samples the RSS of this process and its children every 50 ms; keeps the peak."""

    def __init__(self) -> None:
        import psutil

        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self.proc.memory_info().rss + sum(c.memory_info().rss for c in self.proc.children(recursive=True))
                self.peak = max(self.peak, rss)
            except Exception:  # noqa: BLE001 - a child may exit between listing and reading it
                pass
            self._stop.wait(0.05)

    def __enter__(self) -> "PeakRSS":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join()


def load() -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    train, test = pd.read_parquet(TRAIN), pd.read_parquet(TEST)
    discrete = [c for c in train.columns if train[c].dtype == object]
    return train, test, discrete


def quality(real: pd.DataFrame, syn: pd.DataFrame) -> float:
    from sdmetrics.reports.single_table import QualityReport

    md = {"columns": {c: {"sdtype": "categorical" if real[c].dtype == object else "numerical"} for c in real.columns}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = QualityReport()
        report.generate(real, syn[real.columns], md, verbose=False)
    return float(report.get_score())


def tstr_auc(train: pd.DataFrame, test: pd.DataFrame, syn: pd.DataFrame) -> float:
    from pipeline.metrics.utility import score_utility
    from pipeline.schema import TableSchema, describe, infer_kind

    schema = TableSchema([describe(train[c], infer_kind(train[c])) for c in train.columns], target=TARGET)
    syn = syn[train.columns].astype(train.dtypes.to_dict())
    return score_utility(train, test, syn, schema, TARGET).tstr


# -- jobs (each runs in a child process) ------------------------------------------------------------


def job_ref(model: str, epochs: int, eval_rows: int) -> dict:
    from ctgan import CTGAN, TVAE
    from ctgan.data_transformer import DataTransformer

    train, test, discrete = load()
    out: dict = {}
    # Time ctgan's own transformer inside its fit (fit + transform), to split transform from epochs.
    spent = {"s": 0.0}
    for name in ("fit", "transform"):
        original = getattr(DataTransformer, name)

        def timed(self, *a, _original=original, **k):
            t = time.perf_counter()
            try:
                return _original(self, *a, **k)
            finally:
                spent["s"] += time.perf_counter() - t

        setattr(DataTransformer, name, timed)
    with PeakRSS() as mem:
        synth = CTGAN(epochs=epochs, batch_size=500) if model == "ctgan" else TVAE(epochs=epochs, batch_size=500)
        t0 = time.perf_counter()
        synth.fit(train, discrete)
        out["fit_s"] = time.perf_counter() - t0
        out["transform_s"] = spent["s"]
        t0 = time.perf_counter()
        big = synth.sample(SAMPLE_ROWS)
        out["sample_rows_per_s"] = SAMPLE_ROWS / (time.perf_counter() - t0)
    out["epoch_s"] = (out["fit_s"] - out["transform_s"]) / epochs
    out["peak_rss_mb"] = mem.peak / 2**20
    syn = big.sample(eval_rows, random_state=0)
    out["quality"] = quality(train, syn)
    out["tstr_auc"] = tstr_auc(train, test, big)
    return out


def job_ours(model: str, epochs: int, eval_rows: int, every: int, target_quality: float | None) -> dict:
    import torch

    from pipeline.config import load_config
    from pipeline.models.saved import LoadedModel
    from pipeline.sampling import sample_frame
    from pipeline.schema import TableSchema, describe, infer_kind
    from pipeline.training.loop import fit, pick_device
    from pipeline.training.setup import build_model, transform_table

    train, test, _ = load()
    cfg = load_config(REPO / "params.yaml", {"model.name": model, "train.epochs": epochs, "train.batch_size": 500})
    schema = TableSchema([describe(train[c], infer_kind(train[c])) for c in train.columns], target=TARGET)
    out: dict = {"curve": []}
    paused = {"s": 0.0}
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        tf, tensor = transform_table(train, schema, cfg.model, cfg.seed, pick_device(cfg.train.device))
        out["transform_s"] = time.perf_counter() - t0
        torch.manual_seed(cfg.seed)
        net = build_model(cfg.model, cfg.train, tf).to(tensor.device)
        loaded = LoadedModel(net, tf, schema, {}, "")

        def check(state) -> None:
            if state.epoch % every and state.epoch != epochs:
                return
            t = time.perf_counter()
            net.eval()
            q = quality(train, sample_frame(loaded, eval_rows, seed=0))
            net.train()
            wall = t - t0 - paused["s"]
            out["curve"].append({"epoch": state.epoch, "wall_s": wall, "quality": q})
            if target_quality is not None and q >= target_quality and "time_to_quality_s" not in out:
                out["time_to_quality_s"], out["epochs_to_quality"] = wall, state.epoch
            paused["s"] += time.perf_counter() - t

        state = fit(net, tensor, cfg.train, cfg.seed, on_epoch=check)
        out["fit_s"] = time.perf_counter() - t0 - paused["s"]
        out["epoch_s"] = float(np.mean([h["seconds"] for h in state.history]))
        t = time.perf_counter()
        big = sample_frame(loaded, SAMPLE_ROWS, seed=1)
        out["sample_rows_per_s"] = SAMPLE_ROWS / (time.perf_counter() - t)
    out["peak_rss_mb"] = mem.peak / 2**20
    out["quality"] = out["curve"][-1]["quality"]
    out["tstr_auc"] = tstr_auc(train, test, big)
    return out


# -- driver ---------------------------------------------------------------------------------------------


def run_child(args: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(f"job {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--every", type=int, default=2, help="our quality check interval, epochs")
    ap.add_argument("--eval-rows", type=int, default=10_000)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    ap.add_argument("--target-quality", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.job:
        side, model = args.job.split(":")
        res = (job_ref(model, args.epochs, args.eval_rows) if side == "ref"
               else job_ours(model, args.epochs, args.eval_rows, args.every, args.target_quality))
        print(json.dumps(res))
        return

    common = ["--epochs", str(args.epochs), "--eval-rows", str(args.eval_rows), "--every", str(args.every)]
    results = {}
    for model in ("ctgan", "tvae"):
        ref = run_child(["--job", f"ref:{model}", *common])
        ours = run_child(["--job", f"ours:{model}", *common, "--target-quality", str(ref["quality"])])
        results[model] = {"ref": ref, "ours": ours}

    def ratio(a, b):
        return a / b if a is not None and b else None

    c, t = results["ctgan"], results["tvae"]
    summary = {
        "epochs": args.epochs,
        "transform_speedup": ratio(c["ref"]["transform_s"], c["ours"]["transform_s"]),
        "epoch_speedup_ctgan": ratio(c["ref"]["epoch_s"], c["ours"]["epoch_s"]),
        "epoch_speedup_tvae": ratio(t["ref"]["epoch_s"], t["ours"]["epoch_s"]),
        "time_to_quality_speedup_ctgan": ratio(c["ref"]["fit_s"], c["ours"].get("time_to_quality_s")),
        "time_to_quality_speedup_tvae": ratio(t["ref"]["fit_s"], t["ours"].get("time_to_quality_s")),
        "sample_speedup_ctgan": ratio(c["ours"]["sample_rows_per_s"], c["ref"]["sample_rows_per_s"]),
        "sample_speedup_tvae": ratio(t["ours"]["sample_rows_per_s"], t["ref"]["sample_rows_per_s"]),
        "quality_ours_ctgan": c["ours"]["quality"], "quality_ref_ctgan": c["ref"]["quality"],
        "quality_ours_tvae": t["ours"]["quality"], "quality_ref_tvae": t["ref"]["quality"],
        "tstr_auc_ours_ctgan": c["ours"]["tstr_auc"], "tstr_auc_ref_ctgan": c["ref"]["tstr_auc"],
        "tstr_auc_ours_tvae": t["ours"]["tstr_auc"], "tstr_auc_ref_tvae": t["ref"]["tstr_auc"],
        "details": results,
    }
    rows = [
        ("transform fit+transform, s", c["ref"]["transform_s"], c["ours"]["transform_s"]),
        ("CTGAN s/epoch (batch 500)", c["ref"]["epoch_s"], c["ours"]["epoch_s"]),
        ("TVAE s/epoch (batch 500)", t["ref"]["epoch_s"], t["ours"]["epoch_s"]),
        (f"CTGAN fit, {args.epochs} epochs, s", c["ref"]["fit_s"], c["ours"]["fit_s"]),
        (f"TVAE fit, {args.epochs} epochs, s", t["ref"]["fit_s"], t["ours"]["fit_s"]),
        ("CTGAN time to ref quality, s", c["ref"]["fit_s"], c["ours"].get("time_to_quality_s")),
        ("TVAE time to ref quality, s", t["ref"]["fit_s"], t["ours"].get("time_to_quality_s")),
        ("CTGAN sampling rows/s", c["ref"]["sample_rows_per_s"], c["ours"]["sample_rows_per_s"]),
        ("TVAE sampling rows/s", t["ref"]["sample_rows_per_s"], t["ours"]["sample_rows_per_s"]),
        ("CTGAN peak RSS, MB", c["ref"]["peak_rss_mb"], c["ours"]["peak_rss_mb"]),
        ("TVAE peak RSS, MB", t["ref"]["peak_rss_mb"], t["ours"]["peak_rss_mb"]),
        ("CTGAN SDMetrics quality", c["ref"]["quality"], c["ours"]["quality"]),
        ("TVAE SDMetrics quality", t["ref"]["quality"], t["ours"]["quality"]),
        ("CTGAN TSTR ROC AUC", c["ref"]["tstr_auc"], c["ours"]["tstr_auc"]),
        ("TVAE TSTR ROC AUC", t["ref"]["tstr_auc"], t["ours"]["tstr_auc"]),
    ]
    print(f"{'measure':<34} {'ctgan pkg':>12} {'ours':>12} {'ratio':>8}")
    for name, ref, ours in rows:
        better_high = name.endswith(("rows/s", "SDMetrics quality", "AUC"))
        r = ratio(ours, ref) if better_high else ratio(ref, ours)
        fmt = lambda v: "n/a" if v is None else (f"{v:,.3f}" if v < 10 else f"{v:,.1f}")  # noqa: E731
        print(f"{name:<34} {fmt(ref):>12} {fmt(ours):>12} {fmt(r):>8}")
    print("ratio: theirs/ours for times and memory, ours/theirs for rates and scores (> 1: we are better)")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
