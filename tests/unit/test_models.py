"""The tabular models: they train, sample reproducibly, learn rare categories (ctgan) and
honour conditions."""

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline import generate, ingest, sampling, train
from pipeline.artifacts import StagePaths
from pipeline.errors import ConditionError
from pipeline.models.base import OutputLayout
from pipeline.models.ctgan import ConditionalGAN
from pipeline.models.saved import load_model
from pipeline.models.transformer import TableTransformer
from tests.conftest import tiny_config


@pytest.mark.parametrize("model", ["gan", "ctgan", "tvae", "autoregressive"])
def test_each_model_trains_and_samples_the_same_rows_from_the_same_seed(tmp_path, tiny_source, model):
    cfg = tiny_config(tmp_path, tiny_source, **{"model.name": model})
    ingest.run(cfg, "tiny")
    res = train.run(cfg, "tiny")
    assert res.epochs == 2 and all(np.isfinite(v) for v in res.final.values())
    loaded = load_model(StagePaths.of(cfg.work_dir, "tiny").model)
    a = sampling.sample_frame(loaded, 300, seed=5)
    b = sampling.sample_frame(loaded, 300, seed=5)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(sampling.sample_frame(loaded, 300, seed=6))
    real = pd.read_parquet(StagePaths.of(cfg.work_dir, "tiny").train_data)
    assert dict(a.dtypes.astype(str)) == dict(real.dtypes.astype(str))


def _rare_table(n=3000, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    c = rng.choice(["common", "other", "rare"], n, p=[0.90, 0.095, 0.005])
    x = np.where(c == "rare", rng.normal(10, 1, n), rng.normal(0, 1, n))
    return pd.DataFrame({"c": c, "x": x, "y": rng.choice(["u", "v"], n)})


def test_training_by_sampling_draws_real_rows_that_have_the_condition():
    df = _rare_table()
    from pipeline.schema import TableSchema, describe, infer_kind

    schema = TableSchema([describe(df[c], infer_kind(df[c])) for c in df.columns])
    tf = TableTransformer(schema, knots=101).fit(df)
    data = torch.from_numpy(tf.transform(df, np.random.default_rng(0)))
    cfg = tiny_config(__import__("pathlib").Path("/tmp"), __import__("pathlib").Path("x.csv"))
    model = ConditionalGAN(OutputLayout(tf.spans, tf.width), cfg.model, cfg.train)
    model.prepare(data)
    torch.manual_seed(0)
    cond, col, cat = model._draw_conditions(20_000, log_frequency=True)
    rows = model._real_rows(col, cat)
    starts = torch.tensor(model.data_starts)[col]
    assert torch.all(rows[torch.arange(len(col)), starts + cat] == 1)  # each row has its category
    # log-frequency conditioning: the rare category (0.5% of rows) is asked for far more often
    rare = tf.category_slot("c", "rare")[1]
    share = ((col == 0) & (cat == rare)).float().mean().item()
    assert 0.05 < share < 0.3
    assert torch.all(cond.sum(1) == 1)


@pytest.mark.slow  # seconds: the fast tier stays under a minute
def test_ctgan_learns_a_rare_category(tmp_path):
    src = tmp_path / "rare.parquet"
    _rare_table().to_parquet(src)
    cfg = tiny_config(tmp_path, src, target=None, **{"model.name": "ctgan", "train.epochs": 15,
                                                      "train.batch_size": 100})
    ingest.run(cfg, "tiny")
    train.run(cfg, "tiny")
    loaded = load_model(StagePaths.of(cfg.work_dir, "tiny").model)
    syn = sampling.sample_frame(loaded, 5000, seed=1)
    assert (syn["c"] == "rare").sum() >= 5  # 0.5% in the source: 25 expected


@pytest.mark.parametrize("model", ["ctgan", "tvae", "autoregressive"])
def test_conditional_sampling_honours_every_condition(tmp_path, tiny_source, model):
    cfg = tiny_config(tmp_path, tiny_source, **{"model.name": model})
    ingest.run(cfg, "tiny")
    train.run(cfg, "tiny")
    cfg.generate.conditions = {"income": ">50K", "member": True}
    cfg.generate.rows, cfg.generate.rows_per_shard = 250, 100
    generate.run(cfg, "tiny")
    syn = pd.read_parquet(StagePaths.of(cfg.work_dir, "tiny").synthetic)
    assert len(syn) == 250 and (syn["income"] == ">50K").all() and syn["member"].all()
    api = generate.sample(cfg, "tiny", 40, {"city": "Nice"}, seed=3)
    assert len(api) == 40 and (api["city"] == "Nice").all()
    with pytest.raises(ConditionError, match="never takes the value 'Berlin'"):
        generate.sample(cfg, "tiny", 10, {"city": "Berlin"})
    with pytest.raises(ConditionError, match="'age'.*conditions take categorical"):
        generate.sample(cfg, "tiny", 10, {"age": 30})


def test_activation_is_float32_even_from_bf16_logits():
    """Under CUDA autocast the generator's logits are bf16: the one-hot blocks and their Gumbel
    noise must still be computed (and stored) in float32."""
    from pipeline.models.base import activate
    from pipeline.models.transformer import Span

    layout = OutputLayout([Span("a", 0, 1, "tanh"), Span("b", 1, 3, "softmax", "category")], 4)
    raw = torch.randn(4096, 4).to(torch.bfloat16).requires_grad_(True)
    out = activate(raw, layout)
    assert out.dtype == torch.float32
    assert torch.allclose(out[:, 1:].sum(1), torch.ones(4096))
    out.sum().backward()
    assert raw.grad is not None and raw.grad.dtype == torch.bfloat16


def test_generator_average_makes_the_rows_and_is_what_the_model_file_holds(tmp_path, tiny_source):
    cfg = tiny_config(tmp_path, tiny_source, **{"model.name": "ctgan", "model.gan.ema_decay": 0.9})
    ingest.run(cfg, "tiny")
    train.run(cfg, "tiny")
    paths = StagePaths.of(cfg.work_dir, "tiny")
    loaded = load_model(paths.model)
    net = loaded.model
    assert net.sampler is net.generator_ema
    saved = torch.load(paths.model / "model.pt", weights_only=True)
    # Both copies hold the saved (averaged) weights after loading; the rows come from them.
    for k, v in net.generator_ema.state_dict().items():
        assert torch.equal(saved[f"generator.{k}"], v)
    # During training the average trails the trained weights (it is not a copy of them).
    ckpt = torch.load(paths.checkpoints / "last.pt", weights_only=True)["model"]
    online = {k.removeprefix("generator."): v for k, v in ckpt.items() if k.startswith("generator.")}
    average = {k.removeprefix("generator_ema."): v for k, v in ckpt.items() if k.startswith("generator_ema.")}
    assert set(online) == set(average) and int(ckpt["ema_steps"]) > 0
    assert any(not torch.equal(online[k], average[k]) for k in online if online[k].is_floating_point())
    assert all(torch.equal(average[k], saved[f"generator.{k}"]) for k in average)
