"""Our fidelity scorer against SDMetrics' own QualityReport, same data, same machine, one run.

    pip install sdmetrics                      # benchmark/test-only dependency
    python benchmarks/vs_sdmetrics.py [--rows 32561 1000000] [--reference-max-rows 1000000]

The real side is Adult's 32,561 training rows (resampled with replacement for larger sizes). The
"synthetic" side is Adult's test rows resampled to the same size with a third of the columns
shuffled independently, so shapes and pair trends are imperfect and every score path is exercised.
Both scorers get the same frames and score every row (SDMetrics' default of scoring contingency
pairs on an unseeded 50,000-row sample above that size is switched off for the comparison, and
timed separately); each is timed over its whole call (best of --repeat). The
largest absolute difference is over every column score, every pair score and the overall score.
At the largest size it also times every metric the score stage computes (fidelity, coverage,
detection, utility, exact matches, DCR, with the default sample sizes of params.yaml), which
sdmetrics has no single call for. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.metrics.fidelity import score_fidelity
from pipeline.schema import TableSchema, describe, infer_kind

REPO = Path(__file__).resolve().parent.parent


def frames(rows: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    train = pd.read_parquet(REPO / "data/adult/train.parquet")
    test = pd.read_parquet(REPO / "data/adult/test.parquet")
    rng = np.random.default_rng(seed)
    real = train if rows == len(train) else train.iloc[rng.integers(0, len(train), rows)].reset_index(drop=True)
    syn = test.iloc[rng.integers(0, len(test), rows)].reset_index(drop=True)
    for c in syn.columns[::3]:
        syn[c] = syn[c].to_numpy()[rng.permutation(rows)]
    return real, syn


def reference(real: pd.DataFrame, syn: pd.DataFrame, schema: TableSchema, exact: bool = True):
    """SDMetrics' QualityReport. Above 50,000 rows it scores contingency pairs on an unseeded
    50,000-row sample by default; ``exact`` turns that off so it scores the same rows as ours."""
    from sdmetrics.reports.single_table import QualityReport

    md = {"columns": {c.name: {"sdtype": "categorical" if c.kind in ("categorical", "boolean") else "numerical"}
                      for c in schema.columns}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = QualityReport()
        if exact:
            report.num_rows_subsample = None
        report.generate(real, syn, md, verbose=False)
    return report


def max_abs_diff(ours, report) -> float:
    shapes = report.get_details("Column Shapes").set_index("Column")["Score"]
    diffs = [abs(ours.overall - report.get_score())]
    diffs += [abs(ours.columns[c]["score"] - s) for c, s in shapes.items()]
    trends = report.get_details("Column Pair Trends")
    by_pair = {frozenset(p["columns"]): p["score"] for p in ours.pairs}
    for _, row in trends.iterrows():
        if pd.notna(row["Score"]):
            diffs.append(abs(by_pair[frozenset((row["Column 1"], row["Column 2"]))] - row["Score"]))
    return float(max(diffs))


def all_metrics(real: pd.DataFrame, syn: pd.DataFrame, schema: TableSchema) -> dict[str, float]:
    """Seconds per metric family of the score stage, at params.yaml's default sample sizes."""
    from pipeline.metrics.coverage import score_coverage
    from pipeline.metrics.detection import score_detection
    from pipeline.metrics.privacy import exact_match_rate, score_dcr
    from pipeline.metrics.utility import score_utility

    holdout = pd.read_parquet(REPO / "data/adult/test.parquet")
    schema = TableSchema(schema.columns, target="income")
    modeled = [c.name for c in schema.modeled]
    sample = lambda df, n: df if len(df) <= n else df.sample(n=n, random_state=0)  # noqa: E731
    steps = {
        "fidelity": lambda: score_fidelity(real, syn, schema),
        "coverage": lambda: score_coverage(real, syn, schema),
        "exact_match": lambda: exact_match_rate(real, syn, modeled),
        "detection": lambda: score_detection(real, syn, schema, rows=20_000),
        "utility": lambda: score_utility(sample(real, 200_000), holdout, sample(syn, 200_000), schema, "income"),
        "dcr": lambda: score_dcr(real, holdout, syn, schema, rows=5_000),
    }
    out = {}
    for name, fn in steps.items():
        t = time.perf_counter()
        fn()
        out[name] = time.perf_counter() - t
    out["total"] = sum(out.values())
    return out


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[32_561, 1_000_000])
    ap.add_argument("--repeat", type=int, default=3, help="timings are the best of this many runs (at 32k rows)")
    ap.add_argument("--reference-max-rows", type=int, default=1_000_000,
                    help="skip the sdmetrics run above this size (its time is then not reported)")
    args = ap.parse_args()

    results = []
    for rows in args.rows:
        real, syn = frames(rows)
        schema = TableSchema([describe(real[c], infer_kind(real[c])) for c in real.columns])
        repeat = args.repeat if rows <= 100_000 else 1
        ours_s, ours = best_of(lambda: score_fidelity(real, syn, schema), repeat)
        entry = {"rows": rows, "ours_s": ours_s, "ours_overall": ours.overall, "ref_s": None, "ref_overall": None,
                 "speedup": None, "max_abs_diff": None}
        if rows <= args.reference_max_rows:
            ref_s, report = best_of(lambda: reference(real, syn, schema), repeat)
            entry.update(ref_s=ref_s, ref_overall=float(report.get_score()), speedup=ref_s / ours_s,
                         max_abs_diff=max_abs_diff(ours, report))
            if rows > 50_000:  # also SDMetrics' default: contingency pairs on a 50,000-row sample
                default_s, default = best_of(lambda: reference(real, syn, schema, exact=False), repeat)
                entry.update(ref_sampled_s=default_s, ref_sampled_overall=float(default.get_score()),
                             speedup_vs_sampled=default_s / ours_s)
        if rows == max(args.rows):
            entry["all_metrics_s"] = all_metrics(real, syn, schema)
        results.append(entry)
        print(f"scored {rows:,} rows", flush=True)

    fmt = lambda v, p=3: "n/a" if v is None else f"{v:.{p}f}"  # noqa: E731
    print(f"{'rows':>10} {'sdmetrics s':>12} {'ours s':>9} {'speedup':>8} {'overall (ref / ours)':>22} "
          f"{'max |diff|':>11}")
    for e in results:
        diff = "n/a" if e["max_abs_diff"] is None else f"{e['max_abs_diff']:.1e}"
        print(f"{e['rows']:>10,} {fmt(e['ref_s']):>12} {fmt(e['ours_s']):>9} {fmt(e['speedup'], 1):>8} "
              f"{fmt(e['ref_overall'], 6):>10} / {fmt(e['ours_overall'], 6):<9} {diff:>11}")
    for e in results:
        if "ref_sampled_s" in e:
            print(f"{e['rows']:,} rows, sdmetrics with its default 50,000-row contingency sample: "
                  f"{e['ref_sampled_s']:.2f} s (overall {e['ref_sampled_overall']:.6f}), "
                  f"ours {e['speedup_vs_sampled']:.1f}x faster")
        if "all_metrics_s" in e:
            print(f"every score-stage metric on {e['rows']:,} rows: " +
                  ", ".join(f"{k} {v:.1f} s" for k, v in e["all_metrics_s"].items()))
    small = next((e for e in results if e["rows"] <= 100_000 and e["speedup"]), None)
    big = next((e for e in results if e["rows"] >= 1_000_000), None)
    diffs = [e["max_abs_diff"] for e in results if e["max_abs_diff"] is not None]
    print(json.dumps({
        "speedup_32k": small["speedup"] if small else None,
        "max_abs_diff": max(diffs) if diffs else None,
        "seconds_1m": big["ours_s"] if big else None,
        "speedup_1m": big["speedup"] if big else None,
        "seconds_1m_all_metrics": big["all_metrics_s"]["total"] if big and "all_metrics_s" in big else None,
        "results": results,
    }))


if __name__ == "__main__":
    main()
