"""Column kinds: inference from raw values, casting, and the schema.json that travels with the data.

Kinds: ``continuous`` (floats), ``integer``, ``categorical``, ``boolean``, ``datetime`` and ``id``
(unique per row: not learned, regenerated as fresh unique values).
"""

from __future__ import annotations

import base64
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

NUMERIC_KINDS = ("continuous", "integer", "datetime")
DISCRETE_KINDS = ("categorical", "boolean")

_TRUE = {"true", "t", "yes", "y"}
_FALSE = {"false", "f", "no", "n"}
_DATE_LIKE = re.compile(r"^\s*\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?\s*$")
_ID_NAME = re.compile(r"(^|[_\W])(id|uuid|guid|key)$|^id[_\W]|Id$|ID$")


class CastError(ValueError):
    """A value cannot be read as the column's kind; carries one offending example."""

    def __init__(self, kind: str, example: Any):
        self.kind, self.example = kind, example
        super().__init__(f"cannot read {example!r} as {kind}")


@dataclass
class ColumnSchema:
    name: str
    kind: str
    dtype: str
    null_rate: float
    n_unique: int
    datetime_unit: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class TableSchema:
    columns: list[ColumnSchema]
    target: str | None = None
    arrow_schema: str | None = None  # base64 Arrow IPC schema of the prepared data: every shard's schema

    def arrow(self) -> pa.Schema | None:
        if not self.arrow_schema:
            return None
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(self.arrow_schema)))

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def modeled(self) -> list[ColumnSchema]:
        """Columns the model learns (all but IDs)."""
        return [c for c in self.columns if c.kind != "id"]

    def __getitem__(self, name: str) -> ColumnSchema:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "columns": [asdict(c) for c in self.columns], "arrow_schema": self.arrow_schema}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TableSchema":
        return cls(columns=[ColumnSchema(**c) for c in data["columns"]], target=data.get("target"),
                   arrow_schema=data.get("arrow_schema"))


def arrow_schema_b64(frame: pd.DataFrame) -> str:
    """The Arrow schema pandas writes for ``frame`` (pandas metadata included), as base64."""
    schema = pa.Schema.from_pandas(frame, preserve_index=False)
    # An all-null object column would be typed 'null'; a text column it is.
    schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in schema],
                       metadata=schema.metadata)
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


def nullable_dtype(dtype: str) -> str:
    """The pandas dtype that can hold nulls for ``dtype`` (int64 -> Int64, bool -> boolean)."""
    if dtype == "bool":
        return "boolean"
    if dtype.startswith("int"):
        return "I" + dtype[1:]
    if dtype.startswith("uint"):
        return "UI" + dtype[2:]
    return dtype


def datetime_ns(s: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch as float64 (NaN for NaT), whatever the unit or time zone."""
    if getattr(s.dt, "tz", None) is not None:
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    out = s.astype("datetime64[ns]").astype("int64").to_numpy().astype(np.float64)
    out[s.isna().to_numpy()] = np.nan
    return out


def _is_string_like(s: pd.Series) -> bool:
    return s.dtype == object or pd.api.types.is_string_dtype(s.dtype) or isinstance(s.dtype, pd.CategoricalDtype)


def _parse_bool(values: pd.Series, digits: bool = False) -> pd.Series | None:
    """true/false, yes/no, t/f, y/n (and 1/0 when ``digits``: a declared boolean) -> bool."""
    low = values.astype(str).str.strip().str.lower()
    true, false = (_TRUE | {"1", "1.0"}, _FALSE | {"0", "0.0"}) if digits else (_TRUE, _FALSE)
    uniq = set(low.unique())
    if uniq and uniq <= (true | false):
        return low.isin(true)
    return None


def _parse_datetime(values: pd.Series) -> pd.Series | None:
    text = values.astype(str)
    if not text.str.match(_DATE_LIKE).all():
        return None
    for fmt in ("ISO8601", "mixed"):
        try:
            parsed = pd.to_datetime(text, format=fmt, errors="coerce")
        except (ValueError, TypeError):
            continue
        if parsed.notna().all():
            if getattr(parsed.dt, "tz", None) is not None:
                parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
            return parsed.astype("datetime64[ns]")
    return None


def infer_kind(series: pd.Series) -> str:
    """The kind of one column from its non-null values (raises ValueError when all are null)."""
    values = series.dropna()
    if values.empty:
        raise ValueError("all values are missing")
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        kind = "boolean"
    elif pd.api.types.is_datetime64_any_dtype(dtype):
        kind = "datetime"
    elif pd.api.types.is_numeric_dtype(dtype):
        arr = values.to_numpy(dtype=float)
        kind = "integer" if np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)) else "continuous"
    elif _is_string_like(series):
        text = values.astype(str).str.strip()
        numbers = pd.to_numeric(text, errors="coerce")
        if numbers.notna().all():
            arr = numbers.to_numpy(dtype=float)
            integral = np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)) and not text.str.contains(r"[.eE]").any()
            kind = "integer" if integral else "continuous"
        elif _parse_bool(text) is not None:
            kind = "boolean"
        elif _parse_datetime(text) is not None:
            kind = "datetime"
        else:
            kind = "categorical"
    else:
        kind = "categorical"
    if kind in ("categorical", "integer") and _looks_like_id(series, kind):
        return "id"
    return kind


def _looks_like_id(series: pd.Series, kind: str) -> bool:
    n = len(series)
    if n < 10 or series.isna().any() or series.nunique() != n:
        return False
    if kind == "categorical":
        return True
    # Unique integers are IDs only when named like one or numbered like rows; a unique count or
    # amount column must stay numeric.
    if _ID_NAME.search(str(series.name)):
        return True
    values = pd.to_numeric(series.astype(str).str.strip() if _is_string_like(series) else series)
    return int(values.max()) - int(values.min()) + 1 == n


def cast_column(series: pd.Series, kind: str) -> pd.Series:
    """Cast raw values to the canonical dtype of ``kind``; raise CastError naming a bad value."""
    name, mask = series.name, series.isna()
    if kind == "id" and _is_string_like(series) and not mask.any():
        text = series.astype(str).str.strip()
        # Integer IDs written as text stay integers (but not codes with leading zeros: '007').
        if text.str.fullmatch(r"-?[1-9]\d{0,17}|0").all():
            return text.astype("int64").rename(name)
    if kind in ("categorical", "id") and not pd.api.types.is_numeric_dtype(series.dtype):
        out = series.astype(object).where(~mask, None)
        out = out.map(lambda v: v.strip() if isinstance(v, str) else (None if v is None else str(v)))
        return out.astype(object).rename(name)
    if kind == "categorical" or kind == "id":
        return series
    if kind == "boolean":
        if pd.api.types.is_bool_dtype(series.dtype):
            return series
        parsed = _parse_bool(series[~mask], digits=True)
        if parsed is None:
            bad = series[~mask].astype(str).str.strip().str.lower()
            raise CastError(kind, series[~mask][~bad.isin(_TRUE | _FALSE | {"1", "0", "1.0", "0.0"})].iloc[0])
        out = pd.Series(pd.NA, index=series.index, dtype="boolean")
        out[~mask] = parsed.to_numpy()
        return out.astype("bool" if not mask.any() else "boolean").rename(name)
    if kind == "datetime":
        if pd.api.types.is_datetime64_any_dtype(series.dtype):
            return series
        parsed = _parse_datetime(series[~mask])
        if parsed is None:
            probe = pd.to_datetime(series[~mask].astype(str), format="mixed", errors="coerce")
            raise CastError(kind, series[~mask][probe.isna()].iloc[0] if probe.isna().any() else series[~mask].iloc[0])
        out = pd.Series(pd.NaT, index=series.index, dtype="datetime64[ns]")
        out[~mask] = parsed.to_numpy()
        return out.rename(name)
    # continuous / integer
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        numbers = series
    else:
        numbers = pd.to_numeric(series.astype(object).where(~mask, None).map(
            lambda v: v.strip() if isinstance(v, str) else v), errors="coerce")
        bad = numbers.isna() & ~mask
        if bad.any():
            raise CastError(kind, series[bad].iloc[0])
    if kind == "continuous":
        return numbers if pd.api.types.is_float_dtype(numbers.dtype) else numbers.astype("float64")
    arr = numbers.to_numpy(dtype=float, na_value=np.nan)
    finite = arr[~np.isnan(arr)]
    if np.any(finite != np.round(finite)):
        raise CastError(kind, series[~mask][finite != np.round(finite)].iloc[0])
    if pd.api.types.is_integer_dtype(numbers.dtype):
        return numbers
    if pd.api.types.is_float_dtype(series.dtype):
        return series  # integral floats from a typed source keep their dtype
    return numbers.astype("Int64" if mask.any() else "int64")


def datetime_unit(values: pd.Series) -> str:
    """The coarsest unit that every value is a whole multiple of (day, second, ... ns)."""
    ns = datetime_ns(values.dropna()).astype(np.int64)
    for unit, step in (("D", 86_400 * 10**9), ("h", 3_600 * 10**9), ("min", 60 * 10**9), ("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if np.all(ns % step == 0):
            return unit
    return "ns"


def describe(series: pd.Series, kind: str) -> ColumnSchema:
    n = len(series)
    col = ColumnSchema(
        name=str(series.name), kind=kind, dtype=str(series.dtype),
        null_rate=float(series.isna().mean()) if n else 0.0, n_unique=int(series.nunique()),
    )
    if kind in ("continuous", "integer"):
        v = series.dropna().astype(float)
        col.stats = {"min": float(v.min()), "max": float(v.max()), "mean": float(v.mean())}
    elif kind == "datetime":
        col.datetime_unit = datetime_unit(series)
        v = series.dropna()
        col.stats = {"min": str(v.min()), "max": str(v.max())}
    elif kind == "id" and pd.api.types.is_integer_dtype(series.dtype):
        col.stats = {"max": int(series.max())}  # fresh synthetic IDs start above it
    elif kind in DISCRETE_KINDS:
        top = series.value_counts().head(5)
        col.stats = {"top": {str(k): int(c) for k, c in top.items()}}
    return col
