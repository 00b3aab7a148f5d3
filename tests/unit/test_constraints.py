"""Realism a user of SDV expects: inequality constraints between columns hold in every generated
row (a short training breaks them), ingest refuses one the data breaks or cannot have in one line,
and a boolean condition reads true/false as ingest does, in any case."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from pipeline import generate, ingest, train
from pipeline.artifacts import StagePaths
from pipeline.config import build_config
from pipeline.constraints import Constraint, kept, repair
from pipeline.errors import ConditionError, ConfigError, InputDataError
from pipeline.models.saved import load_model
from pipeline.sampling import sample_frame
from tests.conftest import tiny_config, tiny_frame

RULES = ["left >= joined", "paid > score"]


def _ordered_frame(n: int = 240) -> pd.DataFrame:
    """The tiny table plus two columns that keep an order: ``left`` after ``joined`` (0-60 days),
    ``paid`` (2 decimals) above ``score``."""
    rng = np.random.default_rng(5)
    df = tiny_frame(n)
    df["left"] = df["joined"] + pd.to_timedelta(rng.integers(0, 60, n), unit="D")
    df["paid"] = np.ceil((df["score"] + rng.gamma(1.0, 2.0, n)) * 100) / 100 + 0.01
    return df


@pytest.fixture(scope="module")
def constrained(tmp_path_factory):
    """Ingested and trained once (two GAN epochs: a model that breaks both constraints often)."""
    root = tmp_path_factory.mktemp("constrained")
    source = root / "orders.parquet"
    _ordered_frame().to_parquet(source, index=False)
    cfg = tiny_config(root, source, **{"datasets.tiny.constraints": RULES})
    ingest.run(cfg, "tiny")
    train.run(cfg, "tiny")
    return cfg


def test_every_generated_row_keeps_the_constraints_and_the_record_counts_the_fixes(constrained):
    cfg = constrained
    paths = StagePaths.of(cfg.work_dir, "tiny")
    assert json.loads(paths.schema.read_text())["constraints"] == RULES
    loaded = load_model(paths.model)
    loaded.schema.constraints = []
    raw = sample_frame(loaded, 400, seed=1)
    rules = [Constraint.parse(r) for r in RULES]
    assert kept(raw, rules).mean() < 0.95  # the model alone breaks them
    cfg.generate.rows = 250  # three shards of 100
    generate.run(cfg, "tiny")
    syn = pd.read_parquet(paths.synthetic)
    assert len(syn) == 250 and kept(syn, rules).all()
    assert (syn["left"].notna() & syn["joined"].notna() & (syn["left"] < syn["joined"])).sum() == 0
    record = json.loads(paths.generated.read_text())
    assert record["constraints"] == RULES
    assert record["constraint_rows_redrawn"] > 0 and record["constraint_rows_repaired"] >= 0
    # Conditions and the Python API go through the same sampler; the same seed, the same rows.
    a = sample_frame(load_model(paths.model), 120, seed=3, conditions={"city": "Lyon"})
    b = sample_frame(load_model(paths.model), 120, seed=3, conditions={"city": "Lyon"})
    assert (a["city"] == "Lyon").all() and kept(a, rules).all()
    pd.testing.assert_frame_equal(a, b)


def test_rows_still_broken_after_the_redraws_are_repaired(constrained, monkeypatch):
    import pipeline.sampling

    monkeypatch.setattr(pipeline.sampling, "REDRAWS", 0)  # repair from the first draw
    loaded = load_model(StagePaths.of(constrained.work_dir, "tiny").model)
    stats = {}
    rows = sample_frame(loaded, 300, seed=4, stats=stats)
    assert len(rows) == 300 and kept(rows, [Constraint.parse(r) for r in RULES]).all()
    assert stats["constraint_rows_repaired"] > 50 and stats["drawn"] == 300  # nothing drawn again
    cents = rows["paid"].to_numpy() * 100
    assert str(rows["paid"].dtype) == "float64" and np.allclose(cents, np.round(cents), equal_nan=True)


def test_repair_swaps_then_raises_keeping_each_columns_grid_and_dtype():
    day = pd.Timedelta(1, unit="D").value
    df = pd.DataFrame({"a": pd.to_datetime(["2020-01-05", "2020-01-01", None]),
                       "b": pd.to_datetime(["2020-01-01", "2020-01-04", "2020-01-02"]),
                       "x": [1.25, 2.0, 3.5], "y": pd.array([2, 2, None], dtype="Int64")})
    rules = [Constraint.parse("a >= b"), Constraint.parse("x > y")]
    changed = repair(df, rules, {"a": day, "b": day, "x": 2, "y": 0})
    assert changed.tolist() == [True, True, False] and kept(df, rules).all()
    assert df["a"].tolist()[:2] == [pd.Timestamp("2020-01-05"), pd.Timestamp("2020-01-04")]
    assert df["x"].tolist()[:2] == [2.0, 2.01] and df["y"].tolist()[:2] == [1, 2]  # swapped; raised a step
    assert str(df["y"].dtype) == "Int64" and df["y"].isna().iloc[2]


@pytest.mark.parametrize("rules, match", [
    (["joined >= left"], r"column 'joined': datasets.tiny.constraints: 'joined >= left' is broken by \d+ of the 240 "
                         r"real rows .*is it 'joined <= left'\?"),
    (["shipped >= joined"], r"column 'shipped': datasets.tiny.constraints: 'shipped >= joined' names a column the "
                            r"data does not have \(columns: user_id, age"),
    (["city >= age"], r"column 'city': .*the column is categorical; a constraint compares two numeric"),
    (["left >= age"], r"'left >= age' compares left \(datetime\) with age \(integer\)"),
])
def test_ingest_refuses_a_constraint_in_one_line(tmp_path, rules, match):
    source = tmp_path / "orders.parquet"
    _ordered_frame().to_parquet(source, index=False)
    cfg = tiny_config(tmp_path, source, **{"datasets.tiny.constraints": rules})
    with pytest.raises(InputDataError, match=match) as err:
        ingest.run(cfg, "tiny")
    assert "\n" not in str(err.value)
    assert not StagePaths.of(cfg.work_dir, "tiny").prepared.exists()


@pytest.mark.parametrize("text", ["ship_date => order_date", "a == b", "a >= a", "a >= b >= c", "ship_date"])
def test_a_constraint_not_of_the_form_is_a_config_error(tmp_path, text):
    with pytest.raises(ConfigError, match=r"datasets.tiny.constraints: .*(COLUMN OP COLUMN|with itself)"):
        tiny_config(tmp_path, tmp_path / "x.csv", **{"datasets.tiny.constraints": [text]})


@pytest.mark.slow  # ~1 s: trains and generates
def test_boolean_conditions_read_true_and_false_in_any_case(constrained):
    loaded = load_model(StagePaths.of(constrained.work_dir, "tiny").model)
    for value in ("true", "True", "TRUE", "1", "yes", True):
        rows = sample_frame(loaded, 30, seed=2, conditions={"member": value})
        assert rows["member"].all(), value
    for value in ("false", "FALSE", "0", "no"):
        assert not sample_frame(loaded, 30, seed=2, conditions={"member": value})["member"].any()
    with pytest.raises(ConditionError, match=r"condition on 'member': 'maybe' is not a boolean value; use true or "
                                             r"false \(also yes/no"):
        sample_frame(loaded, 10, seed=2, conditions={"member": "maybe"})
    # The generate stage checks them before any worker starts, as the CLI passes them (text).
    cfg = constrained.model_copy(deep=True)
    cfg.generate.conditions, cfg.generate.rows = {"member": "TRUE"}, 50
    generate.run(cfg, "tiny")
    assert pd.read_parquet(StagePaths.of(cfg.work_dir, "tiny").synthetic)["member"].all()


def test_old_params_without_constraints_still_load(tmp_path):
    cfg = build_config({"datasets": {"x": {"source": "x.csv"}}}, {})
    assert cfg.dataset("x").constraints == []


@pytest.mark.slow  # worker processes
def test_worker_processes_write_the_same_constrained_shards_and_counts(constrained):
    cfg = constrained.model_copy(deep=True)
    out = StagePaths.of(cfg.work_dir, "tiny").synthetic
    cfg.generate.rows, cfg.generate.rows_per_shard = 300, 100
    runs = []
    for workers in (1, 2):
        cfg.generate.workers = workers
        generate.run(cfg, "tiny")
        record = json.loads((out / "_generated.json").read_text())
        runs.append(({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("part-*"))},
                     record["constraint_rows_redrawn"], record["constraint_rows_repaired"]))
    assert len(runs[0][0]) == 3 and runs[0] == runs[1]
