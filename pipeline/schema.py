"""Column kinds: inference from raw values, casting, and the schema.json that travels with the data.

Kinds: ``continuous`` (floats), ``integer``, ``categorical``, ``boolean``, ``datetime`` and ``id``
(unique per row, or a key of many values: not learned, regenerated as fresh values, see
``pipeline.ids``).

Inference is conservative: only ``true``/``false`` (any case) is read as boolean; other two-valued
text (yes/no, y/n, t/f) stays categorical text exactly as written (a column declared boolean in
``column_types`` still reads yes/no, t/f, y/n and 1/0). Datetimes with UTC offsets are converted to
UTC; a column that mixes values with and without an offset is refused (which zone the bare ones are
in is a guess). Numbers must be finite and at most ``MAX_MAGNITUDE`` in size (see there).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.ids import id_stats, looks_like_id_values

NUMERIC_KINDS = ("continuous", "integer", "datetime")
DISCRETE_KINDS = ("categorical", "boolean")

# Declared booleans read every spelling; inference only the ones a reader takes as a boolean, so
# Yes/No or Y/N text is released as written.
_TRUE = {"true", "t", "yes", "y"}
_FALSE = {"false", "f", "no", "n"}
_INFER_TRUE, _INFER_FALSE = {"true"}, {"false"}
_DATE_LIKE = re.compile(r"^\s*\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}"
                        r"([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?\s*$")
_OFFSET = re.compile(r"\d:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}:?\d{2})\s*$")  # after a time: 1-1-2020 has none
# The largest magnitude a number may have. The metrics square values and sum them over rows
# (Pearson correlation, R^2): from about 1e154 those overflow and the scores turn NaN, and near
# 1e305 np.interp in the quantile transform does too. 1e150 squared, summed over a billion rows,
# still fits in a float64 (max 1.8e308).
MAX_MAGNITUDE = 1e150
_ID_NAME = re.compile(r"(^|[_\W])(id|uuid|guid|key|e-?mail)$|[_\W](no|nr|number)$|^id[_\W]"
                      r"|(Id|ID|Key|Email|No|Number)$")
# A column that repeats its values is an ID (a key: customer_id on orders) when its distinct values
# are many, both in number and as a share of its non-null values: text from ID_SHARE and
# ID_MIN_VALUES on; text or integers named like an ID (or holding UUIDs or e-mail addresses) from
# HINT_SHARE and HINT_MIN_VALUES. Integers are never IDs by their count alone: a measurement
# (Adult's fnlwgt: 21,648 values in 32,561 rows) or an amount stays a number. A category this many
# values would release real keys and slow the model (one feature per value).
ID_SHARE, ID_MIN_VALUES = 0.5, 1_000
HINT_SHARE, HINT_MIN_VALUES = 0.1, 100


class CastError(ValueError):
    """A value cannot be read as the column's kind; carries one offending example (and why, with
    the fix, when the plain "cannot read" would not say it)."""

    def __init__(self, kind: str, example: Any, reason: str | None = None):
        self.kind, self.example = kind, example
        super().__init__(reason or f"cannot read {example!r} as {kind}")


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
    # The same with the source's own Arrow types where pandas changed them (decimal, dictionary,
    # large_string): released shards are cast to it. None when it equals arrow_schema.
    release_schema: str | None = None
    # Columns another column fixes in every real row, kept so in generated rows (pipeline.links).
    links: list[dict] = field(default_factory=list)
    # Inequalities between two columns (``ship_date >= order_date``) kept in every generated row
    # (pipeline.constraints): declared in params, checked against the real rows at ingest.
    constraints: list[str] = field(default_factory=list)

    def arrow(self) -> pa.Schema | None:
        if not self.arrow_schema:
            return None
        return schema_from_b64(self.arrow_schema)

    def to_release(self, table: pa.Table) -> pa.Table:
        """A table in the prepared schema, cast to the source's types (a no-op for most sources)."""
        if not self.release_schema:
            return table
        target = schema_from_b64(self.release_schema)
        cols = [to_source_type(table.column(f.name), f.type) for f in target]
        return pa.Table.from_arrays(cols, schema=target)

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
        out = {"target": self.target, "columns": [asdict(c) for c in self.columns], "arrow_schema": self.arrow_schema}
        if self.release_schema:  # only when it says something: most schema.json files stay as they were
            out["release_schema"] = self.release_schema
        if self.links:
            out["links"] = self.links
        if self.constraints:
            out["constraints"] = self.constraints
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TableSchema":
        return cls(columns=[ColumnSchema(**c) for c in data["columns"]], target=data.get("target"),
                   arrow_schema=data.get("arrow_schema"), release_schema=data.get("release_schema"),
                   links=data.get("links") or [], constraints=data.get("constraints") or [])


def schema_from_b64(text: str) -> pa.Schema:
    """An Arrow schema from the base64 IPC form schema.json keeps it in."""
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def arrow_schema_b64(frame: pd.DataFrame) -> str:
    """The Arrow schema pandas writes for ``frame`` (pandas metadata included), as base64."""
    schema = pa.Schema.from_pandas(frame, preserve_index=False)
    # An all-null object column would be typed 'null'; a text column it is.
    schema = pa.schema([f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in schema],
                       metadata=schema.metadata)
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


def to_source_type(col: pa.ChunkedArray | pa.Array, source: pa.DataType) -> pa.ChunkedArray | pa.Array:
    """One prepared column cast back to its source Arrow type (decimals rounded to their scale)."""
    if col.type == source:
        return col
    if pa.types.is_decimal(source) and pa.types.is_floating(col.type):
        col = pc.round(col, ndigits=source.scale)
    return col.cast(source)


def release_schema_b64(frame: pd.DataFrame, prepared_b64: str, source_types: dict[str, pa.DataType]) -> str | None:
    """The prepared Arrow schema with ``source_types`` (column -> the source's Arrow type) put back
    for every column whose prepared values cast to it and back unchanged; None when none does."""
    prepared = schema_from_b64(prepared_b64)
    fields, restored = list(prepared), {}
    for i, f in enumerate(fields):
        source = source_types.get(f.name)
        # Dates stay timestamps (at midnight): the score stage reads shards with pyarrow's default,
        # which turns date32 into Python date objects that its metrics cannot measure.
        if source is None or source == f.type or pa.types.is_date(source):
            continue
        values = pa.Table.from_pandas(frame[[f.name]], schema=pa.schema([f]), preserve_index=False).column(0)
        try:
            back = to_source_type(values, source)
            again = back.cast(f.type)
            # Arrow's decimal -> double is not always the nearest double: within an ulp is the same.
            same = again.equals(values) or (pa.types.is_decimal(source) and np.allclose(
                again.to_numpy(), values.to_numpy(), rtol=1e-15, atol=0, equal_nan=True))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            same = False
        if same:
            fields[i] = f.with_type(source)
            restored[f.name] = back
    if not restored:
        return None
    # pandas metadata as pandas itself writes it for those types (object for decimals and dates,
    # categorical for dictionaries), so a reader gets what the source would have given.
    meta = json.loads(prepared.metadata[b"pandas"])
    own = json.loads(pa.Schema.from_pandas(pa.table(restored).slice(0, 100).to_pandas(), preserve_index=False)
                     .metadata[b"pandas"])
    by_name = {c["name"]: c for c in own["columns"]}
    meta["columns"] = [by_name.get(c["name"], c) for c in meta["columns"]]
    schema = pa.schema(fields, metadata={**prepared.metadata, b"pandas": json.dumps(meta).encode()})
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


def _parse_bool(values: pd.Series, declared: bool = False) -> pd.Series | None:
    """true/false (any case) -> bool; a ``declared`` boolean also reads yes/no, t/f, y/n and 1/0."""
    low = values.astype(str).str.strip().str.lower()
    true, false = (_TRUE | {"1", "1.0"}, _FALSE | {"0", "0.0"}) if declared else (_INFER_TRUE, _INFER_FALSE)
    uniq = set(low.unique())
    if uniq and uniq <= (true | false):
        return low.isin(true)
    return None


BOOLEAN_SPELLINGS = "true or false (also yes/no, t/f, y/n, 1/0; any case)"


def read_bool(value: Any) -> bool | None:
    """One value as a boolean column declared in ``column_types`` reads it (``BOOLEAN_SPELLINGS``),
    or None when it is none of those."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    parsed = _parse_bool(pd.Series([value]), declared=True)
    return None if parsed is None else bool(parsed.iloc[0])


def _parse_datetime(values: pd.Series) -> pd.Series | None:
    """Date-like text -> naive datetime64[ns] (UTC when the values carry offsets); None when not
    date-like. Raises CastError for a mix of offsets and none, or a date pandas cannot hold."""
    text = values.astype(str)
    if not text.str.match(_DATE_LIKE).all():
        return None
    offset = text.str.contains(_OFFSET)
    if offset.any() and not offset.all():
        raise CastError("datetime", text[~offset].iloc[0], reason=(
            f"some values have a UTC offset ({text[offset].iloc[0]!r}) and some have none "
            f"({text[~offset].iloc[0]!r}): write every value with an offset, or none"))
    for fmt in ("ISO8601", "mixed"):
        try:
            # utc=True: values with different offsets become one UTC column (else an object column).
            parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=bool(offset.all()))
        except (ValueError, TypeError):
            continue
        if parsed.notna().all():
            if getattr(parsed.dt, "tz", None) is not None:
                parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
            return parsed.astype("datetime64[ns]")
    for v in text:
        try:
            ts = pd.Timestamp(v)  # pandas 2 holds any year here (in seconds), not in ns columns
        except (ValueError, TypeError):
            continue
        if ts.tzinfo is not None:
            ts = ts.tz_convert(None)
        if not pd.Timestamp.min <= ts <= pd.Timestamp.max:
            raise _out_of_range(v)
    return None


def _out_of_range(value: Any) -> CastError:
    return CastError("datetime", value, reason=(
        f"{str(value)!r} is outside the dates this pipeline can hold ({pd.Timestamp.min.date()} to "
        f"{pd.Timestamp.max.date()}): leave the cell empty for a null, or declare the column "
        "categorical in column_types"))


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
        failing = text[numbers.isna()]
        # A number too large for a float64 ('1e400') is NaN to pandas: still a number column, so
        # that casting refuses the value by name instead of the column turning into text.
        if numbers.notna().all() or (len(failing) <= 100 and failing.map(_overflows).all()):
            arr = numbers.to_numpy(dtype=float)
            integral = (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))
                        and not text.str.contains(r"[.eE]").any())
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
    n, values = len(series), series.dropna()
    if n < 10:
        return False
    distinct = values.nunique()
    if distinct == n:  # unique, no null
        if kind == "categorical" or _ID_NAME.search(str(series.name)):
            return True
        # Unique integers are IDs only when named like one or numbered like rows; a unique count or
        # amount column must stay numeric.
        values = pd.to_numeric(series.astype(str).str.strip() if _is_string_like(series) else series)
        return int(values.max()) - int(values.min()) + 1 == n
    if distinct >= HINT_MIN_VALUES and distinct >= HINT_SHARE * len(values) and _id_hint(series, kind):
        return True
    return kind == "categorical" and distinct >= ID_MIN_VALUES and distinct > ID_SHARE * len(values)


def _id_hint(series: pd.Series, kind: str) -> bool:
    """Named like an ID, or text of UUIDs or e-mail addresses."""
    return bool(_ID_NAME.search(str(series.name))) or (kind == "categorical" and looks_like_id_values(series))


def doubtful_id(series: pd.Series, kind: str) -> bool:
    """Whether a column inferred as ``kind`` (not ``id``) may still be an identifier: text of at
    least HINT_MIN_VALUES values that are HINT_SHARE of its values or named like an ID, or integers
    of that many values named like an ID. Ingest keeps the kind and says how to declare it an ID."""
    if kind not in ("categorical", "integer"):
        return False
    values = series.dropna()
    distinct = values.nunique()
    if distinct < HINT_MIN_VALUES:
        return False
    return _id_hint(series, kind) or (kind == "categorical" and distinct >= HINT_SHARE * len(values))


def cast_column(series: pd.Series, kind: str) -> pd.Series:
    """Cast raw values to the canonical dtype of ``kind``; raise CastError naming a bad value."""
    name, mask = series.name, series.isna()
    if kind == "id" and _is_string_like(series) and not mask.all():
        text = series[~mask].astype(str).str.strip()
        # Integer IDs written as text stay integers (but not codes with leading zeros: '007'), a
        # key with empty cells too.
        if text.str.fullmatch(r"-?[1-9]\d{0,17}|0").all():
            if not mask.any():
                return text.astype("int64").rename(name)
            out = pd.Series(pd.NA, index=series.index, dtype="Int64")
            out[~mask] = text.astype("int64").to_numpy()
            return out.rename(name)
    if kind in ("categorical", "id") and not pd.api.types.is_numeric_dtype(series.dtype):
        out = series.astype(object).where(~mask, None)
        if pd.api.types.infer_dtype(out, skipna=True) == "string":  # stripped once per distinct value
            codes, uniques = pd.factorize(out)
            stripped = np.array([v.strip() for v in uniques] + [None], dtype=object)
            return pd.Series(stripped[codes], index=series.index, dtype=object, name=name)
        out = out.map(lambda v: v.strip() if isinstance(v, str) else (None if v is None else str(v)))
        return out.astype(object).rename(name)
    if kind == "categorical" or kind == "id":
        return series
    if kind == "boolean":
        if pd.api.types.is_bool_dtype(series.dtype):
            return series
        parsed = _parse_bool(series[~mask], declared=True)
        if parsed is None:
            bad = series[~mask].astype(str).str.strip().str.lower()
            raise CastError(kind, series[~mask][~bad.isin(_TRUE | _FALSE | {"1", "0", "1.0", "0.0"})].iloc[0])
        out = pd.Series(pd.NA, index=series.index, dtype="boolean")
        out[~mask] = parsed.to_numpy()
        return out.astype("bool" if not mask.any() else "boolean").rename(name)
    if kind == "datetime":
        if pd.api.types.is_datetime64_any_dtype(series.dtype):
            try:
                datetime_ns(series)  # a typed source may hold years pandas' nanoseconds cannot
            except (pd.errors.OutOfBoundsDatetime, OverflowError):
                raise _out_of_range(max(series.dropna(), key=lambda t: abs(t.year - 1970))) from None
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
            v = series[bad].iloc[0]
            raise CastError(kind, v, reason=f"{v!r} is not a finite number: leave the cell empty for a null"
                            if _overflows(v) else None)
    arr = numbers.to_numpy(dtype=float, na_value=np.nan)
    _check_magnitude(series[~mask], arr[~mask.to_numpy()], kind)
    if kind == "continuous":
        return numbers if pd.api.types.is_float_dtype(numbers.dtype) else numbers.astype("float64")
    finite = arr[~np.isnan(arr)]
    if np.any(finite != np.round(finite)):
        raise CastError(kind, series[~mask][finite != np.round(finite)].iloc[0])
    if pd.api.types.is_integer_dtype(numbers.dtype):
        return numbers
    if pd.api.types.is_float_dtype(series.dtype):
        return series  # integral floats from a typed source keep their dtype
    return numbers.astype("Int64" if mask.any() else "int64")


def _overflows(v: Any) -> bool:
    """Text that Python reads as an infinite float ('1e400', 'Infinity')."""
    try:
        return bool(np.isinf(float(v)))
    except (TypeError, ValueError):
        return False


def _example(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v  # -inf, not np.float64(-inf)


def _check_magnitude(raw: pd.Series, arr: np.ndarray, kind: str) -> None:
    """Refuse inf and numbers the metrics cannot square (``MAX_MAGNITUDE``); integers must also
    fit in 64 bits."""
    inf = np.isinf(arr)
    if inf.any():
        v = _example(raw[inf].iloc[0])
        raise CastError(kind, v, reason=f"{v!r} is not a finite number: leave the cell empty for a null")
    big = np.abs(arr) >= 2.0**63 if kind == "integer" else np.abs(arr) > MAX_MAGNITUDE
    if big.any():
        v = _example(raw[big].iloc[0])
        what = ("does not fit in a 64-bit integer" if kind == "integer"
                else f"is larger in magnitude than {MAX_MAGNITUDE:g}")
        fix = ("declare the column categorical (a code) or continuous in column_types" if kind == "integer"
               else "rescale the column (e.g. to other units or its logarithm)")
        raise CastError(kind, v, reason=f"{v!r} {what}, which the model and the metrics cannot handle: {fix}")


def datetime_unit(values: pd.Series) -> str:
    """The coarsest unit that every value is a whole multiple of (day, second, ... ns)."""
    ns = datetime_ns(values.dropna()).astype(np.int64)
    for unit, step in (("D", 86_400 * 10**9), ("h", 3_600 * 10**9), ("min", 60 * 10**9), ("s", 10**9), ("ms", 10**6),
                       ("us", 10**3)):
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
    elif kind == "id":
        col.stats = id_stats(series)  # fresh synthetic IDs: in the real format, none a real one
    elif kind in DISCRETE_KINDS:
        top = series.value_counts().head(5)
        col.stats = {"top": {str(k): int(c) for k, c in top.items()}}
    return col
