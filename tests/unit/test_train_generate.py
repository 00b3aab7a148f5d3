import json
import os

import pandas as pd
import pytest
import torch

from pipeline import generate, ingest, train
from pipeline.artifacts import StagePaths
from pipeline.errors import CheckpointError
from pipeline.plan import plan


@pytest.fixture
def trained(tiny_cfg):
    ingest.run(tiny_cfg, "tiny")
    train.run(tiny_cfg, "tiny")
    return tiny_cfg


def test_model_is_state_dict_plus_json_loaded_without_pickle(trained):
    paths = StagePaths.of(trained.work_dir, "tiny")
    state = torch.load(paths.model / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    info = json.loads((paths.model / "model.json").read_text())
    assert info["model"] == trained.model.name and info["epochs"] == 2 and info["transformer"]["columns"]
    log = pd.read_csv(paths.train_log)
    assert list(log["epoch"]) == [1, 2] and {"critic_loss", "generator_loss"} <= set(log.columns)
    assert log[["critic_loss", "generator_loss"]].notna().all().all()


def test_generated_rows_keep_columns_dtypes_categories_and_nulls(trained):
    trained.generate.rows = 1000
    res = generate.run(trained, "tiny")
    paths = StagePaths.of(trained.work_dir, "tiny")
    assert res.shards == 10 and len(list(paths.synthetic.glob("part-*.parquet"))) == 10
    syn = pd.read_parquet(paths.synthetic)
    real = pd.read_parquet(paths.train_data)
    assert len(syn) == 1000
    assert list(syn.columns) == list(real.columns)
    assert dict(syn.dtypes.astype(str)) == dict(real.dtypes.astype(str))
    assert set(syn["city"].dropna()) <= set(real["city"].dropna())
    assert set(syn["income"]) <= set(real["income"])
    assert syn["user_id"].is_unique  # fresh IDs, unique across shards
    assert syn["city"].isna().any() and syn["score"].isna().any()  # learned missing values
    assert not syn["age"].isna().any()  # no nulls where the source had none


def test_same_seed_same_rows_other_seed_other_rows(trained):
    paths = StagePaths.of(trained.work_dir, "tiny")
    generate.run(trained, "tiny")
    first = pd.read_parquet(paths.synthetic)
    generate.run(trained, "tiny")
    pd.testing.assert_frame_equal(first, pd.read_parquet(paths.synthetic))
    trained.seed = 8
    generate.run(trained, "tiny")
    assert not first.equals(pd.read_parquet(paths.synthetic))


@pytest.mark.slow  # ~2 s: three trainings: the fast tier stays under a minute
def test_training_is_reproducible_and_resume_continues_exactly(tiny_cfg, tmp_path):
    ingest.run(tiny_cfg, "tiny")
    paths = StagePaths.of(tiny_cfg.work_dir, "tiny")
    tiny_cfg.train.epochs = 4
    train.run(tiny_cfg, "tiny")
    straight = torch.load(paths.model / "model.pt", weights_only=True)
    train.run(tiny_cfg, "tiny")
    again = torch.load(paths.model / "model.pt", weights_only=True)
    assert all(torch.equal(straight[k], again[k]) for k in straight)

    # "Crash" after 2 epochs (checkpoint_every=1), then resume to 4.
    tiny_cfg.train.epochs = 2
    train.run(tiny_cfg, "tiny")
    tiny_cfg.train.epochs = 4
    res = train.run(tiny_cfg, "tiny", resume=True)
    resumed = torch.load(paths.model / "model.pt", weights_only=True)
    assert res.epochs == 4
    assert all(torch.allclose(straight[k].float(), resumed[k].float(), atol=1e-6) for k in straight)
    assert list(pd.read_csv(paths.train_log)["epoch"]) == [1, 2, 3, 4]


def test_resume_refuses_a_checkpoint_from_other_params(tiny_cfg):
    ingest.run(tiny_cfg, "tiny")
    train.run(tiny_cfg, "tiny")
    tiny_cfg.train.lr_generator = 1e-3
    tiny_cfg.train.epochs = 3
    with pytest.raises(CheckpointError, match="checkpoint was made from other data or params"):
        train.run(tiny_cfg, "tiny", resume=True)


@pytest.mark.slow  # over a second: several trainings: the fast tier stays under a minute
def test_if_compatible_resume_continues_a_matching_checkpoint_and_ignores_others(tiny_cfg):
    ingest.run(tiny_cfg, "tiny")
    train.run(tiny_cfg, "tiny")  # 2 epochs, checkpointed
    log_path = StagePaths.of(tiny_cfg.work_dir, "tiny").train_log
    first = pd.read_csv(log_path)
    tiny_cfg.train.epochs = 3
    res = train.run(tiny_cfg, "tiny", resume="if-compatible")
    log = pd.read_csv(log_path)
    # continued: epochs 1-2 come from the checkpoint (their wall times too), one more is trained
    assert res.epochs == 3 and len(log) == 3 and log["seconds"].iloc[:2].tolist() == first["seconds"].tolist()
    tiny_cfg.train.lr_generator = 1e-3  # another recipe: its checkpoint is not resumed (no error)
    res = train.run(tiny_cfg, "tiny", resume="if-compatible")
    assert res.epochs == 3 and pd.read_csv(log_path)["seconds"].iloc[0] != first["seconds"].iloc[0]
    tiny_cfg.train.epochs = 2  # fewer epochs than the checkpoint has: trained afresh, not skipped
    assert train.run(tiny_cfg, "tiny", resume="if-compatible").epochs == 2


def test_learning_rates_decay_linearly_over_the_last_epochs(tiny_cfg):
    cfg = tiny_cfg
    cfg.train.epochs, cfg.train.lr_decay = 4, 0.5
    ingest.run(cfg, "tiny")
    train.run(cfg, "tiny")
    blob = torch.load(StagePaths.of(cfg.work_dir, "tiny").checkpoints / "last.pt", weights_only=True)
    # The decay spans the last half (2 epochs): the last epoch (index 3) ran at (4 - 3) / 2 of each phase's rate.
    assert blob["optimizers"]["critic"]["param_groups"][0]["lr"] == pytest.approx(cfg.train.lr_discriminator / 2)
    assert blob["optimizers"]["generator"]["param_groups"][0]["lr"] == pytest.approx(cfg.train.lr_generator / 2)


def test_the_decay_is_a_share_of_the_epochs_so_fewer_epochs_keep_their_learning_rate():
    """Issue 31: ``lr_decay_epochs: 125`` with ``--set train.epochs=10`` ran every epoch at <= 8% of
    the rate. A share of the epochs decays over the run's own last part, whatever its length."""
    from pipeline.training.loop import lr_scale

    # The default (250 epochs, the last half) is exactly the former schedule over the last 125: same bytes.
    assert all(lr_scale(e, 250, 0.5) == min(1.0, (250 - e) / 125) for e in range(250))
    ten = [lr_scale(e, 10, 0.5) for e in range(10)]
    assert ten == pytest.approx([1, 1, 1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2])
    assert max(min(1.0, (10 - e) / 125) for e in range(10)) <= 0.08  # what a fixed count of 125 gave
    assert [lr_scale(e, 10, 0.0) for e in range(10)] == [1.0] * 10  # 0: constant
    assert lr_scale(0, 3, 1.0) == 1.0 and lr_scale(2, 3, 1.0) == pytest.approx(1 / 3)  # 1: the whole run


def test_a_budget_plans_the_epochs_again_after_every_epoch():
    """``train.budget_seconds`` plans from the pace of every epoch so far: a slow first epoch (a busy
    machine) cuts the plan, which grows back once the pace recovers, but only while the learning
    rate has not begun to fall; it never exceeds the epochs asked, nor falls below those done."""
    from pipeline.training.loop import lr_scale, plan_to_budget

    # 250 asked, a 600 s budget: a 60 s first epoch leaves 10; four more at 2 s (68 s in 5) fit 44.
    assert plan_to_budget(600, 250, 250, 1, 0, 60.0, 0.5) == 10
    assert plan_to_budget(600, 250, 10, 5, 0, 68.0, 0.5) == 44
    # ... but not at epoch 6 of a 10-epoch plan: its rate is falling (decay over the last half).
    assert lr_scale(6, 10, 0.5) < 1.0 and plan_to_budget(600, 250, 10, 6, 0, 70.0, 0.5) == 10
    assert plan_to_budget(600, 250, 10, 6, 0, 70.0, 0.0) == 51  # no decay: it may grow at any time
    assert plan_to_budget(600, 250, 40, 30, 0, 500.0, 0.5) == 36  # slower: it shrinks, decay or not
    assert plan_to_budget(600, 250, 40, 30, 0, 900.0, 0.5) == 30  # never below the epochs done
    assert plan_to_budget(600, 250, 250, 3, 0, 0.3, 0.5) == 250  # never beyond the epochs asked
    assert plan_to_budget(600, 250, 250, 12, 10, 20.0, 0.5) == 70  # a resumed run: its own epochs' pace


@pytest.mark.slow  # over a second: the fast tier stays under a minute
def test_a_slow_first_epoch_no_longer_fixes_the_budgets_cut(monkeypatch):
    """Through the loop, on a clock the test moves: a 20 s first epoch leaves 5 of 20 epochs in a
    100 s budget; the next ones take 1 s, and the plan grows back to all 20 (it stayed at 5)."""
    import types

    import numpy as np
    import pandas as pd

    from pipeline.config import ModelConfig, TrainConfig
    from pipeline.models.base import OutputLayout
    from pipeline.models.diffusion import TabularDiffusion
    from pipeline.models.transformer import TableTransformer
    from pipeline.schema import TableSchema, describe, infer_kind
    from pipeline.training import loop

    df = pd.DataFrame({"x": np.random.default_rng(0).normal(0, 1, 200), "c": ["a", "b"] * 100})
    tf = TableTransformer(TableSchema([describe(df[c], infer_kind(df[c])) for c in df.columns]), knots=51).fit(df)
    data = torch.from_numpy(tf.transform(df, np.random.default_rng(0)))
    model = TabularDiffusion(OutputLayout(tf.spans, tf.width), ModelConfig(diffusion={"hidden_dims": [8]}),
                             TrainConfig())
    clock = {"now": 0.0, "epochs": 0}
    real_epoch = loop.train_epoch

    def timed_epoch(*args, **kwargs):
        sums = real_epoch(*args, **kwargs)
        clock["epochs"] += 1
        clock["now"] += 20.0 if clock["epochs"] == 1 else 1.0
        return sums

    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=lambda: clock["now"]))
    monkeypatch.setattr(loop, "train_epoch", timed_epoch)
    cfg = TrainConfig(epochs=20, batch_size=100, device="cpu", lr_decay=0.5, budget_seconds=100).settings()
    state = loop.fit(model, data, cfg, seed=0)
    assert state.epoch == 20 and clock["epochs"] == 20


def test_a_resumed_run_keeps_the_epochs_a_budget_cut_it_to(tiny_cfg):
    """The schedule follows the epochs a run makes (a budget's cut); a checkpoint records them, so a
    resume continues that schedule and stops where the run would have, not at train.epochs."""
    cfg = tiny_cfg
    cfg.train.epochs, cfg.train.lr_decay, cfg.train.budget_seconds = 6, 0.5, 1e-6  # cut to 1 epoch
    ingest.run(cfg, "tiny")
    assert train.run(cfg, "tiny").epochs == 1
    blob = torch.load(StagePaths.of(cfg.work_dir, "tiny").checkpoints / "last.pt", weights_only=True)
    assert blob["epochs_planned"] == [6, 1]
    assert train.run(cfg, "tiny", resume=True).epochs == 1  # nothing more: the cut run was complete


def test_epochs_auto_makes_at_least_min_steps_steps_on_a_small_table(tiny_cfg):
    """``train.epochs: auto``: the model's epochs (250, the autoregressive model's 60), or more when a
    table is so small that they make fewer than ``min_steps`` optimiser steps; a number is exactly
    that many."""
    from pipeline.settings import AUTO_EPOCHS, epochs_for

    assert epochs_for("auto", 3000, 65) == AUTO_EPOCHS  # Adult: 65 steps an epoch, 16,250 steps
    assert epochs_for("auto", 3000, 1) == 3000 and epochs_for("auto", 3000, 7) == 429  # tips; ceil(3000 / 7)
    assert epochs_for(5, 3000, 1) == 5  # asked for: exactly that
    assert epochs_for("auto", 3000, 65, (90, 300)) == 90 and epochs_for("auto", 3000, 1, (90, 300)) == 300
    cfg = tiny_cfg  # 192 training rows in batches of 40: 4 steps an epoch
    cfg.train.epochs, cfg.train.min_steps, cfg.train.budget_seconds = "auto", 1004, 1e-6  # 251 epochs, cut to 1
    ingest.run(cfg, "tiny")
    assert train.run(cfg, "tiny").epochs == 1
    blob = torch.load(StagePaths.of(cfg.work_dir, "tiny").checkpoints / "last.pt", weights_only=True)
    assert blob["epochs_planned"] == [251, 1]
    cfg.model.name, cfg.model.autoregressive.min_steps = "autoregressive", 400  # 90 epochs, or 400 steps (100 here)
    train.run(cfg, "tiny")
    blob = torch.load(StagePaths.of(cfg.work_dir, "tiny").checkpoints / "last.pt", weights_only=True)
    assert blob["epochs_planned"] == [100, 1]
    assert plan(cfg, "tiny", estimate=False)["model"]["epochs"] == 100  # validate's plan says so too


_GAN_LOG = [{"epoch": e, "critic_loss": -0.5 / e, "gradient_penalty": 0.1, "generator_loss": 0.3 * e, "seconds": 0.2}
            for e in (1, 2)]
_DIFFUSION_LOG = [{"epoch": e, "flow_loss": 1.0 / e, "category_loss": 0.5 / e, "seconds": 0.2} for e in (1, 2, 3)]


def test_every_loss_gets_its_own_plot_file_and_another_models_go(tmp_path):
    from pipeline.train import _write_log

    paths = StagePaths.of(tmp_path / "work", "tiny")
    _write_log(paths, _GAN_LOG)
    assert sorted(p.name for p in paths.train_plots.iterdir()) == [
        "critic_loss.csv", "generator_loss.csv", "gradient_penalty.csv"]
    assert pd.read_csv(paths.train_plots / "generator_loss.csv").to_dict("list") == {
        "epoch": [1, 2], "generator_loss": [0.3, 0.6]}
    _write_log(paths, _DIFFUSION_LOG)  # the dataset now trains another model: the GAN's plots go
    assert sorted(p.name for p in paths.train_plots.iterdir()) == ["category_loss.csv", "flow_loss.csv"]
    assert list(pd.read_csv(paths.train_log).columns) == ["epoch", "flow_loss", "category_loss", "seconds"]


@pytest.mark.slow  # dvc in a subprocess
def test_dvc_plots_show_draws_every_loss_of_every_model(tmp_path):
    """dvc.yaml's train plots, as `dvc plots show` reads them, for a diffusion and a GAN dataset."""
    import subprocess
    import sys

    import yaml

    from pipeline import dvcgen
    from pipeline.train import _write_log

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "work_dir": "work", "metrics_dir": "metrics", "publish": {"release_root": "releases"},
        "datasets": {"diffused": {"source": "x"}, "gan": {"source": "y", "overrides": {"model.name": "ctgan"}}}}))
    # dvc.yaml as the generator writes it for these params (the repo's names its own datasets)
    (tmp_path / "dvc.yaml").write_text(dvcgen.render(tmp_path / "params.yaml"))
    _write_log(StagePaths.of(tmp_path / "work", "diffused"), _DIFFUSION_LOG)
    _write_log(StagePaths.of(tmp_path / "work", "gan"), _GAN_LOG)
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True, timeout=120)
    out = subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "--json"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert not shown.get("errors") and "WARNING" not in out.stderr, out.stdout[-2000:] + out.stderr
    drawn = {name: plots[0]["content"]["layer"][0]["encoding"]["y"]["field"] for name, plots in shown["data"].items()}
    assert drawn == {f"work/{d}/train_plots/{loss}.csv": loss for d, log in (("diffused", _DIFFUSION_LOG),
                                                                             ("gan", _GAN_LOG))
                     for loss in log[0] if loss not in ("epoch", "seconds")}


@pytest.mark.slow  # three stages
def test_max_rows_trains_on_a_seeded_sample_and_generates_as_many_rows_as_the_source(tmp_path, tiny_source):
    from pipeline import generate, ingest, train
    from pipeline.artifacts import StagePaths, read_synthetic
    from tests.conftest import tiny_config

    cfg = tiny_config(tmp_path, tiny_source, **{"train.max_rows": 100, "train.epochs": 1})
    ingest.run(cfg, "tiny")
    train.run(cfg, "tiny")
    info = json.loads((StagePaths.of(cfg.work_dir, "tiny").model / "model.json").read_text())
    assert info["rows"] == 100 and info["sampled_from_rows"] == 192 and info["train_config"]["max_rows"] == 100
    generate.run(cfg, "tiny")
    assert len(read_synthetic(StagePaths.of(cfg.work_dir, "tiny").synthetic)) == 192


@pytest.mark.slow  # about a second: the fast tier stays under a minute
def test_the_loss_log_is_written_after_the_first_epoch_then_at_most_every_few_seconds(tiny_cfg, monkeypatch):
    from pipeline import train as train_stage

    writes = []
    write_log = train_stage._write_log
    monkeypatch.setattr(train_stage, "_write_log", lambda p, h: (writes.append(len(h)), write_log(p, h)))
    monkeypatch.setattr(train_stage, "LOG_SECONDS", 1e9)  # however slow this machine is now
    tiny_cfg.train.epochs = 6
    ingest.run(tiny_cfg, "tiny")
    train.run(tiny_cfg, "tiny")
    assert writes == [1, 6]  # the first epoch (a watcher sees training started), then the end: not six rewrites
    assert list(pd.read_csv(StagePaths.of(tiny_cfg.work_dir, "tiny").train_log)["epoch"]) == [1, 2, 3, 4, 5, 6]
