"""A tabular VAE (the TVAE of Xu et al. 2019): MLP encoder and decoder; Gaussian likelihood with a
learned scale per scalar column, categorical likelihood per one-hot block, both vectorised."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.base import OutputLayout, Phase, TabularModel, activate
from pipeline.models.registry import register_model
from pipeline.settings import ModelSettings, TrainSettings


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, o in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(i, o), nn.ReLU()]
    return nn.Sequential(*layers)


@register_model("tvae")
class TabularVAE(TabularModel):
    private = True  # DP-SGD (train.privacy): private_module

    def __init__(self, layout: OutputLayout, cfg: ModelSettings, train: TrainSettings):
        super().__init__(layout)
        c = self.cfg = cfg.tvae
        self.encoder = _mlp([layout.width, *c.encoder_dims])
        self.mu = nn.Linear(c.encoder_dims[-1] if c.encoder_dims else layout.width, c.latent_dim)
        self.logvar = nn.Linear(c.encoder_dims[-1] if c.encoder_dims else layout.width, c.latent_dim)
        self.decoder = nn.Sequential(_mlp([c.latent_dim, *c.decoder_dims]),
                                     nn.Linear(c.decoder_dims[-1] if c.decoder_dims else c.latent_dim, layout.width))
        self.sigma = nn.Parameter(torch.full((layout.width,), 0.1))

    def phases(self, t: TrainSettings) -> list[Phase]:
        return [Phase("vae", list(self.parameters()), self.cfg.lr, betas=(0.9, 0.999),
                      weight_decay=self.cfg.weight_decay)]

    def after_step(self, phase: str) -> None:
        with torch.no_grad():
            self.sigma.clamp_(0.01, 1.0)

    def private_module(self) -> nn.Module:
        # Under DP-SGD the output scale stays at its start (0.1): a parameter of no layer has no
        # per-row gradient Opacus' hooks can clip. The encoder and decoder train; each row's loss
        # is its own (its own latent draw).
        self.sigma.requires_grad_(False)
        return self

    def _forward(self, real: torch.Tensor):
        """The encoder's mean and log-variance, the decoded rows, the scalars' scale and errors."""
        lay = self.layout
        h = self.encoder(real)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        rec = self.decoder(z)
        sig = self.sigma[lay.tanh_idx]
        err = real[:, lay.tanh_idx] - torch.tanh(rec[:, lay.tanh_idx])
        return mu, logvar, rec, sig, err

    def _logits_target(self, real: torch.Tensor, rec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lay = self.layout
        logits = rec[:, lay.group_index].masked_fill(~lay.group_mask, float("-inf"))
        target = real[:, lay.group_index].masked_fill(~lay.group_mask, -1.0).argmax(-1)
        return logits, target

    def loss(self, phase: str, real: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # Summed over the batch as before row_loss existed (its mean equals this; the sums keep the bytes).
        n = real.shape[0]
        mu, logvar, rec, sig, err = self._forward(real)
        loss = ((err ** 2) / (2 * sig ** 2)).sum() + torch.log(sig).sum() * n
        if self.layout.flat_index.numel():
            logits, target = self._logits_target(real, rec)
            loss = loss + F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu ** 2 - logvar.exp())
        total = (self.cfg.loss_factor * loss + kld) / n
        return total, {"reconstruction_loss": loss / n, "kl_divergence": kld / n}

    def row_loss(self, phase: str, real: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Each row's loss ([n]; its mean is ``loss``'s), and the batch's loss figures: DP-SGD
        clips each row's gradient of it."""
        mu, logvar, rec, sig, err = self._forward(real)
        loss = ((err ** 2) / (2 * sig ** 2)).sum(1) + torch.log(sig).sum()
        if self.layout.flat_index.numel():
            logits, target = self._logits_target(real, rec)
            ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none")
            loss = loss + ce.reshape(target.shape).sum(1)
        kld = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)
        return self.cfg.loss_factor * loss + kld, {"reconstruction_loss": loss.mean(), "kl_divergence": kld.mean()}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, condition: tuple[int, int] | None = None) -> torch.Tensor:
        device = self.sigma.device
        z = torch.randn(n, self.cfg.latent_dim, device=device, generator=generator)
        rec = self.decoder(z)
        out = activate(rec, self.layout, generator=generator, hard=True)
        # Scalars: the decoded mean plus the learned noise scale, as TVAE samples them.
        idx = self.layout.tanh_idx
        noise = torch.randn(n, idx.numel(), device=device, generator=generator) * self.sigma[idx]
        out[:, idx] = (torch.tanh(rec[:, idx]) + noise).clamp(-1.0, 1.0)
        return out

    def inference_state(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith(("encoder.", "mu.", "logvar."))}

    def load_inference_state(self, state: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.load_state_dict(state, strict=False)
        bad = [k for k in missing if not k.startswith(("encoder.", "mu.", "logvar."))] + list(unexpected)
        if bad:
            raise RuntimeError(f"model.pt does not fit the tvae architecture: {bad[:5]}")
