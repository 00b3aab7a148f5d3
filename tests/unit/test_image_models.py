"""Image models and metrics: conditional generation honours labels, the label plan, the metrics'
sanity (real vs real far below noise vs real) and the Fréchet distance against a reference formula."""

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline import generate, ingest, publish, sampling, score, train
from pipeline.artifacts import StagePaths
from pipeline.catalog import Catalog
from pipeline.errors import ConditionError
from pipeline.files import read_json
from pipeline.images import IMAGE_ARROW_SCHEMA, frame_of, pixels_of
from pipeline.metrics.image import evaluate_images, frechet_distance, train_evaluator
from pipeline.models.image import ImageSpec, images_to_tensor
from tests.conftest import REPO, tiny_config


def quadrant_images(n: int, seed: int = 0, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Label k (0..3): a bright block in quadrant k (row-major) on dim noise; easy to check by eye
    and by rule (the brightest quadrant)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    pixels = rng.integers(0, 60, (n, size, size)).astype(np.uint8)
    h = size // 2
    for i, k in enumerate(labels):
        r, c = divmod(int(k), 2)
        pixels[i, r * h:(r + 1) * h, c * h:(c + 1) * h] = rng.integers(180, 256, (h, h))
    return pixels, labels


def brightest_quadrant(pixels: np.ndarray) -> np.ndarray:
    h = pixels.shape[1] // 2
    sums = [pixels[:, r * h:(r + 1) * h, c * h:(c + 1) * h].reshape(len(pixels), -1).mean(1)
            for r in (0, 1) for c in (0, 1)]
    return np.argmax(np.stack(sums, 1), 1)


def image_config(tmp_path, source, model="conv_vae", **overrides):
    cfg = tiny_config(tmp_path, source, target=None, **{
        "datasets.tiny.modality": "image",
        "datasets.tiny.overrides": {"model.name": model, "train.batch_size": 32, "train.epochs": 30,
                                    "train.lr_generator": 0.002, "train.lr_discriminator": 0.002},
        "model.dcgan": {"width": 8, "noise_dim": 8, "ema_decay": 0.9},
        "model.conv_vae": {"width": 8, "latent_dim": 4, "lr": 0.01},
        "score.classifier_epochs": 2, "score.report": True, **overrides})
    return cfg


@pytest.mark.slow  # 30 epochs of image training per model
@pytest.mark.parametrize("model", ["conv_vae", "dcgan"])
def test_conditional_generation_honours_labels(tmp_path, model):
    pixels, labels = quadrant_images(320)
    src = tmp_path / "quadrants.parquet"
    frame_of(pixels, labels).to_parquet(src, index=False)
    cfg = image_config(tmp_path, src, model, **{"generate.rows_per_label": 50})
    ingest.run(cfg, "tiny")
    result = train.run(cfg, "tiny")
    assert result.epochs == 30
    generate.run(cfg, "tiny")
    out = pd.read_parquet(StagePaths.of(cfg.work_dir, "tiny").synthetic)
    assert out["label"].value_counts().to_dict() == {0: 50, 1: 50, 2: 50, 3: 50}
    made = pixels_of(out)
    # Each generated image has its bright block where its label says.
    assert (brightest_quadrant(made) == out["label"].to_numpy()).mean() >= 0.9


@pytest.mark.slow  # ~2 s: every image stage
def test_image_stages_release_parquet_in_the_source_layout_with_scores(tmp_path):
    pixels, labels = quadrant_images(200, seed=1)
    src = tmp_path / "quadrants.parquet"
    frame_of(pixels, labels).to_parquet(src, index=False)
    cfg = image_config(tmp_path, src, "conv_vae", **{
        "generate.labels": {2: 1.0}, "generate.rows": 30, "generate.rows_per_shard": 12,
        "score.thresholds": {"image.label_accuracy": {"min": 0.0}}})
    ingest.run(cfg, "tiny")
    train.run(cfg, "tiny")
    generate.run(cfg, "tiny")
    paths = StagePaths.of(cfg.work_dir, "tiny")
    parts = sorted(paths.synthetic.glob("part-*.parquet"))
    assert len(parts) == 3 and (paths.synthetic / "_grid.png").stat().st_size > 0
    import pyarrow.parquet as pq

    assert all(pq.read_schema(p).remove_metadata() == IMAGE_ARROW_SCHEMA for p in parts)
    first = pd.read_parquet(paths.synthetic)
    assert (first["label"] == 2).all() and len(first) == 30 and (first["height"] == 8).all()
    # Same params, same images (shards are seeded by (seed, shard)).
    generate.run(cfg, "tiny")
    pd.testing.assert_frame_equal(pd.read_parquet(paths.synthetic), first)

    result = score.run(cfg, "tiny")
    for key in ("image.fid", "image.fid_real_floor", "image.fid_ratio", "image.kid", "image.precision", "image.recall",
                "image.label_accuracy", "image.memorized_rate", "image.classifier_accuracy",
                "privacy.exact_match_rate", "privacy.exact_match_rate_holdout", "privacy.exact_match_excess"):
        assert isinstance(result.metrics[key], float), key
    assert result.metrics["privacy.exact_match_excess"] == pytest.approx(
        result.metrics["privacy.exact_match_rate"] - result.metrics["privacy.exact_match_rate_holdout"])
    report = (paths.score / "report.html").read_text()
    assert report.count("data:image/png;base64,") >= 3 and "real held-out (floor)" in report
    # Under the default gate, the table families' keys (the attacks' among them) are not judged on
    # images, and say why; the one privacy key images measure is judged.
    from pipeline.config import GATE, Threshold

    cfg.score.thresholds = {k: Threshold(**v) for k, v in GATE.items()}
    judged = score.run(cfg, "tiny").metrics
    assert judged["gate.not_judged"]["privacy.mia_auc"] == "not measured on image data"
    assert "privacy.exact_match_excess" not in judged["gate.not_judged"]
    assert not any("not computed" in f for f in judged["gate.failures"]), judged["gate.failures"]
    cfg.score.thresholds = {"image.label_accuracy": Threshold(min=0.0)}
    score.run(cfg, "tiny")
    release = publish.run(cfg, "tiny")
    back = Catalog(cfg.publish.release_root).load("tiny")
    np.testing.assert_array_equal(pixels_of(back), pixels_of(first))  # pixels survive the release exactly
    manifest = read_json(release.path / "_manifest.json")
    assert manifest["modality"] == "image" and manifest["model"] == "conv_vae"
    assert [c["name"] for c in manifest["schema"]] == ["image", "label", "height", "width"]
    assert {"_samples.png", "_report.html", "_DATACARD.md"} <= set(manifest["reports"])
    assert "image.label_accuracy" in (release.path / "_DATACARD.md").read_text()
    checked = Catalog(cfg.publish.release_root).verify("tiny")  # the grid and reports too, hashed
    assert checked["files"] == len(manifest["files"]) + len(manifest["reports"])


def test_label_plan_counts_and_errors():
    spec = ImageSpec(8, 8, [0, 1, 7])
    plan = sampling.label_plan(spec, np.array([10, 30, 60]), 1000, {}, None, seed=0)
    assert np.bincount(plan).tolist() == [100, 300, 600]
    assert not np.array_equal(plan[:50], np.sort(plan[:50]))  # shuffled, not in blocks
    np.testing.assert_array_equal(plan, sampling.label_plan(spec, np.array([10, 30, 60]), 1000, {}, None, seed=0))
    mix = sampling.label_plan(spec, np.ones(3), 7, {0: 1, 7: 1}, None, seed=1)
    assert sorted(np.bincount(mix, minlength=3).tolist()) == [0, 3, 4] and np.bincount(mix, minlength=3)[1] == 0
    assert np.bincount(sampling.label_plan(spec, np.ones(3), None, {}, 5, seed=0)).tolist() == [5, 5, 5]
    with pytest.raises(ConditionError, match="label 4"):
        sampling.label_plan(spec, np.ones(3), 10, {4: 1.0}, None, seed=0)


@pytest.mark.slow  # seconds: the fast tier stays under a minute
def test_metric_sanity_real_vs_real_far_below_noise_vs_real():
    df = pd.read_parquet(REPO / "data/mnist/digits.parquet").iloc[:2800]
    px, labels = pixels_of(df), df["label"].to_numpy()
    data = images_to_tensor(px, labels)
    x, y = data[:, 1:].reshape(-1, 1, 28, 28), data[:, 0].long()
    tr, ho = slice(0, 2400), slice(2400, 2800)
    evaluator = train_evaluator(x[tr], y[tr], 10, epochs=3, seed=0)
    # "Generated" = blurred real held-out digits with shuffled labels: worse than real, better than noise.
    blurred = torch.nn.functional.avg_pool2d(x[ho], 3, 1, 1)
    shuffled = y[ho][torch.randperm(400, generator=torch.Generator().manual_seed(0))]
    ev = evaluate_images(evaluator, x[tr], x[ho], y[ho], blurred, shuffled, rows=400, seed=0)
    assert ev.classifier_accuracy > 0.8
    assert ev.floor.fid < 0.1 * ev.ceiling.fid and ev.floor.kid < 0.1 * ev.ceiling.kid
    assert ev.floor.fid < ev.synthetic.fid < ev.ceiling.fid
    assert ev.floor.precision > 0.7 and ev.floor.recall > 0.7 and ev.ceiling.recall < 0.1
    assert ev.synthetic.label_accuracy < 0.3  # shuffled labels are caught
    assert ev.floor.memorized_rate == pytest.approx(0.01, abs=0.01) and ev.ceiling.memorized_rate == 0.0


def test_frechet_distance_matches_the_scipy_formula():
    import scipy.linalg

    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6)))
    b = torch.from_numpy(rng.normal(0.3, 1.2, size=(400, 6)) @ rng.normal(size=(6, 6)))
    s1, s2 = np.cov(a.numpy().T), np.cov(b.numpy().T)
    ref = (((a.numpy().mean(0) - b.numpy().mean(0)) ** 2).sum()
           + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real))
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize("model", ["dcgan", "conv_vae"])
def test_image_models_take_any_image_size(tmp_path, model):
    from pipeline.models import model_class

    cfg = image_config(tmp_path, tmp_path / "unused.parquet", model).for_dataset("tiny")
    spec = ImageSpec(26, 30, [0, 1, 2])
    net = model_class(model)(spec, cfg.model, cfg.train)
    batch = images_to_tensor(np.random.default_rng(0).integers(0, 256, (6, 26, 30), dtype=np.uint8), np.arange(6) % 3)
    net.prepare(batch)
    for phase in [p.name for p in net.phases(cfg.train)]:
        loss, _ = net.loss(phase, batch)
        assert torch.isfinite(loss)
    net.eval()
    assert net.sample(torch.tensor([0, 2]), torch.Generator().manual_seed(0)).shape == (2, 1, 26, 30)


def _tiny_dcgan(ema_decay: float = 0.9):
    from pipeline.models.image import ConditionalDCGAN
    from pipeline.settings import DcganSettings

    class Cfg:  # the model reads only model.dcgan
        dcgan = DcganSettings(width=4, noise_dim=4, ema_decay=ema_decay)

    torch.manual_seed(0)
    return ConditionalDCGAN(ImageSpec(8, 8, [0, 1, 2, 3]), Cfg(), None)


@pytest.mark.slow  # over a second: the fast tier stays under a minute
def test_finish_gives_the_averaged_generator_its_own_batchnorm_statistics():
    pixels, labels = quadrant_images(64)
    data = images_to_tensor(pixels, labels)
    model = _tiny_dcgan()
    model.prepare(data)
    opts = {p.name: torch.optim.Adam(p.params, lr=0.01) for p in model.phases(type("T", (), {
        "lr_discriminator": 0.01, "lr_generator": 0.01})())}
    model.train()
    for step in range(20):  # the generator moves, so the average's weights differ from the online ones
        for name, opt in opts.items():
            opt.zero_grad()
            model.loss(name, data[step % 2 * 32:(step % 2 + 1) * 32])[0].backward()
            opt.step()
            model.after_step(name)
    fc_norm = model.generator_ema.fc[1]
    assert torch.equal(fc_norm.running_mean, model.generator.fc[1].running_mean)  # copied during training
    model.finish()
    assert not torch.equal(fc_norm.running_mean, model.generator.fc[1].running_mean)
    # The statistics are those of the averaged weights' own activations (measured afresh here).
    gen = torch.Generator().manual_seed(123)
    y = torch.multinomial(model.label_counts, 20000, replacement=True, generator=gen)
    z = torch.randn(20000, 4, generator=gen)
    with torch.no_grad():
        pre = model.generator_ema.fc[0](torch.cat([z, model.onehot(y)], 1))
    torch.testing.assert_close(fc_norm.running_mean, pre.mean(0), atol=0.03 * float(pre.std(0).mean()), rtol=0)
    torch.testing.assert_close(fc_norm.running_var, pre.var(0), rtol=0.1, atol=1e-6)
    assert fc_norm.momentum == 0.1 and model.generator_ema.training  # left as it was found
    again = {k: v.clone() for k, v in model.generator_ema.state_dict().items()}
    model.finish()  # a function of the weights alone: calling it again changes nothing
    for k, v in model.generator_ema.state_dict().items():
        assert torch.equal(v, again[k]), k


def test_dcgan_critic_sees_real_and_fake_in_one_pass_and_the_generator_reuses_the_fake():
    pixels, labels = quadrant_images(32)
    real = images_to_tensor(pixels, labels)
    model = _tiny_dcgan(ema_decay=0.0)
    model.prepare(real)
    model.eval()  # no power-iteration updates: the critic is a fixed function here
    calls = []
    model.generator.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    loss, figures = model.loss("critic", real)
    fake, fy = model._pending
    x, y = model.split(real)
    with torch.no_grad():
        s_real, c_real = model.critic(x, y)
        s_fake, _ = model.critic(fake, fy)
    separate = (torch.nn.functional.softplus(-s_real).mean() + torch.nn.functional.softplus(s_fake).mean())
    torch.testing.assert_close(figures["critic_loss"], separate)
    torch.testing.assert_close(figures["critic_label_loss"], torch.nn.functional.cross_entropy(c_real, y))
    model.loss("generator", real)[0].backward()
    assert calls == [32] and model._pending is None  # one generator pass per step
    assert all(p.grad is not None for p in model.generator.parameters())
    model.loss("generator", real)  # without a critic phase before it, it makes its own fake batch
    assert calls == [32, 32]


@pytest.mark.slow  # over a second: the fast tier stays under a minute
def test_generated_figures_are_the_mean_over_disjoint_sets_the_size_of_the_holdout():
    df = pd.read_parquet(REPO / "data/mnist/digits.parquet").iloc[:1300]
    data = images_to_tensor(pixels_of(df), df["label"].to_numpy())
    x, y = data[:, 1:].reshape(-1, 1, 28, 28), data[:, 0].long()
    evaluator = train_evaluator(x[:800], y[:800], 10, epochs=1, seed=0)
    # 400 "generated" images against 100 held-out: four disjoint sets of 100.
    syn, y_syn = x[800:1200], y[800:1200]
    ev = evaluate_images(evaluator, x[:800], x[1200:], y[1200:], syn, y_syn, rows=1000, seed=0)
    assert ev.rows["compared"] == 100 and ev.rows["synthetic_sets"] == 4 and len(ev.synthetic_sets) == 4
    fids = [s["fid"] for s in ev.synthetic_sets]
    assert len(set(fids)) == 4  # different images in each set
    assert ev.synthetic.fid == pytest.approx(np.mean(fids))
    assert ev.synthetic.recall == pytest.approx(np.mean([s["recall"] for s in ev.synthetic_sets]))
    # `rows` caps the generated images used: 250 make two sets of 100.
    assert evaluate_images(evaluator, x[:800], x[1200:], y[1200:], syn, y_syn,
                           rows=250, seed=0).rows["synthetic_sets"] == 2
