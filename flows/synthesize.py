"""Prefect flow for one dataset: the five stages as tasks, each calling the stage function that the
DVC stage calls too (``pipeline.<stage>.run``), with the nightly flow's retries, lock, artifacts
and run id in the manifest (``flows/nightly.py`` runs many datasets, with a new seed per run).

    python -m flows.synthesize --dataset adult [--set train.epochs=5 ...]
"""

from __future__ import annotations

import argparse
import sys

from prefect import flow

from flows.nightly import add_params_options, command_line, run_datasets, run_flow
from pipeline.config import load_config, parse_overrides
from pipeline.errors import PipelineError


@flow(name="synthesize", flow_run_name="synthesize-{dataset}")
def synthesize(dataset: str = "adult", params: str = "params.yaml", overrides: dict | None = None) -> dict:
    """ingest -> train -> generate -> score -> publish for one dataset; fails if any stage fails."""
    return run_datasets(params, overrides or {}, [dataset], nightly=False)[dataset]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.synthesize", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="adult", metavar="NAME",
                    help="the dataset to run, a name under datasets: in the params (default: %(default)s)")
    add_params_options(ap)
    args = ap.parse_args(argv)
    try:
        overrides = parse_overrides(args.overrides, args.thresholds)
        load_config(args.params, overrides).dataset(args.dataset)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    code, result = run_flow(lambda: synthesize(dataset=args.dataset, params=args.params, overrides=overrides),
                            f"the synthesize run of {args.dataset}",
                            command_line("flows.synthesize", args, [args.dataset]))
    if result is not None:
        print(f"{args.dataset}: released {result['publish']['version']} -> {result['publish']['path']}")
    return code


if __name__ == "__main__":
    sys.exit(main())
