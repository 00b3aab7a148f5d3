"""Quality against training time for the default model on Adult: trains once, and every few
epochs samples a fixed number of rows and scores them with the pipeline's own metrics.

    python benchmarks/quality_curve.py --epochs 60 --every 10 [--set train.batch_size=1000 ...]

Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from pipeline.artifacts import StagePaths, load_prepared
from pipeline.config import load_config, parse_overrides
from pipeline.metrics.fidelity import score_fidelity
from pipeline.metrics.utility import score_utility
from pipeline.models.saved import LoadedModel
from pipeline.sampling import sample_frame
from pipeline.training.loop import fit, pick_device
from pipeline.training.setup import build_model, transform_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="adult")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    cfg = load_config("params.yaml", {**parse_overrides(args.overrides), "train.epochs": args.epochs})
    train, holdout, schema, _ = load_prepared(StagePaths.of(cfg.work_dir, args.dataset))
    target = cfg.dataset(args.dataset).target
    device = pick_device(cfg.train.device)
    t0 = time.perf_counter()
    tf, data = transform_table(train, schema, cfg.model, cfg.seed, device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.train, tf).to(device)
    rows, paused = [], {"s": 0.0}

    def on_epoch(state) -> None:
        if state.epoch % args.every and state.epoch != args.epochs:
            return
        t_eval = time.perf_counter()
        elapsed = t_eval - t0 - paused["s"]  # training wall time, transform included, checks excluded
        model.eval()
        syn = sample_frame(LoadedModel(model, tf, schema, {}, ""), args.rows, seed=123)
        model.train()
        fid = score_fidelity(train.sample(args.rows, random_state=0), syn, schema)
        util = score_utility(train, holdout, syn, schema, target) if target else None
        rows.append({"epoch": state.epoch, "seconds": round(elapsed, 1), "overall": round(fid.overall, 4),
                     "shapes": round(fid.column_shapes, 4), "pairs": round(fid.column_pair_trends, 4),
                     "tstr": round(util.tstr, 4) if util else None})
        print(rows[-1], flush=True)
        paused["s"] += time.perf_counter() - t_eval

    fit(model, data, cfg.train, cfg.seed, on_epoch=on_epoch)
    print(json.dumps({"params": {k: v for k, v in parse_overrides(args.overrides).items()}, "curve": rows}))


if __name__ == "__main__":
    main()
