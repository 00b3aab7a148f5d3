"""Class-conditional image models: a DCGAN (``dcgan``) and a convolutional VAE (``conv_vae``).

Both see a batch as one float tensor ``[n, 1 + H*W]``: the label index in column 0, then the
grayscale pixels scaled to [-1, 1] (what ``images_to_tensor`` makes), so the training loop handles
images exactly as it handles tables. Any H and W work: the networks run at ceil(H/4) x ceil(W/4)
and crop after upsampling twice.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from pipeline.models.base import AveragedGenerator, GenerativeModel, Phase
from pipeline.models.registry import register_model
from pipeline.settings import ModelSettings, TrainSettings


@dataclass
class ImageSpec:
    """What an image model is built for: the image size and the label values (index -> value)."""

    height: int
    width: int
    labels: list[int]

    @property
    def n_labels(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ImageSpec":
        return cls(int(d["height"]), int(d["width"]), [int(v) for v in d["labels"]])


def images_to_tensor(pixels: np.ndarray, label_index: np.ndarray) -> torch.Tensor:
    """[N, H, W] uint8 pixels and N label indices as the models' ``[N, 1 + H*W]`` float tensor."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).reshape(len(pixels), -1).float().div_(127.5).sub_(1.0)
    return torch.cat([torch.from_numpy(np.asarray(label_index)).float().unsqueeze(1), x], dim=1)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Model output in [-1, 1], ``[n, 1, H, W]``, as [n, H, W] uint8 pixels."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).squeeze(1).cpu().numpy()


class UpsamplingNet(nn.Module):
    """(vector, one-hot label) -> [n, 1, H, W] raw values: a linear layer to a 2w-channel map at a
    quarter of the size, the label again as constant channels beside it (so the convolutions see
    it too, not only the first layer), then two stride-2 transposed convolutions (the DCGAN
    generator)."""

    def __init__(self, in_dim: int, spec: ImageSpec, width: int):
        super().__init__()
        self.h, self.w = spec.height, spec.width
        self.c0, self.h0, self.w0 = 2 * width, math.ceil(spec.height / 4), math.ceil(spec.width / 4)
        cells = self.c0 * self.h0 * self.w0
        self.fc = nn.Sequential(nn.Linear(in_dim + spec.n_labels, cells), nn.BatchNorm1d(cells), nn.ReLU())
        self.up = nn.Sequential(
            nn.ConvTranspose2d(self.c0 + spec.n_labels, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, 1, 4, 2, 1),
        )

    def forward(self, z: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        x = self.fc(torch.cat([z, onehot], dim=1)).view(-1, self.c0, self.h0, self.w0)
        x = torch.cat([x, onehot[:, :, None, None].expand(-1, -1, self.h0, self.w0)], dim=1)
        return self.up(x)[:, :, : self.h, : self.w]


def _downsampling(in_channels: int, width: int, norm=lambda m: m) -> nn.Sequential:
    return nn.Sequential(
        norm(nn.Conv2d(in_channels, width, 4, 2, 1)), nn.LeakyReLU(0.2),
        norm(nn.Conv2d(width, 2 * width, 4, 2, 1)), nn.LeakyReLU(0.2),
        nn.Flatten(),
    )


def _features(body: nn.Module, in_channels: int, spec: ImageSpec) -> int:
    """Width of ``body``'s flattened output for one image (measured, so any H and W work)."""
    with torch.no_grad():
        return int(body(torch.zeros(1, in_channels, spec.height, spec.width)).shape[1])


class ProjectionCritic(nn.Module):
    """A spectrally normalised conv discriminator with a projection of the label (Miyato & Koyama
    2018) and an auxiliary classifier head (AC-GAN): both push samples towards their label."""

    def __init__(self, spec: ImageSpec, width: int):
        super().__init__()
        self.body = _downsampling(1, width, spectral_norm)
        feat = _features(self.body, 1, spec)
        self.out = spectral_norm(nn.Linear(feat, 1))
        self.embed = spectral_norm(nn.Embedding(spec.n_labels, feat))
        self.classify = nn.Linear(feat, spec.n_labels)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        score = self.out(h).squeeze(1) + (self.embed(labels) * h).sum(1)
        return score, self.classify(h)


class ImageModel(GenerativeModel):
    """Base for image models: splits batches, draws training labels by their real frequencies."""

    modality = "image"

    def __init__(self, spec: ImageSpec):
        super().__init__()
        self.spec = spec
        self.register_buffer("label_counts", torch.ones(spec.n_labels))

    @classmethod
    def read_codec(cls, info: dict) -> ImageSpec:
        return ImageSpec.from_dict(info["image_spec"])

    @classmethod
    def decoders(cls, codec: ImageSpec) -> dict:
        return {"spec": codec}

    def split(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return batch[:, 1:].reshape(-1, 1, self.spec.height, self.spec.width), batch[:, 0].long()

    def onehot(self, labels: torch.Tensor) -> torch.Tensor:
        return F.one_hot(labels, self.spec.n_labels).float()

    def prepare(self, data: torch.Tensor) -> None:
        self.label_counts.copy_(torch.bincount(data[:, 0].long(), minlength=self.spec.n_labels).float())

    def random_labels(self, n: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.multinomial(self.label_counts, n, replacement=True, generator=generator).to(device)

    def sample(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Images in [-1, 1], ``[n, 1, H, W]``, one per label index in ``labels``, drawn only from
        ``generator``."""
        raise NotImplementedError  # pragma: no cover - interface


@register_model("dcgan")
class ConditionalDCGAN(AveragedGenerator, ImageModel):
    def __init__(self, spec: ImageSpec, cfg: ModelSettings, train: TrainSettings):
        super().__init__(spec)
        c = cfg.dcgan
        self.noise_dim, self.label_loss = c.noise_dim, c.label_loss
        self.generator = UpsamplingNet(c.noise_dim, spec, c.width)
        self.critic = ProjectionCritic(spec, c.width)
        self.init_average(c.ema_decay)
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None  # the step's fake batch, critic -> generator

    @classmethod
    def card_line(cls, params: dict) -> str:
        d = params.get("dcgan", {})
        return (f"class-conditional DCGAN, width {d.get('width')}, noise {d.get('noise_dim')}, "
                f"label loss {d.get('label_loss')}, weight average {d.get('ema_decay')}")

    def phases(self, t: TrainSettings) -> list[Phase]:
        return [
            Phase("critic", list(self.critic.parameters()), t.lr_discriminator, betas=(0.5, 0.999)),
            Phase("generator", list(self.generator.parameters()), t.lr_generator, betas=(0.5, 0.999)),
        ]

    def prepare(self, data: torch.Tensor) -> None:
        super().prepare(data)
        self.prepare_average()

    def after_step(self, phase: str) -> None:
        if phase == "generator":
            self.update_average()

    def finish(self) -> None:
        def inputs(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            labels = self.random_labels(n, gen.device, gen)
            return torch.randn(n, self.noise_dim, device=gen.device, generator=gen), self.onehot(labels)

        self.recalibrate_average(inputs)

    def _fake(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        labels = self.random_labels(n, device)
        z = torch.randn(n, self.noise_dim, device=device)
        return torch.tanh(self.generator(z, self.onehot(labels))), labels

    def loss(self, phase: str, real: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = self.split(real)
        n = x.shape[0]
        if phase == "critic":
            # One fake batch per step (as in the DCGAN reference): made here with its graph, judged
            # detached by the critic, then reused by the generator phase that follows. Real and fake
            # go through the critic as one batch (it has no batch statistics, so this is the same
            # function, in fewer and larger convolutions).
            fake, fy = self._fake(n, x.device)
            self._pending = (fake, fy)
            score, logits = self.critic(torch.cat([x, fake.detach()]), torch.cat([y, fy]))
            # The non-saturating GAN loss; the class head learns from real images only.
            adv = F.softplus(-score[:n]).mean() + F.softplus(score[n:]).mean()
            cls = F.cross_entropy(logits[:n], y)
            return adv + self.label_loss * cls, {"critic_loss": adv, "critic_label_loss": cls}
        pending, self._pending = self._pending, None
        fake, fy = pending if pending is not None and pending[0].shape[0] == n else self._fake(n, x.device)
        s_fake, c_fake = self.critic(fake, fy)
        adv = F.softplus(-s_fake).mean()
        cls = F.cross_entropy(c_fake, fy)
        return adv + self.label_loss * cls, {"generator_loss": adv, "generator_label_loss": cls}

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(labels.shape[0], self.noise_dim, device=labels.device, generator=generator)
        return torch.tanh(self.sampler(z, self.onehot(labels)))

    def inference_state(self) -> dict[str, torch.Tensor]:
        return {**self.averaged_state(), "label_counts": self.label_counts}

    def load_inference_state(self, state: dict[str, torch.Tensor]) -> None:
        rest = self.load_averaged_state(state)
        self.label_counts.copy_(rest["label_counts"])


@register_model("conv_vae")
class ConditionalConvVAE(ImageModel):
    """A conditional VAE: conv encoder of (image, label), the DCGAN generator as decoder, Bernoulli
    pixel likelihood. Samples are the decoder's mean image (no pixel noise)."""

    def __init__(self, spec: ImageSpec, cfg: ModelSettings, train: TrainSettings):
        super().__init__(spec)
        c = self.cfg = cfg.conv_vae
        self.encoder = _downsampling(1 + spec.n_labels, c.width)
        feat = _features(self.encoder, 1 + spec.n_labels, spec)
        self.mu, self.logvar = nn.Linear(feat, c.latent_dim), nn.Linear(feat, c.latent_dim)
        self.decoder = UpsamplingNet(c.latent_dim, spec, c.width)

    def phases(self, t: TrainSettings) -> list[Phase]:
        return [Phase("vae", list(self.parameters()), self.cfg.lr, betas=(0.9, 0.999))]

    def loss(self, phase: str, real: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = self.split(real)
        onehot = self.onehot(y)
        maps = onehot[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
        h = self.encoder(torch.cat([x, maps], dim=1))
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        logits = self.decoder(z, onehot)
        n = x.shape[0]
        rec = F.binary_cross_entropy_with_logits(logits, (x + 1) / 2, reduction="sum") / n
        kld = -0.5 * torch.sum(1 + logvar - mu ** 2 - logvar.exp()) / n
        return rec + self.cfg.beta * kld, {"reconstruction_loss": rec, "kl_divergence": kld}

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(labels.shape[0], self.cfg.latent_dim, device=labels.device, generator=generator)
        return torch.sigmoid(self.decoder(z, self.onehot(labels))) * 2 - 1

    def inference_state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if k.startswith(("decoder.", "label_counts"))}

    def load_inference_state(self, state: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.load_state_dict(state, strict=False)
        bad = [k for k in missing if not k.startswith(("encoder.", "mu.", "logvar."))] + list(unexpected)
        if bad:
            raise RuntimeError(f"model.pt does not fit the conv_vae architecture: {bad[:5]}")
