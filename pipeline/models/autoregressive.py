"""An autoregressive table model: every column a categorical draw given the columns before it (the
TabularARGN family, Tiwald et al. 2025, which MOSTLY AI's engine trains).

* Each column is a token: a categorical (or missing-flag) block its category, a numeric scalar its
  bin among ``bins`` equal-mass bins of the transformer's normal scores (the transformer makes
  every numeric column a standard normal, so the bins are the normal's quantiles: the training
  rows' quantiles, with ties spread over their bins), then a second token, its place inside that
  bin among ``fine_bins`` equal parts in probability (``bins x fine_bins`` levels in all, each drawn
  given everything before it, as MOSTLY AI's engine draws a number digit by digit). A drawn part
  becomes a value drawn uniformly inside it in probability, so a column keeps its marginal there.
* Token ``j``'s distribution given tokens ``< j`` (the layout's order) is a small MLP of their
  one-hot codes; every row trains every token's conditional at every step (teacher forcing), a
  loss of one cross-entropy a token. Rows come token by token: one pass of one small net each,
  whose first layer over one-hot codes is a sum of one weight column per token before it.
* In training, a categorical token reads each earlier part token redrawn at random in a
  ``part_noise`` share of the rows: a value's place inside its bin says little about a category but
  makes every row's context unique, and a net that learns each training row's answer drifts towards
  its majority category on the new contexts of sampling (``_noisy_parts``). Numeric tokens read
  the parts as they are (a bill follows the last one's exact place).

Why it exists: under DP-SGD each row's gradient is clipped to a fixed norm, and a loss that asks for
every column given the others (rather than a few hidden ones, as masked diffusion does) spends
that norm on the dependence between columns. Measured on Adult at epsilon 3:
``benchmarks/README.md#differential-privacy-against-mostly-ais-engine-and-aim-issue-29-item-4``.
Only nn.Linear layers, so Opacus' ghost clipping sees every parameter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.base import OutputLayout, Phase, TabularModel
from pipeline.models.registry import register_model
from pipeline.models.transformer import NORMAL_SCALE as _SCALE
from pipeline.settings import ModelSettings, TrainSettings

_CHUNK = 65_536  # rows drawn at once (bounds memory for any n)


def _recipe(settings, train: TrainSettings):
    """fine_bins, epochs and min_steps as this run trains: ``private``'s under DP-SGD."""
    return settings.private if train.privacy.epsilon is not None else settings


def _mlp(in_dim: int, dims: list[int], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, o in zip([in_dim, *dims[:-1]], dims):
        layers += [nn.Linear(i, o), nn.SiLU()]
    return nn.Sequential(*layers, nn.Linear(dims[-1] if dims else in_dim, out_dim))


@register_model("autoregressive")
class TabularAutoregressive(TabularModel):
    private = True  # DP-SGD (train.privacy): private_module

    @classmethod
    def auto_recipe(cls, model: ModelSettings, train: TrainSettings) -> tuple[int, int]:
        """Its own epochs and fewest steps (``model.autoregressive``; ``private`` under DP-SGD)."""
        r = _recipe(model.autoregressive, train)
        return r.epochs, r.min_steps

    def __init__(self, layout: OutputLayout, cfg: ModelSettings, train: TrainSettings):
        super().__init__(layout)
        c = self.cfg = cfg.autoregressive
        self.bins = c.bins
        self.fine = _recipe(c, train).fine_bins
        self.recipe = self.auto_recipe(cfg, train)
        # The tokens in the layout's order: (kind, the span's start, the token's width); a numeric
        # span is a bin ("bin") and, with fine_bins > 1, its part inside the bin ("part").
        self.tokens: list[tuple[str, int, int]] = []
        for s in layout.spans:
            if s.activation != "tanh":
                self.tokens.append(("category", s.start, s.width))
                continue
            self.tokens.append(("bin", s.start, c.bins))
            if self.fine > 1:
                self.tokens.append(("part", s.start, self.fine))
        # Part noise is drawn only where a category's net reads a part: a category after a number.
        kinds = [kind for kind, _, _ in self.tokens]
        self.noise_read = "part" in kinds and "category" in kinds[kinds.index("part"):]
        widths = [w for _, _, w in self.tokens]
        self.offsets = [sum(widths[:j]) for j in range(len(widths) + 1)]
        # Column j reads the one-hot tokens of columns < j (the first column a constant 1).
        self.nets = nn.ModuleList(_mlp(max(self.offsets[j], 1), c.hidden_dims, w) for j, w in enumerate(widths))

    def phases(self, t: TrainSettings) -> list[Phase]:
        return [Phase("autoregressive", list(self.parameters()), self.cfg.lr, betas=(0.9, 0.999),
                      weight_decay=self.cfg.weight_decay)]

    def private_module(self) -> nn.Module:
        return self  # each row's loss is its own tokens' cross-entropies

    # -- tokens ----------------------------------------------------------------------------------

    def _codes(self, rows: torch.Tensor) -> torch.Tensor:
        """[n, tokens] every token: a block's category, a numeric scalar's bin (and its part of it)."""
        out = []
        for kind, start, width in self.tokens:
            if kind == "category":
                out.append(rows[:, start:start + width].argmax(1))
                continue
            level = torch.special.ndtr(rows[:, start].float() * _SCALE) * self.bins
            drawn = level.long().clamp_(0, self.bins - 1)
            out.append(drawn if kind == "bin" else ((level - drawn) * self.fine).long().clamp_(0, self.fine - 1))
        return torch.stack(out, 1)

    def _context(self, onehot: torch.Tensor, j: int) -> torch.Tensor:
        return onehot[:, :self.offsets[j]] if j else onehot.new_ones(onehot.shape[0], 1)

    # -- training --------------------------------------------------------------------------------

    def row_loss(self, phase: str, real: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Each row's loss ([n]): the sum of its tokens' cross-entropies given the tokens before."""
        codes = self._codes(real)
        onehot = self._onehot(codes)
        # A category's net reads the parts redrawn in a part_noise share of the rows (a bin's and a
        # part's nets read them as they are: a number follows another one's exact place).
        noise = self.training and self.cfg.part_noise > 0 and self.noise_read
        noisy = self._onehot(self._noisy_parts(codes)) if noise else onehot
        ce = torch.stack([F.cross_entropy(net(self._context(noisy if kind == "category" else onehot, j)), codes[:, j],
                                          reduction="none")
                          for j, ((kind, _, _), net) in enumerate(zip(self.tokens, self.nets))], 1)
        loss = ce.sum(1)
        return loss, {"nll": loss.mean()}

    def _onehot(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.one_hot(codes[:, j], w).float() for j, (_, _, w) in enumerate(self.tokens)], 1)

    def _noisy_parts(self, codes: torch.Tensor) -> torch.Tensor:
        """The tokens as a category's net reads them in training: each part token redrawn uniformly
        in a ``part_noise`` share of the rows (the targets keep the true parts). A place inside a
        bin adds little about a category but makes a row's context unique: without this a late
        category's net learns each training row's answer and, on the new contexts of sampling,
        drifts towards its majority category (Shoppers, 90 epochs: `Weekend` 0.234 -> 0.182)."""
        context = codes.clone()
        n = codes.shape[0]
        for j, (kind, _, width) in enumerate(self.tokens):
            if kind == "part":
                hit = torch.rand(n, device=codes.device) < self.cfg.part_noise
                context[:, j] = torch.where(hit, torch.randint(0, width, (n,), device=codes.device), codes[:, j])
        return context

    def loss(self, phase: str, real: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, figures = self.row_loss(phase, real)
        return loss.mean(), figures

    # -- sampling --------------------------------------------------------------------------------

    rows_at_once = _CHUNK  # rows one pass holds (validate's memory estimate reads it)

    @torch.inference_mode()
    def sample(self, n: int, generator: torch.Generator, condition: tuple[int, int] | None = None) -> torch.Tensor:
        """``n`` rows, column by column. ``condition`` is not steered towards (a column can depend on
        later ones only through the order): the caller keeps the rows that meet it."""
        device = self.layout.tanh_idx.device
        parts = [self._sample(min(_CHUNK, n - i), generator, device) for i in range(0, n, _CHUNK)]
        return torch.cat(parts) if parts else torch.zeros(0, self.layout.width, device=device)

    def _first_layer(self, j: int, index: torch.Tensor) -> torch.Tensor:
        """Token ``j``'s net's first layer over the one-hot codes of the tokens before it, given as
        their columns of the one-hot input (``index``, [n, >= j]): a sum of those weight columns."""
        first = self.nets[j][0]
        if not j:  # the constant 1
            return (first.weight[:, 0] + first.bias).expand(index.shape[0], -1)
        return F.embedding_bag(index[:, :j], first.weight.t().contiguous(), mode="sum") + first.bias

    def _sample(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        out = torch.zeros(n, self.layout.width, device=device)
        rows = torch.arange(n, device=device)
        # Each drawn token as its column in the one-hot input (its offset + its code): a net's first
        # layer over the one-hot codes is the sum of those columns of its weight (and its bias).
        index = torch.zeros(n, len(self.tokens), dtype=torch.long, device=device)
        level = None
        for j, ((kind, start, _), net) in enumerate(zip(self.tokens, self.nets)):
            logits = net[1:](self._first_layer(j, index)).float()
            g = torch.rand(logits.shape, device=device, generator=generator).clamp_min_(1e-20)
            drawn = (logits - torch.log(-torch.log(g))).argmax(1)
            index[:, j] = self.offsets[j] + drawn
            if kind == "category":
                out[rows, start + drawn] = 1.0
                continue
            if kind == "bin":
                level = drawn.float()
                if self.fine > 1:
                    continue  # the part inside the bin comes next
            else:
                level = level + drawn.float() / self.fine
            # uniform inside the bin (or its part), in probability; back to the normal score
            u = (level + torch.rand(n, device=device, generator=generator) / (self.fine if kind == "part" else 1))
            z = torch.special.ndtri((u / self.bins).clamp(1e-6, 1 - 1e-6))
            out[:, start] = (z / _SCALE).clamp(-1.0, 1.0)
        return out
