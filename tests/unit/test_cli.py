"""The command line as a user runs it, on CSVs shaped like public datasets we did not design for."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # the CLI in subprocesses

FAST = ["--set", "model.name=ctgan", "--set", "train.epochs=1", "--set", "train.batch_size=50",
        "--set", "model.gan.pac=5",
        "--set", "model.gan.generator_dims=[32]", "--set", "model.gan.discriminator_dims=[32]",
        "--set", "score.thresholds={}", "-q"]


def _cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def _params(tmp_path: Path) -> Path:
    text = (REPO / "params.yaml").read_text().replace("data/adult/", str(REPO / "data/adult") + "/")
    p = tmp_path / "params.yaml"
    p.write_text(text)
    return p


def test_help_lists_every_stage(tmp_path):
    out = _cli("--help", cwd=tmp_path)
    assert out.returncode == 0
    for stage in ("ingest", "train", "generate", "score", "publish", "run"):
        assert stage in out.stdout
    assert "--resume" in _cli("train", "--help", cwd=tmp_path).stdout


def _messy_csvs(tmp_path: Path) -> dict[str, tuple[Path, str | None]]:
    rng = np.random.default_rng(0)
    n = 300
    # headerless, '?' for missing, a space after each comma (UCI style)
    lines = [f"{rng.integers(20, 70)}, {rng.choice(['a', 'b', '?'])}, {rng.normal(50, 10):.3f}, "
             f"{rng.choice(['yes', 'no'])}" for _ in range(n)]
    uci = tmp_path / "uci.data"
    uci.write_text("\n".join(lines) + "\n")
    # header, semicolons, NA, an ID column, a datetime column, a boolean column (European export)
    df = pd.DataFrame({
        "order_id": [f"ORD-{i:05d}" for i in range(n)],
        "placed": pd.date_range("2023-01-01", periods=n, freq="37h").strftime("%Y-%m-%d %H:%M:%S"),
        "amount": np.round(rng.lognormal(3, 1, n), 2).astype(str),
        "region": rng.choice(["north", "south", "NA"], n),
        "returned": rng.choice(["True", "False"], n),
    })
    eu = tmp_path / "orders.csv"
    df.to_csv(eu, sep=";", index=False)
    # tab-separated with a header and a numeric target
    tsv = tmp_path / "houses.tsv"
    pd.DataFrame({"rooms": rng.integers(1, 8, n), "area": rng.normal(80, 20, n).round(1),
                  "price": rng.normal(300, 50, n).round(0)}).to_csv(tsv, sep="\t", index=False)
    return {"uci": (uci, None), "orders": (eu, "returned"), "houses": (tsv, "price")}


@pytest.mark.parametrize("name", ["uci", "orders", "houses"])
def test_run_on_any_csv_releases_readable_parquet(tmp_path, name):
    source, target = _messy_csvs(tmp_path)[name]
    args = ["run", "--source", str(source), "--name", name, "--params", str(_params(tmp_path)), *FAST]
    if target:
        args += ["--target", target]
    out = _cli(*args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    latest = json.loads((tmp_path / "releases" / name / "latest.json").read_text())
    release = pd.read_parquet(tmp_path / "releases" / name / latest["version"])
    prepared = pd.read_parquet(tmp_path / "work" / name / "prepared" / "train.parquet")
    assert list(release.columns) == list(prepared.columns)
    assert dict(release.dtypes.astype(str)) == dict(prepared.dtypes.astype(str))
    assert summary["dataset"] == name and set(summary["seconds"]) == {"ingest", "train", "generate", "score", "publish"}
    if name == "orders":
        assert str(release["placed"].dtype) == "datetime64[ns]" and release["order_id"].is_unique
        assert str(release["returned"].dtype) == "bool" and release["region"].isna().any()


def test_run_source_takes_nested_dataset_overrides(tmp_path):
    src = tmp_path / "semi.txt"
    src.write_text("a|b\n" + "\n".join(f"{i}|{i % 3}" for i in range(80)) + "\n")
    out = _cli("run", "--source", str(src), "--name", "semi", "--params", str(_params(tmp_path)),
               "--set", "datasets.semi.csv.sep='|'", "--set", "datasets.semi.column_types={b: categorical}", *FAST,
               cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    kinds = {c["name"]: c["kind"]
             for c in json.loads((tmp_path / "work/semi/prepared/schema.json").read_text())["columns"]}
    assert kinds == {"a": "id", "b": "categorical"}


def test_cli_errors_are_one_clear_line(tmp_path):
    params = _params(tmp_path)
    out = _cli("run", "--source", str(tmp_path / "missing.csv"), "--params", str(params), cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip() == f"error: {tmp_path / 'missing.csv'}: file not found"
    out = _cli("ingest", "--dataset", "adult", "--params", str(params), "--set", "train.epoch=3", cwd=tmp_path)
    assert out.returncode == 2 and "train.epoch: unknown key" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a machine with a GPU this run would simply work")
def test_cuda_on_a_machine_without_one_is_a_clear_error(tmp_path):
    out = _cli("run", "--dataset", "adult", "--params", str(_params(tmp_path)), "--set", "train.device=cuda",
               cwd=tmp_path)
    assert out.returncode == 2 and "no CUDA device" in out.stderr and "Traceback" not in out.stderr
