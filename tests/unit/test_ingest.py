import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline import ingest
from pipeline.artifacts import StagePaths, load_prepared
from pipeline.errors import InputDataError
from pipeline.schema import infer_kind
from tests.conftest import tiny_config, tiny_frame


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("values, kind", [
    (["1.5", "2.25", "3"], "continuous"),
    (["1", "2", "2", "40"], "integer"),
    (["a", "b", "a"], "categorical"),
    (["yes", "no", "Yes"], "categorical"),  # text keeps its spelling: only true/false is a boolean
    (["true", "FALSE", "True"], "boolean"),
    (["2021-01-03", "2022-12-31", "2021-01-03"], "datetime"),
    (["2021-01-03 10:00:00", "2022-12-31 23:59:59", None], "datetime"),
    ([f"u{i}" for i in range(20)], "id"),
])
def test_infer_kind_from_text(values, kind):
    assert infer_kind(pd.Series(values, name="c", dtype=object)) == kind


def test_unique_integers_are_ids_only_when_named_or_numbered_like_rows():
    assert infer_kind(pd.Series(range(50), name="amount")) == "id"  # 0..49: a row number
    assert infer_kind(pd.Series([i * 7 + 3 for i in range(50)], name="customer_id")) == "id"
    assert infer_kind(pd.Series([i * 7 + 3 for i in range(50)], name="amount")) == "integer"


def test_headerless_csv_with_question_marks_and_spaces(tmp_path):
    src = _write(tmp_path, "adult.data",
                 "39, State-gov, 77516, Bachelors, <=50K\n50, ?, 83311, Bachelors, >50K\n"
                 "38, Private, 215646, HS-grad, <=50K\n53, Private, 234721, 11th, <=50K\n" * 5)
    cfg = tiny_config(tmp_path, src, target=None)
    cfg.datasets["tiny"].format = "csv"
    res = ingest.run(cfg, "tiny")
    kinds = {c.name: c.kind for c in res.schema.columns}
    assert list(kinds) == [f"column_{i}" for i in range(5)]
    assert kinds["column_0"] == "integer" and kinds["column_1"] == "categorical"
    train, holdout, schema, _ = load_prepared(StagePaths.of(cfg.work_dir, "tiny"))
    both = pd.concat([train, holdout])
    assert both["column_1"].isna().sum() == 5  # '?' is missing
    assert set(both["column_1"].dropna()) == {"State-gov", "Private"}  # spaces stripped


@pytest.mark.parametrize("stream_rows", [1_000_000, 10])  # read whole, and in record batches
def test_csv_names_name_a_headerless_file_and_its_holdout(tmp_path, stream_rows):
    # The first line looks like a header (text over numbers) but is a row: the names say so.
    body = "".join(f"{i * 1.5},{i % 3},{'g' if i % 2 else 'h'}\n" for i in range(30))
    src = _write(tmp_path, "m.data", "fLength,fSize,class\n" + body)
    hold = _write(tmp_path, "m_test.data", body)
    cfg = tiny_config(tmp_path, src, target="class", holdout=hold,
                      **{"datasets.tiny.csv.names": ["length", "size", "class"], "ingest.stream_rows": stream_rows,
                         "ingest.batch_rows": 7})
    res = ingest.run(cfg, "tiny")
    assert [c.name for c in res.schema.columns] == ["length", "size", "class"]
    train, holdout, _, _ = load_prepared(StagePaths.of(cfg.work_dir, "tiny"))
    assert len(train) == 31 and "fLength" in set(train["length"].astype(str)) | set(train["class"])
    assert len(holdout) == 30 and list(holdout.columns) == ["length", "size", "class"]


def test_csv_names_of_the_wrong_count_is_one_line_naming_the_key(tmp_path):
    src = _write(tmp_path, "m.data", "".join(f"{i},{i % 3},x\n" for i in range(30)))
    cfg = tiny_config(tmp_path, src, target=None, **{"datasets.tiny.csv.names": ["a", "b"]})
    with pytest.raises(InputDataError, match=r"m\.data: has 3 columns but datasets\.tiny\.csv\.names gives 2 names"):
        ingest.run(cfg, "tiny")


def test_csv_with_header_semicolons_and_NA(tmp_path):
    rows = "\n".join(f"{i};{'NA' if i % 4 == 0 else i * 1.5};red;2024-01-{i % 28 + 1:02d}" for i in range(30))
    src = _write(tmp_path, "x.csv", "n;value;colour;day\n" + rows + "\n")
    cfg = tiny_config(tmp_path, src, target=None)
    res = ingest.run(cfg, "tiny")
    kinds = {c.name: c.kind for c in res.schema.columns}
    assert kinds == {"n": "id", "value": "continuous", "colour": "categorical", "day": "datetime"}
    assert res.schema["value"].null_rate > 0


def test_column_types_override(tmp_path, tiny_source):
    cfg = tiny_config(tmp_path, tiny_source,
                      **{"datasets.tiny.column_types": {"age": "categorical", "gain": "continuous"}})
    res = ingest.run(cfg, "tiny")
    assert res.schema["age"].kind == "categorical" and res.schema["gain"].kind == "continuous"
    assert res.schema["gain"].dtype == "float64"


def test_schema_json_and_split_are_deterministic(tmp_path, tiny_source):
    cfg = tiny_config(tmp_path, tiny_source)
    ingest.run(cfg, "tiny")
    paths = StagePaths.of(cfg.work_dir, "tiny")
    first = pd.read_parquet(paths.train_data)
    meta = json.loads(paths.schema.read_text())
    assert meta["rows"] + meta["holdout_rows"] == 240 and meta["source_hash"]
    assert {c["name"]: c["kind"] for c in meta["columns"]}["user_id"] == "id"
    ingest.run(cfg, "tiny")
    pd.testing.assert_frame_equal(first, pd.read_parquet(paths.train_data))
    # dtypes of the source survive
    src = tiny_frame()
    assert list(first.columns) == list(src.columns)
    assert [str(t) for t in first.dtypes] == [str(t) for t in src.dtypes]


BAD_INPUTS = {
    "missing": (None, "file not found", None),
    "empty.csv": ("", "the file is empty", None),
    "header_only.csv": ("a,b,c\n", "has a header but no data rows", None),
    "all_null.csv": ("a,b\n1,NA\n2,\n3,?\n", "every value is missing", "b"),
    "dupes.csv": ("a,b,a\nx,1,2\ny,2,3\n", "duplicate column name", "a"),
    "ragged.csv": ("a,b\n1,2\n3,4,5,6\n", "cannot be parsed as CSV", None),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_names_file_column_reason_and_writes_nothing(tmp_path, name):
    text, reason, column = BAD_INPUTS[name]
    src = tmp_path / name
    if text is not None:
        src.write_text(text)
    cfg = tiny_config(tmp_path, src, target=None)
    with pytest.raises(InputDataError) as err:
        ingest.run(cfg, "tiny")
    msg = str(err.value)
    assert str(src) in msg and reason in msg
    if column:
        assert f"column '{column}'" in msg
    assert not Path(cfg.work_dir).exists() or not any(Path(cfg.work_dir).rglob("*.parquet"))


def test_unparseable_declared_type(tmp_path):
    src = _write(tmp_path, "t.csv", "a,b\n1,x\n2,y\n3,z\n")
    cfg = tiny_config(tmp_path, src, target=None, **{"datasets.tiny.column_types": {"b": "integer"}})
    with pytest.raises(InputDataError, match=r"column 'b'.*cannot read 'x' as integer"):
        ingest.run(cfg, "tiny")


def test_no_usable_column_and_missing_target(tmp_path):
    src = _write(tmp_path, "ids.csv", "id\n" + "\n".join(f"k{i}" for i in range(30)) + "\n")
    with pytest.raises(InputDataError, match="no usable column"):
        ingest.run(tiny_config(tmp_path, src, target=None), "tiny")
    src2 = _write(tmp_path, "ok.csv", "a,b\n1,x\n2,y\n")
    with pytest.raises(InputDataError, match=r"column 'income': target column not found"):
        ingest.run(tiny_config(tmp_path, src2), "tiny")


def test_holdout_file_must_match_the_source(tmp_path, tiny_source):
    hold = tmp_path / "hold.parquet"
    tiny_frame(50, seed=1).drop(columns=["city"]).to_parquet(hold)
    cfg = tiny_config(tmp_path, tiny_source, holdout=hold)
    with pytest.raises(InputDataError, match=r"hold.parquet: column 'city': missing in the holdout"):
        ingest.run(cfg, "tiny")
    tiny_frame(50, seed=1).to_parquet(hold)
    res = ingest.run(cfg, "tiny")
    assert res.rows == 240 and res.holdout_rows == 50


def test_gzipped_whitespace_separated_file(tmp_path):
    import gzip

    src = tmp_path / "diabetes.data.gz"
    lines = [f"{20 + i % 50}  {1 + i % 2}\t{18.5 + i * 0.37:.2f}  {'?' if i % 9 == 0 else 100 + i}" for i in range(60)]
    with gzip.open(src, "wt") as f:
        f.write("\n".join(lines) + "\n")
    res = ingest.run(tiny_config(tmp_path, src, target=None), "tiny")
    kinds = [c.kind for c in res.schema.columns]
    assert kinds == ["integer", "integer", "continuous", "integer"]
    assert res.schema["column_3"].null_rate > 0
