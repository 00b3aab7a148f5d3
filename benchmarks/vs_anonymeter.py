"""Our anonymeter risks (``pipeline/metrics/anonymity.py``) against anonymeter 1.1.0's three
evaluators, on the same release and the same rows.

    python -m venv /work/venvs/anonymeter && /work/venvs/anonymeter/bin/pip install anonymeter==1.1.0
    python benchmarks/vs_anonymeter.py --work-dir work --dataset adult \\
        --anonymeter-python /work/venvs/anonymeter/bin/python

The rows are the score stage's: ``attack_rows`` on the dataset's prepared training and holdout rows
and its synthetic shards, with the run's seed (``--seed``, else the one ingest recorded). Targets
are the training members, the control set as many unseen holdout rows, the attacker's data the
synthetic sample; both sides get the same frames (the attacked columns), the same linkability
halves, the same numbers of predicates and targets and, for each inference secret, whether it is
guessed within anonymeter's 5% tolerance (``regression``); datetimes go to anonymeter as
nanoseconds (its predicates fail on dates; ours read them so). anonymeter runs in its own interpreter
(it pins numpy < 1.27) on Parquet files in a temporary folder. ``--skip-reference`` scores ours
alone (no anonymeter needed). Prints a table (risk, ours with its 95% interval, anonymeter's, and
whether each lies within the other's interval) and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.artifacts import StagePaths, load_prepared, read_synthetic
from pipeline.metrics.anonymity import (
    MULTIVARIATE_COLUMNS,
    NEIGHBOURS,
    TOLERANT_KINDS,
    Risk,
    attacked_columns,
    linkability_halves,
    score_anonymity,
)
from pipeline.metrics.fidelity import numeric_values
from pipeline.metrics.privacy import attack_rows

# Run by anonymeter's interpreter: argv[1] the folder holding syn/targets/control.parquet and
# spec.json; writes reference.json there ({risk name: {value, low, high, attack_rate, control_rate}}).
REFERENCE = r"""
import json, sys, time, warnings
from pathlib import Path
import pandas as pd
from anonymeter.evaluators import InferenceEvaluator, LinkabilityEvaluator, SinglingOutEvaluator

folder = Path(sys.argv[1])
spec = json.loads((folder / "spec.json").read_text())
syn, ori, control = (pd.read_parquet(folder / f"{name}.parquet") for name in ("syn", "targets", "control"))
out, seconds = {}, {}

def record(name, evaluator):
    risk, res = evaluator.risk(), evaluator.results()
    out[name] = {"value": risk.value, "low": risk.ci[0], "high": risk.ci[1],
                 "attack_rate": res.attack_rate.value, "control_rate": res.control_rate.value}

warnings.simplefilter("ignore")
for mode in ("univariate", "multivariate"):
    t = time.perf_counter()
    record(f"singling_out.{mode}", SinglingOutEvaluator(ori=ori, syn=syn, control=control, n_attacks=spec["queries"],
                                                        n_cols=spec["n_cols"], seed=spec["seed"]).evaluate(mode=mode))
    seconds[f"singling_out.{mode}"] = time.perf_counter() - t
t = time.perf_counter()
record("linkability", LinkabilityEvaluator(ori=ori, syn=syn, control=control, aux_cols=tuple(spec["halves"]),
                                           n_attacks=spec["targets"], n_neighbors=spec["neighbours"])
       .evaluate(n_jobs=spec["jobs"]))
seconds["linkability"] = time.perf_counter() - t
t = time.perf_counter()
for secret, regression in spec["secrets"].items():
    others = [c for c in syn.columns if c != secret]
    record(f"inference.{secret}", InferenceEvaluator(ori=ori, syn=syn, control=control, aux_cols=others,
                                                     secret=secret, regression=regression,
                                                     n_attacks=spec["targets"]).evaluate(n_jobs=spec["jobs"]))
seconds["inference"] = time.perf_counter() - t
(folder / "reference.json").write_text(json.dumps({"risks": out, "seconds": seconds}))
"""


def ours_by_name(result) -> dict[str, Risk]:
    return {**{f"singling_out.{m}": r for m, r in result.singling_out.items()}, "linkability": result.linkability,
            **{f"inference.{c}": r for c, r in result.inference.items()}}


def run_reference(python: str, rows, columns: list, halves, queries: int, seed: int, jobs: int) -> dict:
    names = [c.name for c in columns]
    n = min(len(rows.members), len(rows.non_members))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, frame in (("syn", rows.syn), ("targets", rows.members.iloc[:n]),
                            ("control", rows.non_members.iloc[:n])):
            frame = frame[names].copy()
            for c in columns:
                if c.kind == "datetime":  # anonymeter's predicates fail on dates; numbers, as ours read them
                    frame[c.name] = numeric_values(frame[c.name])
            frame.to_parquet(folder / f"{name}.parquet", index=False)
        spec = {"queries": queries, "targets": n, "n_cols": MULTIVARIATE_COLUMNS, "neighbours": NEIGHBOURS,
                "seed": seed, "jobs": jobs, "halves": [list(h) for h in halves],
                "secrets": {c.name: c.kind in TOLERANT_KINDS for c in columns}}
        (folder / "spec.json").write_text(json.dumps(spec))
        done = subprocess.run([python, "-c", REFERENCE, str(folder)], capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"anonymeter failed ({python}):\n{done.stderr[-3000:]}")
        return json.loads((folder / "reference.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work-dir", default="work")
    ap.add_argument("--dataset", default="adult")
    ap.add_argument("--seed", type=int, help="the run's seed (default: the one ingest recorded)")
    ap.add_argument("--rows", type=int, default=5_000, help="rows in each role (score.attack_rows)")
    ap.add_argument("--queries", type=int, help="singling-out predicates per mode (default: as many as targets)")
    ap.add_argument("--anonymeter-python", default="/work/venvs/anonymeter/bin/python",
                    help="an interpreter with anonymeter==1.1.0 installed")
    ap.add_argument("--jobs", type=int, default=2, help="anonymeter's n_jobs for its neighbour searches")
    ap.add_argument("--skip-reference", action="store_true", help="score ours only (anonymeter not needed)")
    args = ap.parse_args()

    paths = StagePaths.of(args.work_dir, args.dataset)
    train, holdout, schema, meta = load_prepared(paths)
    seed = args.seed if args.seed is not None else int(meta.get("params", {}).get("seed", 0))
    rows = attack_rows(train, holdout, read_synthetic(paths.synthetic), rows=args.rows, seed=seed)
    columns = attacked_columns(schema)
    halves = linkability_halves([c.name for c in columns], seed)
    queries = args.queries or min(len(rows.members), len(rows.non_members))
    t = time.perf_counter()
    ours = ours_by_name(score_anonymity(rows, schema, schema.target, queries=queries, halves=halves))
    ours_s = time.perf_counter() - t
    reference = None if args.skip_reference else run_reference(
        args.anonymeter_python, rows, columns, halves, queries, seed, args.jobs)

    print(f"{args.dataset}: {rows.sizes()}, seed {seed}, {queries:,} predicates per mode; ours {ours_s:.1f} s"
          + ("" if reference is None else f", anonymeter {sum(reference['seconds'].values()):.1f} s"))
    print(f"{'risk':<28} {'ours [95%]':>24} {'anonymeter [95%]':>24} {'agree':>6}")
    out = {}
    for name, r in ours.items():
        ref = None if reference is None else reference["risks"][name]
        agree = None if ref is None else bool(ref["low"] <= r.value <= ref["high"] and r.low <= ref["value"] <= r.high)
        out[name] = {"ours": {"value": r.value, "low": r.low, "high": r.high, "attack_rate": r.attack_rate,
                              "control_rate": r.control_rate}, "anonymeter": ref, "agree": agree}
        theirs = "skipped" if ref is None else f"{ref['value']:.3f} [{ref['low']:.3f}, {ref['high']:.3f}]"
        print(f"{name:<28} {f'{r.value:.3f} [{r.low:.3f}, {r.high:.3f}]':>24} {theirs:>24} "
              f"{'-' if agree is None else 'yes' if agree else 'NO':>6}")
    judged = [v["agree"] for v in out.values() if v["agree"] is not None]
    print(json.dumps({"dataset": args.dataset, "seed": seed, "rows": rows.sizes(), "predicates": queries,
                      "halves": [list(h) for h in halves], "ours_s": round(ours_s, 2),
                      "anonymeter_s": None if reference is None else reference["seconds"],
                      "agree": f"{sum(judged)}/{len(judged)}" if judged else None, "risks": out}))


if __name__ == "__main__":
    main()
