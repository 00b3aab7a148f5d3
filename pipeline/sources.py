"""Reading a source: one CSV or Parquet file as a frame of raw values, or one clear error; and the
files of a source (a folder, a glob, a partitioned dataset) as one frame or as record batches.

``read_source`` is the entry point (the ingest stage calls it for the source and the holdout). A
source may be a local path or any fsspec URL (``s3://``, ``gs://``, ``memory://``...): an object is
fetched once into a local file (``pipeline.stores.local_copy``) and everything below reads that. The
format is decided by the file's first bytes, then its name; gzip, bz2 and xz are read whatever the
name; the encoding is the configured one, or the one a byte-order mark names, and the whole text is
checked once. For CSV the delimiter and the header are sniffed, every record must have as many
fields as the first, and values stay strings (``pipeline.schema`` casts them). Parquet keeps its
types; columns the pipeline cannot model (nested, binary) are refused. Every problem raises
InputDataError naming the file, the column and the reason.

``source_parts`` lists a source's files (every CSV/Parquet file under a folder, a partitioned
Parquet dataset's ``key=value`` folders becoming columns, or a glob's matches; local or in a
store); ``read_whole`` reads several small ones as one frame in name order, ``batches`` reads any
number in record batches (``pipeline.streamed``, a big table, reads them so).
"""

from __future__ import annotations

import codecs
import collections
import csv
import glob
import hashlib
import io
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import CsvOptions, DatasetConfig
from pipeline.errors import ConfigError, InputDataError
from pipeline.stores import check_not_masked, is_url, local_copy, local_path, one_line, open_store

log = logging.getLogger(__name__)

# pandas' own NA spellings plus "?" (the UCI convention).
DEFAULT_NA = ["", "?", "NA", "N/A", "n/a", "NaN", "nan", "-nan", "NULL", "null", "None", "#N/A", "<NA>"]
_SNIFF_BYTES = 64 * 1024
_WHITESPACE = r"\s+"  # columns separated by runs of spaces or tabs
# Every column is a model input and a metric pair: past this many, a table is too wide to learn.
MAX_COLUMNS = 2000
_COMPRESSED = [(b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz")]
# Longest first: the UTF-32 little-endian mark starts with the UTF-16 one.
_BOMS = [(b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"), (b"\xef\xbb\xbf", "utf-8-sig"),
         (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")]


def shown_name(name: object) -> str:
    """A column name fit for a one-line message (a newline in a name would break the line)."""
    text = str(name)
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _format_of(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    # The bytes decide before the name: a Parquet file called x.csv is still Parquet.
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PAR1" or path.suffix.lower() in (".parquet", ".pq"):
        return "parquet"  # a .parquet without the magic bytes is refused by the Parquet reader, by name
    return "csv"


def _compression(path: Path) -> str | None:
    """gzip, bz2 or xz from the file's first bytes (whatever its name), else None."""
    with open(path, "rb") as f:
        head = f.read(6)
    if head.startswith(b"PK\x03\x04"):
        raise InputDataError(path, "is a ZIP archive: unzip it and set the dataset's source to the CSV inside")
    return next((name for magic, name in _COMPRESSED if head.startswith(magic)), None)


def _open_bytes(path: Path, compression: str | None):
    import bz2
    import gzip
    import lzma

    return {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}.get(compression, open)(path, "rb")


def _open_text(path: Path, encoding: str, compression: str | None):
    """Open a possibly compressed text file (the text was checked by ``_check_text``)."""
    return io.TextIOWrapper(_open_bytes(path, compression), encoding=encoding, newline="")


def _encoding(path: Path, opts: CsvOptions, compression: str | None, dataset: str) -> str:
    """The configured encoding, or the one a byte-order mark names when it is left at utf-8."""
    try:
        configured = codecs.lookup(opts.encoding).name
    except LookupError:
        raise ConfigError(f"datasets.{dataset}.csv.encoding: {opts.encoding!r} is not an encoding Python knows "
                          "(e.g. utf-8, latin-1, cp1252)") from None
    try:
        with _open_bytes(path, compression) as f:
            head = f.read(4)
    except (OSError, EOFError):
        head = b""  # a damaged compressed stream: _check_text refuses it by name
    if configured != "utf-8":
        return opts.encoding
    return next((enc for bom, enc in _BOMS if head.startswith(bom)), opts.encoding)


def _check_text(path: Path, encoding: str, compression: str | None, dataset: str) -> None:
    """Decode the whole file once (C speed): refuse bytes that are not ``encoding`` and NUL
    characters (pandas would cut the value there), naming the line."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset = lines = 0  # bytes and newlines before the current chunk
    try:
        with _open_bytes(path, compression) as f:
            while chunk := f.read(1 << 20):
                pending = decoder.getstate()[0]
                try:
                    text = decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    data = pending + chunk
                    line = lines + data[:exc.start].count(b"\n") + 1
                    raise InputDataError(path, (
                        f"is not valid {encoding} text: byte 0x{data[exc.start]:02x} at offset "
                        f"{offset - len(pending) + exc.start} (line {line}); set datasets.{dataset}.csv.encoding "
                        "to the file's encoding (e.g. latin-1 or cp1252), or save the file as UTF-8")) from None
                nul = text.find("\0")
                if nul >= 0:
                    line = lines + text.count("\n", 0, nul) + 1
                    if offset == 0 and text.count("\0", 0, 4096) * 4 > min(len(text), 4096):
                        odd = chunk[1:4096:2].count(0) > chunk[0:4096:2].count(0)
                        raise InputDataError(path, (
                            "is full of NUL bytes: it looks like UTF-16 text without a byte-order mark; "
                            f"set datasets.{dataset}.csv.encoding to {'utf-16-le' if odd else 'utf-16-be'}"))
                    raise InputDataError(path, f"line {line} contains a NUL byte (not text: pandas would cut "
                                               "the value there); remove it, or check csv.encoding")
                lines += text.count("\n")
                offset += len(chunk)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise InputDataError(path, f"ends inside a {encoding} character (a cut file?); set "
                                   f"datasets.{dataset}.csv.encoding if it is not {encoding}") from None
    except (OSError, EOFError, ValueError) as exc:  # a damaged gzip/bz2/xz stream
        raise InputDataError(path, f"cannot be read{f' as {compression}' if compression else ''}: "
                                   f"{_one_line(exc)}") from None


def _sniff(path: Path, opts: CsvOptions, encoding: str, compression: str | None) -> tuple[str, list[str]]:
    """Detect the delimiter; return it with the first parsed lines (for header detection)."""
    with _open_text(path, encoding, compression) as f:
        head = f.read(_SNIFF_BYTES)
    if not head.strip():
        raise InputDataError(path, "the file is empty" if not head else "the file is empty (only whitespace)")
    lines = head.splitlines()
    if len(head) == _SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut
    sample = "\n".join(l for l in lines if l.strip())  # noqa: E741
    sep = opts.sep
    if sep == "auto":
        try:
            sep = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
        except csv.Error:
            counts = {d: sample.splitlines()[0].count(d) for d in ",;\t|"}
            sep = max(counts, key=counts.get) if max(counts.values()) else _WHITESPACE
        if sep in ("\t", _WHITESPACE) and (_constant_width(sample.split("\n"), None)
                                           > _constant_width(sample.split("\n"), "\t")):
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


def _records(f, sep: str):
    """csv records of an open text file; runs of spaces and tabs for the whitespace separator."""
    if sep == _WHITESPACE:
        return csv.reader((line.replace("\t", " ") for line in f), delimiter=" ", skipinitialspace=True)
    return csv.reader(f, delimiter=sep, skipinitialspace=True)


def _blank(record: list[str]) -> bool:
    """A blank (or whitespace-only) line, which pandas skips."""
    return len(record) <= 1 and not "".join(record).strip()


def _fits(record: list[str], width: int) -> bool:
    """Whether a record has ``width`` fields; one more that is empty is a trailing delimiter (pandas
    reads it so), and a blank line is skipped."""
    n = len(record)
    return n == width or (n == width + 1 and not record[-1].strip()) or _blank(record)


def _check_fields(path: Path, encoding: str, compression: str | None, sep: str, header: bool) -> list[str]:
    """One streaming pass over the records: each must have as many fields as the first (pandas
    would drop extra fields and pad short rows silently). Returns the first record, complete."""
    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)  # pandas has no field size limit; nor has this check
    what = "the header has" if header else "the first line has"
    try:
        with _open_text(path, encoding, compression) as f:
            reader = _records(f, sep)
            first = next((r for r in reader if not _blank(r)), [])
            width = len(first)
            if width > MAX_COLUMNS:
                raise InputDataError(path, f"has {width} columns, more than the {MAX_COLUMNS} the pipeline models: "
                                           "keep the columns you need in a smaller file")
            # C-speed count of the field counts; the line-by-line walk only when one differs.
            if set(collections.Counter(map(len, reader))) <= {width}:
                return first
        with _open_text(path, encoding, compression) as f:
            reader = _records(f, sep)
            next((r for r in reader if not _blank(r)), None)
            start = reader.line_num + 1
            for record in reader:
                if not _fits(record, width):
                    n = len(record)
                    fix = "write NA for a missing value" if sep == _WHITESPACE else f"quote values that contain {sep!r}"
                    raise InputDataError(path, f"cannot be parsed as CSV: line {start} has {n} field{'s' * (n != 1)}, "
                                               f"{what} {width}; {fix} and give every row the same number of fields")
                start = reader.line_num + 1
        return first
    except csv.Error as exc:
        raise InputDataError(path, f"cannot be parsed as CSV with delimiter {sep!r}: {_one_line(exc)}") from None
    finally:
        csv.field_size_limit(limit)


def _looks_numeric(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _has_header(rows: list[list[str]], na: set[str]) -> bool:
    """A header row is one whose cells are all text, where some column below holds numbers, or
    whose cells never reappear in their column below. An empty cell does not rule a header out
    when numbers below other cells show it is one (it is then refused by name)."""
    first, body = [c.strip() for c in rows[0]], rows[1:51]
    named = [c for c in first if c]
    if not named or any(_looks_numeric(c) or c in na for c in named):
        return False
    if not body:
        return True
    for j, name in enumerate(first):
        col = [r[j].strip() for r in body if j < len(r) and r[j].strip() not in na]
        if name and col and all(_looks_numeric(v) for v in col):
            return True
    if len(named) < len(first):
        return False  # a data row with a missing value, as far as the text shows
    # All-text table: a header's names do not repeat as values in their own columns.
    return not any(name in {r[j].strip() for r in body if j < len(r)} for j, name in enumerate(first))


def _csv_reader_args(path: Path, opts: CsvOptions, dataset: str) -> tuple[dict, bool]:
    """Check a CSV file whole (encoding, NUL bytes, field counts, header names) and return the
    ``pandas.read_csv`` arguments that read it, with whether it has a header."""
    na = DEFAULT_NA if opts.na_values == "auto" else list(opts.na_values)
    compression = _compression(path)
    encoding = _encoding(path, opts, compression, dataset)
    _check_text(path, encoding, compression, dataset)
    sep, rows = _sniff(path, opts, encoding, compression)
    if opts.names is not None:
        header = False  # the names are the header the file lacks
    else:
        header = _has_header(rows, set(na)) if opts.header == "auto" else opts.header
    first = _check_fields(path, encoding, compression, sep, header)
    if opts.names is not None and len(opts.names) != len(first):
        raise InputDataError(path, f"has {len(first)} columns but datasets.{dataset}.csv.names gives "
                                   f"{len(opts.names)} names: give one name per column, in order")
    if header:
        names = [c.strip() for c in first]
        empty = [i for i, n in enumerate(names) if not n]
        if empty:
            trailing = " (or remove the delimiter at the end of every line)" if empty == [len(names) - 1] else ""
            raise InputDataError(path, f"header cell {empty[0] + 1} is empty: give every column a name{trailing}")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InputDataError(path, "duplicate column name in the header: rename one of them",
                                 column=shown_name(dupes[0]))
    args = dict(sep=sep, header=0 if header else None, dtype=str, keep_default_na=False, index_col=False,
                na_values=na, skipinitialspace=True, encoding=encoding, compression=compression,
                engine="c")  # the C engine also handles the whitespace pattern
    return args, header


def _named(df: pd.DataFrame, header: bool, names: list[str] | None) -> pd.DataFrame:
    if header:
        df.columns = [str(c).strip() for c in df.columns]
    elif names is not None:
        df.columns = list(names)
    else:
        df.columns = [f"column_{i}" for i in range(df.shape[1])]
    return df


def _read_csv(path: Path, opts: CsvOptions, dataset: str = "<name>") -> pd.DataFrame:
    args, header = _csv_reader_args(path, opts, dataset)
    try:
        df = pd.read_csv(path, **args)
    except pd.errors.EmptyDataError:
        raise InputDataError(path, "the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InputDataError(path, f"cannot be parsed as CSV with delimiter {args['sep']!r}: "
                                   f"{_one_line(exc)}") from None
    df = _named(df, header, opts.names)
    log.info("read %s as CSV (delimiter %r, header %s, %s): %d rows x %d columns",
             path, args["sep"], header, args["encoding"], *df.shape)
    return df


def _modelable(t: pa.DataType) -> bool:
    """Arrow types that hold one scalar the pipeline can model (nested and binary ones do not)."""
    if pa.types.is_dictionary(t):
        return _modelable(t.value_type) and not pa.types.is_dictionary(t.value_type)
    return any(check(t) for check in (
        pa.types.is_boolean, pa.types.is_integer, pa.types.is_floating, pa.types.is_decimal, pa.types.is_string,
        pa.types.is_large_string, pa.types.is_date, pa.types.is_timestamp, pa.types.is_null))


def _check_parquet(path: Path, ds: DatasetConfig, dataset: str) -> pa.Schema:
    """The Parquet file's Arrow schema, after refusing what the pipeline cannot model (by column)."""
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputDataError(path, f"not a readable Parquet file ({_one_line(exc)})") from None
    dupes = sorted({n for n in schema.names if schema.names.count(n) > 1})
    if dupes:
        raise InputDataError(path, "duplicate column name", column=shown_name(dupes[0]))
    if "" in schema.names:
        raise InputDataError(path, f"column {schema.names.index('') + 1} has an empty name: name it (an unnamed "
                                   "column cannot be a target or be listed in column_types or drop_columns)")
    if len(schema) > MAX_COLUMNS:
        raise InputDataError(path, f"has {len(schema)} columns, more than the {MAX_COLUMNS} the pipeline models: "
                                   "keep the columns you need in a smaller file")
    for field in schema:
        if field.name not in ds.drop_columns and not _modelable(field.type):
            nested = pa.types.is_nested(field.type)
            shown = str(field.type) if len(str(field.type)) <= 120 else str(field.type)[:117] + "..."
            raise InputDataError(path, (
                f"has the Arrow type {shown}, {'a nested type ' if nested else ''}which the pipeline cannot model: "
                f"{'flatten it into scalar columns' if nested else 'convert it to a string, number or timestamp'} "
                f"or drop it (datasets.{dataset}.drop_columns: [{shown_name(field.name)}])"),
                column=shown_name(field.name))
    return schema


def _read_parquet(path: Path, ds: DatasetConfig, dataset: str = "<name>") -> pd.DataFrame:
    _check_parquet(path, ds, dataset)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputDataError(path, f"cannot be read: {_one_line(exc)}") from None
    return _parquet_frame(path, table)


def _parquet_frame(path: Path, table: pa.Table) -> pd.DataFrame:
    """A Parquet table (or one batch of it) as pandas, integers with nulls kept integers."""
    try:
        df = table.to_pandas()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputDataError(path, f"cannot be read: {_one_line(exc)}") from None
    # Integer columns with nulls would turn float in pandas; keep them integers (nullable).
    for field in table.schema:
        if pa.types.is_integer(field.type) and table.column(field.name).null_count:
            dtype = pd.api.types.pandas_dtype(("UInt" if pa.types.is_unsigned_integer(field.type) else "Int")
                                              + str(field.type.bit_width))
            df[field.name] = table.column(field.name).to_pandas(types_mapper={field.type: dtype}.get)
    # The release casts back to the types pandas changes (decimal, dictionary, large_string).
    df.attrs["arrow_types"] = {f.name: f.type for f in table.schema}
    return df


def read_source(path: str | Path, ds: DatasetConfig, column_names: list[str] | None = None,
                dataset: str = "<name>") -> pd.DataFrame:
    """Read one source file as a frame of raw values (strings for CSV, typed for Parquet). ``path``
    may be an fsspec URL: the object is fetched once and read as a local file (errors name the URL)."""
    with local_copy(path) as local:
        return _read_file(local, ds, column_names, dataset)


def _read_file(path: Path, ds: DatasetConfig, column_names: list[str] | None, dataset: str) -> pd.DataFrame:
    if not path.exists():
        raise InputDataError(path, "file not found")
    if path.is_dir():
        raise InputDataError(path, "is a directory, expected a CSV or Parquet file")
    if not path.is_file():
        raise InputDataError(path, "is not a regular file (a FIFO or device?): expected a CSV or Parquet file")
    if path.stat().st_size == 0:
        raise InputDataError(path, "the file is empty")
    fmt = _format_of(path, ds.format)
    df = _read_parquet(path, ds, dataset) if fmt == "parquet" else _read_csv(path, ds.csv, dataset)
    if df.shape[1] == 0:
        raise InputDataError(path, "no columns")
    if len(df) == 0:
        raise InputDataError(path, "has a header but no data rows" if fmt == "csv" else "has no rows")
    if column_names is not None and fmt == "csv" and list(df.columns) != column_names:
        if df.columns[0] == "column_0" and df.shape[1] == len(column_names):
            df.columns = column_names  # a headerless holdout takes the training file's names
    return df.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# In record batches (a big table: pipeline.streamed)


def count_rows(path: Path, ds: DatasetConfig) -> int:
    """The rows of one local source file without reading its values: a Parquet file's metadata,
    or a CSV file's line count (an upper bound: blank lines and the header count too)."""
    if _format_of(path, ds.format) == "parquet":
        try:
            return pq.ParquetFile(path).metadata.num_rows
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputDataError(path, f"not a readable Parquet file ({_one_line(exc)})") from None
    lines = 0
    with _open_bytes(path, _compression(path)) as f:
        while chunk := f.read(1 << 22):
            lines += chunk.count(b"\n")
    return lines + 1


def iter_batches(path: Path, ds: DatasetConfig, batch_rows: int, dataset: str = "<name>"):
    """One local source file as frames of at most ``batch_rows`` raw rows each (strings for CSV,
    typed for Parquet), after the same checks as ``read_source``."""
    if _format_of(path, ds.format) == "parquet":
        _check_parquet(path, ds, dataset)
        try:
            # Pages are read as they are decoded, not a whole row group's buffers at once.
            reader = pq.ParquetFile(path, buffer_size=1 << 22, pre_buffer=False)
            for batch in reader.iter_batches(batch_size=batch_rows):
                yield _parquet_frame(path, pa.Table.from_batches([batch]))
        except (pa.ArrowException, OSError) as exc:
            raise InputDataError(path, f"cannot be read: {_one_line(exc)}") from None
        return
    args, header = _csv_reader_args(path, ds.csv, dataset)
    try:
        with pd.read_csv(path, chunksize=batch_rows, **args) as chunks:
            for chunk in chunks:
                yield _named(chunk, header, ds.csv.names).reset_index(drop=True)
    except pd.errors.EmptyDataError:
        raise InputDataError(path, "the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InputDataError(path, f"cannot be parsed as CSV with delimiter {args['sep']!r}: "
                                   f"{_one_line(exc)}") from None


# ---------------------------------------------------------------------------------------------
# The files of a source (a folder, a glob, partitions): one frame, or record batches

SOURCE_SUFFIXES = (".parquet", ".pq", ".csv", ".tsv", ".txt", ".gz", ".bz2", ".xz")


def source_parts(source: str | Path) -> list[str | Path]:
    """The files of a table source in name order: the file itself, every source file under a
    folder (names starting with '.' or '_' skipped, as Spark and Hive write them), or a glob's
    matches. Local paths come back as Paths, files in a store as URLs."""
    text = str(source)
    if is_url(text):
        return _store_parts(text)
    path = local_path(source)
    if any(ch in text for ch in "*?[") and not path.exists():
        found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not found:
            raise InputDataError(text, "no file matches this pattern")
        return found
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and _source_file(p.relative_to(path).parts))
        if not found:
            raise InputDataError(path, "is a folder with no CSV or Parquet file in it")
        return found
    return [path]


def _source_file(parts: tuple[str, ...]) -> bool:
    name = parts[-1].lower()
    return not any(p.startswith((".", "_")) for p in parts) and name.endswith(SOURCE_SUFFIXES)


def _store_parts(url: str) -> list[str]:
    check_not_masked(url)
    try:
        fs, path = open_store(url)
    except ValueError as exc:
        raise InputDataError(url, str(exc)) from None
    protocol = url.split("://", 1)[0]
    try:
        if any(ch in path for ch in "*?["):
            found = sorted(fs.glob(path))
        elif fs.info(path).get("type") == "directory":
            found = sorted(p for p in fs.find(path) if _source_file(tuple(p[len(path.rstrip("/")) + 1:].split("/"))))
        else:
            return [url]
    except FileNotFoundError:
        raise InputDataError(url, "file not found") from None
    except Exception as exc:  # the store's own errors (credentials, network)
        raise InputDataError(url, f"cannot be read: {one_line(exc)}") from exc
    if not found:
        raise InputDataError(url, "no CSV or Parquet file there")
    return [f"{protocol}://{p}" for p in found]


def partition_values(part: str | Path, root: str | Path) -> dict[str, str]:
    """The ``key=value`` folders between a source folder and one of its files (Hive partitioning)."""
    p, r = str(part), str(root).rstrip("/")
    if not is_url(p):
        p, r = str(Path(p).resolve()), str(Path(r or ".").resolve())
    rel = p[len(r) + 1:] if p.startswith(r + "/") else ""
    return dict(seg.split("=", 1) for seg in rel.split("/")[:-1] if "=" in seg and not seg.startswith("="))


@contextmanager
def opened(part: str | Path, folder: Path) -> Iterator[Path]:
    """A local path holding one part (an object in a store fetched into ``folder`` meanwhile)."""
    with local_copy(part, folder) as local:
        yield local


def total_rows(parts: list, ds, folder: Path) -> int:
    rows = 0
    for part in parts:
        with opened(part, folder) as local:
            if not local.exists():
                raise InputDataError(local, "file not found")
            rows += count_rows(local, ds)
    return rows


def batches(parts: list, root, ds, batch_rows: int, folder: Path, dataset: str) -> Iterator[tuple[str, pd.DataFrame]]:
    """(the part's name, one raw frame) for every batch of every part, with the partition columns
    and the first part's columns checked on every other."""
    columns = None
    for part in parts:
        extra = partition_values(part, root)  # {} for a lone file given as the source
        with opened(part, folder) as local:
            for raw in iter_batches(local, ds, batch_rows, dataset):
                for k, v in extra.items():
                    if k not in raw.columns:
                        raw[k] = v
                if columns is None:
                    columns = list(raw.columns)
                elif list(raw.columns) != columns:
                    if sorted(map(str, raw.columns)) != sorted(map(str, columns)):
                        raise InputDataError(part, "has other columns than the first file of the source ("
                                             + ", ".join(shown_name(c) for c in columns[:8]) + "): every file "
                                             "of one source needs the same columns")
                    raw = raw[columns]
                yield str(part), raw


def read_whole(parts: list, root, ds, folder: Path, dataset: str) -> tuple[pd.DataFrame, str]:
    """Several small files as one raw frame (name order), with the hash of their bytes (``source_hash``)."""
    frames = [raw for _, raw in batches(parts, root, ds, 1 << 30, folder, dataset)]
    frame = pd.concat(frames, ignore_index=True)
    frame.attrs = frames[0].attrs
    return frame, source_hash(parts, folder)


def partition_root(source) -> str:
    """The folder a source's partition folders are named under (a glob's fixed part)."""
    text = str(source)
    cut = min((text.index(ch) for ch in "*?[" if ch in text), default=None)
    return text[:text.rfind("/", 0, cut)] if cut is not None else text


def source_hash(parts: list, folder: Path) -> str:
    """The sha256 of a one-file source's bytes; of the parts' sha256s, one per line, for several."""
    from pipeline.files import sha256_file

    hashes = []
    for part in parts:
        with opened(part, folder) as local:
            hashes.append(sha256_file(local))
    return hashes[0] if len(hashes) == 1 else hashlib.sha256("\n".join(hashes).encode()).hexdigest()
