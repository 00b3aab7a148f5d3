"""DP-SGD (train.privacy): Opacus' per-row gradients of the diffusion loss are each row's own, the
noise the accountant sets spends the budget and no more (with the RDP accountant one account with
the transformer's histograms, with PRV the DP-SGD part), the spent epsilon is what Opacus' RDP
analysis says for the steps made (plus the histograms' RDP), the run is reproducible, and what
cannot train privately is refused in one line."""

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.config import ModelConfig, TrainConfig
from pipeline.errors import ConfigError
from pipeline.models.base import OutputLayout
from pipeline.models.diffusion import TabularDiffusion
from pipeline.models.transformer import TableTransformer
from pipeline.schema import TableSchema, describe, infer_kind
from pipeline.settings import PrivacySettings
from pipeline.training.loop import fit
from pipeline.training.private import budget
from tests.conftest import clipped_sum


def _model(n: int = 600, seed: int = 0) -> tuple[TabularDiffusion, torch.Tensor]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, n)
    df = pd.DataFrame({"x": x, "y": 0.9 * x + rng.normal(0, 0.4, n), "band": np.where(x > 0.5, "hi", "lo")})
    schema = TableSchema([describe(df[c], infer_kind(df[c])) for c in df.columns])
    tf = TableTransformer(schema, knots=101).fit(df)
    data = torch.from_numpy(tf.transform(df, np.random.default_rng(0)))
    mcfg = ModelConfig(diffusion={"hidden_dims": [32, 32], "ema_decay": 0.9})
    torch.manual_seed(0)
    return TabularDiffusion(OutputLayout(tf.spans, tf.width), mcfg, TrainConfig()), data


def _train(epsilon: float = 2.0, epochs: int = 4, **privacy):
    model, data = _model()
    cfg = TrainConfig(epochs=epochs, batch_size=100, device="cpu",
                      privacy={"epsilon": epsilon, "delta": 1e-4, "max_grad_norm": 1.0, **privacy}).settings()
    b = budget(cfg.privacy, data.shape[0])
    return model, fit(model, data, cfg, seed=3, budget=b), b


def test_each_rows_gradient_is_its_own():
    """The diffusion loss is a mean of per-row losses: Opacus' hooks give each row a gradient that
    does not change when the other rows of the batch do, and whose mean is the batch gradient."""
    from opacus import GradSampleModule

    model, data = _model()
    net = GradSampleModule(model.generator, batch_first=True, loss_reduction="mean")
    grads = []
    for batch in (data[:8], torch.cat([data[:1], data[100:107]])):
        torch.manual_seed(5)  # the same draws (times, noise, hidden columns) row by row
        model.generator.zero_grad(set_to_none=True)
        model.loss("denoiser", batch)[0].backward()
        params = [p for p in model.generator.parameters()]
        grads.append([p.grad_sample.clone() for p in params])
        for p in params:
            torch.testing.assert_close(p.grad_sample.mean(0), p.grad, rtol=1e-4, atol=1e-6)
        for p in params:
            p.grad_sample = None
    for first, second in zip(*grads):
        torch.testing.assert_close(first[0], second[0], rtol=1e-4, atol=1e-6)  # row 0 alike in both batches
        assert not torch.allclose(first[1], second[1])  # (and the other rows differ)
    net.to_standard_module()


@pytest.mark.slow  # over a second: the fast tier stays under a minute
def test_ghost_clipping_sums_each_rows_gradient_clipped():
    """What DP-SGD steps with (before the noise): Opacus' ghost clipping gives the sum over rows of
    each row's gradient scaled to norm <= max_grad_norm, the same as clipping the per-row gradients
    Opacus' GradSampleModule materialises, row by row."""
    from opacus import GradSampleModule

    from pipeline.training.private import DPSGD

    model, data = _model()
    batch, clip = data[:16], 0.5
    net = GradSampleModule(model.generator, batch_first=True, loss_reduction="mean")
    torch.manual_seed(5)
    model.loss("denoiser", batch)[0].backward()
    params = list(model.generator.parameters())
    per_row = [p.grad_sample.clone() for p in params]
    net.to_standard_module()
    scale, expected = clipped_sum(per_row, clip)
    assert (scale < 1).sum() >= 8  # most rows are clipped at this norm
    for p in params:
        p.grad = None

    opts = {"denoiser": torch.optim.Adam(params)}
    b = budget(PrivacySettings(epsilon=3.0, max_grad_norm=clip), rows=600)
    dp = DPSGD(model.generator, opts, b, PrivacySettings(epsilon=3.0, max_grad_norm=clip), rows=600, batch=16,
               planned_steps=10, device=torch.device("cpu"))
    torch.manual_seed(5)
    row_loss, figures = model.row_loss("denoiser", batch)
    dp.backward(row_loss)
    for p, want in zip(params, expected):
        torch.testing.assert_close(p.grad, want, rtol=1e-4, atol=1e-6)
    torch.manual_seed(5)
    assert model.loss("denoiser", batch)[0].item() == pytest.approx(row_loss.mean().item(), rel=1e-6)
    dp.close()


@pytest.mark.slow  # over a second: the fast tier stays under a minute
def test_training_spends_the_dp_sgd_part_and_opacus_agrees():
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

    _, state, b = _train(epsilon=2.0, epochs=4)
    rec = state.privacy
    assert rec["steps"] == rec["planned_steps"] == 4 * 6  # 600 rows, batches of 100
    assert rec["sample_rate"] == pytest.approx(100 / 600) and rec["max_grad_norm"] == 1.0
    # Opacus' RDP analysis for these steps, directly (the orders its accountant uses by default).
    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
    rdp = compute_rdp(q=rec["sample_rate"], noise_multiplier=rec["noise_multiplier"], steps=rec["steps"],
                      orders=orders)
    eps, _ = get_privacy_spent(orders=orders, rdp=rdp, delta=b.sgd_delta)
    assert rec["epsilon"] == pytest.approx(eps, rel=1e-9) == pytest.approx(rec["sgd_alone_epsilon"], rel=1e-9)
    assert b.sgd_epsilon - 0.02 <= rec["epsilon"] <= b.sgd_epsilon  # the whole account, never more
    assert [row["epsilon"] for row in state.history] == sorted(row["epsilon"] for row in state.history)
    # One account (RDP): no histograms here, so DP-SGD may spend all of it.
    assert b.joint and b.sgd_epsilon == pytest.approx(2.0) and rec["delta"] == pytest.approx(1e-4)


@pytest.mark.slow  # over a second: the fast tier stays under a minute
def test_one_account_adds_the_histograms_rdp_and_spends_the_whole_budget():
    """With the transformer's histograms on the account, the run's epsilon is Opacus' RDP of its
    steps plus the histograms' Laplace RDP converted at the budget's delta: within 0.02 of the
    budget and never over; DP-SGD's noise is less than under sequential composition's split at the
    same histograms' noise (0.9 of epsilon and delta left to DP-SGD), and more than with no histograms."""
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
    from opacus.accountants.utils import get_noise_multiplier

    from pipeline.training.accounting import laplace_rdp, rdp_orders

    stats = {"laplace_epsilons": [0.2 / 15] * 15, "threshold_delta": 1e-5}  # 0.2 of epsilon 2 by sequential split
    model, data = _model()
    cfg = TrainConfig(epochs=4, batch_size=100, device="cpu",
                      privacy={"epsilon": 2.0, "delta": 1e-4, "max_grad_norm": 1.0}).settings()
    b = budget(cfg.privacy, data.shape[0]).with_statistics(stats)
    assert b.sgd_delta == pytest.approx(1e-4 - 1e-5)
    rec = fit(model, data, cfg, seed=3, budget=b).privacy
    orders = rdp_orders()
    rdp = compute_rdp(q=rec["sample_rate"], noise_multiplier=rec["noise_multiplier"], steps=rec["steps"],
                      orders=orders) + sum(laplace_rdp(e, orders) for e in stats["laplace_epsilons"])
    assert rec["epsilon"] == pytest.approx(get_privacy_spent(orders=orders, rdp=rdp, delta=1e-4 - 1e-5)[0], rel=1e-9)
    assert 2.0 - 0.02 <= rec["epsilon"] <= 2.0 and rec["sgd_alone_epsilon"] < rec["epsilon"]
    sequential = get_noise_multiplier(target_epsilon=1.8, target_delta=0.9e-4, sample_rate=rec["sample_rate"],
                                      steps=rec["steps"], accountant="rdp", alphas=orders)
    alone = get_noise_multiplier(target_epsilon=2.0, target_delta=1e-4 - 1e-5, sample_rate=rec["sample_rate"],
                                 steps=rec["steps"], accountant="rdp", alphas=orders)
    assert alone < rec["noise_multiplier"] < sequential


def test_rdp_orders_past_opacus_tighten_only_the_bounds_its_last_order_cuts_short():
    """Our RDP orders are Opacus' and larger ones. On the default DP run's plan for Adult (batch 2,000
    of 32,561 rows, 250 epochs, epsilon 3 less preprocessing's share) the noise multiplier is Opacus'
    own; after the first epoch's 16 steps, where Opacus' best order is its last (63) and it warns, the
    epsilon spent is a tighter bound, with no warning."""
    import warnings

    from opacus.accountants import RDPAccountant
    from opacus.accountants.utils import get_noise_multiplier

    from pipeline.training.accounting import rdp_orders
    from pipeline.training.private import Budget, noise_multiplier

    rows, delta = 32_561, 0.9 / (10 * 32_561)
    rate, steps = 2_000 / rows, 4_071
    plan = Budget(3.0, delta / 0.9, 0.3, delta / 9, 2.7, delta)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = noise_multiplier(plan, rate, steps, "rdp")
        accountant = RDPAccountant()
        for _ in range(16):
            accountant.step(noise_multiplier=ours, sample_rate=rate)
        tight = accountant.get_epsilon(delta=delta, alphas=rdp_orders())
        assert not [w for w in caught if "Optimal order" in str(w.message)]
        opacus = accountant.get_epsilon(delta=delta)
        assert [w for w in caught if "Optimal order is the largest alpha" in str(w.message)]
    assert ours == get_noise_multiplier(target_epsilon=2.7, target_delta=delta, sample_rate=rate, steps=steps)
    assert 0 < tight < 0.95 * opacus


@pytest.mark.slow
def test_prv_accountant_and_a_larger_budget_add_less_noise():
    from opacus.accountants.utils import get_noise_multiplier

    _, rdp_state, _ = _train(epsilon=2.0)
    _, prv_state, b = _train(epsilon=2.0, accountant="prv")
    assert prv_state.privacy["accountant"] == "prv" and prv_state.privacy["epsilon"] <= b.sgd_epsilon
    assert not b.joint and b.sgd_epsilon == pytest.approx(2.0 * 0.7)  # prv: the parts add up (share 0.3)
    rdp_split = get_noise_multiplier(target_epsilon=b.sgd_epsilon, target_delta=b.sgd_delta, steps=24,
                                     sample_rate=1 / 6, accountant="rdp")
    assert prv_state.privacy["noise_multiplier"] < rdp_split  # prv is tighter than RDP for the same part
    _, loose, _ = _train(epsilon=8.0)
    assert loose.privacy["noise_multiplier"] < rdp_state.privacy["noise_multiplier"]


@pytest.mark.slow
def test_a_private_run_is_reproducible_and_noisy():
    a, _, _ = _train()
    b, _, _ = _train()
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, msg=k)
    c, _, _ = _train(epsilon=50.0)
    assert not torch.equal(a.generator.head.weight, c.generator.head.weight)
    assert not hasattr(a.generator.head.weight, "grad_sample")  # Opacus' hooks and per-row grads are gone


def test_the_budget_is_split_and_delta_auto_follows_the_rows():
    b = budget(PrivacySettings(epsilon=3.0, preprocessing_share=0.2, accountant="prv"), rows=32_561)
    assert (b.preprocessing_epsilon, b.sgd_epsilon) == pytest.approx((0.6, 2.4))
    assert b.delta == pytest.approx(1 / 325_610) and b.preprocessing_delta + b.sgd_delta == pytest.approx(b.delta)
    joint = budget(PrivacySettings(epsilon=3.0, preprocessing_share=0.2), rows=32_561)  # rdp: one account
    assert joint.joint and (joint.preprocessing_epsilon, joint.sgd_epsilon) == pytest.approx((0.6, 3.0))
    assert joint.with_statistics({"laplace_epsilons": [0.1], "threshold_delta": 1e-7}).sgd_delta == pytest.approx(
        joint.delta - 1e-7)
    with pytest.raises(ConfigError, match=r"^train.privacy: the transformer's private fit did not record"):
        joint.with_statistics({"epsilon": 0.9})  # a record without the histograms' epsilons: never DP-SGD's all
    assert budget(PrivacySettings(), rows=100) is None


def test_a_budget_too_small_for_the_steps_is_one_line():
    with pytest.raises(ConfigError, match=r"^train.privacy.epsilon 1e-06: too small for 402 DP-SGD steps"):
        _train(epsilon=1e-6, epochs=67)  # 67 epochs of 6 steps: 402 planned


def test_other_models_refuse_in_one_line(tiny_cfg):
    from pipeline import ingest, train

    tiny_cfg.model.name = "ctgan"  # a critic's loss mixes real and generated rows: no row's own gradient
    tiny_cfg.train.privacy.epsilon = 3.0
    tiny_cfg.train.privacy.model = None  # model.name, not the DP default (train.privacy.model)
    ingest.run(tiny_cfg, "tiny")
    with pytest.raises(ConfigError, match=r"train.privacy: DP-SGD does not train 'ctgan'; set model.name: "
                                          r"autoregressive or diffusion or tvae, or set train.privacy.epsilon: null$"):
        train.run(tiny_cfg, "tiny")


@pytest.mark.slow  # over a second: the fast tier stays under a minute
def test_tvae_clips_each_rows_gradient_and_trains_within_the_budget():
    """TVAE under DP-SGD: its row losses average to its loss, ghost clipping sums each row's gradient
    clipped (as Opacus' materialised per-row gradients say), and a fit spends the DP-SGD part with
    its output scale held (a parameter of no layer has no per-row gradient to clip)."""
    from opacus import GradSampleModule

    from pipeline.models.tvae import TabularVAE
    from pipeline.training.private import DPSGD

    _, data = _model()
    layout = _model()[0].layout
    mcfg = ModelConfig(tvae={"latent_dim": 8, "encoder_dims": [16], "decoder_dims": [16]})
    torch.manual_seed(0)
    model = TabularVAE(layout, mcfg, TrainConfig())
    batch, clip = data[:16], 0.5
    torch.manual_seed(5)
    row_loss, _ = model.row_loss("vae", batch)
    torch.manual_seed(5)
    assert model.loss("vae", batch)[0].item() == pytest.approx(row_loss.mean().item(), rel=1e-5)

    net = GradSampleModule(model.private_module(), batch_first=True, loss_reduction="mean")
    torch.manual_seed(5)
    model.loss("vae", batch)[0].backward()
    params = [p for p in model.parameters() if p.requires_grad]
    assert all(p is not model.sigma for p in params) and len(params) == 10  # 5 layers: weights and biases
    per_row = [p.grad_sample.clone() for p in params]
    net.to_standard_module()
    _, expected = clipped_sum(per_row, clip)
    for p in model.parameters():
        p.grad = None
        for attr in ("grad_sample", "_forward_counter"):
            if hasattr(p, attr):
                delattr(p, attr)
    settings = PrivacySettings(epsilon=3.0, max_grad_norm=clip)
    dp = DPSGD(model.private_module(), {"vae": torch.optim.Adam(params)}, budget(settings, rows=600), settings,
               rows=600, batch=16, planned_steps=10, device=torch.device("cpu"))
    torch.manual_seed(5)
    dp.backward(model.row_loss("vae", batch)[0])
    for p, want in zip(params, expected):
        torch.testing.assert_close(p.grad, want, rtol=1e-4, atol=1e-6)
    dp.close()

    torch.manual_seed(0)
    model = TabularVAE(layout, mcfg, TrainConfig())
    cfg = TrainConfig(epochs=3, batch_size=100, device="cpu",  # the clip a DP run's config gives it (auto)
                      privacy={"epsilon": 2.0, "delta": 1e-4, "max_grad_norm": 1.0}).settings()
    b = budget(cfg.privacy, data.shape[0])
    state = fit(model, data, cfg, seed=3, budget=b)
    assert state.privacy["steps"] == 3 * 6 and b.sgd_epsilon - 0.05 <= state.privacy["epsilon"] <= b.sgd_epsilon
    assert torch.all(model.sigma == 0.1) and torch.isfinite(model.sample(50, torch.Generator().manual_seed(0))).all()


def test_auto_distributed_and_resume_refuse_in_one_line(tiny_cfg):
    from pipeline import ingest, train

    tiny_cfg.train.privacy.epsilon = 3.0
    tiny_cfg.train.privacy.model = None  # model.name as given (the DP default would stand in for auto)
    ingest.run(tiny_cfg, "tiny")
    tiny_cfg.model.name = "auto"
    with pytest.raises(ConfigError, match="model.name auto chooses on real validation rows"):
        train.run(tiny_cfg, "tiny")
    tiny_cfg.model.name = "diffusion"
    with pytest.raises(ConfigError, match="never resumed"):
        train.run(tiny_cfg, "tiny", resume="yes")
    tiny_cfg.train.distributed.nproc_per_node = 2
    with pytest.raises(ConfigError, match="DP-SGD trains in one process"):
        train.run(tiny_cfg, "tiny")


@pytest.mark.slow
def test_a_private_release_states_its_guarantee_and_ships_no_real_statistics(tmp_path, tiny_source):
    """Through the five stages: the manifest's privacy.dp (what each part spent, one account of at
    most the budget), dp.epsilon for the gate, the data card's statement, no real-vs-synthetic
    report in the release; a gate asking for less epsilon refuses, and a model trained without
    differential privacy fails a dp.epsilon gate as not computed."""
    import json

    from pipeline import generate, ingest, publish, score, train
    from pipeline.artifacts import StagePaths
    from pipeline.release.layout import DATACARD, MANIFEST
    from tests.conftest import tiny_config

    cfg = tiny_config(tmp_path, tiny_source, **{
        "model.name": "diffusion", "model.diffusion.hidden_dims": [32, 32], "train.epochs": 2,
        "train.privacy.epsilon": 200.0, "datasets.tiny.keep_links": False, "score.report": True,
        "score.thresholds": {"dp": {"epsilon": {"max": 200}}}})
    for stage in (ingest, train, generate, score):
        stage.run(cfg, "tiny")
    res = publish.run(cfg, "tiny", version="v1")
    manifest = json.loads((res.path / MANIFEST).read_text())
    dp = manifest["privacy"]["dp"]
    # One RDP account: DP-SGD's record holds the whole run's epsilon, the thresholds add their delta.
    assert dp["composition"] == "renyi" and dp["epsilon"] == dp["dp_sgd"]["epsilon"] > dp["dp_sgd"]["sgd_alone_epsilon"]
    assert dp["delta"] == pytest.approx(dp["dp_sgd"]["delta"] + dp["budget"]["threshold_delta"])
    assert dp["delta"] <= dp["budget"]["delta"] * (1 + 1e-12) and dp["preprocessing"]["laplace_epsilons"]
    assert 200.0 - 0.01 <= dp["epsilon"] <= 200.0 and dp["budget"]["epsilon"] == 200.0
    assert dp["dp_sgd"]["steps"] == dp["dp_sgd"]["planned_steps"] > 0
    assert manifest["metrics"]["dp.epsilon"] == dp["epsilon"] and manifest["gate"]["passed"]
    assert manifest["reports"] == [DATACARD] and not list(res.path.glob("_report*"))
    secret = json.loads((StagePaths.of(cfg.work_dir, "tiny").model / "model.json").read_text())["privacy_noise_seed"]
    assert isinstance(secret, int) and all(str(secret) not in f.read_text(errors="replace")
                                           for f in res.path.iterdir() if f.suffix in (".json", ".md"))
    assert str(secret).encode() not in b"".join(f.read_bytes() for f in res.path.glob("*.parquet"))
    assert (StagePaths.of(cfg.work_dir, "tiny").score / "report.html").exists()  # kept in the work folder
    card = (res.path / DATACARD).read_text()
    assert "## Differential privacy" in card and "-differentially private with respect to the" in card
    assert "the two parts are one Renyi-DP account" in card and "DP-SGD, on its own, epsilon" in card
    assert "The full report stays in the work folder" in card
    assert "not trained with differential privacy" not in card and "_report.html" not in card
    from pipeline.datacard import release_summary

    assert "-differentially private (DP-SGD, rdp accountant" in release_summary(manifest)

    cfg.generate.drop_training_copies = True
    with pytest.raises(ConfigError, match="^generate.drop_training_copies compares each generated row"):
        generate.run(cfg, "tiny")
    cfg.generate.drop_training_copies = False
    cfg.score.thresholds = {"dp.epsilon": {"max": 5}}
    assert any(f.startswith("dp.epsilon: ") and "> max 5" in f for f in score.run(cfg, "tiny").failures)

    cfg.train.privacy.epsilon = None  # the same gate on a model trained without differential privacy
    train.run(cfg, "tiny")
    generate.run(cfg, "tiny")
    assert "dp.epsilon: not computed" in score.run(cfg, "tiny").failures


@pytest.mark.slow
def test_validate_says_what_a_dp_run_will_spend(tiny_cfg):
    """validate's plan: the budget's parts, the DP-SGD steps and the noise multiplier the accountant
    finds for them with the histograms the transformer will make, as train finds it."""
    import json

    from opacus.accountants.utils import get_noise_multiplier

    from pipeline import ingest, train
    from pipeline.artifacts import StagePaths
    from pipeline.plan import plan, render

    tiny_cfg.train.privacy.epsilon = 40.0
    tiny_cfg.train.privacy.batch_size = 48  # DP-SGD's batch, in place of train.batch_size
    tiny_cfg.train.epochs = 5
    tiny_cfg.datasets["tiny"].keep_links = False
    p = plan(tiny_cfg, "tiny", estimate=False)
    d = p["dp"]
    rows = p["rows"]["train"]
    share = tiny_cfg.train.privacy.preprocessing_share
    assert (d["preprocessing_epsilon"], d["sgd_epsilon"]) == pytest.approx((40.0 * share, 40.0)) and d["joint"]
    assert d["steps"] == 5 * (rows // 48) and d["sample_rate"] == pytest.approx(48 / rows)
    alone = get_noise_multiplier(target_epsilon=40.0, target_delta=d["sgd_delta"], sample_rate=48 / rows,
                                 steps=d["steps"])
    assert d["noise_multiplier"] > alone  # the histograms are on the account too
    assert f"differential privacy: epsilon 40, delta {1 / (10 * rows):.3g}" in render(p)
    assert f"on their own, {d['column_epsilon']:.3g} a column, one Renyi-DP account with DP-SGD" in render(p)
    ingest.run(tiny_cfg, "tiny")
    train.run(tiny_cfg, "tiny")
    model = json.loads((StagePaths.of(tiny_cfg.work_dir, "tiny").model / "model.json").read_text())
    assert model["privacy"]["dp"]["dp_sgd"]["noise_multiplier"] == d["noise_multiplier"]
    tiny_cfg.train.privacy.epsilon, tiny_cfg.train.privacy.accountant = 4.0, "prv"  # the parts add up
    d = plan(tiny_cfg, "tiny", estimate=False)["dp"]
    assert (d["preprocessing_epsilon"], d["sgd_epsilon"]) == pytest.approx((4.0 * share, 4.0 * (1 - share)))
    tiny_cfg.train.privacy.accountant = "rdp"
    tiny_cfg.train.privacy.epsilon, tiny_cfg.train.privacy.delta = 1e-4, 1e-6
    assert "budget too small for these steps: train refuses" in render(plan(tiny_cfg, "tiny", estimate=False))
