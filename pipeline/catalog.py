"""The release catalog: what downstream teams use to find, inspect, load and pin synthetic data.

    from pipeline.catalog import Catalog
    cat = Catalog("releases")                      # or "s3://bucket/releases", "memory://...", any fsspec URL
    cat.datasets()                                 # ['adult', ...]
    cat.versions("adult")                          # oldest first
    df = cat.load("adult")                         # latest; "adult@v20261128T214917Z" pins a version
    ds = cat.dataset("adult")                      # a lazy pyarrow dataset (filters and columns pushed down)
    df = cat.load("adult", columns=["age", "income"], filter=pc.field("age") > 60)
    cat.manifest("adult")["metrics"]["quality.overall"]
    cat.diff("adult@v1", "adult@v2")               # schema, rows, metric deltas, drift, params, lineage

A reference is ``DATASET`` (the version ``latest.json`` names) or ``DATASET@VERSION``. Remote
filesystems need their fsspec extra (``s3fs``, ``gcsfs``, ...); nothing here needs project state
beyond the release folders themselves.

Nothing read from outside is trusted to stay inside the release root: dataset names and versions
(from a reference, a folder listing or ``latest.json``) follow ``pipeline.names``, and every path a
manifest lists must be a plain file name in its version folder. A corrupt ``latest.json`` or
manifest is a one-line ``ReleaseError`` naming the file. In a local root nothing the catalog reads
may be a symbolic link (a dataset or version folder, a part file, ``_DATACARD.md``): a link would
serve files from outside the root as a release. A manifest names its own dataset and version, so a
release copied in from another dataset is refused, not served under the folder's name.

Every read checks the release against its manifest (``pipeline.release.integrity``): the manifest
is consistent, and the version folder holds exactly what it lists, each file at its listed size
(one listing: ``manifest`` stops there); ``load``, ``export``, ``diff`` and ``read_text`` also
check the SHA-256 of every file they read, as they read it (each file is read once, whole, then
decoded from memory). ``dataset`` is lazy: sizes only, unless ``verify=True``. ``verify`` checks a
whole release. A changed, missing or extra file is a one-line ``ReleaseIntegrityError`` naming it.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from pipeline.errors import BadNameError, ReleaseError, ReleaseIntegrityError
from pipeline.files import LINEAGE_KEY, finite
from pipeline.names import check_name, name_problem
from pipeline.release.contract import schema_changes
from pipeline.release.integrity import (
    Listed,
    content_problem,
    file_name_problem,
    lineage_problems,
    listed_files,
    listing_problems,
    manifest_problem,
    params_problem,
    rows_problem,
)
from pipeline.release.layout import LATEST, MANIFEST, check_latest, created_at, version_order
from pipeline.stores import one_line

# What ``diff`` compares as a release's lineage (the manifest's keys; ``seeds`` holds each stage's).
LINEAGE = ("source", "source_hash", "holdout_hash", "modality", "model", "model_hash", "params_hash", "seed",
           "seeds", "code_version", "synthetic_hash", "params_from_publisher")
# What ``export`` writes when no format is given, by the destination's (lower-case) ending.
EXPORT_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".csv.gz": "csv",
                   ".csv.bz2": "csv", ".csv.xz": "csv"}
# A CSV cell starting with one of these is run as a formula by spreadsheets (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Ref:
    dataset: str
    version: str

    def __str__(self) -> str:
        return f"{self.dataset}@{self.version}"


class Catalog:
    def __init__(self, root: str = "releases", storage_options: dict[str, Any] | None = None):
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        self.url = str(root)
        if not self.url.strip():
            raise ReleaseError("release root is empty: give a folder or an fsspec URL")
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url, **(storage_options or {}))
        except (ValueError, ImportError) as exc:  # an unknown protocol, a missing fsspec extra
            raise ReleaseError(f"release root {self.url!r}: {one_line(exc)}") from None
        self.root = self.root.rstrip("/")
        self.local = isinstance(self.fs, LocalFileSystem)  # only a local root can hold symbolic links

    # -- discovery ---------------------------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def _shown(self, path: str) -> str:
        """``path`` as the user wrote the root (``releases/adult/latest.json``), for messages."""
        rel = path[len(self.root):].lstrip("/") if path.startswith(self.root) else path
        return f"{self.url.rstrip('/')}/{rel}"

    def _is_link(self, path: str) -> bool:
        return self.local and os.path.islink(path)

    def _inside(self, path: str) -> str:
        """``path`` (under the root), checked in a local root: it resolves to itself inside the
        root, so no folder or file on the way is a symbolic link, and it is no FIFO, socket or
        device (reading one would hang or serve something else). Object stores have no links."""
        if not self.local:
            return path
        rel = path[len(self.root):].lstrip("/")
        if os.path.realpath(path) != os.path.join(os.path.realpath(self.root), rel):
            here = self.root
            for part in rel.split("/"):  # the link on the way, for the message
                here = posixpath.join(here, part)
                if os.path.islink(here):
                    raise ReleaseError(f"{self._shown(here)} is a symbolic link (to {os.readlink(here)!r}): "
                                       f"the catalog reads only what lies inside its root; remove the link")
            raise ReleaseError(f"{self._shown(path)} resolves outside the release root {self.url}")
        try:
            mode = os.stat(path).st_mode
        except OSError:  # missing or unreadable: the read that follows says so
            return path
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise ReleaseError(f"{self._shown(path)} is not a regular file (a FIFO, socket or device): remove it")
        return path

    def _read_json(self, path: str) -> dict:
        """A JSON object from ``path``, or a one-line ReleaseError naming the file and the reason."""
        try:
            # One plain read: an open() would check the object against a listing cached earlier,
            # and latest.json is replaced by each release.
            data = json.loads(self.fs.cat_file(self._inside(path)).decode("utf-8"))
        except json.JSONDecodeError as exc:
            raise ReleaseError(f"{self._shown(path)} unreadable: not JSON ({exc})") from None
        except UnicodeDecodeError:
            raise ReleaseError(f"{self._shown(path)} unreadable: not UTF-8 text") from None
        except OSError as exc:
            raise ReleaseError(f"{self._shown(path)} unreadable: {one_line(exc)}") from None
        if not isinstance(data, dict):
            raise ReleaseError(f"{self._shown(path)} unreadable: holds a JSON {type(data).__name__}, not an object")
        return data

    def _ls(self, folder: str) -> list[str]:
        """Names in ``folder`` that may become path parts (hidden and odd names left out)."""
        try:
            self.fs.invalidate_cache(folder)  # releases published since an earlier listing are listed
            entries = self.fs.ls(folder, detail=False)
        except OSError as exc:  # e.g. a folder we may not read
            raise ReleaseError(f"{self._shown(folder)}: cannot list it ({one_line(exc)})") from None
        names = (posixpath.basename(str(e).rstrip("/")) for e in entries)
        return [n for n in names if name_problem(n) is None]

    def _no_releases(self, dataset: str) -> ReleaseError:
        return ReleaseError(f"{self.url}: no releases of '{dataset}' "
                            f"(datasets: {', '.join(self.datasets()) or 'none'})")

    def datasets(self) -> list[str]:
        """Datasets with at least one release (a ``latest.json``); none if the root does not exist."""
        if not self.fs.exists(self.root):
            return []
        if not self.fs.isdir(self.root):
            raise ReleaseError(f"release root {self.url} is not a folder")
        # A linked dataset folder is listed unfollowed: its readers say what is wrong.
        return sorted(n for n in self._ls(self.root)
                      if self._is_link(self._path(n)) or self.fs.exists(self._path(n, LATEST)))

    def versions(self, dataset: str) -> list[str]:
        """Published versions of ``dataset``, oldest first (hidden staging folders excluded)."""
        folder = self._inside(self._path(check_name(dataset, "dataset name")))
        if not self.fs.isdir(folder):
            raise self._no_releases(dataset)
        found = {}
        for name in self._ls(folder):
            path = self._path(dataset, name, MANIFEST)
            if self._is_link(self._path(dataset, name)):  # listed unfollowed, first: its readers refuse it
                found[name] = ""
            elif self.fs.exists(path):
                found[name] = self._created_at(path)
        return version_order(found)

    def _created_at(self, path: str) -> str:
        # A broken manifest still names a version (sorted first): readers of it get the error.
        try:
            return created_at(self._read_json(path))
        except ReleaseError:
            return ""

    def latest(self, dataset: str) -> str:
        """The version ``DATASET/latest.json`` names, checked as every reader checks it
        (``layout.check_latest``): a version name of this dataset whose manifest exists."""
        path = self._inside(self._path(check_name(dataset, "dataset name"), LATEST))
        if not self.fs.exists(path):
            raise self._no_releases(dataset)
        try:
            text = self.fs.cat_file(path)  # one plain read: latest.json is replaced by each release
        except OSError as exc:
            raise ReleaseError(f"{self._shown(path)} unreadable: {one_line(exc)}") from None
        return check_latest(text, self._shown(path), dataset,
                            lambda v: self.fs.isfile(self._inside(self._path(dataset, v, MANIFEST))))

    def resolve(self, ref: str | Ref) -> Ref:
        """``DATASET`` (latest) or ``DATASET@VERSION`` -> a checked reference."""
        if isinstance(ref, Ref):
            return Ref(check_name(ref.dataset, "dataset name"), check_name(ref.version, "version"))
        text = str(ref)
        dataset, at, version = text.partition("@")
        try:
            check_name(dataset, "dataset name")
            if at:  # "ds@" names no version: an error, not the latest
                check_name(version, "version")
        except BadNameError as exc:
            raise BadNameError(f"reference {text!r}: {exc}") from None
        if not at:
            return Ref(dataset, self.latest(dataset))  # checked there: its manifest exists
        if not self.fs.exists(self._inside(self._path(dataset, version, MANIFEST))):
            known = self.versions(dataset)
            raise ReleaseError(f"{self.url}: '{dataset}' has no version '{version}' "
                               f"(versions: {', '.join(known[-5:]) or 'none'}{' ...' if len(known) > 5 else ''})")
        return Ref(dataset, version)

    # -- reading ---------------------------------------------------------------------------------------

    def manifest(self, ref: str | Ref) -> dict:
        """The release's manifest, checked: it names this release, it is consistent (its ``files``
        and ``reports`` plain file names with their sizes and hashes), and the version folder holds
        exactly what it lists, each file at its listed size (``ReleaseIntegrityError`` otherwise)."""
        return self._release(ref)[1]

    def _release(self, ref: str | Ref) -> tuple[Ref, dict]:
        """The reference resolved and its manifest, checked (``manifest``)."""
        r = self.resolve(ref)
        manifest = self._checked_manifest(r)
        problems = self._listing_problems(r, manifest)
        if problems:
            raise ReleaseIntegrityError(problems[0][1])
        return r, manifest

    def _checked_manifest(self, r: Ref) -> dict:
        """``r``'s manifest, read and checked for consistency (not against the files)."""
        path = self._path(r.dataset, r.version, MANIFEST)
        manifest = self._read_json(path)
        wrong = [f"{key} {manifest[key]!r}" if key in manifest else f"no {key}"
                 for key, own in (("dataset", r.dataset), ("version", r.version)) if manifest.get(key) != own]
        if wrong:  # e.g. another dataset's release copied in and named in latest.json
            raise ReleaseIntegrityError(f"{self._shown(path)}: names {' and '.join(wrong)}, not {r}: a release "
                                        f"folder holds only its own release (copied in from elsewhere?)")
        problem = manifest_problem(manifest)
        if problem is not None:
            raise ReleaseIntegrityError(f"{self._shown(path)}: {problem}")
        return manifest

    def _listing_problems(self, r: Ref, manifest: dict) -> list[tuple[str, str]]:
        """(file name, one line naming it) per difference between the version folder and its
        manifest (one listing)."""
        folder = self._path(r.dataset, r.version)
        listed = listed_files(manifest)
        for f in listed:  # a listed file that is a link, a FIFO or a device is refused first, by name
            self._inside(self._path(r.dataset, r.version, f.name))
        try:
            self.fs.invalidate_cache(folder)
            entries = self.fs.ls(folder, detail=True)
        except OSError as exc:
            raise ReleaseError(f"{self._shown(folder)}: cannot list it ({one_line(exc)})") from None
        present = {}
        for e in entries:
            name = posixpath.basename(str(e["name"]).rstrip("/"))
            present[name] = int(e["size"]) if e.get("type") == "file" and e.get("size") is not None else None
        return [(name, f"{self._shown(posixpath.join(folder, name))}: {problem}")
                for name, problem in listing_problems(listed, present)]

    def _read_file(self, r: Ref, f: Listed) -> bytes:
        """The bytes of release file ``f``, read whole, checked against its size and SHA-256."""
        path = self._inside(self._path(r.dataset, r.version, f.name))
        try:
            data = self.fs.cat_file(path)
        except FileNotFoundError:  # gone since the listing
            raise ReleaseIntegrityError(f"{self._shown(path)}: missing: the manifest lists it") from None
        except OSError as exc:
            raise ReleaseError(f"{self._shown(path)} unreadable: {one_line(exc)}") from None
        problem = content_problem(f, data)
        if problem is not None:
            raise ReleaseIntegrityError(f"{self._shown(path)}: {problem}")
        return data

    def files(self, ref: str | Ref) -> list[str]:
        """The paths of the release's part files, in its manifest's order (sizes checked)."""
        r, manifest = self._release(ref)
        return [self._inside(self._path(r.dataset, r.version, f["path"])) for f in manifest["files"]]

    def dataset(self, ref: str | Ref, verify: bool = False) -> pads.Dataset:
        """A lazy pyarrow dataset over exactly the release's files (its manifest's list), for
        filters and columns pushed down to the Parquet reader: their sizes are checked here, their
        SHA-256 only with ``verify`` (which reads every file once first; ``load`` checks what it reads)."""
        r, manifest = self._release(ref)
        if verify:
            self.verify(r)
        paths = [self._inside(self._path(r.dataset, r.version, f["path"])) for f in manifest["files"]]
        try:
            return pads.dataset(paths, format="parquet", filesystem=self.fs)
        except pa.ArrowException as exc:  # a part file that is not Parquet
            raise ReleaseError(f"{r}: cannot read its Parquet files: {one_line(exc)}") from None

    def load(self, ref: str | Ref, columns: list[str] | None = None, filter=None) -> pd.DataFrame:
        """The release as pandas (source dtypes restored); ``columns`` and ``filter`` (a pyarrow
        compute expression) are applied as each part is decoded. Every part is checked against
        its size and SHA-256 as it is read (a one-line ``ReleaseIntegrityError`` naming it)."""
        r, manifest = self._release(ref)
        return self._read_table(r, manifest, columns, filter).to_pandas()

    def _read_table(self, r: Ref, manifest: dict, columns: list[str] | None = None, filter=None) -> pa.Table:
        """The release's parts, each read once, checked, and decoded from memory: the bytes that are
        hashed are the bytes that are decoded. The first part's schema is the table's, as for
        ``pyarrow.dataset`` over the files."""
        fmt = pads.ParquetFileFormat()
        tables, schema = [], None
        for f in [f for f in listed_files(manifest) if f.rows is not None]:  # the parts
            data = self._read_file(r, f)
            try:
                fragment = fmt.make_fragment(pa.BufferReader(data))
                rows = fragment.metadata.num_rows
                schema = schema if schema is not None else fragment.physical_schema
                tables.append(pads.FileSystemDataset([fragment], schema, fmt).to_table(columns=columns, filter=filter))
            except pa.ArrowException as exc:  # a part that is not Parquet, a column it lacks
                raise ReleaseError(f"{r}: reading its Parquet files failed ({f.name}): {one_line(exc)}") from None
            problem = rows_problem(f, rows)
            if problem is not None:
                raise ReleaseIntegrityError(f"{self._shown(self._path(r.dataset, r.version, MANIFEST))}: {problem}")
        if not tables:
            return pa.table({})
        return pa.concat_tables(tables)

    def read_text(self, ref: str | Ref, name: str) -> str:
        """A text file of the release (``_DATACARD.md``, ``_report.md``): a plain file name; one the
        manifest lists as a report is checked against its size and SHA-256."""
        problem = file_name_problem(name)
        if problem is not None:
            raise ReleaseError(f"release file {name!r} {problem} (give a plain file name, e.g. _DATACARD.md)")
        r, manifest = self._release(ref)  # a release whose manifest is corrupt or escapes its folder is read no further
        listed = {f.name: f for f in listed_files(manifest)}
        if name not in listed and name != MANIFEST:
            reports = ", ".join(manifest.get("reports", [])) or "none"
            raise ReleaseError(f"{r}: has no file {name!r} (its reports: {reports})")
        data = self._read_file(r, listed.get(name, Listed(name, None, None)))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ReleaseError(f"{self._shown(self._path(r.dataset, r.version, name))}: not UTF-8 text") from None

    def verify(self, ref: str | Ref, lineage: bool = True) -> dict:
        """Check a whole release: its manifest's consistency, the version folder against it, every
        file's size and SHA-256 and, with ``lineage``, each part's rows and lineage (its footer)
        and the params against their hash. Returns what was checked (``release``, ``files``,
        ``bytes``, ``rows``); every problem found is in one ``ReleaseIntegrityError`` line, each
        naming its file."""
        r = self.resolve(ref)
        manifest = self._checked_manifest(r)
        shown = self._shown(self._path(r.dataset, r.version, MANIFEST))
        found = self._listing_problems(r, manifest)
        problems = [line for _, line in found]
        problem = params_problem(manifest) if lineage else None
        if problem is not None:
            problems.append(f"{shown}: {problem}")
        listed, total = listed_files(manifest), 0
        for f in listed:
            if f.name in {name for name, _ in found}:  # missing or resized: said already
                continue
            try:
                data = self._read_file(r, f)
            except ReleaseIntegrityError as exc:
                problems.append(str(exc))
                continue
            total += len(data)
            if lineage and f.rows is not None:  # a part: its footer against the manifest
                problems += [f"{shown}: {p}" for p in self._part_problems(manifest, f, data)]
        if len(problems) == 1:
            raise ReleaseIntegrityError(problems[0])
        if problems:
            raise ReleaseIntegrityError(f"{r} failed verification ({len(problems)} problems): {'; '.join(problems)}")
        return {"release": str(r), "files": len(listed), "bytes": total, "rows": manifest["rows"]}

    def _part_problems(self, manifest: dict, f: Listed, data: bytes) -> list[str]:
        import pyarrow.parquet as pq

        try:
            footer = pq.ParquetFile(pa.BufferReader(data)).metadata
        except pa.ArrowException as exc:
            return [f"lists {f.name}, which is not a Parquet file ({one_line(exc)})"]
        meta = footer.metadata or {}
        try:
            lineage = json.loads(meta[LINEAGE_KEY]) if LINEAGE_KEY in meta else None
        except ValueError:
            lineage = None
        return lineage_problems(manifest, f, footer.num_rows, lineage if isinstance(lineage, dict) else None)

    # -- comparing and exporting ---------------------------------------------------------------------

    def diff(self, a: str | Ref, b: str | Ref, max_rows: int = 200_000, force: bool = False) -> dict:
        """What changed from release ``a`` to ``b``: schema, rows, each metric's delta, the drift
        between the two synthetic tables (our fidelity metrics, ``b`` scored against ``a``), and the
        params and lineage that differ (``{dotted.key: [a, b]}``, None where one has no such key).
        Non-finite numbers are None, so the result is strict JSON. Two datasets need ``force``."""
        from pipeline.metrics.fidelity import score_fidelity
        from pipeline.schema import TableSchema, describe

        ra, rb = self.resolve(a), self.resolve(b)
        if ra.dataset != rb.dataset and not force:
            raise ReleaseError(f"cannot diff {ra} with {rb}: they are releases of different datasets "
                               f"('{ra.dataset}' and '{rb.dataset}'); --force (force=True) compares them anyway")
        (ra, ma), (rb, mb) = self._release(ra), self._release(rb)
        for r, m in ((ra, ma), (rb, mb)):
            missing = [k for k in ("schema", "rows") if k not in m]
            if missing:
                raise ReleaseError(f"{self._shown(self._path(r.dataset, r.version, MANIFEST))}: "
                                   f"has no {' or '.join(map(repr, missing))}")
        changes = schema_changes(ma["schema"], mb["schema"])
        metrics = {}
        for key in sorted(set(ma.get("metrics", {})) | set(mb.get("metrics", {}))):
            va, vb = ma.get("metrics", {}).get(key), mb.get("metrics", {}).get(key)
            if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and not isinstance(va, bool):
                metrics[key] = {"a": va, "b": vb, "delta": vb - va}
        common = [c for c in ma["schema"] if c["name"] in {x["name"] for x in mb["schema"]}
                  and c["kind"] not in ("id", "image")]  # images: drift of their label and size columns
        names = [c["name"] for c in common]
        fa = self._read_table(ra, ma, columns=names).to_pandas()  # every part's SHA-256 checked as read
        fb = self._read_table(rb, mb, columns=names).to_pandas()
        fa = fa.sample(n=max_rows, random_state=0) if len(fa) > max_rows else fa
        fb = fb.sample(n=max_rows, random_state=0) if len(fb) > max_rows else fb
        schema = TableSchema([describe(fa[c["name"]], c["kind"]) for c in common])
        drift = score_fidelity(fa, fb, schema)
        return finite({
            "a": str(ra), "b": str(rb),
            "rows": {"a": ma["rows"], "b": mb["rows"], "delta": mb["rows"] - ma["rows"]},
            "schema": changes,
            "metrics": metrics,
            "drift": {"quality.overall": drift.overall, "quality.column_shapes": drift.column_shapes,
                      "quality.column_pair_trends": drift.column_pair_trends,
                      "columns": {k: v["score"] for k, v in drift.columns.items()}},
            "params": changed_keys(_own_params(ma, ra.dataset), _own_params(mb, rb.dataset)),
            "lineage": changed_keys({k: ma.get(k) for k in LINEAGE}, {k: mb.get(k) for k in LINEAGE}),
        })

    def export(self, ref: str | Ref, to: str, fmt: str | None = None, *, force: bool = False,
               neutralise_formulas: bool = True) -> str:
        """Write the release to one local or fsspec file (``parquet`` or ``csv``; by default from
        ``to``'s ending, see ``export_format``); returns its path. A local file appears whole or not
        at all, only in a folder that exists, never inside the release root. An existing file is
        replaced only with ``force``; a link, folder, FIFO or device never. In CSV, text cells
        that a spreadsheet would run as a formula get a leading ``'`` unless not
        ``neutralise_formulas``."""
        import fsspec

        from pipeline.files import atomic_path

        fmt = fmt or export_format(to)
        if fmt not in ("parquet", "csv"):
            raise ReleaseError(f"export format '{fmt}': use parquet or csv")
        compression = fsspec.utils.infer_compression(to) if fmt == "csv" else None
        local = fsspec.utils.get_protocol(to) in ("file", "local")
        target = self._local_target(to, force) if local else _check_remote_target(to, force)
        frame = self.load(ref)  # checked whole (sizes, every part's SHA-256) before anything is written
        if fmt == "csv" and neutralise_formulas:
            frame = neutralised(frame)
        if target is None:  # a remote store: its own upload is all or nothing
            with fsspec.open(to, "wb", compression=compression) as f:
                _write_frame(frame, f, fmt)
            return to
        with atomic_path(target) as tmp:  # a fresh temporary (O_EXCL): never through a planted link
            with fsspec.open(str(tmp), "wb", compression=compression) as f:
                _write_frame(frame, f, fmt)
            _check_target(target, to, force)  # again: something may have appeared there meanwhile
        return to

    def _local_target(self, to: str, force: bool) -> Path:
        """The local file ``to`` names, checked: its folder exists, it lies outside a local release
        root (releases are immutable), and nothing is there but, with ``force``, a regular file."""
        from fsspec.implementations.local import LocalFileSystem

        target = Path(LocalFileSystem._strip_protocol(to))
        if not target.parent.is_dir():
            raise ReleaseError(f"export folder {str(target.parent)!r} does not exist (create it first)")
        if isinstance(self.fs, LocalFileSystem):
            root = os.path.realpath(self.root)
            if os.path.realpath(target) == root or os.path.realpath(target).startswith(root + os.sep):
                raise ReleaseError(f"export destination {to!r} is inside the release root {self.url}: write elsewhere")
        _check_target(target, to, force)
        return target


def _check_target(target: Path, to: str, force: bool) -> None:
    """Refuse a local export destination that is there already, unless it is a regular file and
    ``force``: a link, a folder, a FIFO or a device is never replaced."""
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise ReleaseError(f"export destination {to!r} is a symbolic link: an export never replaces one "
                           f"(remove it, or name another file)")
    if stat.S_ISDIR(mode):
        raise ReleaseError(f"export destination {to!r} is a folder: name a file")
    if not stat.S_ISREG(mode):
        raise ReleaseError(f"export destination {to!r} is not a regular file (a FIFO, socket or device): "
                           f"name another file")
    if not force:
        raise ReleaseError(f"export destination {to!r} exists already: --force (force=True) replaces it")


def _check_remote_target(to: str, force: bool) -> None:
    """Check a store's export destination: its protocol is known (and installed), and nothing is
    there but, with ``force``, a file."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(to)
        kind = fs.info(path).get("type") if fs.exists(path) else None
    except (ValueError, ImportError) as exc:  # an unknown protocol, a missing fsspec extra
        raise ReleaseError(f"export destination {to!r}: {one_line(exc)}") from None
    if kind == "directory":
        raise ReleaseError(f"export destination {to!r} is a folder: name a file")
    if kind is not None and not force:
        raise ReleaseError(f"export destination {to!r} exists already: --force (force=True) replaces it")


# A line inside a cell that starts like a formula: CSV writers leave a bare carriage return unquoted,
# and a reader that breaks lines there would see a new row starting with the formula.
_LINE_FORMULA = re.compile(r"(?<=[\r\n])(?=[=+\-@\t\r])")


def _neutral(text: str) -> str:
    return ("'" if text.startswith(FORMULA_STARTS) else "") + _LINE_FORMULA.sub("'", text)


def neutralised(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each text cell (and column name) that starts like a formula (``FORMULA_STARTS``)
    prefixed with ``'``, as OWASP advises for CSV: a spreadsheet shows it as text and runs nothing.
    Numbers are not text: a numeric column's negative values stay as they are."""
    out = frame.copy(deep=False)
    for i in range(frame.shape[1]):
        col = frame.iloc[:, i]
        if not (pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col)
                or isinstance(col.dtype, pd.CategoricalDtype)):
            continue
        values = col.to_numpy(dtype=object)
        hit = [isinstance(v, str) and (v.startswith(FORMULA_STARTS) or _LINE_FORMULA.search(v) is not None)
               for v in values]
        if any(hit):
            values = values.copy()
            values[hit] = [_neutral(v) for v in values[hit]]
            out.isetitem(i, values)
    out.columns = ["'" + c if isinstance(c, str) and c.startswith(FORMULA_STARTS) else c for c in frame.columns]
    return out


def export_format(to: str) -> str:
    """``parquet`` or ``csv`` from the destination's ending (``EXPORT_SUFFIXES``), else an error:
    an unknown ending needs an explicit format, so ``x.xlsx`` never silently holds Parquet."""
    name = str(to).lower()
    for suffix, fmt in sorted(EXPORT_SUFFIXES.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix):
            return fmt
    raise ReleaseError(f"cannot tell the export format of {str(to)!r} from its ending "
                       f"({', '.join(EXPORT_SUFFIXES)}): give --format parquet or --format csv")


def _own_params(manifest: dict, dataset: str) -> dict:
    """The params that made a release, with only its own dataset's entry under ``datasets``."""
    params = manifest.get("params")
    params = dict(params) if isinstance(params, dict) else {}
    if isinstance(params.get("datasets"), dict):
        params["datasets"] = {k: v for k, v in params["datasets"].items() if k == dataset}
    return params


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"epochs": 2}}`` -> ``{"train.epochs": 2}``; lists and other values are leaves."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def changed_keys(a: dict, b: dict) -> dict[str, list]:
    """The dotted keys whose values differ between ``a`` and ``b``: ``{key: [a's, b's]}`` (None: absent)."""
    fa, fb = flatten(a), flatten(b)
    return {k: [fa.get(k), fb.get(k)] for k in sorted(fa.keys() | fb.keys()) if fa.get(k) != fb.get(k)}


def _write_frame(frame: pd.DataFrame, f, fmt: str) -> None:
    if fmt == "parquet":
        frame.to_parquet(f, index=False)
    else:
        f.write(frame.to_csv(index=False).encode())
