"""What every model offers the training loop and the generate stage."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from pipeline.models.transformer import Span, TableTransformer


@dataclass
class Phase:
    """One optimisation step of a training iteration, with the parameters it updates."""

    name: str
    params: list[nn.Parameter]
    lr: float
    betas: tuple[float, float] = (0.5, 0.9)
    weight_decay: float = 0.0
    # Parts of ``params`` at a learning rate of their own: (those parameters, their rate).
    rates: tuple[tuple[list[nn.Parameter], float], ...] = ()

    def groups(self) -> list[nn.Parameter] | list[dict[str, Any]]:
        """The optimiser's parameter groups: ``params`` at ``lr``, each part of ``rates`` at its rate."""
        if not self.rates:
            return self.params
        own = {id(q) for part, _ in self.rates for q in part}
        return [{"params": [q for q in self.params if id(q) not in own]},
                *({"params": part, "lr": lr} for part, lr in self.rates)]


class OutputLayout:
    """Index tensors for activating the model's raw output in one shot (no loop over columns)."""

    def __init__(self, spans: list[Span], width: int):
        self.width = width
        self.spans = spans
        self.tanh_idx = torch.tensor([s.start for s in spans if s.activation == "tanh"], dtype=torch.long)
        groups = [s for s in spans if s.activation == "softmax"]
        self.groups = groups
        # Indices (into groups) of categorical columns' blocks: what a conditional model conditions on.
        self.category_groups = [g for g, s in enumerate(groups) if s.role == "category"]
        max_w = max((s.width for s in groups), default=1)
        index = torch.zeros(len(groups), max_w, dtype=torch.long)
        mask = torch.zeros(len(groups), max_w, dtype=torch.bool)
        for g, s in enumerate(groups):
            index[g, : s.width] = torch.arange(s.start, s.start + s.width)
            mask[g, : s.width] = True
        self.group_index, self.group_mask = index, mask
        self.flat_index = index[mask]

    def to(self, device: torch.device) -> "OutputLayout":
        for name in ("tanh_idx", "group_index", "group_mask", "flat_index"):
            setattr(self, name, getattr(self, name).to(device))
        return self


def activate(raw: torch.Tensor, layout: OutputLayout, tau: float = 0.2,
             generator: torch.Generator | None = None, hard: bool = False) -> torch.Tensor:
    """tanh on scalar columns, Gumbel-softmax on every one-hot block, all blocks at once.

    ``hard=True`` returns exact one-hot samples (used when generating rows).
    """
    # float32 throughout: under CUDA autocast raw is bf16, softmax comes back fp32, and bf16 uniforms
    # would cap the Gumbel noise (few distinct values, exact zeros).
    raw = raw.float()
    out = raw.new_zeros(raw.shape)
    out[:, layout.tanh_idx] = torch.tanh(raw[:, layout.tanh_idx])
    if layout.flat_index.numel():
        # Noise only for real entries; the padded [batch, group, width] view is for the softmax.
        logits = raw[:, layout.flat_index]
        u = torch.rand(logits.shape, device=raw.device, generator=generator, dtype=raw.dtype)
        exp1 = -torch.log(u.clamp_min(1e-20))  # Exp(1) noise; Gumbel = -log(Exp(1))
        noisy = (logits - torch.log(exp1.clamp_min(1e-20))) / tau
        padded = noisy.new_full((raw.shape[0], *layout.group_mask.shape), float("-inf"))
        padded[:, layout.group_mask] = noisy
        if hard:
            y = torch.zeros_like(padded).scatter_(-1, padded.argmax(-1, keepdim=True), 1.0)
        else:
            y = torch.softmax(padded, dim=-1)
        out[:, layout.flat_index] = y[:, layout.group_mask]
    return out


class GenerativeModel(nn.Module):
    """What the training loop sees of any model (tables or images): phases, their losses, and the
    weights generation needs. Subclasses register themselves by name."""

    name: ClassVar[str]
    modality: ClassVar[str] = "table"
    batch_multiple: int = 1  # batch sizes must be a multiple of this (PacGAN packs rows)
    # Whether training draws from the whole table beyond each batch (e.g. rows by category), so
    # that under torchrun every rank needs all of it rather than its share.
    needs_whole_table: ClassVar[bool] = False
    # Whether it can train with DP-SGD (``private_module``; train.privacy).
    private: ClassVar[bool] = False
    # ``train.epochs: auto``'s (epochs on a big table, fewest optimiser steps) when the model has its
    # own recipe (``auto_recipe``); None: AUTO_EPOCHS and train.min_steps (pipeline.settings.epochs_for).
    recipe: tuple[int, int] | None = None

    @classmethod
    def auto_recipe(cls, model: Any, train: Any) -> tuple[int, int] | None:
        """``recipe`` for the model and train settings (``ModelSettings``, ``TrainSettings``) it is built with."""
        return None

    @classmethod
    def over(cls, codec, model_cfg, train_cfg) -> "GenerativeModel":
        """This model for the data ``codec`` encodes (the fitted transformer, the image spec)."""
        return cls(codec, model_cfg, train_cfg)

    @classmethod
    def read_codec(cls, info: dict):
        """The codec ``model.json`` (``info``) records: what decodes this model's samples."""
        raise NotImplementedError  # pragma: no cover - interface

    @classmethod
    def decoders(cls, codec) -> dict:
        """A loaded model's fields (``LoadedModel``) that decode its samples, from its codec."""
        raise NotImplementedError  # pragma: no cover - interface

    @classmethod
    def card_line(cls, params: dict) -> str | None:
        """One line of the data card on this model's settings (``params``: the params' ``model``
        section), or None: the card names the model and no more."""
        return None

    def phases(self, train_cfg) -> list[Phase]:  # pragma: no cover - interface
        raise NotImplementedError

    def private_module(self) -> nn.Module:
        """The network DP-SGD trains (``train.privacy``): the one phase's parameters, each row's loss
        depending on that row alone. Models that cannot train so refuse in one line."""
        from pipeline.errors import ConfigError
        from pipeline.models.registry import private_models

        raise ConfigError(f"train.privacy: DP-SGD does not train '{self.name}'; set model.name: {private_models()}, "
                          "or train.privacy.epsilon: null")

    def prepare(self, data: torch.Tensor) -> None:
        """Called once with the whole training tensor (on the device) before training."""

    def compile_modules(self) -> None:
        """torch.compile the networks in place (state-dict keys unchanged)."""
        for module in self.children():
            module.compile()

    def after_step(self, phase: str) -> None:
        """Called after each optimiser step of ``phase`` (e.g. to clamp parameters)."""

    def finish(self) -> None:
        """Called once when training ends (also after a resume that had nothing left to train),
        before the weights are saved; must depend only on the weights (every rank calls it)."""

    def loss(self, phase: str, real: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The scalar to minimise in ``phase`` for a batch of real rows, plus figures to log."""
        raise NotImplementedError  # pragma: no cover - interface

    def use_sampling(self, generate_cfg) -> dict:
        """Take the generate section's sampling settings that this model reads (``sample_steps``);
        returns them as used, for ``_generated.json`` ({}: it reads none)."""
        return {}

    def inference_state(self) -> dict[str, torch.Tensor]:
        """The weights generation needs (a state dict of tensors)."""
        return self.state_dict()

    def load_inference_state(self, state: dict[str, torch.Tensor]) -> None:
        self.load_state_dict(state)


def average_decay(decay: float, steps: int) -> float:
    """A weight average's decay at its ``steps``-th update: a warm-up, so that early on the average
    follows the weights closely (the decay grows to ``decay``)."""
    return min(decay, (1 + steps) / (10 + steps))


class AveragedGenerator:
    """Mixin for GANs: an exponential moving average of ``self.generator``'s weights makes the
    samples. It smooths the step-to-step wander of adversarial training (samples are better, and
    vary less by epoch). State-dict keys: ``generator_ema.*`` and ``ema_steps``."""

    generator: nn.Module

    def init_average(self, decay: float) -> None:
        self.ema_decay = decay
        if decay:
            self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
            self.register_buffer("ema_steps", torch.zeros((), dtype=torch.long))
            self._ema_n = 0

    @property
    def sampler(self) -> nn.Module:
        """The generator that makes the samples: the averaged one when there is one."""
        return self.generator_ema if self.ema_decay else self.generator

    def prepare_average(self) -> None:
        if self.ema_decay:
            self._ema_n = int(self.ema_steps)  # resumed training continues the warm-up where it was
            # The tensors the average follows, listed once (not per step): weights, then BatchNorm statistics.
            self._ema_params = (list(self.generator_ema.parameters()), list(self.generator.parameters()))
            self._ema_buffers = list(zip(self.generator_ema.buffers(), self.generator.buffers()))

    @torch.no_grad()
    def update_average(self) -> None:
        if not self.ema_decay:
            return
        self._ema_n += 1
        self.ema_steps += 1
        torch._foreach_lerp_(*self._ema_params, 1 - average_decay(self.ema_decay, self._ema_n))
        for avg, cur in self._ema_buffers:
            avg.copy_(cur)

    @torch.no_grad()
    def recalibrate_average(self, inputs: Callable[[int, torch.Generator], tuple[torch.Tensor, ...]],
                            batches: int = 50, size: int = 256) -> None:
        """Give the averaged generator BatchNorm statistics of its own.

        During training its statistics are copies of the online generator's, which were measured
        on other weights; sampled with those, the average's images wander from epoch to epoch. This
        re-measures them as plain means over ``batches`` batches of ``inputs(size, generator)`` run
        through the averaged weights, from a fixed seed (so it depends only on the weights).
        """
        if not self.ema_decay:
            return
        norms = [m for m in self.generator_ema.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        device = next(self.generator_ema.parameters()).device
        gen = torch.Generator(device=device).manual_seed(0)
        momenta = [m.momentum for m in norms]
        was_training = self.generator_ema.training
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative mean over the batches
        self.generator_ema.train()
        try:
            for _ in range(batches):
                self.generator_ema(*inputs(size, gen))
        finally:
            for m, momentum in zip(norms, momenta):
                m.momentum = momentum
            self.generator_ema.train(was_training)

    def averaged_state(self) -> dict[str, torch.Tensor]:
        """The sampling generator's weights (the average, if any) under ``generator.*``."""
        return {f"generator.{k}": v for k, v in self.sampler.state_dict().items()}

    def load_averaged_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Load ``generator.*`` weights into both generators; returns the other entries."""
        weights = {k.removeprefix("generator."): v for k, v in state.items() if k.startswith("generator.")}
        self.generator.load_state_dict(weights)
        if self.ema_decay:
            self.generator_ema.load_state_dict(weights)
        return {k: v for k, v in state.items() if not k.startswith("generator.")}


class TabularModel(GenerativeModel):
    """Base for tabular generative models over the transformer's output layout."""

    def __init__(self, layout: OutputLayout):
        super().__init__()
        self.layout = layout

    @classmethod
    def over(cls, codec: TableTransformer, model_cfg, train_cfg) -> "TabularModel":
        return cls(OutputLayout(codec.spans, codec.width), model_cfg, train_cfg)

    @classmethod
    def read_codec(cls, info: dict) -> TableTransformer:
        from pipeline.schema import TableSchema

        return TableTransformer.from_state(TableSchema.from_dict(info["schema"]), info["transformer"])

    @classmethod
    def decoders(cls, codec: TableTransformer) -> dict:
        return {"transformer": codec, "schema": codec.schema}

    def sample(self, n: int, generator: torch.Generator, condition: tuple[int, int] | None = None) -> torch.Tensor:
        """``n`` rows in the transformer's space, drawn only from ``generator``.

        ``condition`` = (softmax group index, slot): a conditional model steers its rows towards
        that category; callers still check and reject rows that miss it.
        """
        raise NotImplementedError  # pragma: no cover - interface

    def to(self, *args, **kwargs):  # keep the layout's index tensors beside the weights
        module = super().to(*args, **kwargs)
        device = next(self.parameters()).device
        self.layout.to(device)
        return module
