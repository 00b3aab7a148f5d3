"""Command line: ``python -m pipeline <stage> --dataset NAME [--set key=value ...]``.

The same stage functions back ``dvc.yaml`` and the Prefect flows; this module only parses
arguments, loads and validates the config, and calls them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

from pipeline import cancel, logs
from pipeline.artifacts import StagePaths
from pipeline.config import Config, load_config, parse_overrides, set_dotted
from pipeline.errors import Cancelled, ConfigError, PipelineError, QualityGateError
from pipeline.files import read_json, write_json
from pipeline.names import check_name, name_from_file
from pipeline.options import PARAMS_OPTIONS
from pipeline.redact import redact
from pipeline.stages import (
    STAGE_NAMES,
    STAGES,
    Stage,
    check_config,
    check_outputs_writable,
    resumable_epochs,
    run_stage,
)
from pipeline.stages import stage as stage_entry

log = logging.getLogger("pipeline")
ADHOC_ENTRY = "dataset.json"  # an ad-hoc dataset's entry, in its work folder


def _common(p: argparse.ArgumentParser) -> None:
    for option in PARAMS_OPTIONS:
        option.add_to(p)
    _log_options(p)


class _CommandParser(argparse.ArgumentParser):
    """A command's parser. A stage's own options (``OPTIONS`` in its module, through the stage
    table) are added when its command is used or its help shown: ``--help`` and the other commands
    import no stage module (nor torch)."""

    stage: Stage | None = None

    def _add_stage_options(self) -> None:
        if self.stage is not None:
            options, self.stage = self.stage.options(), None
            for option in options:
                option.add_to(self)

    def parse_known_args(self, args=None, namespace=None):
        self._add_stage_options()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._add_stage_options()
        return super().format_usage()

    def format_help(self) -> str:
        self._add_stage_options()
        return super().format_help()


def _log_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output")
    g.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors (no progress)")
    g.add_argument("-v", "--verbose", action="count", default=0,
                   help="-v: the pipeline's debug lines too; -vv: the libraries' too")
    g.add_argument("--log-format", choices=["text", "json"], default="text",
                   help="json: one object per line (time, level, dataset, stage, message, numbers as fields)")
    g.add_argument("--log-file", metavar="PATH", help="also append every log line, progress included, to PATH")


class _Version(argparse.Action):
    """``--version``: the package version and the checkout's commit (asked for only when shown)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from pipeline.files import code_version

        print(f"synthfactory {code_version()}")
        parser.exit()


def _setup_logging(args: argparse.Namespace) -> Callable[[], None]:
    quiet, verbose = getattr(args, "quiet", False), getattr(args, "verbose", 0)
    fmt = getattr(args, "log_format", "text")
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    # Live bars only for a person at a terminal; a pipe, DVC's log or a JSON collector gets lines.
    bars = not quiet and fmt == "text" and sys.stderr.isatty()
    return logs.setup(level, fmt, getattr(args, "log_file", None), bars,
                      others=logging.DEBUG if verbose > 1 else logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Synthetic-data factory: ingest -> train -> generate -> score -> publish.",
    )
    parser.add_argument("--version", action=_Version, help="print the version (and the git commit) and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser)
    for st in STAGES:
        p = sub.add_parser(st.name, help=st.help, description=st.help)
        p.add_argument("--dataset", required=True, help="a dataset named in params.yaml (datasets.NAME)")
        _common(p)
        p.stage = st  # its own options, when used
    p = sub.add_parser(
        "run", help="run all five stages on a configured dataset or on any CSV/Parquet file",
        description="Run ingest, train, generate, score and publish in order. Either --dataset NAME "
                    "(from params.yaml) or --source FILE --name NAME for a file not in params.yaml.",
    )
    _source_options(p)
    p.add_argument("--resume", action="store_true",
                   help="continue training from the checkpoint a stopped run left (an error if it was made "
                        "from other data or params); the other stages run again")
    p = sub.add_parser(
        "validate", help="check a run before it starts: params, the source's schema, the gate, time and memory",
        description="Resolve the params for one dataset, read its source as ingest will (kinds, nulls, distinct "
                    "values, the target's task), and print what will run, the gate that will apply and the "
                    "estimated seconds and memory (a few timed optimiser steps; nothing is trained or written). "
                    "Exit 0 when the run can start, 2 on any problem.",
    )
    _source_options(p)
    p.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    p.add_argument("--no-estimate", action="store_true", help="skip the timed steps (seconds, memory)")

    p = sub.add_parser(
        "dvc-yaml", help="write dvc.yaml: each stage's deps from what it imports, its params from what it reads",
        description="Write dvc.yaml from the stages' imports (found statically, within pipeline/) and the params "
                    "keys each stage reads, for the datasets of --params. Run it again after changing a dataset or "
                    "its model, or what a stage imports. --check: write nothing; exit 1 when dvc.yaml is not current.",
    )
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--out", default="dvc.yaml", help="the file written (default: %(default)s)")
    p.add_argument("--check", action="store_true", help="only check that the file is what would be written")

    p = sub.add_parser("releases", help="list, show, diff, export and verify published releases (the catalog)",
                       description="The release catalog. REF is DATASET (its latest) or DATASET@VERSION. Every "
                                   "read checks the release against its manifest: the files it lists present at "
                                   "their sizes, nothing else, and the SHA-256 of every file it reads (show: of "
                                   "every file, unless --sizes-only).")
    p.add_argument("--root", help="release root: a folder or fsspec URL (default: publish.release_root of --params)")
    p.add_argument("--params", default="params.yaml", help="params file for the default root (default: %(default)s)")
    rsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = rsub.add_parser("list", help="datasets, or one dataset's versions")
    q.add_argument("dataset", nargs="?")
    q = rsub.add_parser("show", help="a release at a glance: rows, model, scores against thresholds, gate, files")
    q.add_argument("ref")
    q.add_argument("--json", action="store_true", help="print the whole manifest (JSON) instead")
    q.add_argument("--sizes-only", action="store_true",
                   help="check each file's size, not its SHA-256: reads the manifest and one listing, not the "
                        "whole release (a big release in an object store)")
    q = rsub.add_parser("diff", help="schema, rows, metric deltas, drift, params and lineage changes between two "
                                     "releases (strict JSON)")
    q.add_argument("a")
    q.add_argument("b")
    q.add_argument("--force", action="store_true", help="compare releases of two different datasets")
    q = rsub.add_parser("export", help="write a release to one Parquet or CSV file")
    q.add_argument("ref")
    q.add_argument("--to", required=True, help="output file (path or fsspec URL)")
    q.add_argument("--format", choices=["parquet", "csv"], default=None,
                   help="default: from --to's ending (.parquet, .pq, .csv, .csv.gz, .csv.bz2, .csv.xz); "
                        "any other ending needs --format")
    q.add_argument("--force", action="store_true", help="replace an existing file at --to (never a link or folder)")
    q.add_argument("--keep-formulas", action="store_true",
                   help="CSV: write text cells starting with = + - @ tab or CR as they are (default: "
                        "prefixed with ' so a spreadsheet shows them instead of running them)")
    q = rsub.add_parser("verify", help="check a whole release: every file's size and SHA-256, each part's rows and "
                                       "lineage, the manifest's consistency, its data card and reports present; "
                                       "exit 0 when it is untouched, 2 with one line naming each problem")
    q.add_argument("ref")
    return parser


def _source_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", help="a dataset named in params.yaml")
    p.add_argument("--source", help="CSV or Parquet file to synthesise")
    p.add_argument("--name", help="dataset name for --source (used in paths and releases)")
    p.add_argument("--target", help="column for the utility score (optional)")
    p.add_argument("--holdout", help="real rows kept out of training (default: a random share of --source)")
    p.add_argument("--force", action="store_true",
                   help="let --source replace a dataset of the same name in params for this run")
    p.add_argument("--modality", choices=["table", "image"], default="table",
                   help="image: --source is an idx file, a folder of <label>/ image folders, "
                        "or a Parquet of image bytes")
    _common(p)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    undo = _setup_logging(args)
    cancel.reset()
    try:
        with cancel.on_signals():  # SIGTERM and SIGINT stop the run at a safe point (pipeline.cancel)
            return _main(args)
    except (Cancelled, KeyboardInterrupt) as exc:  # one line saying what stopped and how to go on
        signum = exc.signal if isinstance(exc, Cancelled) else signal.SIGINT
        _cancelled(args, signum)
        return cancel.exit_code(signum)
    except BaseException:
        if cancel.requested() is None:
            raise
        # Something the stopping broke on its way (a worker pool a Ctrl-C reached, a torn-down
        # collective under torchrun): the cancellation is what happened.
        _cancelled(args, cancel.requested())
        return cancel.exit_code(cancel.requested())
    finally:
        undo()


def _main(args: argparse.Namespace) -> int:
    try:
        overrides = parse_overrides(getattr(args, "overrides", []), getattr(args, "thresholds", []))
        kwargs: dict[str, Any] = {}
        for option in stage_entry(args.command).options() if args.command in STAGE_NAMES else ():
            option.apply(getattr(args, option.dest), overrides, kwargs)
        if args.command == "run":
            return _run_all(args, overrides)
        if args.command == "validate":
            return _validate(args, overrides)
        if args.command == "dvc-yaml":
            return _dvc_yaml(args)
        if args.command == "releases":
            try:
                return _releases(args)
            except (OSError, ImportError) as exc:  # e.g. an unreadable root, a missing fsspec extra
                cancel.check()  # an error the stopping caused is the cancellation
                _error(args, exc)
                return 2
        cfg = _config_for(args.params, overrides, args.dataset)
        check_config(cfg, [args.dataset])
        args.running = (args.command, cfg, args.dataset)
        run_stage(args.command, cfg, args.dataset, **kwargs)
        return 0
    except PipelineError as exc:
        cancel.check()
        _error(args, exc)
        return 1 if isinstance(exc, QualityGateError) else 2


def _cancelled(args: argparse.Namespace, signum: int) -> None:
    """The line after a SIGTERM or Ctrl-C: what stopped and the command that goes on from there
    (with this command's --params and --set): ``--resume`` when train stopped with a checkpoint
    that it continues, else the same command again. Of torchrun's ranks rank 0 says it, or the
    train stage that launched them."""
    import shlex

    if os.environ.get("RANK", "0") != "0" or os.environ.get(cancel.LAUNCHED_BY):
        return
    stage, cfg, dataset = getattr(args, "running", None) or (args.command, None, getattr(args, "dataset", None))
    command = args.command
    where = f"{command} of {dataset}" if dataset else command
    said = f"cancelled by {cancel.signal_name(signum)}: {where} stopped" + (f" in {stage}" if stage != command else "")
    again = ["python", "-m", "pipeline", command, "--dataset", dataset] if dataset and cfg is not None else None
    trained = command in ("train", "run") and stage in STAGE_NAMES[STAGE_NAMES.index("train"):]
    done = resumable_epochs(cfg, dataset) if again and trained else 0
    if again:
        if done:
            again.append("--resume")
            said += f" with {done} epoch{'s' if done != 1 else ''} checkpointed"
        elif stage == "train":
            said += f" before its first checkpoint (every {cfg.for_dataset(dataset).train.checkpoint_every} epochs)"
        if getattr(args, "params", "params.yaml") != "params.yaml":
            again += ["--params", args.params]
        for item in getattr(args, "overrides", []):
            again += ["--set", item]
        for item in getattr(args, "thresholds", []):
            again += ["--threshold", item]
        for option in stage_entry(command).options() if command in STAGE_NAMES else ():
            for item in (getattr(args, option.dest, None) or ()) if option.sets else ():  # --condition
                again += [option.flag, item]
        said += f"; {'continue' if done else 'run it again'} with: {shlex.join(again)}"
    if getattr(args, "log_format", "text") == "json":
        log.error("%s", redact(said), extra={"fields": {"error": "Cancelled", "signal": cancel.signal_name(signum)},
                                            "dataset": dataset})
    else:
        print(redact(said), file=sys.stderr)


def _error(args: argparse.Namespace, exc: BaseException) -> None:
    """The one-line error: ``error: ...`` on stderr, or with ``--log-format json`` a JSON line (a
    log collector must not trip over the last, most important line)."""
    if getattr(args, "log_format", "text") == "json":
        dataset = getattr(args, "dataset", None) or getattr(args, "name", None)
        log.error("%s", redact(str(exc)), extra={"fields": {"error": type(exc).__name__}, "dataset": dataset})
    else:
        print(f"error: {redact(str(exc))}", file=sys.stderr)


def _dvc_yaml(args: argparse.Namespace) -> int:
    from pipeline.dvcgen import write

    diff = write(args.params, args.out, check=args.check)
    if diff is not None:
        print(diff, end="")
        print(f"error: {args.out} is not current; run: python -m pipeline dvc-yaml", file=sys.stderr)
        return 1
    if not args.check:
        print(f"wrote {args.out}")
    return 0


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
                latest = cat.resolve(args.dataset).version  # latest.json naming no release is broken
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
                    ref = cat.resolve(name)  # latest.json naming no release is broken
                    cat.manifest(ref)
                    print(f"{name}  latest {ref.version}  ({len(cat.versions(name))} versions)")
                except ReleaseError as exc:
                    print(f"{name}  broken: {exc}")
        return 0
    if args.action == "show":
        ref = cat.resolve(args.ref)
        checked = None if args.sizes_only else cat.verify(ref, lineage=False)  # every file's SHA-256
        manifest = cat.manifest(ref)  # every file present at its size, nothing extra
        if args.json:
            print(json.dumps(manifest, indent=2))
            return 0
        from pipeline.datacard import release_summary

        try:
            latest = cat.latest(ref.dataset) == ref.version
        except ReleaseError:  # a broken latest.json does not hide the release asked for
            latest = False
        print(release_summary(manifest, latest, str(ref)), end="")
        print("checked  " + (f"{checked['files']} files: each one's size and SHA-256 as the manifest lists, "
                             "nothing else in the release" if checked else
                             "each file's size as the manifest lists, nothing else in the release "
                             "(--sizes-only: SHA-256 not checked)"))
        return 0
    if args.action == "verify":
        done = cat.verify(args.ref)
        print(f"{done['release']}: ok: {done['files']} files, {done['bytes']:,} bytes, {done['rows']:,} rows, "
              "each file's size and SHA-256 as its manifest lists, nothing else in the release")
        return 0
    if args.action == "diff":
        # Strict JSON (diff turns NaN into null): jq, JavaScript and Go read it.
        print(json.dumps(cat.diff(args.a, args.b, force=args.force), indent=2, allow_nan=False))
        return 0
    fmt = args.format or export_format(args.to)  # before any reading: a wrong name fails at once
    ref = cat.resolve(args.ref)
    cat.export(ref, args.to, fmt, force=args.force, neutralise_formulas=not args.keep_formulas)
    print(f"{ref}: {number(cat.manifest(ref).get('rows'), ',', '?')} rows -> {redact(args.to)} ({fmt})")
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


def _adhoc_config(args: argparse.Namespace, overrides: dict) -> tuple[Config, str]:
    """The config of ``--source FILE [--name NAME]``: a dataset entry made from the options, which
    replaces the configured datasets for this run and is remembered in its work folder."""
    if args.name is not None:
        dataset, origin = check_name(args.name, "--name"), f"--name {args.name}"
    else:
        dataset = name_from_file(_source_stem(args.source))
        origin = f"--source {args.source}: its name '{dataset}'"
    if dataset in _params_datasets(args.params) and not args.force:
        # Its work folder and release line belong to the configured dataset: never taken over unasked.
        raise ConfigError(f"{origin} is a dataset in {args.params} (its work folder and releases); "
                          f"choose another --name, run --dataset {dataset}, or add --force to replace it")
    from pipeline.modalities.registry import modality_named

    handler = modality_named(args.modality)
    entry: dict[str, Any] = {"source": args.source, "target": args.target, "holdout_source": args.holdout,
                             "modality": args.modality, "overrides": {}}
    if handler.DEFAULT_MODEL:
        entry["overrides"]["model.name"] = handler.DEFAULT_MODEL
    prefix = f"datasets.{dataset}."
    for key, value in overrides.items():  # --set datasets.NAME.csv.sep=';' and the like
        if key.startswith(prefix):
            set_dotted(entry, key[len(prefix):], value)
    overrides = {k: v for k, v in overrides.items() if not k.startswith("datasets.")}
    overrides["datasets"] = {dataset: entry}
    cfg = load_config(args.params, overrides)
    if not args.force:
        _check_same_source(cfg, dataset, args.source, origin)
    if "score.thresholds" not in overrides:
        # Thresholds on scores this data will not have (no target: no utility score; images: no
        # table scores, the handler's UNSCORED) are dropped rather than failing on a missing key;
        # the entry keeps the rest, so the stages run later by name judge alike.
        skip = (() if args.target else ("utility.",)) + handler.UNSCORED
        entry["overrides"]["score.thresholds"] = {k: v.model_dump() for k, v in cfg.score.thresholds.items()
                                                  if not k.startswith(skip)}
        cfg = load_config(args.params, overrides)
    return cfg, dataset


def _check_same_source(cfg: Config, dataset: str, source: str, origin: str) -> None:
    """An ad-hoc name already in use (remembered in its work folder, or holding releases) belongs
    to the source it was made from: another source would move that dataset's ``latest``."""
    before = None
    remembered = StagePaths.of(cfg.work_dir, dataset).root / ADHOC_ENTRY
    try:
        before = read_json(remembered)["entry"]["source"] if remembered.is_file() else None
    except (OSError, ValueError, KeyError, TypeError):
        pass  # unreadable: _config_for says so when the name is used; the releases may still tell
    if before is None:
        from pipeline.catalog import Catalog

        try:  # no work folder (cleaned, another machine): the latest release says where it came from
            before = Catalog(cfg.publish.release_root).manifest(dataset).get("source")
        except (PipelineError, OSError, ValueError, ImportError):
            before = None
    if not isinstance(before, str) or _same_source(before, redact(source)):
        return
    raise ConfigError(f"{origin} is already the dataset made from {before}; choose another --name, "
                      f"or add --force to make it from {redact(source)} (its next release becomes latest)")


def _same_source(a: str, b: str) -> bool:
    from pipeline.stores import has_protocol

    if a == b:
        return True
    if has_protocol(a) or has_protocol(b):
        return False
    return Path(a).resolve() == Path(b).resolve()


def _remember(cfg: Config, dataset: str) -> None:
    """Keep an ad-hoc dataset's entry in its work folder, so that every stage command (and a
    re-run) finds it by name."""
    entry = cfg.datasets[dataset].model_dump(mode="json")
    write_json(StagePaths.of(cfg.work_dir, dataset).root / ADHOC_ENTRY, {"dataset": dataset, "entry": entry})


def _config_for(params: str, overrides: dict, dataset: str) -> Config:
    """The config a stage command runs ``dataset`` with: from params, or (a dataset not in params)
    the entry an earlier ``run --source`` remembered in its work folder."""
    cfg = load_config(params, overrides)
    if dataset in cfg.datasets:
        return cfg
    check_name(dataset, "--dataset")
    remembered = StagePaths.of(cfg.work_dir, dataset).root / ADHOC_ENTRY
    if not remembered.is_file():
        cfg.dataset(dataset)  # the usual one-line error: not in params
    try:
        entry = read_json(remembered)["entry"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{remembered}: the remembered entry of '{dataset}' cannot be read ({exc}); "
                          f"run --source FILE --name {dataset} again") from None
    overrides = {k: v for k, v in overrides.items() if not k.startswith("datasets.")}
    return load_config(params, {**overrides, "datasets": {dataset: entry}})


def _resolve(args: argparse.Namespace, overrides: dict) -> tuple[Config, str]:
    """The config and dataset of ``run`` and ``validate``: --dataset NAME or --source FILE, checked."""
    if bool(args.source) == bool(args.dataset):
        raise ConfigError("give either --dataset NAME or --source FILE [--name NAME]")
    if args.source:
        cfg, dataset = _adhoc_config(args, overrides)
    else:
        dataset = args.dataset
        cfg = _config_for(args.params, overrides, dataset)
    check_config(cfg, [dataset])
    check_outputs_writable(cfg)
    return cfg, dataset


def _validate(args: argparse.Namespace, overrides: dict) -> int:
    from pipeline.plan import plan, render

    cfg, dataset = _resolve(args, overrides)
    found = plan(cfg, dataset, estimate=not args.no_estimate)
    est = found.get("estimate") or {}
    if est.get("disk_free_mb") is not None and est["disk_mb"] > est["disk_free_mb"]:
        raise ConfigError(f"{cfg.work_dir}: about {est['disk_mb']:,.0f} MB needed, {est['disk_free_mb']:,.0f} MB "
                          "free; free some space or set work_dir elsewhere")
    print(json.dumps(found) if args.json else render(found) + "\nok: the run can start")
    return 0


def _run_all(args: argparse.Namespace, overrides: dict) -> int:
    cfg, dataset = _resolve(args, overrides)
    if args.source:
        _remember(cfg, dataset)
    timings = {}
    for stage in STAGE_NAMES:
        t0 = time.perf_counter()
        args.running = (stage, cfg, dataset)
        result = run_stage(stage, cfg, dataset, **({"resume": True} if stage == "train" and args.resume else {}))
        timings[stage] = round(time.perf_counter() - t0, 2)
    print(redact(json.dumps({"dataset": dataset, "release": str(getattr(result, "path", "")), "seconds": timings})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
