"""Every table model on Adult and on public tables shipped inside an installed package (plotly's
``tips`` and ``gapminder``, scikit-learn's ``breast_cancer`` and ``wine``: not tuned to), several
seeds each: the pipeline's own stages and metrics, mean and spread.

    python benchmarks/model_frontier.py [--datasets adult tips gapminder breast_cancer wine]
                                        [--models ctgan tvae diffusion]
                                        [--seeds 0 1 2] [--set key=value ...] [--png frontier.png]

Each (dataset, model, seed) runs ingest -> train -> generate -> score in a temporary folder with
params.yaml's defaults, plus each model's recipe below, plus any --set. Utility is scored on any
holdout (``score.utility_min_holdout: 20``), so that small tables report it too. Prints a table,
writes a PNG of quality against training time, and, last, one JSON line
``{"<dataset>": {"<model>": {"shapes": [mean, std], "trends": .., "tstr": .., "detection_auc": ..,
"dcr_share": .., "range": .., "trends_ho": .., "trends_ho_real": .., "shapes_ho": .., "shapes_ho_real": ..,
"train_s": .., "rows_per_s": ..}}}``: ``*_ho`` are shapes and pair trends against the held-out rows, and
``*_ho_real`` the training rows' own against them (a copy of the training rows scores that level).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.config import load_config, parse_overrides  # noqa: E402
from pipeline.stages import run_stage  # noqa: E402

# Where each table comes from and what it predicts. Adult is the embedded copy (with its test split).
DATASETS = {
    "adult": {"source": str(REPO / "data/adult/train.parquet"), "holdout_source": str(REPO / "data/adult/test.parquet"),
              "target": "income"},
    "tips": {"plotly": "tips", "target": "smoker"},
    "gapminder": {"plotly": "gapminder", "target": "continent"},
    # scikit-learn's bundled tables: 569 rows of 30 measurements and a diagnosis; 178 wines of 13.
    "breast_cancer": {"sklearn": "load_breast_cancer", "target": "target"},
    "wine": {"sklearn": "load_wine", "target": "target"},
}
# A model's own training recipe where the shared train section does not suit it.
RECIPES = {
    # The GANs and the VAE: their earlier recipe (100 epochs at constant rates).
    "ctgan": {"train.epochs": 100, "train.lr_decay": 0},
    "gan": {"train.epochs": 100, "train.lr_decay": 0},
    "tvae": {"train.epochs": 100, "train.lr_decay": 0},
    "diffusion": {},  # params.yaml's train section is its recipe
    "autoregressive": {},  # so too (train.epochs auto: its own 60 epochs, or more on a small table)
    "auto": {},  # every candidate with the train section's recipe
}
METRICS = {"shapes": "quality.column_shapes", "trends": "quality.column_pair_trends", "tstr": "utility.tstr_score",
           "trtr": "utility.trtr_score",
           "detection_auc": "detection.auc", "dcr_share": "privacy.dcr_share", "range": "coverage.range",
           # Against the held-out rows (pipeline/metrics/heldout.py): the synthetic rows, and the training rows'
           # own level (what a copy of them scores). Against the training rows a copy scores best; not here.
           "trends_ho": "quality.column_pair_trends_holdout",
           "trends_ho_real": "quality.column_pair_trends_holdout_real", "shapes_ho": "quality.column_shapes_holdout",
           "shapes_ho_real": "quality.column_shapes_holdout_real"}


def source_of(name: str, folder: Path) -> dict:
    spec = dict(DATASETS[name])
    if "plotly" in spec:
        import plotly.data

        path = folder / f"{name}.csv"
        getattr(plotly.data, spec.pop("plotly"))().to_csv(path, index=False)
        spec["source"] = str(path)
    elif "sklearn" in spec:
        import sklearn.datasets

        frame = getattr(sklearn.datasets, spec.pop("sklearn"))(as_frame=True).frame
        frame["target"] = frame["target"].map(lambda v: f"class_{v}")  # a category, as the table means it
        path = folder / f"{name}.csv"
        frame.to_csv(path, index=False)
        spec["source"] = str(path)
    return spec


def run_one(dataset: str, model: str, seed: int, overrides: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sets = {"seed": seed, "model.name": model, "work_dir": str(folder / "work"),
                "metrics_dir": str(folder / "metrics"), "publish.release_root": str(folder / "releases"),
                "datasets": {dataset: source_of(dataset, folder)}, "score.report": False,
                "score.utility_min_holdout": 20, "score.thresholds": {}, **RECIPES[model], **overrides}
        cfg = load_config(REPO / "params.yaml", sets)
        for stage in ("ingest", "train"):
            run_stage(stage, cfg, dataset)
        model_info = json.loads((folder / "work" / dataset / "model" / "model.json").read_text())
        auto = model_info.get("auto", {})
        chosen = auto.get("chosen")
        # Each candidate's pooled score and, after cross-validation (a small table), its gain over the first.
        margins = auto.get("margins") or {}
        tried = {name: {"score": got["score"], **margins.get(name, {})}
                 for name, got in auto.get("candidates", {}).items()}
        t = time.perf_counter()
        rows = run_stage("generate", cfg, dataset).rows
        rows_per_s = rows / (time.perf_counter() - t)
        metrics = run_stage("score", cfg, dataset).metrics
    out = {k: metrics.get(key) for k, key in METRICS.items()}
    return {**out, "train_s": model_info["seconds"], "rows_per_s": rows_per_s, "chosen": chosen, "tried": tried}


def summary(values: list[float | None]) -> list[float | None]:
    got = [v for v in values if isinstance(v, (int, float))]
    if not got:
        return [None, None]
    return [round(statistics.mean(got), 4), round(statistics.stdev(got), 4) if len(got) > 1 else 0.0]


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(result), figsize=(5 * len(result), 4), squeeze=False)
    for ax, (dataset, models) in zip(axes[0], result.items()):
        for model, m in models.items():
            ax.errorbar(m["train_s"][0], m["trends"][0], xerr=m["train_s"][1], yerr=m["trends"][1], fmt="o",
                        label=model, capsize=3)
        ax.set(title=dataset, xlabel="training seconds (2 CPU cores)", ylabel="column pair trends")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["adult", "tips", "gapminder"], choices=sorted(DATASETS))
    ap.add_argument("--models", nargs="+", default=["ctgan", "tvae", "diffusion", "autoregressive", "auto"],
                    choices=sorted(RECIPES))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--png", default="model_frontier.png")
    args = ap.parse_args()
    overrides = parse_overrides(args.overrides)
    result: dict[str, dict[str, dict]] = {}
    cols = ["shapes", "trends", "tstr", "trtr", "detection_auc", "dcr_share", "range", "trends_ho", "trends_ho_real",
            "shapes_ho", "shapes_ho_real", "train_s", "rows_per_s"]
    print(f"{'dataset':10} {'model':10} " + " ".join(f"{c:>17}" for c in cols))
    for dataset in args.datasets:
        for model in args.models:
            runs = []
            for seed in args.seeds:  # a line per run on stderr as it ends: a long run stopped keeps what it made
                runs.append(run_one(dataset, model, seed, overrides))
                print(f"{dataset} {model} seed {seed}: " + ", ".join(
                    f"{c} {runs[-1][c]:.4g}" for c in cols if isinstance(runs[-1][c], (int, float)))
                    + (f", kept {runs[-1]['chosen']} of {json.dumps(runs[-1]['tried'])}" if model == "auto" else ""),
                    file=sys.stderr, flush=True)
            result.setdefault(dataset, {})[model] = {c: summary([r[c] for r in runs]) for c in cols}
            row = result[dataset][model]
            if model == "auto":
                row["chosen"] = [r["chosen"] for r in runs]
            cells = [f"{m:.3f} ± {s:.3f}" if m is not None else "n/a" for m, s in (row[c] for c in cols)]
            print(f"{dataset:10} {model:10} " + " ".join(f"{c:>17}" for c in cells)
                  + (f"  kept: {', '.join(row['chosen'])}" if model == "auto" else ""), flush=True)
    plot(result, args.png)
    print(f"(seeds {args.seeds}; PNG {args.png})")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
