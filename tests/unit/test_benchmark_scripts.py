"""The prepared GPU check runs on a bare box (no pydantic, PyYAML, Prefect or DVC) and refuses to
pass without cuda."""

import json
import subprocess
import sys

import torch

from tests.conftest import REPO

BLOCKED = """
import runpy, sys
for name in ("pydantic", "yaml", "prefect", "dvc"):
    sys.modules[name] = None  # importing any of these now fails, as on a bare GPU box
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _gpu_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKED, str(REPO / "benchmarks/gpu_check.py"), *args],
                          capture_output=True, text=True, timeout=600, cwd=REPO)


def test_gpu_check_fails_without_cuda():
    if torch.cuda.is_available():  # on a GPU machine the real check is the one to run
        return
    out = _gpu_check("--epochs", "1")
    assert out.returncode == 2 and "no CUDA device" in out.stderr


def test_gpu_check_runs_end_to_end_with_only_the_bare_box_packages(tmp_path):
    out = _gpu_check("--device", "cpu", "--allow-cpu", "--model", "tvae", "--epochs", "2", "--cpu-epochs", "1",
                     "--rows", "3000", "--shard", "1000", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["sampled_rows"] == 3000 and res["dtypes_match"] and res["devices_used"] == ["cpu"]
    assert len(list(tmp_path.glob("part-*.parquet"))) == 3


def test_gpu_check_runs_its_data_parallel_part_with_gloo_on_cpu(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks/gpu_check.py"), "--device", "cpu", "--allow-cpu",
                          "--model", "tvae", "--epochs", "2", "--cpu-epochs", "1", "--rows", "1000", "--shard", "1000",
                          "--ranks", "2", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["ddp_ranks"] == 2 and res["ddp_epoch_s"] > 0 and res["ddp_speedup_vs_one"] > 0
