"""The autoregressive table model: numeric bins that decode inside themselves, a dependence between
columns learnt from the order, each row's loss its own under DP-SGD (Opacus' per-row gradients,
clipped as ghost clipping sums them), and a private fit within its budget."""

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.config import ModelConfig, TrainConfig
from pipeline.models.autoregressive import TabularAutoregressive, value_edges
from pipeline.models.base import OutputLayout
from pipeline.models.transformer import TableTransformer
from pipeline.schema import TableSchema, describe, infer_kind
from pipeline.settings import ModelSettings, PrivacySettings, from_dict
from pipeline.training.loop import fit
from pipeline.training.private import DPSGD, budget
from tests.conftest import clipped_sum


def _table(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    """``band`` decides ``x``'s range and ``label``; ``y`` follows ``x``."""
    rng = np.random.default_rng(seed)
    band = rng.choice(["low", "mid", "high"], n, p=[0.5, 0.3, 0.2])
    x = np.select([band == "low", band == "mid"], [rng.uniform(0, 10, n), rng.uniform(20, 30, n)],
                  rng.uniform(50, 60, n))
    label = np.where(band == "high", "yes", "no")
    return pd.DataFrame({"band": band, "x": x, "y": x + rng.normal(0, 1, n), "label": label})


def _model(df: pd.DataFrame, **settings) -> tuple[TabularAutoregressive, TableTransformer, torch.Tensor]:
    schema = TableSchema([describe(df[c], infer_kind(df[c])) for c in df.columns])
    tf = TableTransformer(schema, knots=101).fit(df)
    data = torch.from_numpy(tf.transform(df, np.random.default_rng(0)))
    torch.manual_seed(0)
    model = TabularAutoregressive(OutputLayout(tf.spans, tf.width),
                                  ModelConfig(autoregressive={"hidden_dims": [32], **settings}), TrainConfig())
    return model, tf, data


@pytest.mark.parametrize("fine", [1, 4])
def test_a_drawn_bin_decodes_to_a_value_inside_it(fine):
    """Rows sampled from any weights encode back to tokens whose numeric bins (and parts of bins)
    are the drawn ones: the value is drawn inside its bin, and every bin is reachable."""
    model, _, _ = _model(_table(), bins=16, fine_bins=fine)
    with torch.no_grad():
        for net in model.nets:  # flat logits: every bin equally likely
            net[-1].weight.zero_()
            net[-1].bias.zero_()
    rows = model.sample(20_000, torch.Generator().manual_seed(1))
    codes = model._codes(rows)
    numeric = [j for j, (kind, _, _) in enumerate(model.tokens) if kind != "category"]
    assert len(numeric) == 2 * (2 if fine > 1 else 1)
    for j in numeric:
        k = model.tokens[j][2]
        counts = torch.bincount(codes[:, j], minlength=k).float()
        assert counts.min() > 0.8 * 20_000 / k and counts.max() < 1.2 * 20_000 / k  # uniform over the bins
    # Re-encoding a decoded row gives the same tokens: drawn once more from one-hot logits.
    want = {"bin": 3, "part": 2}
    with torch.no_grad():
        for (kind, _, _), net in zip(model.tokens, model.nets):
            net[-1].bias.fill_(-30.0)
            net[-1].bias[want.get(kind, 0)] = 30.0
    again = model._codes(model.sample(500, torch.Generator().manual_seed(2)))
    for j in numeric:
        assert torch.all(again[:, j] == want[model.tokens[j][0]])


@pytest.mark.parametrize("ordinal", [False, True])
def test_the_sampler_reads_the_nets_the_loss_trains(ordinal):
    """The sampler's first layer (a sum of one weight column per token drawn, plus, with
    ``ordinal_inputs``, the numeric tokens' places times theirs) is the net's own layer over the
    inputs the loss gives it: its logits for drawn rows are the ones the loss scores."""
    model, _, data = _model(_table(300), bins=8, fine_bins=4, ordinal_inputs=ordinal)
    assert model.ordinal[-1] == (4 if ordinal else 0)  # x and y: a bin and a part each
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    rows = model.sample(200, torch.Generator().manual_seed(5))
    codes = model._codes(rows)
    onehot, places = model._onehot(codes), model._places(codes)
    if ordinal:  # a code's place among its token's width, in [-0.5, 0.5]
        numeric = [j for j, (kind, _, _) in enumerate(model.tokens) if kind != "category"]
        widths = torch.tensor([float(model.tokens[j][2]) for j in numeric])
        torch.testing.assert_close(places, (codes[:, numeric].float() + 0.5) / widths - 0.5)
    index = torch.stack([model.offsets[j] + codes[:, j] for j in range(len(model.tokens))], 1)
    for j, net in enumerate(model.nets):
        torch.testing.assert_close(net[1:](model._first_layer(j, index)),
                                   net(model._context(onehot, places, j)), rtol=1e-5, atol=1e-5)


def test_a_dp_run_trains_the_private_recipe():
    """Without DP: fine_bins parts and its own 90 epochs / 300 steps; under DP-SGD the settings'
    ``private`` ones (one part, 250 epochs / 3,000 steps: the recipe measured there)."""
    model, _, _ = _model(_table(50))
    assert model.fine == 16 and model.recipe == (90, 300)
    assert [k for k, _, _ in model.tokens].count("part") == 2
    schema_cfg = ModelConfig(autoregressive={"hidden_dims": [32]})
    private = TabularAutoregressive(model.layout, schema_cfg, TrainConfig(privacy={"epsilon": 1.0}))
    assert private.fine == 1 and private.recipe == (250, 3000)
    # its learning rate: the model's without DP, the private recipe's (null: the model's) under DP-SGD
    dp_train = TrainConfig(privacy={"epsilon": 1.0}).settings()
    assert model.phases(TrainConfig().settings())[0].lr == 1e-3 and private.phases(dp_train)[0].lr == 0.004
    unset = ModelConfig(autoregressive={"hidden_dims": [32], "private": {"lr": None}})
    assert TabularAutoregressive(model.layout, unset, TrainConfig()).phases(dp_train)[0].lr == 1e-3
    assert [k for k, _, _ in private.tokens].count("part") == 0
    assert TabularAutoregressive.auto_recipe(schema_cfg.settings(), TrainConfig().settings()) == (90, 300)


def test_part_noise_redraws_only_the_parts_a_category_reads():
    """In training, a ``part_noise`` share of each part token is redrawn in the context a category
    reads (uniformly: a redrawn part keeps its value a quarter of the time with 4 parts);
    categories, bins and every target stay; numeric tokens, sampling and a model without noise read
    the true tokens."""
    model, _, data = _model(_table(4000), bins=8, fine_bins=4, part_noise=0.5)
    codes = model._codes(data)
    torch.manual_seed(1)
    context = model._noisy_parts(codes)
    parts = [j for j, (kind, _, _) in enumerate(model.tokens) if kind == "part"]
    others = [j for j in range(len(model.tokens)) if j not in parts]
    assert len(parts) == 2 and torch.equal(context[:, others], codes[:, others])
    for j in parts:
        changed = (context[:, j] != codes[:, j]).float().mean().item()
        assert abs(changed - 0.5 * 3 / 4) < 0.03
        assert torch.bincount(context[:, j], minlength=4).min() > 0.15 * len(data)
    model.train()
    torch.manual_seed(2)
    noisy = model.row_loss("autoregressive", data[:64])[0]
    model.eval()
    clean = model.row_loss("autoregressive", data[:64])[0]
    assert not torch.allclose(noisy, clean)
    torch.testing.assert_close(model.row_loss("autoregressive", data[:64])[0], clean)
    off, _, _ = _model(_table(4000), bins=8, fine_bins=4, part_noise=0.0)
    off.train()
    torch.testing.assert_close(off.row_loss("autoregressive", data[:64])[0],
                               off.eval().row_loss("autoregressive", data[:64])[0])
    # No category after a number: nothing reads a noisy part.
    numeric_last, _, rows = _model(_table(400)[["band", "x", "y"]], bins=8, fine_bins=4, part_noise=1.0)
    assert model.noise_read and not numeric_last.noise_read
    numeric_last.train()
    torch.testing.assert_close(numeric_last.row_loss("autoregressive", rows[:64])[0],
                               numeric_last.eval().row_loss("autoregressive", rows[:64])[0])


def test_token_losses_are_each_tokens_share_of_the_row_loss_without_part_noise():
    """Per token, in the tokens' order: they sum to the mean row loss out of training (no part noise,
    even called in training mode, which they leave as it was), and a token its net predicts well
    from the one before (``label`` given ``band``) costs less than its uniform draw."""
    model, _, data = _model(_table(600), bins=8, fine_bins=4, part_noise=0.5)
    fit(model, data, TrainConfig(epochs=40, batch_size=200, lr_decay=0).settings(), seed=0)
    model.train()
    losses = model.token_losses(data[:300])
    assert model.training and losses.shape == (len(model.tokens),)
    torch.testing.assert_close(losses.sum(), model.eval().row_loss("autoregressive", data[:300])[0].mean())
    label = [j for j, (kind, start, _) in enumerate(model.tokens) if kind == "category"][-1]
    assert losses[label] < 0.5 * np.log(2)


def test_numeric_nets_learn_at_their_own_rate_and_the_schedule_scales_both():
    """Without DP a numeric column's nets (bin and place) are one optimiser group at ``numeric_lr``,
    the categorical ones at ``lr``; the decay scales each group from its own rate. Under DP-SGD one
    rate for every net (the private recipe's), and on a small table too."""
    from pipeline.training.loop import make_optimizers, set_learning_rates

    model, _, _ = _model(_table(50), numeric_lr=0.003)
    phase, = model.phases(TrainConfig().settings())
    numeric = {id(p) for (kind, _, _), net in zip(model.tokens, model.nets) if kind != "category"
               for p in net.parameters()}
    opt = make_optimizers(model, TrainConfig().settings())["autoregressive"]
    groups = [({id(p) for p in g["params"]}, g["lr"]) for g in opt.param_groups]
    assert groups == [(set(map(id, model.parameters())) - numeric, 1e-3), (numeric, 0.003)]
    assert len(phase.params) == len(list(model.parameters()))  # every parameter still the phase's
    set_learning_rates({"autoregressive": opt}, {"autoregressive": [1e-3, 0.003]}, 0.5)
    assert [g["lr"] for g in opt.param_groups] == [5e-4, 0.0015]
    dp_train = TrainConfig(privacy={"epsilon": 1.0}).settings()
    private_cfg = ModelConfig(autoregressive={"hidden_dims": [32], "numeric_lr": 0.003})
    dp_phase, = TabularAutoregressive(model.layout, private_cfg, dp_train).phases(dp_train)
    assert dp_phase.rates == () and dp_phase.groups() == dp_phase.params
    # numeric_lr equal to lr: one group, as before the setting (the same bytes)
    same, _, _ = _model(_table(50), numeric_lr=1e-3)
    assert same.phases(TrainConfig().settings())[0].rates == ()
    # A small table (its 90 epochs make under 300 steps at batch 500, so epochs auto raises them):
    # one rate. 2,000 rows make 4 steps an epoch, 360 in 90; 1,999 make 3, 270.
    cfg, train = ModelConfig(autoregressive={"hidden_dims": [32]}), TrainConfig().settings()
    for rows, rated in [(1_999, False), (2_000, True), (50, False), (None, True)]:
        sized = TabularAutoregressive(model.layout, cfg, TrainConfig(), rows=rows)
        assert bool(sized.phases(train)[0].rates) is rated, rows
    df = _table(50)
    tf = TableTransformer(TableSchema([describe(df[c], infer_kind(df[c])) for c in df]), knots=11).fit(df)
    assert TabularAutoregressive.over(tf, cfg.settings(), train).rows == 50  # the rows the transform was fitted on


@pytest.mark.slow  # seconds: the fast tier stays under a minute
def test_it_learns_what_a_column_says_of_the_next():
    df = _table()
    model, tf, data = _model(df)
    cfg = TrainConfig(epochs=30, batch_size=100, device="cpu", lr_decay=0.0).settings()
    fit(model, data, cfg, seed=3)
    syn = tf.inverse_transform(model.sample(3000, torch.Generator().manual_seed(4)).numpy(), np.random.default_rng(0))
    ranges = {"low": (0, 10), "mid": (20, 30), "high": (50, 60)}
    inside = np.mean([ranges[b][0] - 1 <= x <= ranges[b][1] + 1 for b, x in zip(syn["band"], syn["x"])])
    assert inside > 0.9
    assert np.mean((syn["band"] == "high") == (syn["label"] == "yes")) > 0.97
    # y follows x through their bins (32 of each); inside a bin a value is drawn on its own: 0.999 -> above 0.9
    assert np.corrcoef(syn["x"], syn["y"])[0, 1] > 0.9
    for band, share in df["band"].value_counts(normalize=True).items():
        assert abs((syn["band"] == band).mean() - share) < 0.04


@pytest.mark.slow  # two trainings, ~2 s: the fast tier stays under a minute
def test_ordinal_inputs_learn_a_number_that_follows_another_from_few_rows_a_bin():
    """300 rows, y = x + noise, x's 32 bins x 8 parts: about one row a context. One-hot codes say
    nothing of which bins are neighbours, so each context is learnt on its own; with
    ``ordinal_inputs`` the nets also read each token's place, and y follows x from the same rows and
    steps (correlation 0.30-0.36 one-hot, 0.58-0.59 ordinal over data seeds 0-2 when written)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 100, 300)
    df = pd.DataFrame({"x": x, "y": x + rng.normal(0, 1, 300)})
    corr = {}
    for ordinal in (False, True):
        model, tf, data = _model(df, bins=32, fine_bins=8, ordinal_inputs=ordinal)
        fit(model, data, TrainConfig(epochs=30, batch_size=50, device="cpu", lr_decay=0.0).settings(), seed=0)
        syn = tf.inverse_transform(model.sample(3000, torch.Generator().manual_seed(4)).numpy(),
                                   np.random.default_rng(0))
        corr[ordinal] = np.corrcoef(syn["x"], syn["y"])[0, 1]
    assert corr[True] > corr[False] + 0.15, corr


@pytest.mark.slow  # over a second: the fast tier stays under a minute
def test_each_rows_gradient_is_its_own_and_ghost_clipping_clips_it():
    """Each row's gradient of the loss does not change with the other rows of its batch, and what
    DP-SGD steps with (before its noise) is the sum of the per-row gradients clipped one by one."""
    from opacus import GradSampleModule

    # No part noise: it is drawn per batch, and the test compares one row's gradient in two batches.
    model, _, data = _model(_table(600), part_noise=0.0)
    params = list(model.parameters())
    net = GradSampleModule(model, batch_first=True, loss_reduction="mean")
    grads = []
    for batch in (data[:8], torch.cat([data[:1], data[100:107]])):
        model.zero_grad(set_to_none=True)
        model.loss("autoregressive", batch)[0].backward()
        grads.append([p.grad_sample.clone() for p in params])
        for p in params:
            torch.testing.assert_close(p.grad_sample.mean(0), p.grad, rtol=1e-4, atol=1e-6)
            p.grad_sample = None
    for first, second in zip(*grads):
        torch.testing.assert_close(first[0], second[0], rtol=1e-4, atol=1e-6)
    batch, clip = data[:16], 0.5
    model.zero_grad(set_to_none=True)
    model.loss("autoregressive", batch)[0].backward()
    per_row = [p.grad_sample.clone() for p in params]
    net.to_standard_module()
    scale, expected = clipped_sum(per_row, clip)
    assert (scale < 1).sum() >= 8  # most rows are clipped at this norm
    for p in params:
        p.grad = None
        for attr in ("grad_sample", "_forward_counter"):
            if hasattr(p, attr):
                delattr(p, attr)
    settings = PrivacySettings(epsilon=3.0, max_grad_norm=clip)
    dp = DPSGD(model.private_module(), {"autoregressive": torch.optim.Adam(params)}, budget(settings, rows=600),
               settings, rows=600, batch=16, planned_steps=10, device=torch.device("cpu"))
    dp.backward(model.row_loss("autoregressive", batch)[0])
    for p, want in zip(params, expected):
        torch.testing.assert_close(p.grad, want, rtol=1e-4, atol=1e-6)
    dp.close()


@pytest.mark.slow  # seconds: the fast tier stays under a minute
def test_a_private_fit_spends_its_budget_and_samples():
    model, _, data = _model(_table(600))
    cfg = TrainConfig(epochs=3, batch_size=100, device="cpu",  # the clip a DP run's config gives it (auto)
                      privacy={"epsilon": 2.0, "delta": 1e-4, "max_grad_norm": 20.0}).settings()
    b = budget(cfg.privacy, data.shape[0])
    state = fit(model, data, cfg, seed=3, budget=b)
    assert state.privacy["steps"] == 3 * 6 and b.sgd_epsilon - 0.05 <= state.privacy["epsilon"] <= b.sgd_epsilon
    assert torch.isfinite(model.sample(50, torch.Generator().manual_seed(0))).all()


def test_value_edges_give_a_level_a_token_and_a_spike_one_token():
    """A column of few values: one token a value, split halfway between neighbours' intervals; a
    spike in a column of many values: one token over its interval, the other bins equal-mass; no
    tied value: the equal-mass bins."""
    levels = np.linspace(0.0, 1.0, 101)
    few = np.repeat([1.0, 2.0, 5.0], [31, 60, 10])  # three values over 101 knots
    edges = value_edges(few, 8)
    assert len(edges) == 4 and edges[0] == 0.0 and edges[-1] == 1.0
    assert edges[1] == pytest.approx((levels[30] + levels[31]) / 2)
    assert edges[2] == pytest.approx((levels[90] + levels[91]) / 2)
    spike = np.r_[np.zeros(41), np.linspace(1.0, 100.0, 60)]  # zeros over levels 0 .. 0.4, then all distinct
    edges = value_edges(spike, 10)
    assert edges[:2] == [0.0, pytest.approx(0.4)]  # the zeros' one token
    assert all(w == pytest.approx(0.1) for w in np.diff(edges[2:]))  # the rest: tenths
    assert edges[2] == pytest.approx(0.5)
    assert value_edges(np.linspace(0.0, 1.0, 101), 10) == pytest.approx(np.linspace(0.0, 1.0, 11).tolist())


def test_value_tokens_make_each_level_one_token_that_decodes_to_it():
    """With ``value_tokens`` (the default), an integer column of 5 levels (one a spike) is 5
    tokens: every training row of a level encodes to its token, and a drawn token decodes to that
    level (before: a level's rows were spread over the bins it covered)."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"grade": rng.choice([1, 2, 3, 4, 9], 3000, p=[0.6, 0.1, 0.1, 0.1, 0.1]),
                       "band": rng.choice(["a", "b"], 3000)})
    schema = TableSchema([describe(df[c], infer_kind(df[c])) for c in df.columns])
    tf = TableTransformer(schema, knots=101).fit(df)
    cfg = ModelConfig(autoregressive={"hidden_dims": [16], "value_tokens": True})
    model = TabularAutoregressive.over(tf, cfg.settings(), TrainConfig().settings())
    bins = ModelConfig(autoregressive={"hidden_dims": [16], "value_tokens": False})
    plain = TabularAutoregressive.over(tf, bins.settings(), TrainConfig().settings())
    j = next(i for i, (kind, _, _) in enumerate(model.tokens) if kind == "bin")
    assert model.tokens[j][2] == 5 and plain.tokens[j][2] == 32 and plain.edges is None
    data = torch.from_numpy(tf.transform(df, np.random.default_rng(1)))
    codes = model._codes(data)[:, j]
    levels = {1: 0, 2: 1, 3: 2, 4: 3, 9: 4}
    assert codes.tolist() == [levels[v] for v in df["grade"]]
    with torch.no_grad():
        for (kind, _, _), net in zip(model.tokens, model.nets):
            net[-1].weight.zero_()
            net[-1].bias.fill_(-30.0)
            net[-1].bias[3 if kind == "bin" else 0] = 30.0  # always the fourth level
    rows = tf.inverse_transform(model.sample(400, torch.Generator().manual_seed(3)).numpy(), np.random.default_rng(2))
    assert set(rows["grade"]) == {4}


def test_with_value_tokens_a_column_of_levels_reads_the_parts_redrawn_as_a_category_does():
    """With ``value_tokens`` a column of at most ``bins`` values is one token a value, a category in
    all but name: its bin's net reads the earlier parts redrawn in training as a category's does
    (``grade`` after ``x``); a column of many values (``y``) reads them as they are. With equal-mass
    bins no numeric net does, and this table, no category after a number, draws no part noise."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 10, 2000)
    df = pd.DataFrame({"x": x, "y": x + rng.normal(0, 1, 2000), "grade": np.minimum(x // 2, 4).astype(int)})
    schema = TableSchema([describe(df[c], infer_kind(df[c])) for c in df.columns])
    tf = TableTransformer(schema, knots=101).fit(df)
    data = torch.from_numpy(tf.transform(df, np.random.default_rng(1)))[:64]

    def model(**settings):
        torch.manual_seed(0)
        cfg = ModelConfig(autoregressive={"hidden_dims": [16], "bins": 8, "fine_bins": 4, **settings})
        return TabularAutoregressive.over(tf, cfg.settings(), TrainConfig().settings())

    plain, tokens = model(part_noise=1.0, value_tokens=False), model(part_noise=1.0, value_tokens=True)
    kinds = [(kind, tf.spans[[s.start for s in tf.spans].index(start)].column) for kind, start, _ in tokens.tokens]
    assert kinds == [("bin", "x"), ("part", "x"), ("bin", "y"), ("part", "y"), ("bin", "grade"), ("part", "grade")]
    assert tokens.noisy == [False, False, False, False, True, False] and tokens.noise_read
    assert not any(plain.noisy) and not plain.noise_read
    torch.manual_seed(2)
    noisy = tokens.train().row_loss("autoregressive", data)[0]
    assert not torch.allclose(noisy, tokens.eval().row_loss("autoregressive", data)[0])
    off = model(part_noise=0.0, value_tokens=True)
    torch.testing.assert_close(off.train().row_loss("autoregressive", data)[0],
                               off.eval().row_loss("autoregressive", data)[0])


def test_value_tokens_are_on_by_default_and_in_the_dp_recipe_and_an_older_model_reads_them_off():
    from pipeline.config import load_config
    from pipeline.settings import AutoregressiveSettings, from_dict

    cfg = load_config()
    assert cfg.model.autoregressive.value_tokens is True and cfg.model.autoregressive.private.value_tokens is True
    assert from_dict(AutoregressiveSettings, {}).value_tokens is False  # a model.json from before: bins


@pytest.mark.parametrize("epsilon", [None, 3.0])
def test_ordinal_inputs_follow_the_recipe_the_run_trains(epsilon):
    """``ordinal_inputs`` on the model, off in its DP recipe: a DP run's nets read one-hot codes only
    (its figures were measured so), whatever the non-private setting says."""
    model, _, _ = _model(_table(300), bins=8, fine_bins=4, ordinal_inputs=True)
    run = TabularAutoregressive(model.layout, ModelConfig(autoregressive={"hidden_dims": [32], "bins": 8,
                                                                           "ordinal_inputs": True}),
                                TrainConfig(privacy={"epsilon": epsilon}))
    assert model.ordinal[-1] == 4  # x and y: a bin and a part each
    assert run.ordinal[-1] == (0 if epsilon else 4)


def _target_first(epochs: int = 30):
    df = _table()
    schema = TableSchema([describe(df[c], infer_kind(df[c])) for c in df.columns], target="label")
    tf = TableTransformer(schema, knots=101).fit(df)
    train_cfg = TrainConfig(epochs=epochs, batch_size=100, device="cpu", lr_decay=0.0).settings()
    torch.manual_seed(0)
    model = TabularAutoregressive.over(tf, ModelConfig(autoregressive={"hidden_dims": [32]}).settings(), train_cfg)
    return df, tf, model, train_cfg


def test_the_target_is_drawn_first_and_every_other_column_given_it():
    """``target_first``: the target's token comes first (its net reads only the constant 1), the
    other columns after it in the table's order; without a target, with the setting off or on a
    small table, the table's order. A ``model.json`` from before the setting (no key) was made in the table's order
    and is rebuilt so."""
    df, tf, model, train_cfg = _target_first()
    label = next(s for s in tf.spans if s.column == "label")
    assert model.tokens[0] == ("category", label.start, label.width) and model.nets[0][0].in_features == 1
    rest = [start for _, start, _ in model.tokens[1:]]
    assert rest == sorted(rest) and label.start not in rest
    in_order = [start for _, start, _ in TabularAutoregressive.over(
        tf, ModelConfig(autoregressive={"hidden_dims": [32], "target_first": False}).settings(), train_cfg).tokens]
    assert in_order == sorted(in_order)
    untargeted = TableTransformer(TableSchema(tf.schema.columns), knots=101).fit(df)
    default = ModelConfig().settings()
    assert [t[1] for t in TabularAutoregressive.over(untargeted, default, train_cfg).tokens] == in_order
    assert default.autoregressive.target_first
    # A small table (50 rows: 90 epochs at batch 500 are 90 steps, and epochs auto raises them): the table's order.
    small = _table(50)
    small_tf = TableTransformer(TableSchema([describe(small[c], infer_kind(small[c])) for c in small.columns],
                                            target="label"), knots=11).fit(small)
    small_model = TabularAutoregressive.over(small_tf, default, TrainConfig().settings())
    starts = [start for _, start, _ in small_model.tokens]
    assert small_model._small(TrainConfig().settings()) and starts == sorted(starts)
    assert not from_dict(ModelSettings, {"autoregressive": {"hidden_dims": [32]}}).autoregressive.target_first


@pytest.mark.slow  # seconds: the fast tier stays under a minute
def test_target_first_rows_decode_each_token_into_its_column_and_keep_the_dependence():
    df, tf, model, train_cfg = _target_first()
    fit(model, torch.from_numpy(tf.transform(df, np.random.default_rng(0))), train_cfg, seed=3)
    syn = tf.inverse_transform(model.sample(3000, torch.Generator().manual_seed(4)).numpy(), np.random.default_rng(0))
    assert np.mean((syn["band"] == "high") == (syn["label"] == "yes")) > 0.97  # band now follows the label
    assert abs((syn["label"] == "yes").mean() - (df["label"] == "yes").mean()) < 0.03
    ranges = {"low": (0, 10), "mid": (20, 30), "high": (50, 60)}
    assert np.mean([ranges[b][0] - 1 <= x <= ranges[b][1] + 1 for b, x in zip(syn["band"], syn["x"])]) > 0.9
    assert np.corrcoef(syn["x"], syn["y"])[0, 1] > 0.9


def test_a_dp_run_samples_from_the_moving_average_of_its_weights():
    """Under DP-SGD, ``finish`` puts the moving average of the weights over the steps in place (the
    GANs' warm-up: decay min(ema_decay, (1 + n) / (10 + n)) at step n, from the first step's weights);
    without DP the last weights stay. A model.json from before the setting had no average."""
    model, _, _ = _model(_table(50))
    cfg = ModelConfig(autoregressive={"hidden_dims": [32], "private": {"ema_decay": 0.5}})
    private = TabularAutoregressive(model.layout, cfg, TrainConfig(privacy={"epsilon": 1.0}))
    plain = TabularAutoregressive(model.layout, cfg, TrainConfig())
    assert private.ema_decay == 0.5 and plain.ema_decay == 0.0
    for m in (private, plain):
        for value in (1.0, 2.0, 3.0):
            with torch.no_grad():
                for p in m.nets.parameters():
                    p.fill_(value)
            m.after_step("autoregressive")
        m.finish()
    average = 1.0
    for n, value in enumerate((1.0, 2.0, 3.0), start=1):
        average += (1 - min(0.5, (1 + n) / (10 + n))) * (value - average)
    assert average == pytest.approx(1.0 + 0.75 * 1.0 + (1 - 4 / 13) * (3.0 - 1.75))
    for p in private.nets.parameters():
        torch.testing.assert_close(p, torch.full_like(p, average))
    for p in plain.nets.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 3.0))
    assert ModelConfig().settings().autoregressive.private.ema_decay == 0.999
    recorded = from_dict(ModelSettings, {"autoregressive": {"private": {"lr": 0.004}}})
    assert recorded.autoregressive.private.ema_decay == 0
