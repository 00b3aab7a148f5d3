"""MOSTLY AI's engine (``mostlyai-engine``, TabularARGN) on one table, for ``vs_mostly.py``: run with
the peer's own Python (its virtual environment), never imported by the pipeline.

    /work/venvs/mostly/bin/python benchmarks/_mostly_runner.py --train TRAIN.parquet --out SYN.parquet
        --workspace DIR --rows N --seed S --threads T [--max-epochs E]
        [--max-epsilon E --delta D --value-protection-epsilon V]

The engine's functional API with its defaults (model MOSTLY_AI/Medium, up to 100 epochs with early
stopping on its own 80/20 split of the rows given, value protection on): split, analyze, encode and
train are timed together as its training (``fit_s``; what ``TabularARGN.fit`` does), ``train_s`` the
train call alone. ``generate`` reads the model from the workspace on every call, so one call on a few
rows first is timed apart (``start_s``: imports, model build, weights read), then the call that makes
the N rows (``generate_s``; it also writes them as Parquet in the workspace, as our generate stage
writes its shards). Prints one JSON line with those seconds, the rows and the epochs trained.

With ``--max-epsilon`` (for ``dp_frontier.py``) the same calls get the engine's
``DifferentialPrivacyConfig``: analyze spends ``value_protection_epsilon`` on noisy value ranges and
a noisy rare-category threshold; train runs DP-SGD on Opacus (its defaults: noise multiplier 1.5,
clipping norm 1.0, Poisson sampling, RDP accountant) and stops once the accountant's epsilon at
``delta`` plus value protection's exceeds ``max_epsilon``, keeping the last checkpoint within it.
The JSON line then adds the config and the kept checkpoint's epsilon (``epsilon_spent``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

WARMUP_ROWS = 100


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", required=True, help="the training rows (Parquet)")
    ap.add_argument("--out", required=True, help="where the synthetic rows go (Parquet)")
    ap.add_argument("--workspace", required=True, help="the engine's workspace folder")
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, required=True, help="torch threads (the same as ours)")
    ap.add_argument("--max-epochs", type=float, default=None, help="default: the engine's (100)")
    ap.add_argument("--max-epsilon", type=float, default=None,
                    help="train with differential privacy (its DifferentialPrivacyConfig): stop within this epsilon, "
                         "value protection's included (default: no DP)")
    ap.add_argument("--delta", type=float, default=1e-5, help="with --max-epsilon: its delta (default: %(default)s)")
    ap.add_argument("--value-protection-epsilon", type=float, default=None,
                    help="with --max-epsilon: the epsilon its analyze step spends on value ranges and rare "
                         "categories, counted inside --max-epsilon (default: the engine's 1.0)")
    args = ap.parse_args()

    # Offline and on the same threads as our side (the caller also sets OMP_NUM_THREADS and the like).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    from mostlyai import engine

    ws = Path(args.workspace)
    train = pd.read_parquet(args.train)
    engine.set_random_state(args.seed)

    # Training: split -> analyze -> encode -> train, each with the engine's defaults.
    # With --max-epsilon: value protection (on by default) spends its epsilon in analyze, DP-SGD the rest.
    dp = None
    if args.max_epsilon is not None:
        from mostlyai.engine.domain import DifferentialPrivacyConfig

        vp = args.value_protection_epsilon
        dp = DifferentialPrivacyConfig(max_epsilon=args.max_epsilon, delta=args.delta,
                                       **({} if vp is None else {"value_protection_epsilon": vp}))
    t0 = time.perf_counter()
    engine.split(tgt_data=train, model_type="TABULAR", workspace_dir=ws)
    engine.analyze(workspace_dir=ws, **({} if dp is None else {"differential_privacy": dp}))
    engine.encode(workspace_dir=ws)
    t1 = time.perf_counter()
    extra = {} if args.max_epochs is None else {"max_epochs": args.max_epochs}
    if dp is not None:
        extra["differential_privacy"] = dp
    engine.train(workspace_dir=ws, device="cpu", **extra)
    t2 = time.perf_counter()

    # Generation: a first small call pays the start-up, the second makes the rows.
    engine.generate(sample_size=min(WARMUP_ROWS, args.rows), device="cpu", workspace_dir=ws)
    t3 = time.perf_counter()
    engine.generate(sample_size=args.rows, device="cpu", workspace_dir=ws)
    t4 = time.perf_counter()

    syn = pd.concat([pd.read_parquet(p) for p in sorted((ws / "SyntheticData").glob("*.parquet"))],
                    ignore_index=True)
    syn[[c for c in train.columns if c in syn.columns]].to_parquet(args.out, index=False)
    print(json.dumps({"fit_s": round(t2 - t0, 3), "train_s": round(t2 - t1, 3), "start_s": round(t3 - t2, 3),
                      "generate_s": round(t4 - t3, 3), "rows": len(syn), "epochs": epochs_trained(ws),
                      "threads": torch.get_num_threads(),
                      **({} if dp is None else {"dp": dp.model_dump(), "epsilon_spent": epsilon_spent(ws)})}))


def progress_log(ws: Path):
    """The engine's progress log as a frame (None if it kept none)."""
    import pandas as pd

    log = ws / "ModelStore" / "model-data" / "progress-messages.csv"
    found = log if log.exists() else next(iter(ws.rglob("progress-messages.csv")), None)
    return None if found is None else pd.read_csv(found)


def epochs_trained(ws: Path) -> float | None:
    """The last epoch the engine's progress log records (None if it kept no log)."""
    df = progress_log(ws)
    return float(df["epoch"].max()) if df is not None and "epoch" in df and len(df) else None


def epsilon_spent(ws: Path) -> float | None:
    """The epsilon of the checkpoint the engine kept (its last one: the best validation loss within
    the budget), value protection's included, as its progress log records it."""
    df = progress_log(ws)
    if df is None or "dp_eps" not in df or "is_checkpoint" not in df:
        return None
    kept = df[df["is_checkpoint"].astype(bool) & df["dp_eps"].notna()]
    return float(kept["dp_eps"].iloc[-1]) if len(kept) else None


if __name__ == "__main__":
    main()
