"""Prefect flow for one dataset: the five stages as tasks, each calling the stage function that the
DVC stage calls too (``pipeline.<stage>.run``). Scheduling, retries per stage and the nightly
multi-dataset flow build on this.

    python -m flows.synthesize --dataset adult [--set train.epochs=5 ...]
"""

from __future__ import annotations

import argparse
import sys

from prefect import flow, get_run_logger, task

from pipeline.__main__ import STAGES, run_stage
from pipeline.config import load_config, parse_overrides


@task(name="stage", task_run_name="{stage}-{dataset}")
def stage_task(stage: str, params: str, overrides: dict, dataset: str) -> dict:
    cfg = load_config(params, overrides)
    result = run_stage(stage, cfg, dataset)
    return {k: str(v) for k, v in vars(result).items() if k in ("rows", "epochs", "seconds", "version", "path", "passed")}


@flow(name="synthesize", flow_run_name="synthesize-{dataset}")
def synthesize(dataset: str = "adult", params: str = "params.yaml", overrides: dict | None = None) -> dict:
    """ingest -> train -> generate -> score -> publish for one dataset; fails if any stage fails."""
    logger = get_run_logger()
    overrides = overrides or {}
    load_config(params, overrides).dataset(dataset)  # fail fast on bad params
    results = {}
    for stage in STAGES:
        results[stage] = stage_task(stage, params, overrides, dataset)
        logger.info("%s: %s", stage, results[stage])
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.synthesize", description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="adult")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    synthesize(dataset=args.dataset, params=args.params, overrides=parse_overrides(args.overrides))
    return 0


if __name__ == "__main__":
    sys.exit(main())
