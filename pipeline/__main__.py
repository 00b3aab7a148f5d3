"""Command line: ``python -m pipeline <stage> --dataset NAME [--set key=value ...]``.

The same stage functions back ``dvc.yaml`` and the Prefect flows; this module only parses
arguments, loads and validates the config, and calls them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from pipeline.config import load_config, parse_overrides, set_dotted
from pipeline.errors import ConfigError, PipelineError, QualityGateError
from pipeline.names import check_name, name_from_file
from pipeline.stages import STAGE_NAMES, STAGES, check_config, check_outputs_writable, run_stage
from pipeline.training.resume import Resume

log = logging.getLogger("pipeline")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a params key, e.g. --set train.epochs=5 (repeatable; values are YAML)")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Synthetic-data factory: ingest -> train -> generate -> score -> publish.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for st in STAGES:
        stage = st.name
        p = sub.add_parser(stage, help=st.help, description=st.help)
        p.add_argument("--dataset", required=True, help="a dataset named in params.yaml (datasets.NAME)")
        _common(p)
        if stage == "train":
            p.add_argument("--resume", nargs="?", const="yes", choices=["yes", "if-compatible"], default=None,
                           help="continue from the last checkpoint (an error if it does not match); "
                                "if-compatible: only when it matches, else start afresh")
        if stage == "generate":
            p.add_argument("--condition", action="append", default=[], metavar="COLUMN=VALUE",
                           help="fix a categorical column's value in every row (repeatable), e.g. income='>50K'")
    p = sub.add_parser(
        "run", help="run all five stages on a configured dataset or on any CSV/Parquet file",
        description="Run ingest, train, generate, score and publish in order. Either --dataset NAME "
                    "(from params.yaml) or --source FILE --name NAME for a file not in params.yaml.",
    )
    p.add_argument("--dataset", help="a dataset named in params.yaml")
    p.add_argument("--source", help="CSV or Parquet file to synthesise")
    p.add_argument("--name", help="dataset name for --source (used in paths and releases)")
    p.add_argument("--target", help="column for the utility score (optional)")
    p.add_argument("--holdout", help="real rows kept out of training (default: a random share of --source)")
    p.add_argument("--modality", choices=["table", "image"], default="table",
                   help="image: --source is an idx file, a folder of <label>/ image folders, "
                        "or a Parquet of image bytes")
    _common(p)

    p = sub.add_parser("releases", help="list, show, diff and export published releases (the catalog)",
                       description="The release catalog. REF is DATASET (its latest) or DATASET@VERSION.")
    p.add_argument("--root", help="release root: a folder or fsspec URL (default: publish.release_root of --params)")
    p.add_argument("--params", default="params.yaml", help="params file for the default root (default: %(default)s)")
    rsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = rsub.add_parser("list", help="datasets, or one dataset's versions")
    q.add_argument("dataset", nargs="?")
    q = rsub.add_parser("show", help="a release's manifest: rows, schema, scores, lineage")
    q.add_argument("ref")
    q = rsub.add_parser("diff", help="schema changes, row counts, metric deltas and drift between two releases")
    q.add_argument("a")
    q.add_argument("b")
    q = rsub.add_parser("export", help="write a release to one Parquet or CSV file")
    q.add_argument("ref")
    q.add_argument("--to", required=True, help="output file (path or fsspec URL)")
    q.add_argument("--format", choices=["parquet", "csv"], default=None,
                   help="default: from --to's ending (.parquet, .pq, .csv, .csv.gz, .csv.bz2, .csv.xz); "
                        "any other ending needs --format")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        overrides = parse_overrides(getattr(args, "overrides", []))
        for item in getattr(args, "condition", []):
            col, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"--condition {item!r}: expected COLUMN=VALUE")
            overrides.setdefault("generate.conditions", {})[col] = value
        if args.command == "run":
            return _run_all(args, overrides)
        if args.command == "releases":
            try:
                return _releases(args)
            except (OSError, ImportError) as exc:  # e.g. an unreadable root, a missing fsspec extra
                print(f"error: {exc}", file=sys.stderr)
                return 2
        cfg = load_config(args.params, overrides)
        cfg.dataset(args.dataset)
        check_config(cfg, [args.dataset])
        kwargs = {"resume": Resume(args.resume or "no")} if args.command == "train" else {}
        run_stage(args.command, cfg, args.dataset, **kwargs)
        return 0
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, QualityGateError) else 2


def _releases(args: argparse.Namespace) -> int:
    from pipeline.catalog import Catalog, Ref, export_format
    from pipeline.errors import ReleaseError

    root = args.root
    if root is None:
        root = load_config(args.params).publish.release_root if Path(args.params).exists() else "releases"
    cat = Catalog(root)

    def number(value, spec: str, missing: str) -> str:  # a hand-edited manifest may lack or mistype it
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return format(value, spec) if ok else missing

    def summary(m: dict) -> str:
        metrics = m.get("metrics") if isinstance(m.get("metrics"), dict) else {}
        rows, quality = (number(m.get("rows"), ">10,", "?".rjust(10)),
                         number(metrics.get("quality.overall"), ".3f", "nan"))
        return f"{rows} rows  quality {quality}"

    if args.action == "list":
        # One broken latest.json or manifest is shown as broken; the rest is still listed.
        if args.dataset:
            versions = cat.versions(args.dataset)
            try:
                latest = cat.latest(args.dataset)
            except ReleaseError as exc:
                latest = None
                print(f"latest  broken: {exc}")
            for v in versions:
                try:
                    line = summary(cat.manifest(Ref(args.dataset, v)))
                except ReleaseError as exc:
                    line = f"broken: {exc}"
                print(f"{v}  {line}{'  (latest)' if v == latest else ''}")
        else:
            if not cat.fs.exists(cat.root):
                raise ReleaseError(f"release root {root} does not exist")
            for name in cat.datasets():
                try:
                    print(f"{name}  latest {cat.latest(name)}  ({len(cat.versions(name))} versions)")
                except ReleaseError as exc:
                    print(f"{name}  broken: {exc}")
        return 0
    if args.action == "show":
        print(json.dumps(cat.manifest(args.ref), indent=2))
        return 0
    if args.action == "diff":
        print(json.dumps(cat.diff(args.a, args.b), indent=2))
        return 0
    fmt = args.format or export_format(args.to)  # before any reading: a wrong name fails at once
    ref = cat.resolve(args.ref)
    cat.export(ref, args.to, fmt)
    print(f"{ref}: {number(cat.manifest(ref).get('rows'), ',', '?')} rows -> {args.to} ({fmt})")
    return 0


def _source_stem(source: str) -> str:
    name = source.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".gz", ".bz2", ".xz", ".zst"):
        name = name.removesuffix(suffix)
    return Path(name).stem


def _params_datasets(params: str) -> set[str]:
    """Names of the datasets a params file configures (none if it cannot be read: load_config says why)."""
    import yaml

    try:
        raw = yaml.safe_load(Path(params).read_text(encoding="utf-8")) or {}
        return set(raw.get("datasets") or {}) if isinstance(raw, dict) else set()
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return set()


def _run_all(args: argparse.Namespace, overrides: dict) -> int:
    if bool(args.source) == bool(args.dataset):
        print("error: give either --dataset NAME or --source FILE [--name NAME]", file=sys.stderr)
        return 2
    dataset = args.dataset
    if args.source:
        if args.name is not None:
            dataset, origin = check_name(args.name, "--name"), f"--name {args.name}"
        else:
            dataset = name_from_file(_source_stem(args.source))
            origin = f"--source {args.source}: its name '{dataset}'"
        if dataset in _params_datasets(args.params):
            # Its work folder and release line belong to the configured dataset: never take them over.
            raise ConfigError(f"{origin} is a dataset in {args.params} (its work folder and releases); "
                              f"choose another --name, or run --dataset {dataset}")
        # An ad-hoc dataset: it replaces any configured ones for this run only.
        entry = {"source": args.source, "target": args.target, "holdout_source": args.holdout,
                 "modality": args.modality}
        if args.modality == "image":
            entry["overrides"] = {"model.name": "dcgan"}
        prefix = f"datasets.{dataset}."
        for key, value in overrides.items():  # --set datasets.NAME.csv.sep=';' and the like
            if key.startswith(prefix):
                set_dotted(entry, key[len(prefix):], value)
        overrides = {k: v for k, v in overrides.items() if not k.startswith("datasets.")}
        overrides["datasets"] = {dataset: entry}
        thresholds = overrides.get("score.thresholds")
        cfg = load_config(args.params, overrides)
        if thresholds is None:
            # Thresholds on scores this data will not have (no target: no utility score; images: no
            # table scores) are dropped rather than failing on a missing key.
            skip = ("utility.",) if not args.target else ()
            if args.modality == "image":
                skip = ("utility.", "quality.", "coverage.", "detection.", "privacy.dcr", "privacy.nndr")
            cfg.score.thresholds = {k: v for k, v in cfg.score.thresholds.items() if not k.startswith(skip)}
    else:
        cfg = load_config(args.params, overrides)
        cfg.dataset(dataset)
    check_config(cfg, [dataset])
    check_outputs_writable(cfg)
    timings = {}
    for stage in STAGE_NAMES:
        t0 = time.perf_counter()
        result = run_stage(stage, cfg, dataset)
        timings[stage] = round(time.perf_counter() - t0, 2)
        log.info("%s done in %.1fs", stage, timings[stage])
    print(json.dumps({"dataset": dataset, "release": str(getattr(result, "path", "")), "seconds": timings}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
