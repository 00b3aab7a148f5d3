"""What a release holds, written into its staging folder (``write_release``): the synthetic shards
with their lineage in each file's metadata, the data card, the sample grid, the quality reports
under the verdict they are published with, and, last, the manifest; and the records they are
composed from (``made_with``: the params each stage recorded when it ran)."""

from __future__ import annotations

import getpass
import shutil
import socket
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.artifacts import StagePaths, shard_name
from pipeline.config import Config, Threshold
from pipeline.datacard import embed_in_report, render_datacard
from pipeline.files import code_version, finite, read_json, sha256_file, write_json, write_parquet
from pipeline.modalities import modality_named
from pipeline.redact import redact, redact_any
from pipeline.release.integrity import params_hash
from pipeline.release.layout import DATACARD, MANIFEST
from pipeline.report import gate_html, gate_markdown, regate, threshold_change_text


@dataclass
class ScoredWork:
    """What the earlier stages left for a release, read and checked (``publish.read_scored_work``)."""

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
        "created_at": datetime.now(timezone.utc).isoformat(timespec="microseconds"),  # orders publishes of a second
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
        # What generate changed to protect rare and extreme values (tables; the data card says it).
        **({"value_protection": work.gen_info["value_protection"]} if "value_protection" in work.gen_info else {}),
        # The differential-privacy guarantee the model and these rows were made under (train.privacy).
        **({"privacy": {"dp": work.model_info["privacy"]["dp"]}} if "privacy" in work.model_info else {}),
    }
    card = render_datacard(manifest, manifest["gate"]["thresholds"])
    (staging / DATACARD).write_text(card, encoding="utf-8")
    manifest["reports"] = [DATACARD]
    if (paths.synthetic / "_grid.png").exists():  # images: the preview grid
        shutil.copyfile(paths.synthetic / "_grid.png", staging / "_samples.png")
        manifest["reports"].append("_samples.png")
    write_reports(staging, paths, manifest, card, work.gate_changes)
    # The reports' sizes and hashes too, so that a reader can tell an edited data card or report.
    manifest["report_files"] = [{"path": name, "bytes": (staging / name).stat().st_size,
                                 "sha256": sha256_file(staging / name)} for name in manifest["reports"]]
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
    unit = modality_named(manifest["modality"]).UNIT
    said = [f"{c['metric']}: {threshold_change_text(c)}" for c in gate_changes]
    if (manifest.get("privacy") or {}).get("dp"):
        # Its plots and figures are exact statistics of the real rows, outside the release's
        # differential privacy: they stay in the work folder (the data card says where).
        return
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
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = None
    argv = list(sys.argv)
    if argv and argv[0].endswith("__main__.py"):  # python -m pipeline ...
        argv[0] = f"python -m {Path(argv[0]).parent.name}"
    return {"user": user, "host": socket.gethostname(), "command": redact(" ".join(argv))}
