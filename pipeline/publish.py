"""Stage 5, publish: an immutable, versioned release of the synthetic data — if it passed the gate.

Layout::

    <release_root>/<dataset>/<version>/part-00000.parquet ...   lineage in each file's metadata
    <release_root>/<dataset>/<version>/_manifest.json           rows, schema, checksums, lineage, scores
    <release_root>/<dataset>/<version>/_report.html, _report.md  the quality report (when scored with one)
    <release_root>/<dataset>/<version>/_DATACARD.md             source, recipe, scores, intended use, limits
    <release_root>/<dataset>/latest.json                        {"version": ...}, moved last

The manifest's leading underscore keeps the version folder a clean Parquet dataset: pandas,
pyarrow and Spark skip ``_``-files, so ``pd.read_parquet(<version folder>)`` just works (DuckDB
reads what a glob names, ``_``-files too: ``'<version folder>/*.parquet'``).

A release is assembled in a hidden staging folder and renamed into place in one step, under a
lock; ``latest.json`` is replaced atomically only after that. A crash at any point leaves the
previous ``latest`` intact and no partial version visible. An existing version is never replaced.

``publish.release_root`` may be an fsspec URL (``s3://bucket/releases``). An object store has no
rename and no lock, so there the release is assembled in a scratch folder of the work folder,
uploaded file by file to ``<version>/`` with ``_manifest.json`` last, then ``latest.json`` (one
upload, replaced whole). Versions are listed by their manifests, so a reader still never sees a
partial version, and ``latest`` moves only to a whole one; an upload that died leaves a prefix
without a manifest, which the next publish removes. What the store cannot give is the lock: one
publisher per dataset at a time is the caller's to ensure (the nightly flow's per-dataset run
lock in the work folder does, for runs that share that work folder).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq

from pipeline.artifacts import (
    StagePaths,
    load_scores,
    metrics_path,
    read_record,
    shard_name,
)
from pipeline.catalog import LATEST, MANIFEST, finite, natural_key, schema_changes
from pipeline.config import Config, Threshold
from pipeline.datacard import embed_in_report, render_datacard
from pipeline.errors import QualityGateError, ReleaseError
from pipeline.files import (
    code_version,
    fsync_path,
    open_lock,
    read_json,
    scratch_dir,
    sha256_file,
    sha256_files,
    write_json,
    write_parquet,
)
from pipeline.metrics import evaluate_gate
from pipeline.names import check_name, name_problem
from pipeline.redact import redact, redact_any
from pipeline.report import gate_html, gate_markdown, regate, threshold_change_text
from pipeline.stores import StorePath, is_url, local_path

log = logging.getLogger(__name__)

DATACARD = "_DATACARD.md"


@dataclass
class PublishResult:
    dataset: str
    version: str
    path: Path | StorePath  # str() of a StorePath is its URL
    rows: int


@dataclass
class ScoredWork:
    """What the earlier stages left for a release, read and checked (``read_scored_work``)."""

    metrics: dict
    passed: bool  # the gate re-checked against the thresholds in force at publish
    failures: list[str]
    thresholds: dict[str, Threshold]
    gate_changes: list[dict]  # thresholds that differ from the ones the rows were scored under
    schema_meta: dict  # ingest's record
    model_info: dict  # train's record
    gen_info: dict  # generate's record
    parts: list[Path]  # the synthetic shards, in order
    params: dict  # the settings that made the rows (``made_with``)
    seeds: dict
    from_publisher: list[str]
    gate_overrides: list[dict] = field(default_factory=list)  # bounds --threshold changed from params


@contextlib.contextmanager
def dataset_lock(root: Path | StorePath) -> Iterator[None]:
    """An exclusive lock per dataset's release folder: concurrent publishers wait their turn. An
    object store has none: there one publisher per dataset is the caller's to ensure."""
    if isinstance(root, StorePath):
        yield
        return
    root.mkdir(parents=True, exist_ok=True)
    fd = open_lock(root / ".lock", ReleaseError)  # never truncated, never through a link
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def new_version(root: Path, now: datetime | None = None) -> str:
    """A sortable UTC timestamp version; a suffix keeps it unique within the same second."""
    base = (now or datetime.now(timezone.utc)).strftime("v%Y%m%dT%H%M%SZ")
    version, i = base, 1
    while (root / version).exists():
        version, i = f"{base}-{i}", i + 1
    return version


def list_versions(root: Path | StorePath) -> list[str]:
    """Published versions, oldest first by their manifests' creation time (then by name, digit runs
    as numbers); hidden staging folders are not versions."""
    if not root.exists():
        return []
    found = {}
    for p in root.iterdir():
        if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).exists():
            manifest = read_manifest(p)
            if manifest is not None:
                found[p.name] = str(manifest.get("created_at", ""))
    return sorted(found, key=lambda name: (found[name], natural_key(name)))


def read_manifest(version: Path | StorePath) -> dict | None:
    """A version's manifest, or None (with a warning naming it) when it is not a JSON object with a
    schema: one damaged old release must not stop every later publish. It is skipped, not repaired."""
    path = version / MANIFEST
    try:
        manifest = read_json(path)
    except (OSError, ValueError) as exc:
        problem = " ".join(str(exc).split()) or type(exc).__name__
    else:
        schema = manifest.get("schema") if isinstance(manifest, dict) else None
        if isinstance(schema, list) and all(isinstance(c, dict) and all(isinstance(c.get(k), str)
                                                                         for k in ("name", "kind", "dtype"))
                                            for c in schema):
            return manifest
        problem = "not a JSON object with a schema"
    log.warning("%s is unreadable (%s): that version is skipped; repair or remove it", redact(str(path)),
                problem[:200])
    return None


def latest_version(root: Path | StorePath) -> str | None:
    """The version ``latest.json`` names (None before the first release); a one-line error if the
    file is unreadable or names something that is not a version."""
    path = root / LATEST
    if not path.exists():
        return None
    try:
        version = read_json(path).get("version")
    except (ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise ReleaseError(f"{path}: unreadable ({exc}); repair it or delete it (releases stay listed by "
                           "`python -m pipeline releases list`)") from None
    problem = name_problem(version) if isinstance(version, str) else "is missing"
    if problem is not None or not (root / version / MANIFEST).is_file():
        raise ReleaseError(f"{path}: its version {version!r} {problem or 'has no manifest'}; repair it or delete it")
    return version


def prune_releases(root: Path | StorePath, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` versions; the one ``latest.json`` names is always kept.
    Call under the dataset lock. Returns the deleted versions."""
    versions = list_versions(root)
    latest = latest_version(root)
    doomed = [v for v in versions[:-keep] if v != latest] if keep < len(versions) else []
    for v in doomed:
        if isinstance(root, StorePath):  # no rename: unlisted first (its manifest), then its files
            (root / v).remove(first=MANIFEST)
            continue
        # Renamed out of sight first, so no reader ever sees a half-deleted release.
        trash = root / f".deleting-{v}-{os.getpid()}"
        os.rename(root / v, trash)
        shutil.rmtree(trash, ignore_errors=True)
    if doomed:
        log.info("pruned %d old release(s) of %s: %s", len(doomed), root.name, ", ".join(doomed))
    return doomed


def run(cfg: Config, dataset: str, version: str | None = None, run_info: dict | None = None,
        keep: int | None = None) -> PublishResult:
    """Release the scored synthetic rows as a new version. ``run_info`` (e.g. the orchestrator's
    run id) goes into the manifest; ``keep`` prunes all but the newest ``keep`` versions after."""
    if version is not None:
        check_name(version, "version")
    cfg = cfg.for_dataset(dataset)  # itself when resolved already (run_stage resolves it)
    paths = StagePaths.of(cfg.work_dir, dataset)
    work = read_scored_work(cfg, dataset, paths)

    root = release_folder(cfg.publish.release_root, dataset)
    with dataset_lock(root):
        clear_unfinished(root)
        previous = latest_version(root)
        if version is None:
            released = already_released(root, dataset, previous, work)
            if released is not None:
                return released
        if version is not None and (root / version).exists():
            raise ReleaseError(f"{root / version}: version exists already; a release is never overwritten")
        version = version or new_version(root)
        new_schema, changes = check_schema_contract(cfg, dataset, root, previous, work.schema_meta)

        # Assembled out of sight, then moved into place in one step (a store: uploaded, manifest last).
        with staging_folder(root, version, paths) as staging:
            files, rows = write_release(staging, dataset, version, work, paths, new_schema, changes, run_info)
            commit_release(staging, root, version)
        _point_latest(root, dataset, version)
        if keep is not None:
            try:
                prune_releases(root, keep)
            except OSError as exc:  # the release stands; old ones are pruned next time
                log.warning("could not prune old releases of %s: %s", dataset, exc)
    log.info("published %s %s: %d rows in %d files -> %s", dataset, version, rows, len(files),
             redact(str(root / version)))
    return PublishResult(dataset, version, root / version, rows)


def release_folder(release_root: str, dataset: str) -> Path | StorePath:
    """``<release_root>/<dataset>``: a local folder (a path or a ``file://`` URL), or a folder in the
    object store an fsspec URL names (a one-line error if fsspec cannot open it)."""
    if not is_url(release_root):
        return local_path(release_root) / dataset
    try:
        return StorePath.of(release_root) / dataset
    except ValueError as exc:
        raise ReleaseError(f"publish.release_root {release_root}: {exc}") from None


def clear_unfinished(root: Path | StorePath) -> None:
    """Remove what a publish that died left, under the dataset lock: locally its hidden staging and
    deleting folders; in a store, version prefixes without a manifest (an upload or a prune that
    died; no reader ever listed them)."""
    if isinstance(root, StorePath):
        for folder in root.iterdir():
            if folder.is_dir() and name_problem(folder.name) is None and not (folder / MANIFEST).exists():
                log.info("removing %s, an unfinished release (no manifest)", folder)
                folder.remove()
        return
    for stale in [*root.glob(".staging-*"), *root.glob(".deleting-*")]:
        shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def staging_folder(root: Path | StorePath, version: str, paths: StagePaths) -> Iterator[Path]:
    """Where a release is assembled out of sight: a hidden folder beside the versions, or for a
    store a scratch folder in the work folder (uploaded from). Removed if the release fails."""
    if isinstance(root, StorePath):
        with scratch_dir(paths.root, "release") as staging:
            yield staging
        return
    staging = root / f".staging-{version}-{os.getpid()}"
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def commit_release(staging: Path, root: Path | StorePath, version: str) -> None:
    """Move the assembled release to ``root/version``. Locally one rename: it appears whole or not
    at all. A store has no rename: every file is uploaded, the manifest last, so the version is
    listed (by its manifest) only once it is whole; a failed upload is removed again."""
    target = root / version
    if isinstance(root, StorePath):
        if target.exists():
            raise ReleaseError(f"{target}: version exists already; a release is never overwritten")
        names = sorted(p.name for p in staging.iterdir() if p.name != MANIFEST)
        try:
            for name in [*names, MANIFEST]:
                (target / name).upload(staging / name)
        except BaseException:
            with contextlib.suppress(Exception):  # else the next publish removes it (no manifest)
                target.remove(first=MANIFEST)
            raise
        return
    fsync_path(staging)
    if target.exists():
        raise ReleaseError(f"{target}: version exists already; a release is never overwritten")
    os.rename(staging, target)  # the release appears whole, or not at all


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


def already_released(root: Path, dataset: str, previous: str | None, work: ScoredWork) -> PublishResult | None:
    """A retried publish (the release landed, then something failed) returns that release instead
    of making a duplicate of the same rows, whichever version holds them; one newer than latest is
    a publish that died before moving latest, so latest moves now. None: these rows are new."""
    versions = list_versions(root)
    found = find_release(root, versions, work.metrics.get("synthetic_hash"), work.gen_info["model_hash"])
    if found is None:
        return None
    found, held = found
    if previous not in versions or versions.index(found) > versions.index(previous):
        _point_latest(root, dataset, found)
        log.info("publish %s: %s held these rows but latest did not name it; it does now", dataset, found)
    else:
        log.info("publish %s: these rows are already released as %s", dataset, found)
    return PublishResult(dataset, found, root / found, int(held["rows"]))


def check_schema_contract(cfg: Config, dataset: str, root: Path, previous: str | None,
                          schema_meta: dict) -> tuple[list[dict], dict]:
    """The schema contract with the current latest: breaking changes need explicit consent.
    Returns (the new release's schema, its changes against ``previous``)."""
    new_schema = [{k: c[k] for k in ("name", "kind", "dtype")} for c in schema_meta["columns"]]
    changes = {"breaking": [], "compatible": []}
    before = read_manifest(root / previous) if previous is not None and (root / previous / MANIFEST).exists() else None
    if before is not None:
        changes = schema_changes(before["schema"], new_schema)
        changes["against"] = previous
        if changes["breaking"] and not cfg.publish.allow_breaking_changes:
            raise ReleaseError(
                f"{dataset}: the new schema breaks {previous}'s ({'; '.join(changes['breaking'])}); "
                "nothing published. Set publish.allow_breaking_changes: true to release it anyway")
    return new_schema, changes


def write_release(staging: Path, dataset: str, version: str, work: ScoredWork, paths: StagePaths,
                  new_schema: list[dict], changes: dict, run_info: dict | None) -> tuple[list[dict], int]:
    """Write the release into ``staging``: the shards with their lineage, the data card, the
    sample grid, the regated reports and, last, the manifest. Returns (files, rows)."""
    lineage = release_lineage(dataset, version, work)
    files, rows = [], 0
    for i, part in enumerate(work.parts):
        table = pq.read_table(part)
        name = shard_name(i)
        write_parquet(table, staging / name, lineage=lineage)
        files.append({"path": name, "rows": table.num_rows, "bytes": (staging / name).stat().st_size,
                      "sha256": sha256_file(staging / name)})
        rows += table.num_rows
    manifest = {
        **lineage,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rows": rows,
        "source_rows": work.schema_meta.get("rows"),
        "holdout_rows": work.schema_meta.get("holdout_rows"),
        "schema": new_schema,
        "schema_changes": changes,
        "files": files,
        # The verdict is the one just re-checked against the thresholds in force.
        "metrics": {**work.metrics, "gate.passed": work.passed, "gate.failures": work.failures},
        "gate": {"passed": work.passed, "failures": work.failures,
                 "thresholds": {k: v.model_dump() for k, v in work.thresholds.items()},
                 "changed_at_publish": work.gate_changes, "overrides": work.gate_overrides,
                 **({"changed_by": _who()} if work.gate_changes or work.gate_overrides else {})},
        "synthetic_hash": work.metrics.get("synthetic_hash"),
        "training": {**{k: work.model_info[k] for k in ("epochs", "seconds", "device")},
                     **({"auto": work.model_info["auto"]} if "auto" in work.model_info else {})},
        "stage_seconds": read_json(paths.stage_seconds) if paths.stage_seconds.exists() else {},
        "run": run_info or {},
    }
    card = render_datacard(manifest, manifest["gate"]["thresholds"])
    (staging / DATACARD).write_text(card, encoding="utf-8")
    manifest["reports"] = [DATACARD]
    if (paths.synthetic / "_grid.png").exists():  # images: the preview grid
        shutil.copyfile(paths.synthetic / "_grid.png", staging / "_samples.png")
        manifest["reports"].append("_samples.png")
    write_reports(staging, paths, manifest, card, work.gate_changes)
    write_json(staging / MANIFEST, finite(manifest))  # strict JSON: a score that is NaN is null
    return files, rows


def release_lineage(dataset: str, version: str, work: ScoredWork) -> dict:
    """What every shard's metadata and the manifest say about where these rows come from."""
    lineage = {
        "dataset": dataset,
        "version": version,
        "source": work.schema_meta["source"],
        "source_hash": work.schema_meta["source_hash"],
        "modality": work.schema_meta.get("modality", "table"),
        "holdout_hash": work.schema_meta.get("holdout_hash"),
        "model": work.model_info["model"],
        "model_hash": work.gen_info["model_hash"],
        # The settings that made these rows, each section as its stage recorded it.
        "params": work.params,
        "params_hash": params_hash(work.params),
        "seed": work.seeds["generate"],
        "seeds": work.seeds,
        "code_version": code_version(),
    }
    if work.from_publisher:
        lineage["params_from_publisher"] = work.from_publisher
    return lineage


def write_reports(staging: Path, paths: StagePaths, manifest: dict, card: str, gate_changes: list[dict]) -> None:
    """Copy score's reports into the release, their verdict replaced by the one it is published
    under (the HTML one with the data card embedded); each is listed in ``manifest["reports"]``."""
    from pipeline.modalities.registry import modality_named

    unit = modality_named(manifest["modality"]).UNIT
    said = [f"{c['metric']}: {threshold_change_text(c)}" for c in gate_changes]
    for name in ("report.html", "report.md"):  # the reviewer's evidence travels with the rows
        if (paths.score / name).exists():
            text = (paths.score / name).read_text(encoding="utf-8")
            # The verdict shown is the one this release was published under.
            gate = (gate_html if name == "report.html" else gate_markdown)(
                manifest["metrics"], manifest["gate"]["thresholds"], unit, said)
            text = regate(text, gate)
            if name == "report.html":
                text = embed_in_report(text, card)
            (staging / f"_{name}").write_text(text, encoding="utf-8")
            manifest["reports"].append(f"_{name}")


def _point_latest(root: Path | StorePath, dataset: str, version: str) -> None:
    # Replaced whole either way: by rename locally, by one upload in a store.
    write_json(root / LATEST, {"dataset": dataset, "version": version, "manifest": f"{version}/{MANIFEST}"})
    if not isinstance(root, StorePath):
        fsync_path(root)


def find_release(root: Path, versions: list[str], synthetic_hash: str | None,
                 model_hash_: str) -> tuple[str, dict] | None:
    """The version of ``versions`` (newest first) that already holds exactly these rows from this
    model, with its manifest; None if none does."""
    for v in reversed(versions):
        m = read_manifest(root / v)
        if m is None:
            continue
        if synthetic_hash and m.get("synthetic_hash") == synthetic_hash and m.get("model_hash") == model_hash_:
            return v, m
    return None


def made_with(cfg: Config, dataset: str, schema_meta: dict, model_info: dict, gen_info: dict,
              details: dict) -> tuple[dict, dict, list[str]]:
    """The params that made the rows being released, each section taken from the record its
    stage wrote when it ran (ingest: the dataset entry and ``ingest``; train: ``model`` and
    ``train``; generate: ``generate``; score: ``score``), not from the publisher's own settings,
    which may differ. Returns (params, each stage's seed, sections that had no record and come
    from the publisher: artifacts of an older version)."""
    mine = cfg.to_dict()
    params = {k: mine[k] for k in ("work_dir", "metrics_dir", "publish", "nightly")}
    from_publisher: list[str] = []
    ingested = schema_meta.get("params") or {}
    gen, scored = gen_info.get("params") or {}, details.get("params") or {}
    records = {
        "datasets": {dataset: ingested["dataset"]} if "dataset" in ingested else None,
        "ingest": ingested.get("ingest"),
        "model": {**model_info["model_config"], "name": model_info["model"]} if "model_config" in model_info else None,
        "train": model_info.get("train_config"),
        "generate": gen.get("generate"),
        "score": scored.get("score"),
    }
    for section, recorded in records.items():
        if recorded is None:
            recorded = {dataset: mine["datasets"][dataset]} if section == "datasets" else mine[section]
            from_publisher.append(section)
        params[section] = recorded
    seeds = {"ingest": ingested.get("seed"), "train": model_info.get("seed"),
             "generate": gen_info.get("seed"), "score": scored.get("seed")}
    params["seed"] = seeds["generate"] if seeds["generate"] is not None else cfg.seed
    return redact_any(params), seeds, from_publisher  # hashed and shown as recorded: no credentials


def params_hash(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def threshold_changes(scored: dict, now: dict) -> list[dict]:
    """Thresholds that differ between scoring and publishing: [{metric, from, to}] (None: absent)."""
    out = []
    for key in sorted(set(scored) | set(now)):
        a = scored[key].model_dump() if key in scored else None
        b = now[key].model_dump() if key in now else None
        if a != b:
            out.append({"metric": key, "from": a, "to": b})
    return out


def _who() -> dict:
    """Who changed the gate at publish: the user, the host and the command line."""
    import getpass
    import socket
    import sys

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = None
    argv = list(sys.argv)
    if argv and argv[0].endswith("__main__.py"):  # python -m pipeline ...
        argv[0] = f"python -m {Path(argv[0]).parent.name}"
    return {"user": user, "host": socket.gethostname(), "command": redact(" ".join(argv))}
