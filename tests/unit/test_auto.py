"""model.name: auto trains every candidate on the training rows less a validation part, keeps the
one that scores best on that part, and records them all; train.budget_seconds cuts the epochs."""

import json

import pandas as pd
import pytest
import torch
from torch import nn

from pipeline import generate, ingest, publish, score, train
from pipeline.artifacts import StagePaths
from pipeline.errors import ConfigError
from pipeline.models import models, register_model
from pipeline.models.base import Phase, TabularModel, activate
from pipeline.report import auto_summary
from pipeline.stages import check_config
from pipeline.training.auto import one_se_choice, split_folds, split_validation
from tests.conftest import tiny_config


@pytest.fixture
def noise_model():
    """A candidate known to be worse: rows of independent noise (it learns nothing)."""

    @register_model("toy_noise")
    class Noise(TabularModel):
        def __init__(self, layout, cfg, train_cfg):
            super().__init__(layout)
            self.bias = nn.Parameter(torch.zeros(layout.width))

        def phases(self, t):
            return [Phase("noise", [self.bias], 1e-3)]

        def loss(self, phase, real):
            return (self.bias ** 2).sum(), {"noise_loss": (self.bias ** 2).sum()}

        @torch.no_grad()
        def sample(self, n, generator, condition=None):
            raw = torch.randn(n, self.layout.width, generator=generator, device=self.bias.device) * 3
            return activate(raw, self.layout, generator=generator, hard=True)

        def inference_state(self):
            return self.state_dict()

        def load_inference_state(self, state):
            self.load_state_dict(state)

    yield "toy_noise"
    models().pop("toy_noise")


def _cfg(tmp_path, source, candidates, **extra):
    return tiny_config(tmp_path, source, **{
        "model.name": "auto", "model.auto": {"candidates": candidates, "validation_fraction": 0.25,
                                             "min_validation_rows": 0},
        "model.diffusion": {"hidden_dims": [64, 64], "sample_steps": 20},
        "train.epochs": 15, "generate.rows": 100, **extra})


@pytest.mark.slow  # seconds: the fast tier stays under a minute
@pytest.mark.parametrize("order", [0, 1])
def test_auto_keeps_the_better_candidate_and_records_every_one(tmp_path, tiny_source, noise_model, order):
    candidates = ["diffusion", noise_model][::1 if order == 0 else -1]
    cfg = _cfg(tmp_path, tiny_source, candidates)
    check_config(cfg, ["tiny"])
    for stage in (ingest, train, generate):
        stage.run(cfg, "tiny")
    paths = StagePaths.of(cfg.work_dir, "tiny")
    info = json.loads((paths.model / "model.json").read_text())
    record = info["auto"]
    assert info["model"] == record["chosen"] == "diffusion"
    assert set(record["candidates"]) == {"diffusion", noise_model}
    scores = {k: v["score"] for k, v in record["candidates"].items()}
    assert scores["diffusion"] > scores[noise_model] + 0.1
    assert record["validation_rows"] == 48 and record["fit_rows"] == 144  # of the 192 training rows
    assert len(pd.read_parquet(paths.synthetic)) == 100  # the kept model generates
    if order == 0:  # the report and the release's data card say what was tried and kept
        cfg.score.report = True
        score.run(cfg, "tiny")
        release = publish.run(cfg, "tiny")
        for text in ((paths.score / "report.md").read_text(), (release.path / "_DATACARD.md").read_text()):
            assert "model.name auto kept diffusion" in text and f"{noise_model} " in text


def test_auto_refuses_images_resume_and_unknown_candidates(tmp_path, tiny_source):
    cfg = _cfg(tmp_path, tiny_source, ["diffusion", "nope"])
    with pytest.raises(ConfigError, match="model.name 'nope' is not one of"):
        check_config(cfg, ["tiny"])
    cfg = _cfg(tmp_path, tiny_source, ["diffusion"])
    ingest.run(cfg, "tiny")
    with pytest.raises(ConfigError, match="model.name auto trains its table candidates in one process and does not "
                                          "resume"):
        train.run(cfg, "tiny", resume=True)


@pytest.mark.slow  # seconds: four trainings per candidate
def test_a_small_table_cross_validates_the_candidates(tmp_path, tiny_source, noise_model):
    cfg = _cfg(tmp_path, tiny_source, [noise_model, "diffusion"], **{"train.epochs": 10})
    cfg.model.auto.min_validation_rows, cfg.model.auto.folds = 100, 3  # 48 validation rows: too few
    for stage in (ingest, train, generate):
        stage.run(cfg, "tiny")
    paths = StagePaths.of(cfg.work_dir, "tiny")
    info = json.loads((paths.model / "model.json").read_text())
    record = info["auto"]
    assert info["model"] == record["chosen"] == "diffusion" and record["folds"] == 3
    assert record["validation_rows"] == 192  # every training row held out once
    assert record["candidates"]["diffusion"]["epochs"] == [10, 10, 10]
    assert record["refit"]["rows"] == 192  # the winner trained on every row
    assert record["candidates"]["diffusion"]["score"] > record["candidates"][noise_model]["score"] + 0.1
    # The noise model is first (the incumbent): diffusion replaces it by more than the folds' noise.
    margin = record["margins"]["diffusion"]
    assert margin["beats_first"] and margin["gain"] > margin["se"] > 0
    assert len(record["candidates"]["diffusion"]["fold_scores"]) == 3
    assert f"{margin['gain']:+.3f} ± {margin['se']:.3f} a fold over the first" in auto_summary(record)
    assert len(pd.read_parquet(paths.synthetic)) == 100


def test_after_cross_validation_the_first_candidate_stays_unless_another_beats_it_by_one_standard_error():
    first = {"score": 0.90, "fold_scores": [0.90, 0.88, 0.92, 0.89, 0.91]}
    # Ahead on the pool, but on the folds by less than its noise (gain 0.002, se 0.0097): not a switch.
    close = {"score": 0.905, "fold_scores": [0.93, 0.86, 0.94, 0.88, 0.90]}
    # Ahead on every fold (gain 0.022, se 0.0037): it replaces the first.
    clear = {"score": 0.918, "fold_scores": [0.92, 0.91, 0.93, 0.91, 0.94]}
    worse = {"score": 0.80, "fold_scores": [0.80, 0.79, 0.81, 0.78, 0.82]}
    name, margins = one_se_choice({"ar": first, "close": close, "worse": worse}, "ar")
    assert name == "ar" and margins["close"] == {"gain": 0.002, "se": 0.0097, "beats_first": False}
    assert not margins["worse"]["beats_first"]
    name, margins = one_se_choice({"ar": first, "close": close, "clear": clear}, "ar")
    assert name == "clear" and margins["clear"]["beats_first"] and margins["clear"]["gain"] == 0.022
    # One that beats the first on the folds but not on the pool does not win: the best pooled score does.
    odd = {"score": 0.899, "fold_scores": [0.95, 0.93, 0.97, 0.94, 0.96]}
    assert one_se_choice({"ar": first, "odd": odd}, "ar")[0] == "ar"


def test_the_folds_hold_out_every_row_once():
    folds = split_folds(103, 5, seed=3)
    held = [h for _, h in folds]
    assert sorted(i for h in held for i in h) == list(range(103))
    assert all(not set(f) & set(h) and len(f) + len(h) == 103 for f, h in folds)
    assert [list(h) for h in held] == [list(h) for _, h in split_folds(103, 5, seed=3)]


def test_the_validation_part_is_seeded_and_capped():
    fit, val = split_validation(1000, 0.2, 150, seed=3)
    assert len(val) == 150 and len(fit) == 850 and not set(fit) & set(val)
    assert (split_validation(1000, 0.2, 150, seed=3)[1] == val).all()


@pytest.mark.slow  # a few seconds: keeps the fast tier under a minute
def test_a_training_budget_cuts_the_epochs(tmp_path, tiny_source):
    cfg = tiny_config(tmp_path, tiny_source, **{"train.epochs": 100000, "train.budget_seconds": 1.0})
    ingest.run(cfg, "tiny")
    result = train.run(cfg, "tiny")
    assert 1 <= result.epochs < 100000 and result.seconds < 30


@pytest.mark.slow  # ~2 s: trains twice
def test_refit_trains_the_kept_model_again_on_every_training_row(tmp_path, tiny_source, noise_model):
    cfg = _cfg(tmp_path, tiny_source, [noise_model], **{"model.auto.refit": True, "train.epochs": 3})
    for stage in (ingest, train):
        stage.run(cfg, "tiny")
    record = json.loads((StagePaths.of(cfg.work_dir, "tiny").model / "model.json").read_text())["auto"]
    assert record["chosen"] == noise_model and record["fit_rows"] == 144
    assert record["refit"]["rows"] == 192 and record["refit"]["epochs"] == 3  # the validation rows too
