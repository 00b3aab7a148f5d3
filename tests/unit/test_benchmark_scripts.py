"""The prepared GPU checks (tables and images) run on a bare box (no pydantic, PyYAML, Prefect or
DVC; for images not even Pillow) and refuse to pass without cuda; the release-check benchmark runs
end to end on a small release."""

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # benchmark scripts in subprocesses

BLOCKED = """
import runpy, sys
for name in ("pydantic", "yaml", "prefect", "dvc", *sys.argv[2].split(",")[1:]):
    sys.modules[name] = None  # importing any of these now fails, as on a bare GPU box
sys.argv = sys.argv[1:2] + sys.argv[3:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _gpu_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKED, str(REPO / "benchmarks/gpu_check.py"), "-", *args],
                          capture_output=True, text=True, timeout=600, cwd=REPO)


@pytest.mark.skipif(torch.cuda.is_available(), reason="refusal without CUDA: on a GPU machine the real check runs")
def test_gpu_check_fails_without_cuda():
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


def test_image_gpu_check_runs_without_pillow_and_decodes_the_pngs_itself(tmp_path):
    out = subprocess.run([sys.executable, "-c", BLOCKED, str(REPO / "benchmarks/gpu_check_images.py"), "-,PIL",
                          "--device", "cpu", "--allow-cpu", "--epochs", "2", "--cpu-epochs", "1", "--limit", "600",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["image_format"] == "raw" and res["devices_used"] == ["cpu"] and res["sampled_images"] == 480
    assert res["image.fid"] > 0 and res["image.fid_real_floor"] > 0 and 0 <= res["image.label_accuracy"] <= 1
    import pandas as pd

    back = pd.read_parquet(tmp_path)
    assert len(back) == 480 and back["image"].str.len().eq(28 * 28).all()


def test_the_image_checks_png_decoder_matches_pillow():
    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from gpu_check_images import png_gray
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    from pipeline.images import encode_png, pixels_of

    frame = pd.read_parquet(REPO / "data/mnist/digits.parquet").iloc[:300]
    ours = np.stack([png_gray(b) for b in frame["image"]])
    np.testing.assert_array_equal(ours, pixels_of(frame))
    # Every PNG row filter (Pillow's optimiser picks them per row): noise and gradients use several.
    rng = np.random.default_rng(0)
    for img in (rng.integers(0, 256, (13, 17)), np.add.outer(np.arange(20), np.arange(9)) * 5,
                rng.integers(0, 3, (8, 8)) * 100):
        img = img.astype(np.uint8)
        np.testing.assert_array_equal(png_gray(encode_png(img)), img)


def test_model_frontier_runs_and_ends_with_its_json_line(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks/model_frontier.py"), "--datasets", "tips",
                          "--models", "tvae", "auto", "--seeds", "0", "1", "--png", str(tmp_path / "f.png"),
                          "--set", "train.epochs=2", "--set", "model.auto.candidates=[tvae, gan]",
                          "--set", "model.auto.folds=2", "--set", "model.gan.pac=1",
                          "--set", "model.gan.generator_dims=[32]", "--set", "model.gan.discriminator_dims=[32]"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    tips = result["tips"]
    assert set(tips) == {"tvae", "auto"} and set(tips["auto"]["chosen"]) <= {"tvae", "gan"}
    assert "tips tvae seed 1: shapes" in out.stderr and "tips auto seed 0: shapes" in out.stderr  # a line a run
    for key in ("shapes", "trends", "tstr", "detection_auc", "dcr_share", "trends_ho", "trends_ho_real", "shapes_ho",
                "shapes_ho_real", "train_s", "rows_per_s"):
        mean, spread = tips["tvae"][key]
        assert mean is not None and spread >= 0, key
    # the training rows against the held-out ones: the same split (seed) whatever the model
    assert tips["tvae"]["trends_ho_real"] == tips["auto"]["trends_ho_real"]
    assert tips["tvae"]["shapes_ho_real"] == tips["auto"]["shapes_ho_real"]
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_heldout_curve_reads_every_tokens_loss_after_every_epoch(tmp_path):
    import numpy as np

    def curve(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(REPO / "benchmarks/heldout_curve.py"), *args,
                               "--set", "runtime.threads=1"], capture_output=True, text=True, timeout=600, cwd=tmp_path)

    out = curve("--dataset", "tips", "--set", "train.epochs=3")
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert (got["rows"], got["held_out"], got["epochs"]) == (156, 39, 3)  # tips' 195 training rows, a fifth out
    # tips' columns in order, a number a bin and its place in the bin (table order: tips is small)
    assert [(t["kind"], t["column"]) for t in got["tokens"]][:5] == [
        ("bin", "total_bill"), ("part", "total_bill"), ("bin", "tip"), ("part", "tip"), ("category", "sex")]
    for t in got["tokens"]:
        assert 1 <= t["best_epoch"] <= 3 and t["best"] <= min(t["first"], t["last"])
    assert abs(sum(t["last"] for t in got["tokens"]) - got["last"]) < 1e-3
    assert "held-out nats a row" in out.stdout
    again = curve("--dataset", "tips", "--set", "train.epochs=3")
    assert json.loads(again.stdout.strip().splitlines()[-1]) == got  # the same seed, the same figures
    bad = curve("--dataset", "tips", "--set", "model.name=tvae", "--set", "train.epochs=1")
    assert bad.returncode != 0 and "set model.name=autoregressive" in bad.stderr.strip().splitlines()[-1]
    # A file of one's own: read as `pipeline run --source` reads it (a fifth of it the ingest holdout).
    rng = np.random.default_rng(0)
    x = rng.normal(size=250)
    (tmp_path / "mine.csv").write_text("x,y,label\n" + "".join(
        f"{a:.3f},{2 * a + rng.normal():.3f},{'ab'[int(a > 0)]}\n" for a in x))
    own = curve("--source", "mine.csv", "--target", "label", "--set", "train.epochs=2")
    assert own.returncode == 0, own.stderr[-2000:]
    mine = json.loads(own.stdout.strip().splitlines()[-1])
    assert (mine["dataset"], mine["rows"] + mine["held_out"], mine["epochs"]) == ("source", 200, 2)
    assert {t["column"] for t in mine["tokens"]} == {"x", "y", "label"}


def test_big_table_streams_a_small_table_through_every_stage_and_ends_with_its_json_line(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks/big_table.py"), "--rows", "3000", "--file-rows",
                          "1000", "--folder", str(tmp_path), "--set", "ingest.stream_rows=1000", "--set",
                          "ingest.sample_rows=1000", "--set", "ingest.batch_rows=700"],
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rows"] == 3000 and list(result["stages"]) == ["ingest", "train", "generate", "score", "publish"]
    assert all(s["peak_rss_mb"] > 0 and s["seconds"] > 0 for s in result["stages"].values())
    assert result["stages"]["train"]["rows_per_s"] > 0 and "source: 3,000 rows in 3 files" in out.stdout


def test_privacy_curve_runs_every_epoch_count_and_ends_with_its_json_line(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks/privacy_curve.py"), "--dataset", "tips",
                          "--epochs", "1", "2", "--set", "score.privacy_min_holdout=20",
                          "--set", "model.diffusion.hidden_dims=[32]", "--set", "model.diffusion.sample_steps=5"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["dataset"] == "tips" and [r["epochs"] for r in result["runs"]] == [1, 2]
    for run in result["runs"]:
        assert 0 <= run["privacy.mia_auc"] <= 1 and 0 <= run["privacy.mia_tpr_at_fpr_1pct"] <= 1, run
        assert 0 <= run["privacy.dcr_share"] <= 1 and run["train_s"] > 0 and run["rows"] > 0, run


def _vs_anonymeter(work_dir, *args: str) -> dict:
    out = subprocess.run([sys.executable, str(REPO / "benchmarks/vs_anonymeter.py"), "--work-dir", str(work_dir),
                          "--dataset", "tiny", *args], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_vs_anonymeter_scores_ours_on_a_release_without_anonymeter(scored_tiny):
    # --skip-reference: anonymeter's side (its own interpreter, Parquet exchange, the agreement) is skipped.
    res = _vs_anonymeter(scored_tiny.work_dir, "--skip-reference")
    assert res["rows"]["members"] == res["rows"]["non_members"] == 24 and res["agree"] is None
    assert {"singling_out.univariate", "singling_out.multivariate", "linkability", "inference.income"} <= set(
        res["risks"])
    for name, risk in res["risks"].items():
        assert risk["anonymeter"] is None and 0 <= risk["ours"]["low"] <= risk["ours"]["value"] <= 1, name


@pytest.mark.skipif(not os.environ.get("ANONYMETER_PYTHON"), reason="set ANONYMETER_PYTHON to an interpreter with "
                                                                   "anonymeter==1.1.0 to compare with it")
def test_vs_anonymeter_runs_anonymeter_on_the_same_rows(scored_tiny):
    res = _vs_anonymeter(scored_tiny.work_dir, "--anonymeter-python", os.environ["ANONYMETER_PYTHON"])
    assert all(risk["anonymeter"] is not None for risk in res["risks"].values())
    assert res["agree"] is not None and set(res["anonymeter_s"]) >= {"linkability", "inference"}


def test_release_verify_measures_a_small_release(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks/release_verify.py"), "--rows", "3000",
                          "--file-rows", "1000", "--repeat", "1", "--folder", str(tmp_path / "bench")],
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["parts"] == 3 and set(res["seconds"]) == {
        "sha256", "load", "load_unchecked", "load_column", "load_column_unchecked", "show", "show_sizes_only", "verify"}
    assert not (tmp_path / "bench").exists()


def test_the_sampler_benchmark_counts_the_denoisers_flops_per_row_without_the_time_embedding():
    from pipeline.models.diffusion import Denoiser

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from sampler import matmul_peak, row_flops
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    net = Denoiser(20, 15, [64, 32])
    # proj 20->64, body 64->64 and 64->32, head 32->15; the time net (128->64->64) runs once per step
    assert row_flops(net) == 2 * (20 * 64 + 64 * 64 + 64 * 32 + 32 * 15)
    assert matmul_peak(64, 32, torch.float32, seconds=0.05) > 0


def test_suite_runs_a_small_magic_through_the_cli_and_ends_with_its_json_line(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    (tmp_path / "suite").mkdir()
    x = rng.normal(size=(400, 10))
    x[:, 1] = x[:, 0] + 0.3 * x[:, 1]  # a correlated pair, which pair trends count
    rows = [",".join(f"{v:.4f}" for v in row) + ("," + "gh"[i % 2]) for i, row in enumerate(x)]
    (tmp_path / "suite" / "magic04.data").write_text("\n".join(rows) + "\n")  # headerless, as UCI ships it
    (tmp_path / "suite" / "README.md").write_text(
        "| table | model | shape err % | trend err % | MLE (AUC) | alpha-precision | beta-recall | C2ST | DCR share |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        "| Magic | TabPC | 0.98 | 1.70 | .932 | .995 | .505 | .860 | .530 |\n")
    out = subprocess.run([sys.executable, str(REPO / "benchmarks/suite.py"), "--tables", "magic", "--models", "tvae",
                          "--seeds", "0", "1", "--budget-seconds", "30", "--data", str(tmp_path),
                          "--set", "train.epochs=2", "--set", "score.utility_min_holdout=20"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result["magic"]) == {"tvae", "tvae unprotected"}  # the same models' rows, value protection off
    for magic in result["magic"].values():
        assert set(magic) == {"shapes", "trends", "trends_all", "trends_real_bins", "tstr", "tstr_xgb", "trtr_xgb",
                              "detection_auc", "alpha_precision", "beta_recall", "dcr_share", "train_s"}
        assert magic["tstr_xgb"] == magic["trtr_xgb"] == [None, None]  # the papers' protocol only with --papers-mle
        for key in ("shapes", "trends", "trends_all", "trends_real_bins", "tstr", "detection_auc", "dcr_share",
                    "train_s"):
            mean, spread = magic[key]
            assert mean is not None and spread >= 0, key
    assert result["magic"]["tvae"]["train_s"] == result["magic"]["tvae unprotected"]["train_s"]  # trained once
    assert "ours tvae unprotected" in out.stdout
    assert "magic     TabPC (pub.)" in out.stdout and "0.570" in out.stdout  # C2ST .860 as AUC


def test_precision_recall_scores_a_suite_tables_halves_and_holdout(tmp_path):
    """``--tables``: the suite's Magic ingested as the suite ingests it, its holdout and two halves of
    its training rows scored as real rows no model saw (both sides real: about 0.5 beta-recall)."""
    import numpy as np

    rng = np.random.default_rng(1)
    (tmp_path / "suite").mkdir()
    x = rng.normal(size=(1200, 10))
    rows = [",".join(f"{v:.4f}" for v in row) + ("," + "gh"[i % 2]) for i, row in enumerate(x)]
    (tmp_path / "suite" / "magic04.data").write_text("\n".join(rows) + "\n")
    out = subprocess.run([sys.executable, str(REPO / "benchmarks/precision_recall.py"), "--tables", "magic",
                          "--splits", "0", "1", "--data", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])["results"]["magic"]
    assert len(result["holdout"]) == 1 and len(result["halves"]) == 2
    assert result["holdout"][0]["rows"] == 120  # the suite's 90/10 split of 1,200 rows
    for run in result["halves"]:
        assert run["rows"] == 540 and 0.35 < run["beta_recall"] < 0.65 and run["alpha_precision"] > 0.8


def test_detectors_runs_on_a_sample_and_ends_with_its_json_line(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks/detectors.py"), "--rows", "1000", "--releases",
                          "holdout", "noisy holdout", "--candidates", "current", "default", "--skip-xgb"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result) == {"holdout", "noisy holdout"} and set(result["holdout"]) == {"current", "default"}
    assert 0.4 < result["holdout"]["default"]["auc"] < 0.6


def test_dp_transformer_scores_the_private_transforms_round_trip_and_ends_with_its_json_line(tmp_path):
    """The private transformer's ceiling on a sample of Adult: a large budget with the codebook's
    ranges loses almost nothing (every range the real one), a small one with estimated ranges
    loses more."""
    def run(*args: str) -> dict:
        out = subprocess.run([sys.executable, str(REPO / "benchmarks/dp_transformer.py"), "--rows", "4000",
                              "--fits", "2", *args], capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    wide = run("--epsilon", "500", "--declared-bounds")
    assert wide["rows"] == 4000 and len(wide["fits"]) == 2 and wide["declared_bounds"]
    assert wide["shapes"][0] > 0.97 and wide["trends"][0] > 0.95
    tight = run("--epsilon", "30")
    assert tight["shapes"][0] < wide["shapes"][0] and not tight["declared_bounds"]


def test_dcr_scale_reads_unseen_real_rows_on_both_scales_and_ends_with_its_json_line(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "benchmarks/dcr_scale.py"), "--tables", "tips", "wine",
                          "--splits", "0", "1", "--rows", "500"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result) == {"tips", "wine"}
    for table in result.values():
        assert set(table) == {"train", "reference", "marginals"}
        assert 0 < table["train"][0] < 1 and table["train"][1] >= 0
    # wine's 36-row holdout: on its own range it reads as far from unseen rows, on one scale not
    assert result["wine"]["reference"][0] > 0.6 and abs(result["wine"]["train"][0] - 0.5) < 0.06
