"""Hostile table inputs, generated into tmp_path: each is refused with one line naming the file, the
column (or line) and the fix, or read correctly. Either way nothing is written outside tmp_path,
and a refused input writes nothing at all."""

from __future__ import annotations

import decimal
import gzip
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import generate, ingest, score, train
from pipeline.artifacts import StagePaths, load_prepared
from pipeline.errors import ConfigError, InputDataError
from pipeline.files import read_json
from pipeline.metrics.utility import score_utility, utility_task
from pipeline.schema import TableSchema, describe
from tests.conftest import REPO, tiny_config

N = 12  # rows of the generated tables: enough to infer kinds, small enough to stay fast


def _text(name: str, text: str, encoding: str = "utf-8", newline: str = "\n") -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        (d / name).write_bytes(text.replace("\n", newline).encode(encoding))
        return d / name
    return make


def _bytes(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        (d / name).write_bytes(data)
        return d / name
    return make


def _parquet(name: str, columns: dict[str, pa.Array] | Callable[[], pa.Table]) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        table = columns() if callable(columns) else pa.table(columns)
        pq.write_table(table, d / name)
        return d / name
    return make


def _csv(header: str, rows: list[str]) -> str:
    return header + "\n" + "\n".join(rows) + "\n"


NUMS = [f"{i},{'xy'[i % 2]}" for i in range(N)]  # rows of a two-column (integer, text) table
DATES_PLUS = [f"2020-01-{i + 1:02d}T00:00:00+0{i % 6}:00,{i % 3}" for i in range(N)]


def _deep_struct() -> pa.Table:
    t: pa.DataType = pa.int64()
    for _ in range(12):
        t = pa.struct([("inner", t)])
    value: object = 1
    for _ in range(12):
        value = {"inner": value}
    return pa.table({"deep": pa.array([value] * N, t), "v": pa.array([i % 3 for i in range(N)])})


def _symlink(d: Path) -> Path:
    outside = d.parent / "outside"
    outside.mkdir()
    (outside / "real.csv").write_text(_csv("n,g", NUMS))
    (d / "link.csv").symlink_to(outside / "real.csv")
    return d / "link.csv"


def _directory(d: Path) -> Path:
    (d / "folder.csv").mkdir()
    return d / "folder.csv"


def _gzip_named_csv(d: Path) -> Path:
    (d / "packed.csv").write_bytes(gzip.compress(_csv("n,g", NUMS).encode()))
    return d / "packed.csv"


def _zip(d: Path) -> Path:
    with zipfile.ZipFile(d / "table.csv", "w") as z:
        z.writestr("inner.csv", _csv("n,g", NUMS))
    return d / "table.csv"


def _truncated_parquet(d: Path) -> Path:
    pq.write_table(pa.table({"a": list(range(100))}), d / "cut.parquet")
    data = (d / "cut.parquet").read_bytes()
    (d / "cut.parquet").write_bytes(data[: len(data) // 2])
    return d / "cut.parquet"


def _parquet_as_csv(d: Path) -> Path:
    pq.write_table(pa.table({"small": pa.array(np.arange(N) % 4, pa.int8()), "g": ["ab"[i % 2] for i in range(N)]}),
                   d / "x.csv")
    return d / "x.csv"


def _typed_source() -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table({
        "price": pa.array([decimal.Decimal(f"{v:.2f}") for v in rng.gamma(2, 30, N)], pa.decimal128(10, 2)),
        "grade": pa.array(["ab"[i % 2] for i in range(N)]).dictionary_encode(),
        "note": pa.array(["pq"[i % 3 == 0] for i in range(N)], pa.large_string()),
        "small": pa.array(rng.integers(-5, 5, N), pa.int8()),
        "ratio": pa.array(rng.normal(0, 1, N), pa.float32()),
        "seen": pa.array(np.datetime64("2021-03-01T10:00:00", "us")
                         + rng.integers(0, 10**9, N).astype("timedelta64[us]"),
                         pa.timestamp("us", tz="Europe/Paris")),
        "day": pa.array(np.datetime64("2021-01-01") + rng.integers(0, 300, N).astype("timedelta64[D]"), pa.date32()),
    })


def _types_kept(train: pd.DataFrame, schema: TableSchema, src: Path) -> None:
    """What generate releases (``to_release`` of the prepared table) carries the source's types."""
    source = pq.read_table(src)
    released = schema.to_release(pa.Table.from_pandas(train, schema=schema.arrow(), preserve_index=False))
    for name in ("price", "grade", "note", "small", "ratio", "seen"):
        assert released.schema.field(name).type == source.schema.field(name).type, name
        assert released.column(name).equals(source.column(name)), name
    # Dates come back as midnight timestamps: the score stage reads date32 as Python dates.
    assert released.schema.field("day").type == pa.timestamp("ns")
    assert released.column("day").cast(pa.date32()).equals(source.column("day"))
    assert pd.read_parquet(src).columns.tolist() == released.schema.names


@dataclass
class Case:
    make: Callable[[Path], Path]  # writes the source into the data folder, returns its path
    refused: tuple[str, ...] = ()  # words the one-line error must hold (the file is always checked)
    check: Callable[[pd.DataFrame, TableSchema, Path], None] | None = None  # an input read correctly
    target: str | None = None
    overrides: dict = field(default_factory=dict)
    error: type[Exception] = InputDataError


def _values(column: str, expected: list) -> Callable[[pd.DataFrame, TableSchema, Path], None]:
    return lambda df, schema, src: _equal(df[column].tolist(), expected)


def _equal(got, expected) -> None:
    assert got == expected


CASES: dict[str, Case] = {
    # 1. time zones
    "tz_all_offsets": Case(_text("tz.csv", _csv("when,v", DATES_PLUS)), check=lambda df, s, src: _equal(
        df["when"].tolist(), [pd.Timestamp(f"2020-01-{i + 1:02d}") - pd.Timedelta(hours=i % 6) for i in range(N)])),
    "tz_some_without_offset": Case(_text("tz.csv", _csv("when,v", DATES_PLUS[:-1] + ["2020-02-01 00:00:00,1"])),
                                   refused=("column 'when'", "'2020-01-01T00:00:00+00:00'", "'2020-02-01 00:00:00'",
                                            "write every value with an offset, or none")),
    # 2. nested Parquet
    "nested_list": Case(_parquet("n.parquet", {"tags": pa.array([[1, 2]] * N),
                                               "v": pa.array([i % 3 for i in range(N)])}),
                        refused=("column 'tags'", "list<element: int64>", "drop_columns: [tags]")),
    "nested_map": Case(_parquet("m.parquet", {"m": pa.array([[("k", 1)]] * N, pa.map_(pa.string(), pa.int64())),
                                              "v": pa.array([i % 3 for i in range(N)])}),
                       refused=("column 'm'", "map<string, int64", "flatten it", "drop_columns: [m]")),
    "nested_struct_deep": Case(_parquet("d.parquet", _deep_struct), refused=("column 'deep'", "struct<inner: struct<",
                                                                               "...", "drop_columns: [deep]")),
    "nested_dropped_works": Case(_parquet("n.parquet", {"tags": pa.array([[1]] * N),
                                                        "v": pa.array([i % 3 for i in range(N)])}),
                                 overrides={"datasets.tiny.drop_columns": ["tags"]},
                                 check=lambda df, s, src: _equal(s.names, ["v"])),
    "binary_column": Case(_parquet("b.parquet", {"blob": pa.array([b"\x00\x01"] * N),
                                                 "v": pa.array([i % 3 for i in range(N)])}),
                          refused=("column 'blob'", "Arrow type binary", "convert it to a string", "drop_columns")),
    # 3. non-finite and huge numbers
    "inf_text": Case(_text("inf.csv", _csv("x,g", [f"{'inf' if i == 3 else i + 0.5},a" for i in range(N)])),
                     refused=("column 'x'", "'inf' is not a finite number", "leave the cell empty for a null")),
    "overflow_text": Case(_text("o.csv", _csv("x,g", [f"{'1e400' if i == 2 else i + 0.5},a" for i in range(N)])),
                          refused=("column 'x'", "'1e400' is not a finite number")),
    "neg_inf_parquet": Case(_parquet("i.parquet", {"x": pa.array([1.5, -np.inf] + [2.5] * (N - 2))}),
                            refused=("column 'x'", "-inf is not a finite number", "leave the cell empty")),
    "huge_1e308": Case(_text("h.csv", _csv("x,g", [f"{'1e308' if i == 1 else i + 0.5},a" for i in range(N)])),
                       refused=("column 'x'", "'1e308' is larger in magnitude than 1e+150", "rescale the column")),
    "huge_integer": Case(_text("h.csv", _csv("n,g", [f"{'99999999999999999999' if i == 1 else i % 3},a"
                                                     for i in range(N)])),
                         refused=("column 'n'", "does not fit in a 64-bit integer", "column_types")),
    "large_but_fine_1e100": Case(_text("h.csv", _csv("x,g", [f"{i + 1}.25e100,a" for i in range(N)])),
                                 check=_values("x", [float(f"{i + 1}.25e100") for i in range(N)])),
    # 4. ragged rows
    "ragged_long_row": Case(_text("r.csv", _csv("a,b", NUMS[:2] + ["3,4,5,6"] + NUMS[2:])),
                            refused=("cannot be parsed as CSV", "line 4 has 4 fields, the header has 2")),
    "ragged_short_row": Case(_text("r.csv", _csv("a,b,c", ["1,2,3", "4,5,6", "7,8"] + ["1,2,3"] * N)),
                             refused=("line 4 has 2 fields, the header has 3",)),
    "ragged_after_quoted_newline": Case(_text("r.csv", _csv("a,b", ['"two\nlines",1', "lonely"] + NUMS)),
                                        refused=("line 4 has 1 field, the header has 2",)),
    "trailing_delimiter_every_line": Case(_text("t.csv", _csv("n,g", [r + "," for r in NUMS])),
                                          check=_values("g", ["xy"[i % 2] for i in range(N)])),
    "trailing_delimiter_in_header": Case(_text("t.csv", _csv("n,g,", [r + "," for r in NUMS])),
                                         refused=("header cell 3 is empty", "remove the delimiter at the end")),
    # 5. header with an empty cell
    "header_empty_cell": Case(_text("e.csv", _csv("a,,c", [f"{i},{i * 2},{'xy'[i % 2]}" for i in range(N)])),
                              refused=("header cell 2 is empty", "give every column a name")),
    "pandas_index_header": Case(_text("p.csv", _csv(",n,g", [f"{i},{r}" for i, r in enumerate(NUMS)])),
                                refused=("header cell 1 is empty",)),
    # 6. NUL bytes, BOMs, encodings
    "nul_byte": Case(_text("z.csv", _csv("n,g", NUMS[:1] + ["1,y\x00z"] + NUMS[2:])),
                     refused=("line 3 contains a NUL byte",)),
    "utf16_without_bom": Case(_text("u.csv", _csv("n,g", NUMS), encoding="utf-16-le"),
                              refused=("looks like UTF-16", "datasets.tiny.csv.encoding", "utf-16-le")),
    "utf16_with_bom": Case(_text("u.csv", _csv("n,name", [f"{i},café{i % 2}" for i in range(N)]), encoding="utf-16"),
                           check=lambda df, s, src: _equal((s.names, df["name"].iloc[0]), (["n", "name"], "café0"))),
    "utf8_bom": Case(_bytes("b.csv", b"\xef\xbb\xbf" + _csv("name,g", NUMS).encode()),
                     check=lambda df, s, src: _equal(s.names, ["name", "g"])),
    "latin1_not_utf8": Case(_text("l.csv", _csv("n,g", NUMS[:1] + ["1,café"] + NUMS[2:]), encoding="latin-1"),
                            refused=("is not valid utf-8 text: byte 0xe9 at offset", "(line 3)",
                                     "set datasets.tiny.csv.encoding", "latin-1")),
    "latin1_declared": Case(_text("l.csv", _csv("n,g", NUMS[:1] + ["1,café"] + NUMS[2:]), encoding="latin-1"),
                            overrides={"datasets.tiny.csv.encoding": "latin-1"},
                            check=lambda df, s, src: _equal(df["g"].iloc[1], "café")),
    "mixed_encodings": Case(_bytes("m.csv", _csv("n,g", ["0,é"] + NUMS[1:4]).encode()
                                   + "4,é\n".encode("latin-1") + "\n".join(NUMS[5:]).encode()),
                            refused=("byte 0xe9", "(line 6)", "csv.encoding")),
    "unknown_encoding": Case(_text("k.csv", _csv("n,g", NUMS)), overrides={"datasets.tiny.csv.encoding": "klingon"},
                             refused=("datasets.tiny.csv.encoding: 'klingon' is not an encoding",), error=ConfigError),
    "binary_garbage": Case(_bytes("g.csv", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))),
                           refused=("csv.encoding",)),
    # 7. Parquet types kept (decimal, dictionary, large_string, int8, float32, tz timestamps)
    "typed_parquet_kept": Case(_parquet("typed.parquet", _typed_source),
                               check=lambda df, s, src: _types_kept(df, s, src)),
    # 8. Parquet named .csv, compressed CSV named .csv, ZIP
    "parquet_named_csv": Case(_parquet_as_csv, check=lambda df, s, src: _equal(
        (str(df["small"].dtype), s["g"].kind), ("int8", "categorical"))),
    "gzip_named_csv": Case(_gzip_named_csv, check=_values("g", ["xy"[i % 2] for i in range(N)])),
    "zip_archive": Case(_zip, refused=("is a ZIP archive", "unzip it")),
    "gzip_cut_short": Case(_bytes("cut.csv.gz", gzip.compress(_csv("n,g", NUMS * 50).encode())[:-40]),
                           refused=("cannot be read as gzip",)),
    "whitespace_separated_ragged": Case(_text("w.data", _csv("1  2.5   x",
                                                             ["2  3.5   y"] * 5 + ["3  4.5"] + ["4  1.5   x"] * 5)),
                                        refused=("line 7 has 2 fields, the first line has 3",)),
    "integer_target_constant": Case(_text("c.csv", _csv("n,t", [f"{i % 4},5" for i in range(N)])), target="t",
                                    refused=("column 't'", "one value (5) in every row")),
    "truncated_parquet": Case(_truncated_parquet, refused=("not a readable Parquet file",)),
    # 9. constant target
    "constant_target": Case(_text("c.csv", _csv("n,t", [f"{i % 4},same" for i in range(N)])), target="t",
                            refused=("column 't'", "one value ('same') in every row",
                                     "choose another target column, or none")),
    # 11. booleans keep their spelling
    "yes_no_stays_text": Case(_text("y.csv", _csv("yn,tf,yy,declared", [
        f"{'Yes' if i % 2 else 'No'},{'TRUE' if i % 3 else 'false'},{'YN'[i % 2]},{'yes' if i % 2 else 'no'}"
        for i in range(N)])),
        overrides={"datasets.tiny.column_types": {"declared": "boolean"}},
        check=lambda df, s, src: _equal(
            ([s[c].kind for c in s.names], df["yn"].tolist()[:2], df["tf"].tolist()[:2], df["declared"].tolist()[:2]),
            (["categorical", "boolean", "categorical", "boolean"], ["No", "Yes"], [False, True], [False, True]))),
    # Size and shape
    "empty_file": Case(_text("e.csv", ""), refused=("the file is empty",)),
    "header_only": Case(_text("h.csv", "a,b,c\n"), refused=("has a header but no data rows",)),
    "only_whitespace": Case(_text("w.csv", "  \n\t\n   \n"), refused=("the file is empty (only whitespace)",)),
    "one_row": Case(_text("o.csv", "a,b\n1,x\n"), refused=("only 1 rows: too few to train on",)),
    "columns_10k": Case(_text("wide.csv", _csv(",".join(f"c{i}" for i in range(10_000)), [",".join("1" * 10_000)] * 2)),
                        refused=("has 10000 columns, more than the 2000",)),
    "single_line_5mb_of_numbers": Case(_text("l.csv", ",".join(["7"] * 2_500_000)), refused=("has 2500000 columns",)),
    "single_line_5mb_one_field": Case(_text("l.csv", "x" * 5_000_000), refused=("has a header but no data rows",)),
    # Names
    "duplicate_names_csv": Case(_text("d.csv", _csv("a,b,a", [f"{r},1" for r in NUMS])),
                                refused=("column 'a'", "duplicate column name")),
    "duplicate_names_parquet": Case(_parquet("d.parquet",
                                             lambda: pa.Table.from_arrays([pa.array([1, 2]), pa.array([3, 4])],
                                                                          names=["a", "a"])),
                                    refused=("column 'a'", "duplicate column name")),
    "empty_name_parquet": Case(_parquet("e.parquet",
                                        lambda: pa.Table.from_arrays([pa.array(range(N)), pa.array(range(N))],
                                                                     names=["a", ""])),
                               refused=("column 2 has an empty name",)),
    "shell_and_newline_names": Case(_parquet("s.parquet", {
                                        "$(touch pwned); rm -rf ~ | cat > x": pa.array([i % 3 for i in range(N)]),
                                        "two\nlines": pa.array(["ab"[i % 2] for i in range(N)]),
                                        "../../etc/passwd": pa.array([i % 2 for i in range(N)])}),
                                    check=lambda df, s, src: _equal(
                                        s.names,
                                        ["$(touch pwned); rm -rf ~ | cat > x", "two\nlines", "../../etc/passwd"])),
    "newline_name_in_error": Case(_parquet("s.parquet", {"bad\nname": pa.array([None] * N, pa.int64()),
                                                         "v": pa.array([i % 3 for i in range(N)])}),
                                  refused=("column 'bad\\nname'", "every value is missing")),
    # Quoting, line endings
    "quoted_newlines": Case(_text("q.csv", _csv("text,n", [f'"line {i}\nnext, ""quoted""",{i % 3}' for i in range(N)])),
                            check=_values("text", [f'line {i}\nnext, "quoted"' for i in range(N)])),
    "crlf": Case(_text("c.csv", _csv("n,g", NUMS), newline="\r\n"),
                 check=lambda df, s, src: _equal((s.names, df["g"].tolist()),
                                                 (["n", "g"], ["xy"[i % 2] for i in range(N)]))),
    # Paths
    "symlink_outside_data_folder": Case(_symlink, check=_values("g", ["xy"[i % 2] for i in range(N)])),
    "directory": Case(_directory, refused=("is a folder with no CSV or Parquet file",)),
    "missing_file": Case(lambda d: d / "nope.csv", refused=("file not found",)),
    # Columns
    "target_not_in_file": Case(_text("t.csv", _csv("n,g", NUMS)), target="nope",
                               refused=("column 'nope'", "target column not found (columns: n, g)")),
    "all_null_column": Case(_text("a.csv", _csv("n,b", [f"{i}," for i in range(N)])),
                            refused=("column 'b'", "every value is missing")),
    "date_sentinel_9999": Case(_text("d.csv", _csv("day,g", [f"{'9999-12-31' if i == 4 else f'2021-01-{i + 1:02d}'},a"
                                                             for i in range(N)])),
                               refused=("column 'day'", "'9999-12-31' is outside the dates", "leave the cell empty")),
    "timestamp_9999_parquet": Case(_parquet("t.parquet", {"ts": pa.array(
        [np.datetime64("2021-01-01", "us")] * (N - 1) + [np.datetime64("9999-12-31", "us")], pa.timestamp("us"))}),
        refused=("column 'ts'", "'9999-12-31 00:00:00' is outside the dates")),
}


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input(tmp_path, monkeypatch, name):
    case = CASES[name]
    data = tmp_path / "data"
    data.mkdir()
    src = case.make(data)
    cwd = tmp_path / "cwd"  # a relative path written by mistake would land here
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    repo_work = REPO / "work" / "tiny"
    repo_had_it = repo_work.exists()
    cfg = tiny_config(tmp_path, src, target=case.target, **{"ingest.holdout_fraction": 0.0, **case.overrides})
    prepared = StagePaths.of(cfg.work_dir, "tiny").prepared
    before = _files(tmp_path)
    if case.refused:
        with pytest.raises(case.error) as err:
            ingest.run(cfg, "tiny")
        msg = str(err.value)
        assert "\n" not in msg and len(msg) < 600, msg
        if case.error is InputDataError:
            assert msg.startswith(f"{src}: "), msg
        for words in case.refused:
            assert words in msg, msg
        assert _files(tmp_path) == before and not prepared.exists()
    else:
        ingest.run(cfg, "tiny")
        assert _files(tmp_path) - before == {prepared / "train.parquet", prepared / "holdout.parquet",
                                             prepared / "schema.json"}
        train_rows, _, schema, _ = load_prepared(StagePaths.of(cfg.work_dir, "tiny"))
        case.check(train_rows, schema, src)
    assert not any(cwd.iterdir())
    assert repo_work.exists() == repo_had_it
    assert not (data / "pwned").exists()


@pytest.mark.slow  # over a second: the fast tier stays under a minute
def test_typed_parquet_end_to_end_keeps_types_and_scores(tmp_path):
    """Decimal, dictionary, int8 ... survive train and generate into the released shards, the score
    stage reads them, and a label coded 1/2 is scored as classification."""
    n = 120
    rng = np.random.default_rng(1)
    source = pa.table({
        "price": pa.array([decimal.Decimal(f"{v:.2f}") for v in rng.gamma(2, 30, n)], pa.decimal128(10, 2)),
        "grade": pa.array(rng.choice(["a", "b", "c"], n)).dictionary_encode(),
        "small": pa.array(rng.integers(-5, 5, n), pa.int8()),
        "ratio": pa.array(rng.normal(0, 1, n), pa.float32()),
        "seen": pa.array(np.datetime64("2021-03-01T10:00:00", "us")
                         + rng.integers(0, 10**9, n).astype("timedelta64[us]"),
                         pa.timestamp("us", tz="UTC")),
        "label": pa.array(rng.choice([1, 2], n)),
    })
    src = tmp_path / "typed.parquet"
    pq.write_table(source, src)
    cfg = tiny_config(tmp_path, src, target="label", **{"train.epochs": 1})
    for stage in (ingest, train, generate, score):
        stage.run(cfg, "tiny")
    parts = sorted(StagePaths.of(cfg.work_dir, "tiny").synthetic.glob("part-*.parquet"))
    assert parts
    for part in parts:
        got = pq.read_schema(part)
        assert [(f.name, f.type) for f in got] == [(f.name, f.type) for f in source.schema]
    syn = pq.read_table(parts[0]).column("price").to_pylist()
    assert all(v.as_tuple().exponent == -2 for v in syn if v is not None)  # rounded to the scale
    metrics = read_json(StagePaths.of(cfg.work_dir, "tiny").details)["metrics"]  # text scores: in the record
    assert metrics["utility.task"] == "classification" and metrics["utility.metric"] == "roc_auc"


@pytest.mark.parametrize("codes, task", [([1, 2], "classification"), (list(range(1, 11)), "classification"),
                                         (list(range(11)), "regression")])
def test_integer_target_with_few_values_is_classification(codes, task):
    rng = np.random.default_rng(0)
    frame = lambda n: pd.DataFrame({"x": rng.normal(0, 1, n), "y": rng.choice(codes, n)})  # noqa: E731
    tr, ho, syn = frame(200), frame(100), frame(200)
    schema = TableSchema([describe(tr["x"], "continuous"), describe(pd.concat([tr["y"], ho["y"]]), "integer")],
                         target="y")
    assert utility_task(schema, "y") == task
    if len(codes) == 2 or task == "regression":  # the scorer takes it (ten classes: seconds of fits, the choice alone)
        assert score_utility(tr, ho, syn, schema, "y").task == task
