"""The schema contract between releases: a new release may add columns and widen types; removing a
column, changing a column's kind or narrowing its type breaks readers and needs explicit consent
(``publish.allow_breaking_changes``). ``schema_changes`` is also what ``Catalog.diff`` reports."""

from __future__ import annotations

from pipeline.errors import ReleaseError
from pipeline.release.layout import MANIFEST, Folder, read_manifest

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


def check_schema_contract(dataset: str, root: Folder, previous: str | None, schema_meta: dict,
                          allow_breaking: bool) -> tuple[list[dict], dict]:
    """The schema contract with the current latest, ``previous``: breaking changes need explicit
    consent (``allow_breaking``). ``schema_meta`` is ingest's record of the new rows. Returns (the
    new release's schema, its changes against ``previous``)."""
    new_schema = [{k: c[k] for k in ("name", "kind", "dtype")} for c in schema_meta["columns"]]
    changes = {"breaking": [], "compatible": []}
    before = read_manifest(root / previous) if previous is not None and (root / previous / MANIFEST).exists() else None
    if before is not None:
        changes = schema_changes(before["schema"], new_schema)
        changes["against"] = previous
        if changes["breaking"] and not allow_breaking:
            raise ReleaseError(
                f"{dataset}: the new schema breaks {previous}'s ({'; '.join(changes['breaking'])}); "
                "nothing published. Set publish.allow_breaking_changes: true to release it anyway")
    return new_schema, changes
