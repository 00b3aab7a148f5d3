"""Stage 5, publish: an immutable, versioned release of the synthetic data — if it passed the gate.

The release layout, where a release root lives (a local folder or an object store), the schema
contract and what a release holds are ``pipeline.release``'s; this stage reads what the earlier
stages left, checks it, and makes the release under the store's lock: assembled out of sight,
committed whole, then ``latest.json`` moved to it. A retried publish of the same rows returns the
release that holds them instead of making another.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline import cancel
from pipeline.artifacts import StagePaths, load_scores, metrics_path, read_record
from pipeline.config import Config, Threshold
from pipeline.errors import QualityGateError, ReleaseError
from pipeline.files import sha256_files
from pipeline.metrics import evaluate_gate
from pipeline.names import check_name
from pipeline.redact import redact
from pipeline.release.contents import ScoredWork, made_with, threshold_changes, write_release
from pipeline.release.contract import check_schema_contract
from pipeline.release.layout import find_release, latest_version, list_versions, new_version
from pipeline.release.store import ReleaseStore, release_store
from pipeline.stores import StorePath

log = logging.getLogger(__name__)


@dataclass
class PublishResult:
    dataset: str
    version: str
    path: Path | StorePath  # str() of a StorePath is its URL
    rows: int


def run(cfg: Config, dataset: str, version: str | None = None, run_info: dict | None = None,
        keep: int | None = None) -> PublishResult:
    """Release the scored synthetic rows as a new version. ``run_info`` (e.g. the orchestrator's
    run id) goes into the manifest; ``keep`` prunes all but the newest ``keep`` versions after."""
    if version is not None:
        check_name(version, "version")
    cfg = cfg.for_dataset(dataset)  # itself when resolved already (run_stage resolves it)
    paths = StagePaths.of(cfg.work_dir, dataset)
    work = read_scored_work(cfg, dataset, paths)

    store = release_store(cfg.publish.release_root, dataset)
    root = store.root
    with store.lock():
        store.clear_unfinished()
        previous = latest_version(root)
        if version is None:
            released = already_released(store, dataset, previous, work)
            if released is not None:
                return released
        if version is not None and (root / version).exists():
            raise ReleaseError(f"{root / version}: version exists already; a release is never overwritten")
        version = version or new_version(root)
        new_schema, changes = check_schema_contract(dataset, root, previous, work.schema_meta,
                                                    cfg.publish.allow_breaking_changes)

        # Assembled out of sight, then moved into place in one step (a store: uploaded, manifest last).
        with store.staging(version, paths.root) as staging:
            files, rows = write_release(staging, dataset, version, work, paths, new_schema, changes, run_info)
            cancel.check()  # the last point where a cancelled publish leaves nothing behind
            with cancel.deferred():  # a signal never lands between the commit and moving latest to it
                store.commit(staging, version)
                store.point_latest(dataset, version)
        if keep is not None:
            try:
                store.prune(keep)
            except OSError as exc:  # the release stands; old ones are pruned next time
                log.warning("could not prune old releases of %s: %s", dataset, exc)
    log.info("published %s %s: %d rows in %d files -> %s", dataset, version, rows, len(files),
             redact(str(root / version)))
    return PublishResult(dataset, version, root / version, rows)


def read_scored_work(cfg: Config, dataset: str, paths: StagePaths) -> ScoredWork:
    """What the earlier stages left for this release, read and checked: the gate passes under the
    thresholds in force now, the rows come from the model on disk and are the ones that were
    scored. Raises QualityGateError or ReleaseError (nothing published) otherwise."""
    metrics, details = load_scores(paths)
    scored_with = {k: Threshold.model_validate(v) for k, v in (details.get("thresholds") or {}).items()}
    # The gate is re-checked against the thresholds in force now, not only the verdict on file.
    thresholds = cfg.score.thresholds
    passed, failures = evaluate_gate(metrics, thresholds)
    if not passed:
        raise QualityGateError(
            f"{dataset}: quality gate failed, nothing published ({'; '.join(failures)}); "
            f"see {metrics_path(cfg.metrics_dir, dataset)}"
        )
    gen_info = read_record(paths.generated, "generate")
    model_info = read_record(paths.model / "model.json", "train")
    schema_meta = read_record(paths.schema, "ingest")
    from pipeline.models.saved import model_hash  # torch: imported only once the cheap checks have passed

    if gen_info["model_hash"] != model_hash(paths.model):
        raise ReleaseError(f"{paths.synthetic}: was generated by another model than {paths.model}; re-run generate")
    parts = paths.shards()
    if metrics.get("synthetic_hash") != sha256_files(parts):
        raise ReleaseError(f"{paths.synthetic}: these are not the rows that were scored "
                           f"({paths.details}); re-run score")
    params, seeds, from_publisher = made_with(cfg, dataset, schema_meta, model_info, gen_info, details)
    gate_changes = threshold_changes(scored_with if details.get("thresholds") is not None else thresholds, thresholds)
    # What --threshold changed from params, as far as it is still in force (thresholds set by hand after).
    overrides = [o for o in cfg.threshold_overrides(dataset)
                 if o["metric"] in thresholds and getattr(thresholds[o["metric"]], o["bound"]) == o["used"]]
    return ScoredWork(metrics, passed, failures, thresholds, gate_changes, schema_meta, model_info, gen_info,
                      parts, params, seeds, from_publisher, overrides)


def already_released(store: ReleaseStore, dataset: str, previous: str | None,
                     work: ScoredWork) -> PublishResult | None:
    """A retried publish (the release landed, then something failed) returns that release instead
    of making a duplicate of the same rows, whichever version holds them; one newer than latest is
    a publish that died before moving latest, so latest moves now. None: these rows are new."""
    root = store.root
    versions = list_versions(root)
    found = find_release(root, versions, work.metrics.get("synthetic_hash"), work.gen_info["model_hash"])
    if found is None:
        return None
    found, held = found
    if previous not in versions or versions.index(found) > versions.index(previous):
        store.point_latest(dataset, found)
        log.info("publish %s: %s held these rows but latest did not name it; it does now", dataset, found)
    else:
        log.info("publish %s: these rows are already released as %s", dataset, found)
    return PublishResult(dataset, found, root / found, int(held["rows"]))
