"""The release layout, read (see ``pipeline.release``): which versions a dataset has and in what
order, the one ``latest.json`` names, and each version's manifest. The publisher reads a root
through these (a local ``Path`` or a ``pipeline.stores.StorePath``: both have the few pathlib
methods used here); the catalog (``pipeline.catalog``) orders what it lists by the same rules.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from pipeline.errors import ReleaseIntegrityError
from pipeline.names import name_problem
from pipeline.redact import redact
from pipeline.stores import StorePath

log = logging.getLogger(__name__)

LATEST = "latest.json"
MANIFEST = "_manifest.json"
DATACARD = "_DATACARD.md"

Folder = Path | StorePath


def natural_key(name: str) -> list:
    """Sort key: digit runs compare as numbers (v2 < v10)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def created_at(manifest: Any) -> str:
    """When a version was made, as its manifest says ("" when it does not say it as text)."""
    created = manifest.get("created_at") if isinstance(manifest, dict) else None
    return created if isinstance(created, str) else ""


def version_order(created: dict[str, str]) -> list[str]:
    """Version names oldest first: by their manifests' creation time (``created_at``), then by name,
    digit runs as numbers."""
    return sorted(created, key=lambda name: (created[name], natural_key(name), name))


def version_problem(version: object) -> str | None:
    """Why what ``latest.json`` names is not a version's name (None when it is one)."""
    return "is missing" if version is None else name_problem(version)


def latest_record(dataset: str, version: str) -> dict:
    """What ``latest.json`` holds when it names ``version``."""
    return {"dataset": dataset, "version": version, "manifest": f"{version}/{MANIFEST}"}


def new_version(root: Folder, now: datetime | None = None) -> str:
    """A sortable UTC timestamp version; a suffix keeps it unique within the same second."""
    base = (now or datetime.now(timezone.utc)).strftime("v%Y%m%dT%H%M%SZ")
    version, i = base, 1
    while (root / version).exists():
        version, i = f"{base}-{i}", i + 1
    return version


def list_versions(root: Folder) -> list[str]:
    """Published versions, oldest first (``version_order``); hidden staging folders are not
    versions, nor is one whose manifest is unreadable (``read_manifest``)."""
    if not root.exists():
        return []
    found = {}
    for p in root.iterdir():
        if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).exists():
            manifest = read_manifest(p)
            if manifest is not None:
                found[p.name] = created_at(manifest)
    return version_order(found)


def read_manifest(version: Folder) -> dict | None:
    """A version's manifest, or None (with a warning naming it) when it is not a JSON object with a
    schema: one damaged old release must not stop every later publish. It is skipped, not repaired."""
    path = version / MANIFEST
    try:
        manifest = json.loads(path.read_text())
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


def latest_version(root: Folder) -> str | None:
    """The version ``latest.json`` names (None before the first release); a one-line
    ``ReleaseIntegrityError`` (``check_latest``) if it is unreadable or names no version of
    this dataset."""
    path = root / LATEST
    if not path.exists():
        return None
    return check_latest(path.read_bytes(), str(path), root.name, lambda v: (root / v / MANIFEST).is_file())


def check_latest(text: str | bytes, shown: str, dataset: str, has_version: Callable[[str], bool]) -> str:
    """The version a ``latest.json`` (its text; ``shown``: its path for messages) names, checked the
    same way by every reader (the publisher, the catalog): a JSON object whose ``version`` is a
    version name (never a path: ``../x`` or ``/abs`` are refused before anything is read there),
    of this ``dataset`` (a ``dataset`` field naming another is a file copied in), whose manifest
    exists (``has_version``). Else a one-line ``ReleaseIntegrityError`` naming the file."""
    def refuse(problem: str) -> ReleaseIntegrityError:
        return ReleaseIntegrityError(f"{shown}: {problem}; repair it or delete it")

    try:
        record = json.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except UnicodeDecodeError:
        raise refuse("unreadable (not UTF-8 text)") from None
    except ValueError as exc:
        raise refuse(f"unreadable (not JSON: {' '.join(str(exc).split())[:200]})") from None
    if not isinstance(record, dict):
        raise refuse(f"unreadable (holds a JSON {type(record).__name__}, not an object)")
    version = record.get("version")
    if version is None:
        raise refuse("names no version ('version' is missing)")
    problem = version_problem(version)
    if problem is not None:
        raise refuse(f"its version {version!r} is no version name ({problem})")
    if "dataset" in record and record["dataset"] != dataset:
        raise refuse(f"names dataset {record['dataset']!r}, not '{dataset}' (copied in from another dataset?)")
    if "manifest" in record and record["manifest"] != f"{version}/{MANIFEST}":
        raise refuse(f"its manifest {record['manifest']!r} is not its version's, {version}/{MANIFEST}")
    if not has_version(version):
        raise refuse(f"its version {version!r} does not exist (no {version}/{MANIFEST})")
    return version


def find_release(root: Folder, versions: list[str], synthetic_hash: str | None,
                 model_hash: str) -> tuple[str, dict] | None:
    """The version of ``versions`` (newest first) that already holds exactly these rows from this
    model, with its manifest; None if none does."""
    for v in reversed(versions):
        m = read_manifest(root / v)
        if m is None:
            continue
        if synthetic_hash and m.get("synthetic_hash") == synthetic_hash and m.get("model_hash") == model_hash:
            return v, m
    return None
