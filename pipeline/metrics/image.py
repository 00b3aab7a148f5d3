"""Image metrics without downloaded weights: a small CNN trained on the real training images is the
feature extractor (its penultimate layer, as Inception's is for the usual FID) and the judge of
labels.

- ``fid``: Fréchet distance between Gaussian fits of generated and real training features.
- ``kid``: unbiased squared MMD with the cubic polynomial kernel (Bińkowski et al. 2018), averaged
  over subsets.
- ``precision`` / ``recall``: k-NN manifold estimates (Kynkäänniemi et al. 2019): the share of
  generated images inside the real images' k-NN balls, and the reverse.
- ``label_accuracy``: the classifier's accuracy on generated images against their requested labels.
- ``memorized_rate``: the share of generated images closer (in pixels) to their nearest training
  image than all but ``memorization_quantile`` of unseen real images are.

Every figure is also computed for real held-out images in place of generated ones (the floor: what
a perfect generator would score) and for uniform noise (the ceiling), so each number can be read
against both.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.metrics import SuiteResult, metric, register_suite


class Evaluator(nn.Module):
    """A small CNN: two conv blocks, a 128-unit feature layer, a label head."""

    def __init__(self, height: int, width: int, n_labels: int, features: int = 128):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * (height // 4) * (width // 4), features), nn.ReLU(),
        )
        self.head = nn.Linear(features, n_labels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.head(h), h

    @torch.no_grad()
    def embed(self, x: torch.Tensor, batch: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, features) of images in [-1, 1], in batches; features in float64 for the statistics."""
        self.eval()
        out = [self(x[i:i + batch]) for i in range(0, len(x), batch)]
        return torch.cat([o[0] for o in out]), torch.cat([o[1] for o in out]).double()


def train_evaluator(x: torch.Tensor, y: torch.Tensor, n_labels: int, epochs: int, seed: int,
                    batch: int = 128) -> Evaluator:
    """Fit the evaluator on real training images ``x`` ([n, 1, H, W] in [-1, 1]) and label indices ``y``."""
    torch.manual_seed(seed)
    model = Evaluator(x.shape[2], x.shape[3], n_labels).to(x.device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), device=x.device, generator=gen)
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(model(x[idx])[0], y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^1/2), the trace root via a symmetric
    eigenproblem (stable; no complex parts to discard)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.cov(a.T), torch.cov(b.T)
    w, v = torch.linalg.eigh(s_a)
    root_a = (v * w.clamp_min(0).sqrt()) @ v.T
    cross = torch.linalg.eigvalsh(root_a @ s_b @ root_a).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).pow(2).sum() + torch.trace(s_a) + torch.trace(s_b) - 2 * cross)


def kernel_distance(a: torch.Tensor, b: torch.Tensor, subsets: int = 10, size: int = 1000, seed: int = 0) -> float:
    """Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, averaged over random subsets."""
    gen = torch.Generator().manual_seed(seed)
    m = min(size, len(a), len(b))
    d = a.shape[1]
    total = 0.0
    for _ in range(subsets):
        x = a[torch.randperm(len(a), generator=gen)[:m]]
        y = b[torch.randperm(len(b), generator=gen)[:m]]
        kxx, kyy, kxy = [(p @ q.T / d + 1) ** 3 for p, q in ((x, x), (y, y), (x, y))]
        total += float((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
                       + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)) - 2 * kxy.mean())
    return total / subsets


def _kth_radius(x: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """Distance of each point to its k-th nearest other point (k+1: the point itself is at 0)."""
    k = min(k, len(x) - 1)
    return torch.cat([torch.cdist(x[i:i + chunk], x).kthvalue(k + 1, dim=1).values for i in range(0, len(x), chunk)])


def _inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 2048) -> float:
    hits = [(torch.cdist(points[i:i + chunk], centres) <= radii).any(1) for i in range(0, len(points), chunk)]
    return float(torch.cat(hits).double().mean())


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """k-NN manifold precision and recall of ``fake`` against ``real`` (equal sizes are fairest)."""
    if len(real) < 2 or len(fake) < 2:
        return float("nan"), float("nan")
    return (_inside(fake, real, _kth_radius(real, k)), _inside(real, fake, _kth_radius(fake, k)))


def nearest_distances(x: torch.Tensor, reference: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Euclidean distance from each image (flattened) to its nearest reference image."""
    x, reference = x.flatten(1).float(), reference.flatten(1).float()
    return torch.cat([torch.cdist(x[i:i + chunk], reference).min(1).values for i in range(0, len(x), chunk)])


@dataclass
class ImageScores:
    fid: float
    kid: float
    precision: float
    recall: float
    label_accuracy: float
    memorized_rate: float


@dataclass
class ImageEvaluation:
    synthetic: ImageScores
    floor: ImageScores      # real held-out images in place of generated ones
    ceiling: ImageScores    # uniform noise in place of generated ones
    classifier_accuracy: float
    memorization_threshold: float
    rows: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)
    nearest: dict[str, np.ndarray] = field(default_factory=dict)  # pixel distances, for the report
    synthetic_sets: list[dict] = field(default_factory=list)  # fid, kid, precision, recall of each generated set


def evaluate_images(evaluator: Evaluator, train: torch.Tensor, holdout: torch.Tensor, y_holdout: torch.Tensor,
                    synthetic: torch.Tensor, y_synthetic: torch.Tensor, rows: int, seed: int,
                    memorization_quantile: float = 0.01) -> ImageEvaluation:
    """Score ``synthetic`` images (and the floor and ceiling) against the ``train`` images.

    Images are [n, 1, H, W] in [-1, 1]. FID, KID and precision/recall compare sets of the same
    size, ``min(rows, len(holdout), len(synthetic))`` images (seeded), with the training images,
    because the estimates depend on the sample size. The held-out images make one such set; the
    generated images (up to ``rows`` of them) make as many disjoint sets as they fill, and their
    figures are the mean over those sets: the same expectation as one set, with less of the noise
    of which images happened to be drawn. Label accuracy and memorisation use every synthetic image.
    """
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    n = min(rows, len(holdout), len(synthetic))
    pick = lambda m: torch.randperm(m, generator=gen)[:n]  # noqa: E731
    noise = torch.rand((n, *train.shape[1:]), generator=gen) * 2 - 1

    _, f_train = evaluator.embed(train)
    real_ref = f_train[pick(len(f_train))]  # the real side of precision/recall, same size as the others
    h_idx = pick(len(holdout))
    s_order = torch.randperm(len(synthetic), generator=gen)
    s_sets = [s_order[i * n:(i + 1) * n] for i in range(max(1, min(rows, len(synthetic)) // n))]
    logits_syn, f_syn = evaluator.embed(synthetic)
    logits_hold, f_hold = evaluator.embed(holdout)
    logits_noise, f_noise = evaluator.embed(noise)
    classifier_accuracy = float((logits_hold.argmax(1) == y_holdout).double().mean())

    # Memorisation: the threshold is the quantile of unseen real images' nearest-training distances.
    near = {"holdout": nearest_distances(holdout, train), "synthetic": nearest_distances(synthetic, train),
            "noise": nearest_distances(noise, train)}
    threshold = float(torch.quantile(near["holdout"], memorization_quantile))

    def set_figures(f: torch.Tensor) -> dict[str, float]:
        """The figures that depend on the sample size, for one set of ``n`` images' features."""
        p, r = precision_recall(real_ref, f)
        return {"fid": frechet_distance(f, f_train), "kid": kernel_distance(f, f_train, seed=seed), "precision": p,
                "recall": r}

    def scores(sets: list[dict[str, float]], logits: torch.Tensor, labels: torch.Tensor | None,
               distances: torch.Tensor) -> ImageScores:
        acc = float((logits.argmax(1) == labels).double().mean()) if labels is not None else 1.0 / logits.shape[1]
        return ImageScores(**{k: float(np.mean([one[k] for one in sets])) for k in sets[0]}, label_accuracy=acc,
                           memorized_rate=float((distances < threshold).double().mean()))

    synthetic_sets = [set_figures(f_syn[idx]) for idx in s_sets]
    synthetic_scores = scores(synthetic_sets, logits_syn, y_synthetic, near["synthetic"])
    floor = scores([set_figures(f_hold[h_idx])], logits_hold, y_holdout, near["holdout"])
    ceiling = scores([set_figures(f_noise)], logits_noise, None, near["noise"])
    return ImageEvaluation(
        synthetic=synthetic_scores, floor=floor, ceiling=ceiling, classifier_accuracy=classifier_accuracy,
        memorization_threshold=threshold,
        rows={"compared": n, "synthetic_sets": len(s_sets), "train": len(train), "holdout": len(holdout),
              "synthetic": len(synthetic)},
        synthetic_sets=synthetic_sets,
        seconds={"metrics": round(time.perf_counter() - t0, 3)},
        nearest={k: v.numpy() for k, v in near.items()},
    )


def fid_ratio(fid: float, floor: float) -> float:
    return fid / floor if floor > 0 else math.inf


def summary(metrics: dict) -> str:
    """The image scores in the score stage's log line: FID beside its real floor, then the rest."""
    return (f"FID {metrics['image.fid']:.2f} (real floor {metrics['image.fid_real_floor']:.2f}, ratio "
            f"{metrics['image.fid_ratio']:.2f}), label accuracy {metrics['image.label_accuracy']:.3f}, precision "
            f"{metrics['image.precision']:.3f}, recall {metrics['image.recall']:.3f}, memorised "
            f"{metrics['image.memorized_rate']:.4f}")


@register_suite("image", "image", order=60, log=summary, metrics=[
    metric("image.fid", 0, float("inf"),
           "Fréchet distance of generated to real training images in the evaluator's feature space", headline=2),
    metric("image.fid_real_floor", 0, float("inf"),
           "the same for real held-out images (what a perfect generator scores)", headline=3),
    metric("image.fid_ratio", 0, float("inf"),
           "image.fid / image.fid_real_floor (1 = as close as unseen real images)", headline=4),
    metric("image.kid", float("-inf"), float("inf"),
           "kernel inception distance (unbiased MMD^2, cubic kernel) in the evaluator's feature space", headline=5),
    metric("image.precision", 0, 1,
           "share of generated images inside the real images' k-NN manifold (fidelity)", headline=6),
    metric("image.recall", 0, 1,
           "share of real images inside the generated images' k-NN manifold (diversity)", headline=7),
    metric("image.label_accuracy", 0, 1,
           "the evaluator's accuracy on generated images against their requested labels", headline=1),
    metric("image.classifier_accuracy", 0, 1,
           "the evaluator's accuracy on real held-out images (how far its judgement goes)", headline=9),
    metric("image.memorized_rate", 0, 1,
           "share of generated images nearer a training image than most unseen real images are", headline=8),
])
def image_suite(ev) -> SuiteResult:
    """Train the evaluator on the real training images, then score the generated images and the
    floor and ceiling (``evaluate_images``); exact pixel copies of training images too."""
    from pipeline.images import pixel_hashes

    sc = ev.settings
    t = time.perf_counter()
    evaluator = train_evaluator(ev.x_train, ev.y_train, len(ev.labels), sc.classifier_epochs, ev.seed)
    evaluator_seconds = round(time.perf_counter() - t, 3)
    evaluator = evaluator.cpu()  # the statistics run on CPU tensors (float64 covariances, cdist in chunks)
    e = evaluate_images(evaluator, ev.x_train.cpu(), ev.x_hold.cpu(), ev.y_hold.cpu(), ev.x_syn.cpu(),
                        ev.y_syn.cpu(), rows=sc.image_rows, seed=ev.seed,
                        memorization_quantile=sc.memorization_quantile)
    s, floor = e.synthetic, e.floor
    metrics: dict[str, object] = {
        "image.fid": s.fid, "image.fid_real_floor": floor.fid, "image.fid_ratio": fid_ratio(s.fid, floor.fid),
        "image.kid": s.kid, "image.precision": s.precision, "image.recall": s.recall,
        "image.label_accuracy": s.label_accuracy, "image.classifier_accuracy": e.classifier_accuracy,
        "image.memorized_rate": s.memorized_rate,
    }
    # Exact pixel copies of training images, against how often held-out real images are one (the
    # real baseline: a digit set can hold the same image twice), as for tables.
    train_hashes = pixel_hashes(ev.px_train)
    metrics["privacy.exact_match_rate"] = float(np.isin(pixel_hashes(ev.px_syn), train_hashes).mean())
    if ev.px_hold is not None:
        holdout_rate = float(np.isin(pixel_hashes(ev.px_hold), train_hashes).mean())
        metrics["privacy.exact_match_rate_holdout"] = holdout_rate
        metrics["privacy.exact_match_excess"] = metrics["privacy.exact_match_rate"] - holdout_rate
    sanity = {name: asdict(getattr(e, name)) for name in ("synthetic", "floor", "ceiling")}
    details = {
        "modality": "image",
        "samples": dict(e.rows),
        "seconds": {"evaluator": evaluator_seconds, **e.seconds},
        "evaluator": {"epochs": sc.classifier_epochs, "holdout_accuracy": e.classifier_accuracy,
                      "features": 128, "file": "evaluator.pt"},
        "memorization": {"quantile": sc.memorization_quantile, "threshold": e.memorization_threshold},
        "sanity": sanity,
        "synthetic_sets": e.synthetic_sets,
    }
    buf = io.BytesIO()
    torch.save(evaluator.state_dict(), buf)  # the evaluator is an artifact too: its judgement can be re-checked
    return SuiteResult(metrics, details, files={"evaluator.pt": buf.getvalue()},
                       report={"evaluation": e, "sanity": sanity})
