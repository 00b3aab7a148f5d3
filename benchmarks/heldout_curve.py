"""The default model's held-out cross-entropy, token by token and epoch by epoch: when each column's
net stops learning what holds beyond its training rows (issue 28, item 5: small tables).

    python benchmarks/heldout_curve.py [--dataset tips | --source FILE [--target COLUMN]] [--seed 0]
                                       [--share 0.2] [--every 20] [--set key=value ...]

The dataset (``model_frontier.py``'s: adult, tips, gapminder, breast_cancer, wine; or your own file,
``--source``, as ``python -m pipeline run --source`` reads it, named ``source``) is ingested in a
temporary folder with params.yaml's defaults plus any --set; a seeded ``--share`` of its prepared
training rows is held out and the rest is what the train stage reads (its transformer is fitted on
them alone, so no held-out value is a knot). The autoregressive model (the default; another model
is refused) trains on them with its recipe (``train.epochs: auto`` for that many rows), and after
every epoch each token's mean cross-entropy on the held-out rows is measured as sampling reads
them (``TabularAutoregressive.token_losses``, nats). Prints each token's first, best and last
held-out loss with its best epoch, and the whole chain's (the sum) every ``--every`` epochs; last,
one JSON line ``{"dataset", "seed", "rows", "held_out", "epochs", "best_epoch", "first", "best",
"last", "tokens": [{"token", "kind", "column", "best_epoch", "first", "best", "last"}]}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.model_frontier import DATASETS, source_of  # noqa: E402
from pipeline.config import load_config, parse_overrides  # noqa: E402
from pipeline.stages import run_stage  # noqa: E402


def curve(dataset: str, seed: int, share: float, overrides: dict, spec: dict | None = None) -> dict:
    """The held-out curve of ``dataset`` (``spec``: its ``datasets.<name>`` entry, for a file of
    your own; else ``model_frontier.py``'s)."""
    import pandas as pd
    import torch

    from pipeline.artifacts import StagePaths
    from pipeline.modalities.table import training_data
    from pipeline.models.autoregressive import TabularAutoregressive
    from pipeline.runtime import thread_limits, threads_available
    from pipeline.training.loop import fit, pick_device
    from pipeline.training.setup import build_model, to_tensor

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sets = {"seed": seed, "work_dir": str(folder / "work"), "metrics_dir": str(folder / "metrics"),
                "publish.release_root": str(folder / "releases"),
                "datasets": {dataset: spec or source_of(dataset, folder)}, **overrides}
        cfg = load_config(REPO / "params.yaml", sets)
        run_stage("ingest", cfg, dataset)
        cfg = cfg.for_dataset(dataset)
        paths = StagePaths.of(cfg.work_dir, dataset)
        rows = pd.read_parquet(paths.train_data)
        order = np.random.default_rng(seed).permutation(len(rows))
        k = int(len(rows) * share)
        if not 0 < k < len(rows):
            raise SystemExit(f"--share {share}: holds out {k} of {len(rows)} rows; give a share that leaves "
                             "rows on both sides")
        held = rows.iloc[order[:k]].reset_index(drop=True)
        rows.iloc[order[k:]].reset_index(drop=True).to_parquet(paths.train_data, index=False)
        model_settings, train_settings = cfg.model.settings(), cfg.train.settings()
        device = pick_device(cfg.train.device)
        data = training_data(paths, model_settings, cfg.seed, device)
        torch.manual_seed(cfg.seed)  # the weights' start, as the train stage seeds it
        model = build_model(model_settings, train_settings, data.codec).to(device)
        if not isinstance(model, TabularAutoregressive):
            raise SystemExit(f"model.name {cfg.model.name}: this script reads the autoregressive model's token "
                             "losses; set model.name=autoregressive")
        held_out = to_tensor(data.codec, held, np.random.default_rng(seed), device)
        losses: list[list[float]] = []
        with thread_limits(threads_available(cfg)):  # runtime.threads, as the train stage runs
            fit(model, data.tensor, train_settings, cfg.seed,
                on_epoch=lambda _: losses.append(model.token_losses(held_out).tolist()))
    names = {s.start: s.column for s in data.codec.spans}
    table = np.asarray(losses)
    chain = table.sum(1)
    tokens = [{"token": j, "kind": kind, "column": names[start], "best_epoch": int(table[:, j].argmin()) + 1,
               "first": round(float(table[0, j]), 4), "best": round(float(table[:, j].min()), 4),
               "last": round(float(table[-1, j]), 4)}
              for j, (kind, start, _) in enumerate(model.tokens)]
    return {"dataset": dataset, "seed": seed, "rows": len(rows) - k, "held_out": k, "epochs": len(table),
            "best_epoch": int(chain.argmin()) + 1, "first": round(float(chain[0]), 4),
            "best": round(float(chain.min()), 4), "last": round(float(chain[-1]), 4), "tokens": tokens,
            "chain": [round(float(v), 4) for v in chain]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="tips", choices=sorted(DATASETS))
    ap.add_argument("--source", help="a file (or folder, glob, URL) of your own instead of --dataset")
    ap.add_argument("--target", help="with --source: the column the table's target is (optional)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--share", type=float, default=0.2, help="share of the training rows held out")
    ap.add_argument("--every", type=int, default=20, help="print the whole chain's loss every this many epochs")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    if args.target and not args.source:
        ap.error("--target: only with --source (a bundled dataset has its own)")
    spec = {"source": str(Path(args.source).resolve()) if "://" not in args.source else args.source,
            **({"target": args.target} if args.target else {})} if args.source else None
    name = "source" if spec else args.dataset
    got = curve(name, args.seed, args.share, parse_overrides(args.set), spec)
    chain = got.pop("chain")
    print(f"{name} seed {args.seed}: {got['rows']} rows trained, {got['held_out']} held out, "
          f"{got['epochs']} epochs; held-out nats a row (the whole chain): first {got['first']:.3f}, "
          f"best {got['best']:.3f} at epoch {got['best_epoch']}, last {got['last']:.3f}")
    print(f"{'token':>5} {'kind':<9} {'column':<24} {'first':>8} {'best':>8} {'at epoch':>9} {'last':>8}")
    for t in got["tokens"]:
        print(f"{t['token']:>5} {t['kind']:<9} {t['column'][:24]:<24} {t['first']:>8.3f} {t['best']:>8.3f} "
              f"{t['best_epoch']:>9} {t['last']:>8.3f}")
    print("epoch  held-out nats a row")
    for e in sorted({*range(0, len(chain), max(1, args.every)), len(chain) - 1}):
        print(f"{e + 1:>5}  {chain[e]:.3f}")
    print(json.dumps(got))


if __name__ == "__main__":
    main()
