"""The nightly synthetic-data run: every dataset in params.yaml (or a chosen subset) through
ingest -> train -> generate -> score -> publish, as Prefect tasks that call the same stage
functions as the DVC stages.

    python -m flows.nightly run   [--dataset adult ...] [--set key=value ...]   # once, now
    python -m flows.nightly serve [--params params.yaml]                          # on the cron in params

Both work with no Prefect server (Prefect's ephemeral local API); with ``PREFECT_API_URL`` set
they report to that server. ``prefect deploy`` (see ``prefect.yaml``) registers the same flow on a
work pool instead.

Each run: a new seed per run (``nightly.new_seed``, derived from the flow run id and recorded in
the manifest with the run id), a lock per dataset (a second run of the same dataset waits
``nightly.lock_wait_seconds`` and then fails clearly), stage retries with back-off for transient
errors (never for bad input or a failed quality gate), training resumed from its checkpoint when a
retry finds a compatible one, datasets in parallel on the task runner in ``nightly.task_runner``,
old releases pruned to ``nightly.keep_releases`` (never ``latest``), and per dataset a markdown
and a table artifact. A dataset that fails fails alone; the flow run ends failed if any did.
SIGTERM or Ctrl-C stops a run within seconds: its tasks at their next safe point, its locks and
temporary folders released, exit 143 or 130 with one line (docs/operations.md, Stopping a run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import shlex
import signal
import sys
import threading
import time
import uuid
from typing import Any, Callable

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.context import get_run_context
from prefect.exceptions import MissingContextError, TerminationSignal

from pipeline import cancel, logs, progress
from pipeline.artifacts import StagePaths, metrics_path
from pipeline.config import Config, load_config, parse_overrides
from pipeline.errors import Cancelled, PipelineError
from pipeline.files import dataset_run_lock, read_json
from pipeline.options import PARAMS_OPTIONS
from pipeline.redact import redact
from pipeline.stages import STAGE_NAMES as STAGES
from pipeline.stages import check_config, check_outputs_writable, run_stage
from pipeline.stages import stage as stage_entry

DEPLOYMENT = "nightly"


class DatasetsFailed(Exception):
    """One or more datasets of a run failed (each named with its reason)."""


class StageCancelled(PipelineError):
    """A stage task stopped because its run was cancelled. What the task raises instead of
    ``pipeline.errors.Cancelled``: Dask's client breaks on a task that raises a ``BaseException``;
    a ``PipelineError`` is never retried."""


def _transient(task, task_run, state) -> bool:
    """Retry I/O and other unexpected errors; never our own verdicts (bad input, gate, config)."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001 - the result itself could not be read: retry
        return True
    return not isinstance(exc, PipelineError)


class _ToRunLogger(logging.Handler):
    """Hands the stage code's records (logger ``pipeline``, which then stops propagating) to the
    Prefect logger of the task run of their dataset, so each line is logged once, as the task
    run's (tasks of other datasets may run in other threads; a progress heartbeat in its own).
    Records of no running task go where they would have gone: the root logger's handlers."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.addFilter(logs.Redact())  # URL credentials masked before Prefect stores the line
        self.run_loggers: dict[str | None, Any] = {}

    def emit(self, record: logging.LogRecord) -> None:
        run_logger = self.run_loggers.get(getattr(record, "dataset", None) or logs.current()[0])
        if run_logger is not None:
            run_logger.log(record.levelno, "%s", record.getMessage())
            return
        for handler in logging.getLogger().handlers:
            if record.levelno >= handler.level:
                handler.handle(record)


_FORWARD = _ToRunLogger()
_FORWARD_LOCK = threading.Lock()


@contextlib.contextmanager
def _stage_logs_to_prefect(dataset: str):
    """While any stage task runs in this process, the ``pipeline`` logger hands its records to
    ``_FORWARD`` (and stops propagating); after the last one, it is as it was."""
    try:
        run_logger = get_run_logger()
    except MissingContextError:  # called as plain code (``task.fn``): the stage logs as it always does
        yield
        return
    source = logging.getLogger("pipeline")
    with _FORWARD_LOCK:
        if not _FORWARD.run_loggers:  # the first task running: route the records
            _FORWARD.saved = (source.propagate, source.level)
            source.addHandler(_FORWARD)
            source.propagate = False
            if source.getEffectiveLevel() > logging.INFO:
                source.setLevel(logging.INFO)
        _FORWARD.run_loggers[dataset] = run_logger
    try:
        yield
    finally:
        with _FORWARD_LOCK:
            _FORWARD.run_loggers.pop(dataset, None)
            if not _FORWARD.run_loggers:  # the last one: as it was
                source.removeHandler(_FORWARD)
                source.propagate, level = _FORWARD.saved
                source.setLevel(level)


@contextlib.contextmanager
def _progress_to_artifact(artifact_id: str | None, stage: str, every: float = 2.0):
    """Moves the dataset's progress artifact as the stage moves: each stage is a fifth of the bar,
    updated at most every ``every`` seconds and at the stage's end. An update that fails (an API
    hiccup) only costs the bar, never the stage."""
    if artifact_id is None:
        yield
        return
    base, last = STAGES.index(stage), [0.0]

    def move(fraction: float, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - last[0] < every:
            return
        last[0] = now
        try:
            update_progress_artifact(artifact_id=uuid.UUID(artifact_id), progress=100 * (base + fraction) / len(STAGES))
        except Exception as exc:  # noqa: BLE001 - see above
            logging.getLogger("pipeline").debug("progress artifact not updated: %s", exc)

    with progress.listening(lambda _stage, fraction: move(fraction)):
        yield
    move(1.0, force=True)


def stage_task(stage: str, params: str, overrides: dict, dataset: str, run_info: dict | None = None,
               progress_id: str | None = None) -> dict:
    """One stage of one dataset; the config is re-read from params + overrides in the worker. It
    runs as its flow run's work: cancelling the run (``_stop_tasks``) stops it at its next safe
    point, also on a Dask worker."""
    try:
        with cancel.scope(_flow_run_id()), _stage_logs_to_prefect(dataset), _progress_to_artifact(progress_id, stage):
            return _run_stage(stage, params, overrides, dataset, run_info)
    except Cancelled as exc:
        raise StageCancelled(f"{stage} of {dataset} {exc}") from None


def _flow_run_id() -> str | None:
    """The id of the flow run whose task runs here (None outside one: ``task.fn``)."""
    from prefect.context import TaskRunContext

    ctx = TaskRunContext.get()
    return str(ctx.task_run.flow_run_id) if ctx is not None and ctx.task_run.flow_run_id else None


def _stop_tasks(exc: BaseException, run_id: str | None) -> None:
    """The flow run is being stopped (``exc``: Prefect's ``TerminationSignal`` on SIGTERM, a
    Ctrl-C, a ``Cancelled``): its tasks stop at their next safe point instead of running on. Prefect
    cannot stop a task thread, and waits for it; a Dask worker is told through its client."""
    signum = getattr(exc, "signal", None) or signal.SIGINT  # a KeyboardInterrupt has none
    cancel.request(signum)  # this process's task threads
    ctx = get_run_context()
    client = getattr(getattr(ctx, "task_runner", None), "_client", None)  # a Dask runner's, if it made one
    if client is not None and run_id is not None:
        with contextlib.suppress(Exception):  # a cluster already gone has no task left to stop
            client.run(cancel.request, signum, run_id)  # only this run's tasks: a cluster may be shared
    logging.getLogger("pipeline").warning("stopping the run's tasks: %s", cancel.signal_name(signum))


# One Prefect task per stage, named as the stage (and as its DVC stage and module).
STAGE_TASKS = {name: task(name=name, retry_condition_fn=_transient)(stage_task) for name in STAGES}


def _run_stage(stage: str, params: str, overrides: dict, dataset: str, run_info: dict | None) -> dict:
    cfg = load_config(params, overrides)
    kwargs: dict[str, Any] = stage_entry(stage).flow_kwargs()  # its options' flow values (train: resume)
    if stage == "publish":
        kwargs.update(run_info=run_info,
                      keep=cfg.nightly.keep_releases if run_info and run_info.get("nightly") else None)
    result = run_stage(stage, cfg, dataset, **kwargs)
    return {k: (v if isinstance(v, (int, float, bool)) or v is None else redact(str(v)))  # a task result is stored
            for k, v in vars(result).items() if k in ("rows", "epochs", "seconds", "version", "path", "passed")}


def _artifact_key(dataset: str) -> str:
    return "synthesis-" + (re.sub(r"[^a-z0-9-]+", "-", dataset.lower()).strip("-") or "dataset")


def _progress_artifact(dataset: str) -> str | None:
    """The dataset's progress bar in the Prefect UI (0-100 %, moved by the stage tasks)."""
    try:
        return str(create_progress_artifact(progress=0.0, key=f"{_artifact_key(dataset)}-progress",
                                            description=f"{dataset}: ingest -> train -> generate -> score -> publish"))
    except Exception as exc:  # noqa: BLE001 - a bar we could not create fails nothing
        get_run_logger().warning("%s: no progress artifact: %s", dataset, exc)
        return None


def _artifacts(cfg: Config, dataset: str, results: dict[str, dict]) -> None:
    """A markdown summary (the score report's summary, stage timings, the release) and a table."""
    paths = StagePaths.of(cfg.work_dir, dataset)
    release = results.get("publish", {})
    seconds = read_json(paths.stage_seconds) if paths.stage_seconds.exists() else {}
    lines = [f"# {dataset}: released {release.get('version')}", "",
             f"- release: `{release.get('path')}` ({release.get('rows')} rows)",
             "- stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()), ""]
    report = paths.score / "report.md"
    if report.exists():
        lines.append(report.read_text())
    key = _artifact_key(dataset)
    create_markdown_artifact(markdown=redact("\n".join(lines)), key=key, description=f"synthetic {dataset}")
    metrics = read_json(metrics_path(cfg.metrics_dir, dataset))
    thresholds = cfg.for_dataset(dataset).score.thresholds  # a dataset may set its own
    rows = [{"metric": k, "value": v, "min": thresholds[k].min if k in thresholds else None,
             "max": thresholds[k].max if k in thresholds else None}
            for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    create_table_artifact(table=rows, key=f"{key}-metrics", description=f"scores of {dataset}")


def run_datasets(params: str, overrides: dict, datasets: list[str], nightly: bool) -> dict[str, dict]:
    """Submit every dataset's stage chain to the flow's task runner; collect results and failures."""
    logger = get_run_logger()
    ctx = get_run_context()
    run_id = str(ctx.flow_run.id) if getattr(ctx, "flow_run", None) else None
    overrides = dict(overrides)
    cfg = load_config(params, overrides)
    check_outputs_writable(cfg)  # before hours of training, not after
    drawn = nightly and cfg.nightly.new_seed and "seed" not in overrides
    if drawn:
        overrides["seed"] = uuid.UUID(run_id).int % 2**31 if run_id else cfg.seed
        cfg = load_config(params, overrides)
    _last_run.update(seed=cfg.seed, new_seed=drawn)
    datasets = list(dict.fromkeys(datasets))  # a name given twice runs once
    for name in datasets:
        cfg.dataset(name)  # an unknown name fails the run before anything starts
    check_config(cfg, datasets)
    run_info = {"orchestrator": "prefect", "flow_run_id": run_id, "flow": ctx.flow.name if ctx else None,
                "nightly": nightly, "seed": cfg.seed}
    nc = cfg.nightly
    retry = {"retries": nc.retries, "retry_delay_seconds": [nc.retry_delay_seconds * 2**i for i in range(nc.retries)]}
    failures: dict[str, str] = {}
    results: dict[str, dict] = {}
    cancel.reset()  # a run cancelled before in this process does not stop this one
    with contextlib.ExitStack() as locks:
        chains: dict[str, dict] = {}
        bars: dict[str, str | None] = {}  # each dataset's progress artifact
        try:
            for name in datasets:
                try:
                    locks.enter_context(dataset_run_lock(cfg.work_dir, name, nc.lock_wait_seconds))
                    chains[name] = {}
                    bars[name] = _progress_artifact(name)
                except PipelineError as exc:
                    failures[name] = str(exc)
                    logger.error("%s", exc)
            # Stage by stage across datasets, so that a pool's workers take the same stage of different
            # datasets rather than sit waiting on the previous stage of one.
            for stage in STAGES:
                for name, chain in chains.items():
                    previous = chain.get(STAGES[STAGES.index(stage) - 1]) if stage != STAGES[0] else None
                    chain[stage] = STAGE_TASKS[stage].with_options(task_run_name=f"{stage}-{name}", **retry).submit(
                        stage, params, overrides, name, run_info if stage == "publish" else None, bars[name],
                        wait_for=[previous] if previous is not None else None)
            for name, chain in chains.items():
                done: dict[str, dict] = {}
                try:
                    for stage, future in chain.items():
                        done[stage] = future.result()
                except Exception as exc:  # noqa: BLE001 - each dataset fails alone
                    failed_at = next((s for s in STAGES if s not in done), "?")
                    failures[name] = f"{failed_at}: {type(exc).__name__}: {exc}"
                    logger.error("%s failed at %s: %s", name, failed_at, exc)
                    continue
                results[name] = done
                logger.info("%s released %s -> %s", name, done["publish"].get("version"), done["publish"].get("path"))
                try:
                    _artifacts(cfg, name, done)
                except Exception as exc:  # noqa: BLE001 - a report we could not attach fails nothing
                    logger.warning("%s: could not create the run's artifacts: %s", name, exc)
        except (TerminationSignal, KeyboardInterrupt, Cancelled) as exc:  # the run is stopped: so are its tasks
            _stop_tasks(exc, run_id)
            raise
        finally:
            # The locks are held until every submitted task has finished, whatever happened above.
            for chain in chains.values():
                for future in chain.values():
                    future.wait()
    if failures:
        raise DatasetsFailed("; ".join(f"{k}: {v}" for k, v in failures.items())
                             + (f" (released: {', '.join(results)})" if results else " (nothing released)"))
    return results


@flow(name="nightly-datasets")
def _nightly_datasets(params: str, overrides: dict, datasets: list[str]) -> dict:
    return run_datasets(params, overrides, datasets, nightly=True)


@flow(name="nightly", flow_run_name="nightly")
def nightly(params: str = "params.yaml", overrides: dict | None = None, datasets: list[str] | None = None) -> dict:
    """Every dataset (or ``datasets``, or ``nightly.datasets``) through all five stages, on the
    task runner ``nightly.task_runner`` names (so a deployment from prefect.yaml honours it too)."""
    cfg = load_config(params, overrides or {})
    names = list(datasets or cfg.nightly.datasets or cfg.datasets)
    runner = _nightly_datasets.with_options(task_runner=task_runner(cfg))
    return runner(params=params, overrides=overrides or {}, datasets=names)


def task_runner(cfg: Config):
    """The task runner ``nightly.task_runner`` names (datasets run in parallel on all but sequential)."""
    from prefect.task_runners import ThreadPoolTaskRunner

    nc = cfg.nightly
    if nc.task_runner == "sequential":
        return ThreadPoolTaskRunner(max_workers=1)
    if nc.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=nc.max_workers)
    from prefect_dask import DaskTaskRunner

    from pipeline.shards import local_cluster

    if nc.dask_address:  # workers must see the same work and release folders (a shared filesystem)
        return DaskTaskRunner(address=nc.dask_address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={**local_cluster(nc.max_workers), "env": {"PREFECT_API_URL": _flow_api_url()}})


def _flow_api_url() -> str:
    """The Prefect API this flow run reports to, for the Dask workers it starts. A worker without it
    would start an ephemeral API server of its own (and its database, not the run's), left running
    after the cluster ends the worker: a stray server a worker, each nightly run. With no PREFECT_API_URL the
    run's own ephemeral server is Prefect's one instance a process (running already: the flow
    reports to it); a URL set only in this process's settings (a profile's, a test harness's)
    reaches the workers too."""
    from prefect.settings import PREFECT_API_URL

    if api := PREFECT_API_URL.value():
        return api
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()  # the flow's own: started when the flow run began
    return server.api_url


def build_deployment(cfg: Config, params: str = "params.yaml", overrides: dict | None = None,
                     datasets: list[str] | None = None):
    """The ``nightly`` deployment ``serve`` runs: the flow, the cron and time zone from params."""
    from prefect.schedules import Cron

    return nightly.to_deployment(
        name=DEPLOYMENT,
        schedule=Cron(cfg.nightly.cron, timezone=cfg.nightly.timezone),
        parameters={"params": params, "overrides": overrides or {}, "datasets": datasets or None},
        description="ingest -> train -> generate -> score -> publish for every dataset in params",
        concurrency_limit=1,
    )


def add_params_options(ap: argparse.ArgumentParser, set_note: str = "") -> None:
    """``--params``, ``--set`` and ``--threshold``, worded as in the pipeline's command line."""
    for option in PARAMS_OPTIONS:
        option.add_to(ap, note=set_note if option.flag == "--set" else "",
                      **({"metavar": "FILE"} if option.flag == "--params" else {}))


# The ephemeral API's startup timeout when the user has not set one: Prefect's 20 s is too short on a
# loaded machine (measured: docs/operations.md#the-prefect-api-on-a-busy-machine).
EPHEMERAL_STARTUP_SECONDS = 120
_TIMED_OUT = "Timed out while attempting to connect to ephemeral Prefect API server"
_last_run: dict[str, Any] = {}  # the seed of the run this process started last (the line after a cancel)


@contextlib.contextmanager
def prefect_api():
    """Prefect's settings for a command-line run: the ephemeral API server gets
    ``EPHEMERAL_STARTUP_SECONDS`` to start unless ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``
    is set (environment, prefect.toml or profile); if it still does not start, a ``PipelineError``
    naming that setting instead of Prefect's message."""
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as timeout
    from prefect.settings import temporary_settings

    with temporary_settings(set_defaults={timeout: EPHEMERAL_STARTUP_SECONDS}):
        try:
            yield
        except RuntimeError as exc:
            if not str(exc).startswith(_TIMED_OUT):
                raise
            raise PipelineError(
                f"the temporary Prefect API server did not start within {timeout.value()}s on this machine; raise "
                f"{timeout.name} (the environment, or startup_timeout_seconds under [server.ephemeral] in "
                "prefect.toml), or start a server and set PREFECT_API_URL") from None


def run_flow(call: Callable[[], Any], what: str, again: list[str]) -> tuple[int, Any]:
    """Run a flow for a command line: returns (exit code, result). SIGTERM or Ctrl-C stops it: its
    tasks at their next safe point (``_stop_tasks``), the flow run ends Crashed (Cancelled when a
    Prefect runner cancelled it), and one line says so and how to run it again (``again``), with
    exit code 143 or 130; a failed dataset is exit 1, a setting or the API server exit 2."""
    cancel.reset()
    _last_run.clear()
    try:
        with cancel.on_signals(), prefect_api():
            return 0, call()
    except BaseException as exc:
        stopped = isinstance(exc, (Cancelled, KeyboardInterrupt, TerminationSignal))
        if not stopped and cancel.requested() is None:
            if isinstance(exc, (DatasetsFailed, PipelineError)):
                print(f"error: {exc}", file=sys.stderr)
                return 1 if isinstance(exc, DatasetsFailed) else 2, None
            raise
        signum = cancel.requested() or getattr(exc, "signal", None) or signal.SIGINT
        said = f"cancelled by {cancel.signal_name(signum)}: {what} stopped; run it again with: {shlex.join(again)}"
        if _last_run.get("new_seed"):  # a new seed per run: the same one continues its training
            said += f" --set seed={_last_run['seed']} (its seed: training continues from its checkpoint)"
        print(redact(said), file=sys.stderr)
        return cancel.exit_code(signum), None


def serve_deployment(deployment, again: list[str]) -> int:
    """Serve ``deployment`` until stopped. SIGTERM: Prefect's runner stops polling and cancels the
    runs in progress (each flow run ends Cancelled, its tasks stopped by ``_stop_tasks``); Ctrl-C
    likewise; then one line and exit code 143 or 130, as for ``run``."""
    from prefect.runner import Runner

    runner = Runner(pause_on_shutdown=True)
    runner.add_deployment(deployment)
    stopped: list[int] = []
    graceful = runner.handle_sigterm  # installed by the runner when it starts

    def on_sigterm(*args: Any) -> None:
        stopped.append(signal.SIGTERM)
        graceful(*args)

    runner.handle_sigterm = on_sigterm
    try:
        with prefect_api():
            asyncio.run(runner.start())
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, TerminationSignal) as exc:
        stopped.append(getattr(exc, "signal", None) or signal.SIGINT)
    except SystemExit:  # the runner's own SIGTERM handler, before it had started
        if not stopped:
            raise
    signum = stopped[0] if stopped else signal.SIGTERM  # the runner only ends when told to
    print(f"cancelled by {cancel.signal_name(signum)}: serve stopped (runs in progress cancelled, the "
          f"schedule paused); start it again with: {shlex.join(again)}", file=sys.stderr)
    return cancel.exit_code(signum)


def command_line(module: str, args: argparse.Namespace, datasets: list[str], *extra: str) -> list[str]:
    """The command that runs ``args`` again (after a cancellation)."""
    line = ["python", "-m", module, *extra]
    if args.params != "params.yaml":
        line += ["--params", args.params]
    for name in datasets:
        line += ["--dataset", name]
    for item in args.overrides:
        line += ["--set", item]
    for item in args.thresholds:
        line += ["--threshold", item]
    return line


def main(argv: list[str] | None = None) -> int:
    # The whole docstring, its layout kept: the usage lines and the run's behaviour are the help.
    ap = argparse.ArgumentParser(prog="python -m flows.nightly", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["run", "serve"],
                    help="run: every chosen dataset once, now, then exit; serve: run the deployment on "
                         "nightly.cron in nightly.timezone until stopped (Ctrl-C or SIGTERM)")
    add_params_options(ap, "; --set seed=N keeps that seed instead of a new one per run (nightly.new_seed)")
    ap.add_argument("--dataset", action="append", default=[], metavar="NAME",
                    help="only this dataset, a name under datasets: in the params (repeatable; "
                         "default: nightly.datasets, or every dataset when that is empty)")
    args = ap.parse_args(argv)
    try:
        overrides = parse_overrides(args.overrides, args.thresholds)
        cfg = load_config(args.params, overrides)
        for name in args.dataset:
            cfg.dataset(name)
        check_config(cfg, list(args.dataset or cfg.nightly.datasets or cfg.datasets))
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    again = command_line("flows.nightly", args, args.dataset, args.command)
    if args.command == "serve":
        deployment = build_deployment(cfg, args.params, overrides, args.dataset or None)
        print(f"serving deployment 'nightly/{DEPLOYMENT}' on cron '{cfg.nightly.cron}' ({cfg.nightly.timezone}); "
              "Ctrl-C or SIGTERM stops it", flush=True)
        return serve_deployment(deployment, again)
    code, results = run_flow(lambda: nightly(params=args.params, overrides=overrides, datasets=args.dataset or None),
                             "the nightly run", again)
    for name, res in (results or {}).items():
        print(f"{name}: {res['publish']['rows']} rows released as {res['publish']['version']} "
              f"-> {res['publish']['path']}")
    return code


if __name__ == "__main__":
    # Run as flows.nightly, not as __main__: a task of __main__ would be pickled whole for a Dask
    # worker (with this module's locks and log handler, which cannot be), one of an importable
    # module by its name.
    from flows.nightly import main as entry

    sys.exit(entry())
