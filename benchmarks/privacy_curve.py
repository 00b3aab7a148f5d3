"""Privacy against training length for the default model: each epoch count is a separate run of
ingest -> train -> generate -> score in a temporary folder (params.yaml's defaults, ``train.epochs``
set, as many synthetic rows as training rows, plus any --set), scored by the pipeline's own suites.

    python benchmarks/privacy_curve.py [--dataset adult] [--epochs 50 250 1000] [--seeds 0]
                                       [--set key=value ...]

Prints a table (one row per epoch count and seed: training seconds, the membership attacks' worst
AUC and TPR at FPR 1%, the anonymity risks where the score has them, the DCR share) and, last, one
JSON line ``{"dataset": .., "params": {..}, "runs": [{"epochs": .., "seed": .., "train_s": ..,
"privacy.mia_auc": .., ..}]}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from model_frontier import DATASETS, source_of  # noqa: E402

from pipeline.artifacts import StagePaths, load_prepared  # noqa: E402
from pipeline.config import load_config, parse_overrides  # noqa: E402
from pipeline.stages import run_stage  # noqa: E402

# The columns after epochs, seed and training seconds; a key the score did not write shows as "-"
# (the anonymity risks come from their own metric family).
KEYS = ["privacy.mia_auc", "privacy.mia_tpr_at_fpr_1pct", "privacy.mia_tpr_at_fpr_01pct",
        "privacy.singling_out_risk", "privacy.linkability_risk", "privacy.inference_risk", "privacy.dcr_share"]


def run_one(dataset: str, epochs: int, seed: int, overrides: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sets = {"seed": seed, "work_dir": str(folder / "work"), "metrics_dir": str(folder / "metrics"),
                "publish.release_root": str(folder / "releases"), "datasets": {dataset: source_of(dataset, folder)},
                "score.report": False, "score.thresholds": {}, **overrides, "train.epochs": epochs}
        cfg = load_config(REPO / "params.yaml", sets)
        run_stage("ingest", cfg, dataset)
        train = load_prepared(StagePaths.of(cfg.work_dir, dataset))[0]
        cfg = load_config(REPO / "params.yaml", {**sets, "generate.rows": len(train)})
        run_stage("train", cfg, dataset)
        # The train stage's wall time (stage_seconds.json), as the other benchmarks report it.
        train_s = json.loads((folder / "work" / dataset / "stage_seconds.json").read_text())["train"]
        run_stage("generate", cfg, dataset)
        metrics = run_stage("score", cfg, dataset).metrics
    return {"epochs": epochs, "seed": seed, "train_s": round(train_s, 2), "rows": len(train),
            **{key: metrics.get(key) for key in KEYS}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="adult", choices=sorted(DATASETS))
    ap.add_argument("--epochs", nargs="+", type=int, default=[50, 250, 1000])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    overrides = parse_overrides(args.overrides)
    names = [key.removeprefix("privacy.") for key in KEYS]
    print(f"{'epochs':>7} {'seed':>5} {'train_s':>8} " + " ".join(names))
    runs = []
    for epochs in args.epochs:
        for seed in args.seeds:
            runs.append(run_one(args.dataset, epochs, seed, overrides))
            r = runs[-1]
            cells = [f"{r[k]:>{len(n)}.4f}" if isinstance(r[k], (int, float)) else f"{'-':>{len(n)}}"
                     for k, n in zip(KEYS, names)]
            print(f"{epochs:>7} {seed:>5} {r['train_s']:>8} " + " ".join(cells), flush=True)
    print(json.dumps({"dataset": args.dataset, "params": overrides, "runs": runs}))


if __name__ == "__main__":
    main()
