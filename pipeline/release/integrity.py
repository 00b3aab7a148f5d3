"""A release checked against its manifest, the same way wherever it lives (a local folder or an
object store): the catalog (``pipeline.catalog``) reads, these functions judge.

- ``manifest_problem``: the manifest's own consistency, checked on every read: each file it lists
  has a plain, unique name, its rows, size and SHA-256, and the rows add up; its reports are plain,
  unique names (their sizes and SHA-256 in ``report_files``, which releases have carried since
  reads were verified; an older release's reports are checked for presence only).
- ``listing_problems``: the version folder holds exactly the manifest and the files it lists, each
  at its listed size: one listing, no file read (every read does this).
- ``content_problem``: a file's bytes against its size and SHA-256 (every read of a part or a
  report, and ``verify``).
- ``lineage_problems``: what only ``verify`` checks, from the parts' footers: each part's rows and
  the lineage in its metadata against the manifest, and the manifest's params against its
  ``params_hash``.

Each problem is text saying what is wrong with one file; the caller puts the file's path in front
and raises ``ReleaseIntegrityError``. A manifest is not signed: an edit that keeps it consistent
with its files (a score rewritten) is not detected here.
"""

from __future__ import annotations

import hashlib
import json
import ntpath
import re
from dataclasses import dataclass

from pipeline.release.layout import MANIFEST

_SHA256 = re.compile(r"[0-9a-f]{64}")
_FIX = "restore it from a copy of the release, or delete the version and publish again"


@dataclass(frozen=True)
class Listed:
    """A file the manifest lists and what it promises about it (None: nothing promised)."""

    name: str
    bytes: int | None
    sha256: str | None
    rows: int | None = None  # a part's rows; None for a report


def file_name_problem(name: object) -> str | None:
    """Why ``name`` is not a plain file name inside a version folder (None when it is)."""
    if not isinstance(name, str):
        return f"is not text ({type(name).__name__})"
    if not name:
        return "is empty"
    if "/" in name or "\\" in name or ntpath.splitdrive(name)[0]:
        return "is a path, not a file name"
    if ".." in name:
        return "holds '..'"
    if name.startswith("."):
        return "is hidden"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "holds a control character"
    return None


def params_hash(params: dict) -> str:
    """The hash a manifest's ``params_hash`` holds: of its params, as JSON with sorted keys."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _entries_problem(key: str, entries: list) -> str | None:
    """Why a ``files`` or ``report_files`` list lacks a size or SHA-256 (None when none does)."""
    for entry in entries:
        for field, ok in (("bytes", _count), ("sha256", lambda v: isinstance(v, str) and _SHA256.fullmatch(v)),
                          *((("rows", _count),) if key == "files" else ())):
            if not ok(entry.get(field)):
                said = f"no {field!r}" if field not in entry else f"a malformed {field!r} ({entry[field]!r})"
                return f"{key} entry {entry.get('path')!r} has {said}; each file's rows, size and SHA-256 are listed"
    return None


def manifest_problem(manifest: dict) -> str | None:
    """Why ``manifest`` contradicts itself (None when it is consistent); see the module's doc."""
    files, reports = manifest.get("files"), manifest.get("reports", [])
    if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
        return "unreadable: 'files' is not a list of {\"path\": ...} entries"
    if not isinstance(reports, list):
        return "unreadable: 'reports' is not a list of file names"
    named = [("files", f.get("path")) for f in files] + [("reports", n) for n in reports]
    for key, name in named:
        problem = file_name_problem(name)
        if problem is not None:
            return f"{key} entry {name!r} {problem} (a release lists plain file names in its own folder)"
    seen: set[str] = set()
    for key, name in named:
        if name == MANIFEST or name in seen:
            return f"{key} lists {name!r} {'twice' if name in seen else 'as a file of its own'}"
        seen.add(name)
    problem = _entries_problem("files", files)
    if problem is not None:
        return problem
    rows = manifest.get("rows")
    total = sum(f["rows"] for f in files)
    if not _count(rows) or rows != total:
        return f"its 'rows' ({rows!r}) are not the {total:,} rows its files list"
    listed = manifest.get("report_files")
    if listed is None:
        return None
    if not isinstance(listed, list) or not all(isinstance(r, dict) for r in listed):
        return "unreadable: 'report_files' is not a list of {\"path\": ...} entries"
    if sorted(map(str, (r.get("path") for r in listed))) != sorted(reports):
        return f"its 'report_files' ({', '.join(map(str, (r.get('path') for r in listed)))}) are not its " \
               f"'reports' ({', '.join(reports)})"
    return _entries_problem("report_files", listed)


def listed_files(manifest: dict) -> list[Listed]:
    """The files a consistent manifest (``manifest_problem`` None) lists: parts, then reports."""
    sized = {r["path"]: r for r in manifest.get("report_files") or []}
    return ([Listed(f["path"], f["bytes"], f["sha256"], f["rows"]) for f in manifest["files"]]
            + [Listed(n, sized.get(n, {}).get("bytes"), sized.get(n, {}).get("sha256"))
               for n in manifest.get("reports", [])])


def listing_problems(listed: list[Listed], present: dict[str, int | None]) -> list[tuple[str, str]]:
    """(file name, problem) for each difference between what the manifest lists and what the
    version folder holds (``present``: name -> size, None for what is not a file): a listed file
    missing or of another size, or anything else there but the manifest."""
    problems = []
    for f in listed:
        if f.name not in present:
            problems.append((f.name, f"missing: the manifest lists it; {_FIX}"))
        elif present[f.name] is None:
            problems.append((f.name, f"is not a file, the manifest lists a file; {_FIX}"))
        elif f.bytes is not None and present[f.name] != f.bytes:
            problems.append((f.name, f"does not match the manifest ({present[f.name]:,} bytes, it lists "
                                     f"{f.bytes:,}): changed since it was published; {_FIX}"))
    known = {f.name for f in listed} | {MANIFEST}
    for name in sorted(set(present) - known):
        problems.append((name, "is not in the release's manifest (added to it since it was published); "
                               "remove it: a release holds only what its manifest lists"))
    return problems


def content_problem(f: Listed, data: bytes) -> str | None:
    """Why ``data``, read as ``f``, is not what the manifest lists (None when it is)."""
    if f.bytes is not None and len(data) != f.bytes:
        return f"does not match the manifest ({len(data):,} bytes, it lists {f.bytes:,}): changed since it was " \
               f"published; {_FIX}"
    if f.sha256 is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest != f.sha256:
            return (f"does not match the manifest (SHA-256 {digest[:16]}..., it lists {f.sha256[:16]}...): "
                    f"changed since it was published; {_FIX}")
    return None


def rows_problem(f: Listed, rows: int) -> str | None:
    """Why part ``f``, whose bytes matched, holding ``rows`` rows (its footer's count) contradicts
    the manifest (a problem of the manifest; None when it does not)."""
    if rows == f.rows:
        return None
    return f"lists {f.rows:,} rows for {f.name}, which holds {rows:,} (its bytes match: the manifest was edited)"


def lineage_problems(manifest: dict, f: Listed, rows: int, lineage: dict | None) -> list[str]:
    """What is wrong with the manifest given part ``f``'s footer (its ``rows`` and the ``lineage``
    in its metadata, None when it carries none); the part's bytes matched, so the manifest was
    edited. Each is a problem of the manifest."""
    problem = rows_problem(f, rows)
    problems = [] if problem is None else [problem]
    if lineage is None:
        problems.append(f"{f.name} carries no lineage in its metadata, as every published part does")
        return problems
    for key in sorted(lineage):
        if manifest.get(key) != lineage[key]:
            problems.append(f"its {key!r} is not the one in {f.name}'s lineage metadata (the manifest was edited)")
    return problems


def params_problem(manifest: dict) -> str | None:
    """Why the manifest's ``params_hash`` is not the hash of its ``params`` (None when it is)."""
    params, said = manifest.get("params"), manifest.get("params_hash")
    if not isinstance(params, dict) or not isinstance(said, str):
        return "has no 'params' with their 'params_hash', as every published release does"
    if params_hash(params) != said:
        return "its 'params' are not the ones its 'params_hash' names (the manifest was edited)"
    return None
