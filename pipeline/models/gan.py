"""A WGAN-GP for tables: residual MLP generator, PacGAN critic (CTGAN's architecture, without the
conditional vector; ``ctgan`` adds it)."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.base import (
    AveragedGenerator,
    OutputLayout,
    Phase,
    TabularModel,
    activate,
)
from pipeline.models.registry import register_model
from pipeline.settings import ModelSettings, TrainSettings


class Residual(nn.Module):
    """Linear -> BatchNorm -> ReLU, concatenated to its input (CTGAN's generator block)."""

    def __init__(self, i: int, o: int):
        super().__init__()
        self.fc, self.bn = nn.Linear(i, o), nn.BatchNorm1d(o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.relu(self.bn(self.fc(x))), x], dim=1)


class Generator(nn.Module):
    def __init__(self, in_dim: int, dims: list[int], out_dim: int):
        super().__init__()
        layers, width = [], in_dim
        for d in dims:
            layers.append(Residual(width, d))
            width += d
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Critic(nn.Module):
    """Scores ``pac`` rows at once, which lets it see (and punish) mode collapse."""

    def __init__(self, in_dim: int, dims: list[int], pac: int, dropout: float):
        super().__init__()
        self.pac = pac
        layers, width = [], in_dim * pac
        for d in dims:
            layers += [nn.Linear(width, d), nn.LeakyReLU(0.2), nn.Dropout(dropout)]
            width = d
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(-1, x.shape[1] * self.pac))


def gradient_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: unit gradient norm on points between real and fake, one mix per pac group."""
    pac, width = critic.pac, real.shape[1]
    alpha = torch.rand(real.shape[0] // pac, 1, 1, device=real.device).expand(-1, pac, width).reshape(real.shape)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    grad = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)[0]
    return ((grad.reshape(-1, pac * width).norm(2, dim=1) - 1) ** 2).mean()


@register_model("gan")
class TabularGAN(AveragedGenerator, TabularModel):
    cond_dim = 0

    def __init__(self, layout: OutputLayout, cfg: ModelSettings, train: TrainSettings):
        super().__init__(layout)
        g = cfg.gan
        self.noise_dim, self.gp_weight, self.batch_multiple = g.noise_dim, train.gp_weight, g.pac
        self.generator = Generator(g.noise_dim + self.cond_dim, g.generator_dims, layout.width)
        self.critic = Critic(layout.width + self.cond_dim, g.discriminator_dims, g.pac, g.dropout)
        self.init_average(g.ema_decay)  # rows come from the generator's weight average

    @classmethod
    def card_line(cls, params: dict) -> str:
        gan = params.get("gan", {})
        return (f"generator {gan.get('generator_dims')}, critic {gan.get('discriminator_dims')}, pac {gan.get('pac')}, "
                f"weight average {gan.get('ema_decay')}")

    def prepare(self, data: torch.Tensor) -> None:
        self.prepare_average()

    def after_step(self, phase: str) -> None:
        if phase == "generator":
            self.update_average()

    def phases(self, t: TrainSettings) -> list[Phase]:
        return [
            Phase("critic", list(self.critic.parameters()), t.lr_discriminator, weight_decay=t.weight_decay),
            Phase("generator", list(self.generator.parameters()), t.lr_generator, weight_decay=t.weight_decay),
        ]

    def compile_modules(self) -> None:
        # The critic is differentiated twice (gradient penalty), which compiled graphs do not support.
        self.generator.compile()

    def _fake(self, n: int, device: torch.device) -> torch.Tensor:
        z = torch.randn(n, self.noise_dim, device=device)
        return activate(self.generator(z), self.layout)

    def loss(self, phase: str, real: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if phase == "critic":
            with torch.no_grad():
                fake = self._fake(real.shape[0], real.device)
            wdist = self.critic(real).mean() - self.critic(fake).mean()
            gp = gradient_penalty(self.critic, real, fake)
            return -wdist + self.gp_weight * gp, {"critic_loss": -wdist, "gradient_penalty": gp}
        g = -self.critic(self._fake(real.shape[0], real.device)).mean()
        return g, {"generator_loss": g}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, condition: tuple[int, int] | None = None) -> torch.Tensor:
        device = next(self.parameters()).device
        z = torch.randn(n, self.noise_dim, device=device, generator=generator)
        return activate(self.sampler(z), self.layout, generator=generator, hard=True)

    def inference_state(self) -> dict[str, torch.Tensor]:
        return self.averaged_state()

    def load_inference_state(self, state: dict[str, torch.Tensor]) -> None:
        self.load_averaged_state(state)
