"""Typing rows to a schema: the one place raw values become typed columns, for the in-memory and
the streamed ingest alike.

``prepare`` infers (or takes the declared) kind of every column of a frame of raw values, casts it
and describes it: the ``TableSchema`` the prepared data is written with (links and constraints
found and checked on the way). ``conform`` brings rows read later (a holdout file) to that schema,
and ``cast_batch`` one batch of a streamed source; both go through ``_cast``, so a value types the
same whichever path read it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from pipeline.config import DatasetConfig
from pipeline.constraints import check as check_constraints
from pipeline.constraints import parse_all as parse_constraints
from pipeline.errors import InputDataError
from pipeline.links import find_links
from pipeline.schema import (
    NUMERIC_KINDS,
    CastError,
    ColumnSchema,
    TableSchema,
    arrow_schema_b64,
    cast_column,
    describe,
    doubtful_id,
    infer_kind,
    nullable_dtype,
    release_schema_b64,
)
from pipeline.sources import shown_name

log = logging.getLogger(__name__)


def prepare(df: pd.DataFrame, path: Path, ds: DatasetConfig, infer_on: np.ndarray | None = None,
            dataset: str = "<name>") -> tuple[pd.DataFrame, TableSchema]:
    """Typed columns and their schema. ``infer_on``: the positions of the rows the kinds and links
    come from (a seeded subsample of a streamed source's sample); the casts apply to every row.
    An inferred column that may be an identifier, kept as a category or number, is one warning
    (``maybe_ids``)."""
    source_types = df.attrs.get("arrow_types", {})  # Parquet only
    for col in ds.drop_columns:
        if col not in df.columns:
            raise InputDataError(path, "listed in drop_columns but not in the file", column=shown_name(col))
    df = df.drop(columns=ds.drop_columns)
    names = ", ".join(shown_name(c) for c in df.columns)
    for col in ds.column_types:
        if col not in df.columns:
            raise InputDataError(path, f"named in column_types but not in the file (columns: {names})",
                                 column=shown_name(col))
    if ds.target is not None and ds.target not in df.columns:
        raise InputDataError(path, f"target column not found (columns: {names})", column=shown_name(ds.target))

    out, columns = {}, []
    for name in df.columns:
        raw = df[name]
        if raw.isna().all():
            raise InputDataError(path, "every value is missing", column=shown_name(name))
        kind = ds.column_types.get(name)
        try:
            kind = kind or infer_kind(raw if infer_on is None else raw.iloc[infer_on])
            values = cast_column(raw, kind)
        except CastError as exc:
            raise InputDataError(path, f"declared or inferred as {kind or exc.kind}, but {exc}",
                                 column=shown_name(name)) from None
        out[name] = values
        columns.append(describe(values, kind))
    frame = pd.DataFrame(out)
    arrow_schema = arrow_schema_b64(frame)
    undeclared = {n: t for n, t in source_types.items() if n in out and n not in ds.column_types}
    schema = TableSchema(columns=columns, target=ds.target, arrow_schema=arrow_schema,
                         release_schema=release_schema_b64(frame, arrow_schema, undeclared) if undeclared else None)
    if not schema.modeled:
        raise InputDataError(path, "no usable column: every column is an ID or was dropped")
    for line in maybe_ids(frame if infer_on is None else frame.iloc[infer_on], schema, ds, dataset):
        log.warning(line)
    schema.links = find_links(frame if infer_on is None else frame.iloc[infer_on].reset_index(drop=True),
                              schema.modeled) if ds.keep_links else []
    if ds.constraints:  # checked on every row here (of a streamed source: its sample)
        problem = check_constraints(frame, parse_constraints(ds.constraints), {c.name: c.kind for c in columns},
                                    f"datasets.{dataset}.constraints")
        if problem:
            raise InputDataError(path, problem[1], column=shown_name(problem[0]))
        schema.constraints = list(ds.constraints)
    if ds.target is not None and schema[ds.target].kind == "id":
        raise InputDataError(path, "the target is unique per row (an ID); set its type in column_types",
                             column=shown_name(ds.target))
    if ds.task == "regression" and ds.target is not None and schema[ds.target].kind not in NUMERIC_KINDS:
        raise InputDataError(path, f"task: regression needs a numeric target, and this one is "
                                   f"{schema[ds.target].kind}: set datasets.<name>.task to classification or auto",
                             column=shown_name(ds.target))
    if ds.target is not None and schema[ds.target].n_unique < 2:
        value = frame[ds.target].dropna().iloc[0]
        value = value.item() if isinstance(value, np.generic) else value  # 5, not np.int64(5)
        raise InputDataError(path, (
            f"the target has one value ({value!r}) in every row, so there is nothing to predict and the utility "
            "score would be meaningless: choose another target column, or none (target: null)"),
            column=shown_name(ds.target))
    return frame, schema


def maybe_ids(frame: pd.DataFrame, schema: TableSchema, ds: DatasetConfig, dataset: str) -> list[str]:
    """One line for each inferred column (not the target) that may be an identifier kept as a
    category or a number (``schema.doubtful_id``), naming the ``column_types`` setting that makes
    it one: ingest logs them, validate shows them."""
    lines = []
    for col in schema.columns:
        if col.name in ds.column_types or col.name == ds.target or not doubtful_id(frame[col.name], col.kind):
            continue
        name, values = shown_name(col.name), frame[col.name]
        lines.append(f"column {name}: {values.nunique():,} distinct values in {values.notna().sum():,} rows, typed "
                     f"{col.kind}, so synthetic rows reuse its real values; if it is an identifier, set "
                     f"datasets.{dataset}.column_types: {{{name}: id}} "
                     f"(--set datasets.{dataset}.column_types.{name}=id)")
    return lines


def conform(df: pd.DataFrame, path: Path, schema: TableSchema, ds: DatasetConfig) -> pd.DataFrame:
    """Bring a holdout file to the training schema (same columns, same dtypes)."""
    df = df.drop(columns=[c for c in ds.drop_columns if c in df.columns])
    missing = [c for c in schema.names if c not in df.columns]
    if missing:
        raise InputDataError(path, "missing in the holdout file (present in the source)", column=shown_name(missing[0]))
    return _cast(df, schema, path, lambda col, exc: f"does not match the source's {col.kind} column: {exc}")


def cast_batch(raw: pd.DataFrame, schema: TableSchema, ds: DatasetConfig, part: str, dataset: str,
               sampled: int) -> pd.DataFrame:
    """One raw batch of a streamed source in the schema's columns and dtypes (``sampled``: the rows
    the kinds were inferred from); a value the kind does not take is one error naming the setting."""

    def reason(col: ColumnSchema, exc: Exception) -> str:
        how = "declared" if col.name in ds.column_types else f"inferred from a seeded sample of {sampled:,} rows"
        return (f"{how} as {col.kind}, but {exc}: set datasets.{dataset}.column_types.{shown_name(col.name)} "
                "to the kind every row fits")

    return _cast(raw, schema, part, reason)


def _cast(df: pd.DataFrame, schema: TableSchema, path,
          reason: Callable[[ColumnSchema, Exception], str]) -> pd.DataFrame:
    """``df``'s schema columns cast to their kinds and dtypes (a nullable dtype where a value is
    missing); a value that does not fit is one InputDataError with ``reason(column, error)``."""
    out = {}
    for col in schema.columns:
        try:
            values = cast_column(df[col.name], col.kind)
            dtype = nullable_dtype(col.dtype) if values.isna().any() else col.dtype
            out[col.name] = values.astype(dtype) if str(values.dtype) != dtype else values
        except (CastError, ValueError, TypeError) as exc:
            raise InputDataError(path, reason(col, exc), column=shown_name(col.name)) from None
    return pd.DataFrame(out)
