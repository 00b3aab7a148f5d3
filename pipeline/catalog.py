"""The release catalog: what downstream teams use to find, inspect, load and pin synthetic data.

    from pipeline.catalog import Catalog
    cat = Catalog("releases")                      # or "s3://bucket/releases", "memory://...", any fsspec URL
    cat.datasets()                                 # ['adult', ...]
    cat.versions("adult")                          # oldest first
    df = cat.load("adult")                         # latest; "adult@v20261128T214917Z" pins a version
    ds = cat.dataset("adult")                      # a lazy pyarrow dataset (filters and columns pushed down)
    df = cat.load("adult", columns=["age", "income"], filter=pc.field("age") > 60)
    cat.manifest("adult")["metrics"]["quality.overall"]
    cat.diff("adult@v1", "adult@v2")               # schema changes, rows, metric deltas, drift

A reference is ``DATASET`` (the version ``latest.json`` names) or ``DATASET@VERSION``. Remote
filesystems need their fsspec extra (``s3fs``, ``gcsfs``, ...); nothing here needs project state
beyond the release folders themselves.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow.dataset as pads

from pipeline.errors import ReleaseError

LATEST = "latest.json"
MANIFEST = "_manifest.json"


@dataclass(frozen=True)
class Ref:
    dataset: str
    version: str

    def __str__(self) -> str:
        return f"{self.dataset}@{self.version}"


class Catalog:
    def __init__(self, root: str = "releases", storage_options: dict[str, Any] | None = None):
        import fsspec

        self.url = str(root)
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **(storage_options or {}))
        self.root = self.root.rstrip("/")

    # -- discovery ---------------------------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def _read_json(self, path: str) -> dict:
        with self.fs.open(path, "r") as f:
            return json.load(f)

    def datasets(self) -> list[str]:
        """Datasets with at least one release (a ``latest.json``)."""
        if not self.fs.exists(self.root):
            return []
        names = []
        for entry in self.fs.ls(self.root, detail=False):
            name = posixpath.basename(entry.rstrip("/"))
            if not name.startswith(".") and self.fs.exists(self._path(name, LATEST)):
                names.append(name)
        return sorted(names)

    def versions(self, dataset: str) -> list[str]:
        """Published versions of ``dataset``, oldest first (hidden staging folders excluded)."""
        folder = self._path(dataset)
        if not self.fs.exists(folder):
            raise ReleaseError(f"{self.url}: no releases of '{dataset}' (datasets: {', '.join(self.datasets()) or 'none'})")
        out = []
        for entry in self.fs.ls(folder, detail=False):
            name = posixpath.basename(entry.rstrip("/"))
            path = self._path(dataset, name, MANIFEST)
            if not name.startswith((".", "_")) and self.fs.exists(path):
                out.append((self._read_json(path).get("created_at", ""), natural_key(name), name))
        return [name for *_, name in sorted(out)]

    def latest(self, dataset: str) -> str:
        path = self._path(dataset, LATEST)
        if not self.fs.exists(path):
            raise ReleaseError(f"{self.url}: no releases of '{dataset}' (datasets: {', '.join(self.datasets()) or 'none'})")
        return self._read_json(path)["version"]

    def resolve(self, ref: str | Ref) -> Ref:
        """``DATASET`` (latest) or ``DATASET@VERSION`` -> a checked reference."""
        if isinstance(ref, Ref):
            return ref
        dataset, _, version = str(ref).partition("@")
        version = version or self.latest(dataset)
        if not self.fs.exists(self._path(dataset, version, MANIFEST)):
            known = self.versions(dataset)
            raise ReleaseError(f"{self.url}: '{dataset}' has no version '{version}' "
                               f"(versions: {', '.join(known[-5:]) or 'none'}{' ...' if len(known) > 5 else ''})")
        return Ref(dataset, version)

    # -- reading ---------------------------------------------------------------------------------------

    def manifest(self, ref: str | Ref) -> dict:
        r = self.resolve(ref)
        return self._read_json(self._path(r.dataset, r.version, MANIFEST))

    def files(self, ref: str | Ref) -> list[str]:
        r = self.resolve(ref)
        return [self._path(r.dataset, r.version, f["path"]) for f in self.manifest(r)["files"]]

    def dataset(self, ref: str | Ref) -> pads.Dataset:
        """A lazy pyarrow dataset over exactly the release's files (its manifest's list)."""
        return pads.dataset(self.files(ref), format="parquet", filesystem=self.fs)

    def load(self, ref: str | Ref, columns: list[str] | None = None, filter=None) -> pd.DataFrame:
        """The release as pandas (source dtypes restored); ``columns`` and ``filter`` (a pyarrow
        compute expression) are pushed down to the Parquet reader."""
        table = self.dataset(ref).to_table(columns=columns, filter=filter)
        return table.to_pandas()

    def read_text(self, ref: str | Ref, name: str) -> str:
        r = self.resolve(ref)
        with self.fs.open(self._path(r.dataset, r.version, name), "r") as f:
            return f.read()

    # -- comparing and exporting ---------------------------------------------------------------------

    def diff(self, a: str | Ref, b: str | Ref, max_rows: int = 200_000) -> dict:
        """What changed from release ``a`` to ``b``: schema, rows, each metric's delta, and the
        drift between the two synthetic tables (our fidelity metrics, ``b`` scored against ``a``)."""
        from pipeline.metrics.fidelity import score_fidelity
        from pipeline.schema import TableSchema, describe

        ra, rb = self.resolve(a), self.resolve(b)
        ma, mb = self.manifest(ra), self.manifest(rb)
        changes = schema_changes(ma["schema"], mb["schema"])
        metrics = {}
        for key in sorted(set(ma.get("metrics", {})) | set(mb.get("metrics", {}))):
            va, vb = ma.get("metrics", {}).get(key), mb.get("metrics", {}).get(key)
            if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and not isinstance(va, bool):
                metrics[key] = {"a": va, "b": vb, "delta": vb - va}
        common = [c for c in ma["schema"] if c["name"] in {x["name"] for x in mb["schema"]}
                  and c["kind"] not in ("id", "image")]  # images: drift of their label and size columns
        names = [c["name"] for c in common]
        fa = self.load(ra, columns=names)
        fb = self.load(rb, columns=names)
        fa = fa.sample(n=max_rows, random_state=0) if len(fa) > max_rows else fa
        fb = fb.sample(n=max_rows, random_state=0) if len(fb) > max_rows else fb
        schema = TableSchema([describe(fa[c["name"]], c["kind"]) for c in common])
        drift = score_fidelity(fa, fb, schema)
        return {
            "a": str(ra), "b": str(rb),
            "rows": {"a": ma["rows"], "b": mb["rows"], "delta": mb["rows"] - ma["rows"]},
            "schema": changes,
            "metrics": metrics,
            "drift": {"quality.overall": drift.overall, "quality.column_shapes": drift.column_shapes,
                      "quality.column_pair_trends": drift.column_pair_trends,
                      "columns": {k: v["score"] for k, v in drift.columns.items()}},
        }

    def export(self, ref: str | Ref, to: str, fmt: str = "parquet") -> str:
        """Write the release to one local or fsspec file (``parquet`` or ``csv``); returns its path."""
        import fsspec

        frame = self.load(ref)
        with fsspec.open(to, "wb", compression="infer") as f:
            if fmt == "parquet":
                frame.to_parquet(f, index=False)
            elif fmt == "csv":
                f.write(frame.to_csv(index=False).encode())
            else:
                raise ReleaseError(f"export format '{fmt}': use parquet or csv")
        return to


def natural_key(name: str) -> list:
    """Sort key: digit runs compare as numbers (v2 < v10)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


# -- schema contracts ------------------------------------------------------------------------------

# Widening changes a reader survives: the new type holds every value of the old one.
_WIDENING = {
    ("int8", "int16"), ("int8", "int32"), ("int8", "int64"), ("int16", "int32"), ("int16", "int64"),
    ("int32", "int64"), ("Int8", "Int16"), ("Int8", "Int32"), ("Int8", "Int64"), ("Int16", "Int32"),
    ("Int16", "Int64"), ("Int32", "Int64"), ("int64", "Int64"), ("int32", "Int64"), ("float32", "float64"),
    ("int8", "float64"), ("int16", "float64"), ("int32", "float64"), ("bool", "boolean"),
}


_SAME = {"object": "string", "str": "string", "string": "string", "large_string": "string"}
# Nullability changes a reader survives either way (a night without nulls must not break a release).
_NULLABLE = {("Int64", "int64"), ("Int32", "int32"), ("Int16", "int16"), ("Int8", "int8"),
             ("boolean", "bool"), ("bool", "boolean")}


def _dtype(d: str) -> str:
    return _SAME.get(d, d)


def schema_changes(old: list[dict], new: list[dict]) -> dict:
    """Compare two manifests' schemas: ``breaking`` (removed columns, changed kinds, changed types
    that are not widenings) and ``compatible`` (added columns, widened types, nullability)."""
    before = {c["name"]: c for c in old}
    after = {c["name"]: c for c in new}
    breaking, compatible = [], []
    for name, col in before.items():
        if name not in after:
            breaking.append(f"column '{name}' removed")
            continue
        a, b = _dtype(col["dtype"]), _dtype(after[name]["dtype"])
        if a != b:
            ok = (a, b) in _WIDENING or (a, b) in _NULLABLE or (b, a) in _NULLABLE
            (compatible if ok else breaking).append(f"column '{name}' type {col['dtype']} -> {after[name]['dtype']}")
        if col["kind"] != after[name]["kind"]:
            breaking.append(f"column '{name}' kind {col['kind']} -> {after[name]['kind']}")
    for name in after:
        if name not in before:
            compatible.append(f"column '{name}' added")
    return {"breaking": breaking, "compatible": compatible}
