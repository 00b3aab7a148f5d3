"""Stage 1, ingest: read a CSV or Parquet source, infer and check its schema, write prepared Parquet.

Output (one directory, written atomically): ``train.parquet`` (the rows the model learns),
``holdout.parquet`` (real rows kept out of training, for utility and privacy scoring) and
``schema.json``. Any problem with the input raises InputDataError naming the file, the column and
the reason, and nothing is written.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import Config, CsvOptions, DatasetConfig
from pipeline.errors import ConfigError, InputDataError
from pipeline.io import StagePaths, atomic_dir, sha256_file, write_json
from pipeline.schema import CastError, TableSchema, arrow_schema_b64, cast_column, describe, infer_kind, nullable_dtype

log = logging.getLogger(__name__)

# pandas' own NA spellings plus "?" (the UCI convention).
DEFAULT_NA = ["", "?", "NA", "N/A", "n/a", "NaN", "nan", "-nan", "NULL", "null", "None", "#N/A", "<NA>"]
_SNIFF_BYTES = 64 * 1024
_WHITESPACE = r"\s+"  # columns separated by runs of spaces or tabs


@dataclass
class IngestResult:
    dataset: str
    rows: int
    holdout_rows: int
    schema: TableSchema | None  # None for images
    source_hash: str


# ---------------------------------------------------------------------------------------------
# Reading


def _format_of(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".tsv", ".txt", ".data", ".dat", ".gz", ".bz2", ".xz"):
        return "csv"
    with open(path, "rb") as f:
        magic = f.read(4)
    return "parquet" if magic == b"PAR1" else "csv"


def _open_text(path: Path, encoding: str):
    """Open a possibly compressed text file (by suffix, as pandas does)."""
    import bz2
    import gzip
    import lzma

    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(path.suffix.lower(), open)
    return opener(path, "rt", encoding=encoding, errors="replace", newline="")


def _sniff(path: Path, opts: CsvOptions) -> tuple[str, list[str]]:
    """Detect the delimiter; return it with the first parsed lines (for header detection)."""
    with _open_text(path, opts.encoding) as f:
        head = f.read(_SNIFF_BYTES)
    if not head.strip():
        raise InputDataError(path, "the file is empty")
    lines = head.splitlines()
    if len(head) == _SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut
    sample = "\n".join(l for l in lines if l.strip())
    sep = opts.sep
    if sep == "auto":
        try:
            sep = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
        except csv.Error:
            counts = {d: sample.splitlines()[0].count(d) for d in ",;\t|"}
            sep = max(counts, key=counts.get) if max(counts.values()) else _WHITESPACE
        if sep in ("\t", _WHITESPACE) and _constant_width(sample.split("\n"), None) > _constant_width(sample.split("\n"), "\t"):
            sep = _WHITESPACE  # aligned columns: runs of spaces (and tabs) separate them
    elif sep == "\\t":
        sep = "\t"
    if sep == _WHITESPACE:
        rows = [line.split() for line in sample.splitlines()]
    else:
        rows = list(csv.reader(io.StringIO(sample), delimiter=sep, skipinitialspace=True))
    return sep, [r for r in rows if r]


def _constant_width(lines: list[str], sep: str | None) -> int:
    """The field count shared by every non-empty line when split on ``sep`` (None: whitespace), else 0."""
    widths = {len(line.split(sep)) for line in lines if line.strip()}
    return widths.pop() if len(widths) == 1 else 0


def _looks_numeric(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _has_header(rows: list[list[str]], na: set[str]) -> bool:
    """A header row is one whose cells are all text, where some column below holds numbers, or
    whose cells never reappear in their column below."""
    first, body = [c.strip() for c in rows[0]], rows[1:51]
    if not body:
        return all(c and not _looks_numeric(c) for c in first)
    if any(not c or _looks_numeric(c) or c in na for c in first):
        return False
    for j, name in enumerate(first):
        col = [r[j].strip() for r in body if j < len(r) and r[j].strip() not in na]
        if col and all(_looks_numeric(v) for v in col):
            return True
    # All-text table: a header's names do not repeat as values in their own columns.
    return not any(name in {r[j].strip() for r in body if j < len(r)} for j, name in enumerate(first))


def _read_csv(path: Path, opts: CsvOptions) -> pd.DataFrame:
    na = DEFAULT_NA if opts.na_values == "auto" else list(opts.na_values)
    sep, rows = _sniff(path, opts)
    header = _has_header(rows, set(na)) if opts.header == "auto" else opts.header
    if header:
        names = [c.strip() for c in rows[0]]
        empty = [i for i, n in enumerate(names) if not n]
        if empty:
            raise InputDataError(path, f"header cell {empty[0] + 1} is empty")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InputDataError(path, "duplicate column name in the header", column=dupes[0])
    try:
        df = pd.read_csv(
            path, sep=sep, header=0 if header else None, dtype=str, keep_default_na=False, index_col=False,
            na_values=na, skipinitialspace=True, encoding=opts.encoding,
            engine="c",  # the C engine also handles the whitespace pattern
        )
    except pd.errors.EmptyDataError:
        raise InputDataError(path, "the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InputDataError(path, f"cannot be parsed as CSV with delimiter {sep!r}: {exc}") from None
    if header:
        df.columns = [str(c).strip() for c in df.columns]
    else:
        df.columns = [f"column_{i}" for i in range(df.shape[1])]
    log.info("read %s as CSV (delimiter %r, header %s): %d rows x %d columns", path, sep, header, *df.shape)
    return df


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputDataError(path, f"not a readable Parquet file ({exc})") from None
    dupes = sorted({n for n in schema.names if schema.names.count(n) > 1})
    if dupes:
        raise InputDataError(path, "duplicate column name", column=dupes[0])
    table = pq.read_table(path)
    df = table.to_pandas()
    # Integer columns with nulls would turn float in pandas; keep them integers (nullable).
    for field in table.schema:
        if pa.types.is_integer(field.type) and table.column(field.name).null_count:
            dtype = pd.api.types.pandas_dtype(("UInt" if pa.types.is_unsigned_integer(field.type) else "Int")
                                              + str(field.type.bit_width))
            df[field.name] = table.column(field.name).to_pandas(types_mapper={field.type: dtype}.get)
    return df


def read_source(path: str | Path, ds: DatasetConfig, column_names: list[str] | None = None) -> pd.DataFrame:
    """Read one source file as a frame of raw values (strings for CSV, typed for Parquet)."""
    path = Path(path)
    if not path.exists():
        raise InputDataError(path, "file not found")
    if path.is_dir():
        raise InputDataError(path, "is a directory, expected a CSV or Parquet file")
    if path.stat().st_size == 0:
        raise InputDataError(path, "the file is empty")
    fmt = _format_of(path, ds.format)
    df = _read_parquet(path) if fmt == "parquet" else _read_csv(path, ds.csv)
    if df.shape[1] == 0:
        raise InputDataError(path, "no columns")
    if len(df) == 0:
        raise InputDataError(path, "has a header but no data rows" if fmt == "csv" else "has no rows")
    if column_names is not None and fmt == "csv" and list(df.columns) != column_names:
        if df.columns[0] == "column_0" and df.shape[1] == len(column_names):
            df.columns = column_names  # a headerless holdout takes the training file's names
    return df.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Schema


def _prepare(df: pd.DataFrame, path: Path, ds: DatasetConfig) -> tuple[pd.DataFrame, TableSchema]:
    for col in ds.drop_columns:
        if col not in df.columns:
            raise InputDataError(path, "listed in drop_columns but not in the file", column=col)
    df = df.drop(columns=ds.drop_columns)
    for col in ds.column_types:
        if col not in df.columns:
            raise InputDataError(path, f"named in column_types but not in the file (columns: {', '.join(df.columns)})", column=col)
    if ds.target is not None and ds.target not in df.columns:
        raise InputDataError(path, f"target column not found (columns: {', '.join(map(str, df.columns))})", column=ds.target)

    out, columns = {}, []
    for name in df.columns:
        raw = df[name]
        if raw.isna().all():
            raise InputDataError(path, "every value is missing", column=name)
        kind = ds.column_types.get(name) or infer_kind(raw)
        try:
            values = cast_column(raw, kind)
        except CastError as exc:
            raise InputDataError(path, f"declared or inferred as {kind}, but {exc}", column=name) from None
        out[name] = values
        columns.append(describe(values, kind))
    frame = pd.DataFrame(out)
    schema = TableSchema(columns=columns, target=ds.target, arrow_schema=arrow_schema_b64(frame))
    if not schema.modeled:
        raise InputDataError(path, "no usable column: every column is an ID or was dropped")
    if ds.target is not None and schema[ds.target].kind == "id":
        raise InputDataError(path, "the target is unique per row (an ID); set its type in column_types", column=ds.target)
    return frame, schema


def _conform(df: pd.DataFrame, path: Path, schema: TableSchema, ds: DatasetConfig) -> pd.DataFrame:
    """Bring a holdout file to the training schema (same columns, same dtypes)."""
    df = df.drop(columns=[c for c in ds.drop_columns if c in df.columns])
    missing = [c for c in schema.names if c not in df.columns]
    if missing:
        raise InputDataError(path, "missing in the holdout file (present in the source)", column=missing[0])
    out = {}
    for col in schema.columns:
        try:
            values = cast_column(df[col.name], col.kind)
            dtype = nullable_dtype(col.dtype) if values.isna().any() else col.dtype
            out[col.name] = values.astype(dtype) if str(values.dtype) != dtype else values
        except (CastError, ValueError, TypeError) as exc:
            raise InputDataError(path, f"does not match the source's {col.kind} column: {exc}", column=col.name) from None
    return pd.DataFrame(out)


# ---------------------------------------------------------------------------------------------
# Stage


def _ingest_images(cfg: Config, dataset: str) -> IngestResult:
    """Images: the same prepared layout (train/holdout Parquet + schema.json), rows are images."""
    from pipeline.images import IMAGE_COLUMNS, read_images

    ds = cfg.dataset(dataset)
    paths = StagePaths.of(cfg.work_dir, dataset)
    source = Path(ds.source)
    frame = read_images(source)
    source_hash = _tree_hash(source)
    if ds.holdout_source:
        holdout, train = read_images(ds.holdout_source), frame
        if (holdout["height"].iloc[0], holdout["width"].iloc[0]) != (train["height"].iloc[0], train["width"].iloc[0]):
            raise InputDataError(ds.holdout_source, "holdout images differ in size from the source's")
        holdout_hash = _tree_hash(Path(ds.holdout_source))
    else:
        order = np.random.default_rng(cfg.seed).permutation(len(frame))
        n_hold = int(round(len(frame) * cfg.ingest.holdout_fraction))
        if len(frame) - n_hold < 2:
            raise InputDataError(source, f"only {len(frame)} images: too few to train on")
        holdout = frame.iloc[np.sort(order[:n_hold])].reset_index(drop=True)
        train = frame.iloc[np.sort(order[n_hold:])].reset_index(drop=True)
        holdout_hash = None
    counts = train["label"].value_counts().sort_index()
    meta = {
        "dataset": dataset, "modality": "image", "source": str(source), "source_hash": source_hash,
        "holdout_source": ds.holdout_source, "holdout_hash": holdout_hash,
        "rows": len(train), "holdout_rows": len(holdout),
        "height": int(train["height"].iloc[0]), "width": int(train["width"].iloc[0]), "channels": 1,
        "labels": [int(k) for k in counts.index], "label_counts": [int(v) for v in counts.to_numpy()],
        "target": "label", "columns": IMAGE_COLUMNS,
    }
    with atomic_dir(paths.prepared) as tmp:
        train.to_parquet(tmp / "train.parquet", index=False)
        holdout.to_parquet(tmp / "holdout.parquet", index=False)
        write_json(tmp / "schema.json", meta)
    log.info("ingest %s: %d training images, %d holdout images, %dx%d, %d labels", dataset, len(train),
             len(holdout), meta["height"], meta["width"], len(meta["labels"]))
    return IngestResult(dataset, len(train), len(holdout), None, source_hash)


def _tree_hash(path: Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, in sorted order)."""
    if path.is_file():
        return sha256_file(path)
    import hashlib

    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(file.relative_to(path)).encode() + b"\0" + bytes.fromhex(sha256_file(file)))
    return h.hexdigest()


def run(cfg: Config, dataset: str) -> IngestResult:
    """Read the dataset's source (and holdout), infer its schema, write the prepared directory."""
    ds = cfg.dataset(dataset)
    if ds.modality == "image":
        return _ingest_images(cfg, dataset)
    paths = StagePaths.of(cfg.work_dir, dataset)
    source = Path(ds.source)
    df = read_source(source, ds)
    frame, schema = _prepare(df, source, ds)
    source_hash = sha256_file(source)

    if ds.holdout_source:
        hpath = Path(ds.holdout_source)
        holdout = _conform(read_source(hpath, ds, column_names=list(df.columns)), hpath, schema, ds)
        train = frame
        holdout_hash = sha256_file(hpath)
    else:
        rng = np.random.default_rng(cfg.seed)
        n_hold = int(round(len(frame) * cfg.ingest.holdout_fraction))
        if len(frame) - n_hold < 2:
            raise InputDataError(source, f"only {len(frame)} rows: too few to train on")
        order = rng.permutation(len(frame))
        holdout = frame.iloc[np.sort(order[:n_hold])].reset_index(drop=True)
        train = frame.iloc[np.sort(order[n_hold:])].reset_index(drop=True)
        holdout_hash = None

    meta = {
        "dataset": dataset,
        "source": str(source),
        "source_hash": source_hash,
        "holdout_source": ds.holdout_source,
        "holdout_hash": holdout_hash,
        "rows": len(train),
        "holdout_rows": len(holdout),
        **schema.to_dict(),
    }
    with atomic_dir(paths.prepared) as tmp:
        train.to_parquet(tmp / "train.parquet", index=False)
        holdout.to_parquet(tmp / "holdout.parquet", index=False)
        write_json(tmp / "schema.json", meta)
    log.info("ingest %s: %d training rows, %d holdout rows, kinds: %s", dataset, len(train), len(holdout),
             ", ".join(f"{c.name}={c.kind}" for c in schema.columns))
    return IngestResult(dataset, len(train), len(holdout), schema, source_hash)


def prepared_meta(paths: StagePaths) -> dict:
    """What ingest recorded (``schema.json``); its ``modality`` says which loader fits."""
    from pipeline.io import read_json

    if not paths.schema.exists():
        raise InputDataError(paths.prepared, "no prepared data: run the ingest stage first")
    return read_json(paths.schema)


def load_prepared(paths: StagePaths) -> tuple[pd.DataFrame, pd.DataFrame, TableSchema, dict]:
    """Read what ingest wrote for a table: (train, holdout, schema, schema.json contents)."""
    meta = prepared_meta(paths)
    if meta.get("modality") == "image":
        raise ConfigError(f"{paths.root.name}: an image dataset (ingested to {paths.prepared}), not a table")
    return (pd.read_parquet(paths.train_data), pd.read_parquet(paths.holdout_data),
            TableSchema.from_dict(meta), meta)


def load_prepared_images(paths: StagePaths) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Read what ingest wrote for images: (train, holdout, schema.json contents), frames in the
    image layout (``pipeline.images``)."""
    meta = prepared_meta(paths)
    if meta.get("modality") != "image":
        raise ConfigError(f"{paths.root.name}: a table dataset (ingested to {paths.prepared}), not images")
    return pd.read_parquet(paths.train_data), pd.read_parquet(paths.holdout_data), meta
