"""An autoregressive table model: every column a categorical draw given the columns before it (the
TabularARGN family, Tiwald et al. 2025, which MOSTLY AI's engine trains).

* Each column is a token: a categorical (or missing-flag) block its category, a numeric scalar its
  bin among ``bins`` equal-mass bins of the transformer's normal scores (the transformer makes
  every numeric column a standard normal, so the bins are the normal's quantiles: the training
  rows' quantiles, with ties spread over their bins), then a second token, its place inside that
  bin among ``fine_bins`` equal parts in probability (``bins x fine_bins`` levels in all, each drawn
  given everything before it, as MOSTLY AI's engine draws a number digit by digit). A drawn part
  becomes a value drawn uniformly inside it in probability, so a column keeps its marginal there.
* The order: the dataset's target column first (``target_first``), then the others in the table's
  order. Every other column's net then reads the target, so the rows hold each column's dependence
  on it directly rather than only through the last net of the chain (Magic, ten numbers then its
  class: TSTR 0.922 -> 0.933). Not on a small table (``_small``, where ``train.epochs: auto`` raises
  the epochs): there the table's order, whose last net learns the target from every row at once.
* Token ``j``'s distribution given tokens ``< j`` (that order) is a small MLP of their
  one-hot codes; every row trains every token's conditional at every step (teacher forcing), a
  loss of one cross-entropy a token. Rows come token by token: one pass of one small net each,
  whose first layer over one-hot codes is a sum of one weight column per token before it.
* With ``ordinal_inputs`` (the default; not under DP-SGD) a net also reads each earlier numeric
  token as one number, its code's place among its width's: a one-hot code says nothing of which bins
  are neighbours, so from one-hot codes alone each bin's effect on a later column is learnt from that
  bin's rows only (Magic's detection AUC 0.522 -> 0.508, its every-pair trend error 0.91 -> 0.81 %).
  The sampler adds that number's weight, times the code's place, to the code's weight column: still
  one sum a row.
* In training, a categorical token reads each earlier part token redrawn at random in a
  ``part_noise`` share of the rows: a value's place inside its bin says little about a category but
  makes every row's context unique, and a net that learns each training row's answer drifts towards
  its majority category on the new contexts of sampling (``_noisy_parts``). Numeric tokens read
  the parts as they are (a bill follows the last one's exact place), except the bin of a column of
  at most ``bins`` values under ``value_tokens``: one token a value, a category in all but name,
  which drifts as one (Shoppers' ``SpecialDay``, 90 % zeros: 94 % zeros drawn).
* With ``value_tokens`` (on by default, and in the DP recipe) a numeric column's bins follow its tied values
  (``value_edges``): a column of at most ``bins`` values has one token a value, and a spike
  (capital-gain's zeros, hours-per-week's 40) is one token instead of the bins it covers. The
  transformer spreads a tied value uniformly over its probability interval, so over equal-mass
  bins a row's bin token is a random one of those the value covers: a target no context predicts,
  whose cross-entropy the clipped gradient of DP-SGD pays for, and a column of levels
  (education-num) whose level a category decides sees that decision split over several bins.
  Without DP, on the suite (3 seeds): Shoppers' TSTR by the papers' protocol 0.905 -> 0.914,
  Default's detection AUC 0.650 -> 0.622.

Why it exists: under DP-SGD each row's gradient is clipped to a fixed norm, and a loss that asks for
every column given the others (rather than a few hidden ones, as masked diffusion does) spends
that norm on the dependence between columns. Measured on Adult at epsilon 3:
``benchmarks/README.md#differential-privacy-against-mostly-ais-engine-and-aim-issue-29-item-4``.
Only nn.Linear layers, so Opacus' ghost clipping sees every parameter.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.base import OutputLayout, Phase, TabularModel, average_decay
from pipeline.models.registry import register_model
from pipeline.models.transformer import NORMAL_SCALE as _SCALE
from pipeline.settings import ModelSettings, TrainSettings, epochs_for
from pipeline.training.loop import batch_plan

_CHUNK = 65_536  # rows drawn at once (bounds memory for any n)


def _recipe(settings, train: TrainSettings):
    """fine_bins, epochs, min_steps, value_tokens and ordinal_inputs as this run trains: ``private``'s
    under DP-SGD."""
    return settings.private if train.privacy.epsilon is not None else settings


def of_levels(knots, bins: int) -> bool:
    """Whether a numeric column of these (sorted) knots has at most ``bins`` values: under
    ``value_tokens`` one token a value (``value_edges``), a category in all but name."""
    return int(np.count_nonzero(np.diff(np.asarray(knots, dtype=np.float64)))) + 1 <= bins


def value_edges(knots: np.ndarray, bins: int) -> list[float]:
    """A numeric column's token edges in probability (0 to 1, the transformer's levels) from its
    knots: a value repeated over knots ``a..b`` holds levels ``[a, b] / (knots - 1)`` (the
    transformer spreads its rows uniformly there). A column of at most ``bins`` values: one token a
    value, split halfway between neighbours. Else ``bins`` equal-mass bins, except that a value
    holding a bin's mass or more is one token of its own interval (the bins' edges inside it, or
    within half a bin of it, dropped)."""
    knots = np.asarray(knots, dtype=np.float64)
    m = len(knots)
    levels = np.linspace(0.0, 1.0, m)
    new = np.flatnonzero(np.diff(knots) != 0) + 1  # where a value after the first starts
    starts, ends = np.r_[0, new], np.r_[new - 1, m - 1]
    if of_levels(knots, bins):
        return [0.0, *((levels[ends[:-1]] + levels[starts[1:]]) / 2).tolist(), 1.0]
    spikes = [(levels[a], levels[b]) for a, b in zip(starts, ends) if levels[b] - levels[a] >= 1.0 / bins]
    margin = 0.5 / bins
    grid = [e for e in np.linspace(0.0, 1.0, bins + 1).tolist()
            if not any(lo - margin < e < hi + margin for lo, hi in spikes)]
    return sorted({0.0, 1.0, *grid, *(float(e) for spike in spikes for e in spike)})


def _place(code, width: int):
    """A numeric token's code as the number a later net reads (``ordinal_inputs``): its place among
    ``width`` codes, in [-0.5, 0.5]; of an int or a tensor of codes."""
    return (code + 0.5) / width - 0.5


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

    @classmethod
    def over(cls, codec, model_cfg: ModelSettings, train_cfg: TrainSettings) -> "TabularAutoregressive":
        """Over the fitted transformer: with ``value_tokens``, each numeric column's bins from its
        knots (``value_edges``; under DP the knots are the private ones); the rows it was fitted on
        (``phases``: whether the table is small)."""
        edges, levels = None, None
        if _recipe(model_cfg.autoregressive, train_cfg).value_tokens:
            knots = {c["name"]: c["knots"] for c in codec.columns if "knots" in c}
            numeric = [s for s in codec.spans if s.activation == "tanh"]
            edges = {s.start: value_edges(knots[s.column], model_cfg.autoregressive.bins) for s in numeric}
            levels = {s.start for s in numeric if of_levels(knots[s.column], model_cfg.autoregressive.bins)}
        first = codec.schema.target if model_cfg.autoregressive.target_first else None
        return cls(OutputLayout(codec.spans, codec.width), model_cfg, train_cfg, edges, rows=codec.rows, first=first,
                   levels=levels)

    def __init__(self, layout: OutputLayout, cfg: ModelSettings, train: TrainSettings,
                 edges: dict[int, list[float]] | None = None, rows: int | None = None, first: str | None = None,
                 levels: set[int] | None = None):
        super().__init__(layout)
        self.rows = rows  # the training rows (None: unknown, a table big enough for numeric_lr)
        c = self.cfg = cfg.autoregressive
        self.bins = c.bins
        self.fine = _recipe(c, train).fine_bins
        self.recipe = self.auto_recipe(cfg, train)
        # The target first only on a table big enough for the recipe: on a small one the last net, which
        # reads every other column, learns the target from all the rows at once (wine's 142 rows:
        # TSTR 0.958 in the table's order, 0.862 with the target first).
        first = None if self._small(train) else first
        # value_tokens: each numeric span's bin edges in probability (by the span's start); None:
        # ``bins`` equal-mass bins each.
        self.edges = edges
        self._edge_cache: dict[tuple[int, torch.device], torch.Tensor] = {}
        self._place_cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}  # _column_places
        # The tokens in the layout's order, the column ``first`` (the target) moved ahead of the others:
        # (kind, the span's start, the token's width); a numeric span is a bin ("bin") and, with
        # fine_bins > 1, its part inside the bin ("part").
        self.tokens: list[tuple[str, int, int]] = []
        for s in sorted(layout.spans, key=lambda span: span.column != first):  # stable: the rest keep their order
            if s.activation != "tanh":
                self.tokens.append(("category", s.start, s.width))
                continue
            self.tokens.append(("bin", s.start, c.bins if edges is None else len(edges[s.start]) - 1))
            if self.fine > 1:
                self.tokens.append(("part", s.start, self.fine))
        # The tokens whose nets read the parts redrawn (``part_noise``): a category's, and the bin of a
        # column of levels (value_tokens, ``levels``: the spans of columns of at most ``bins`` values),
        # whose tokens are its values, a category in all but name. Part noise is drawn only where such
        # a net reads a part.
        levels = levels or set()
        self.noisy = [kind == "category" or (kind == "bin" and start in levels) for kind, start, _ in self.tokens]
        kinds = [kind for kind, _, _ in self.tokens]
        self.noise_read = "part" in kinds and any(self.noisy[kinds.index("part"):])
        widths = [w for _, _, w in self.tokens]
        self.offsets = [sum(widths[:j]) for j in range(len(widths) + 1)]
        # With ordinal_inputs, each numeric token (a bin, a part) is also one number for the nets after
        # it, its code's place among its width's in [-0.5, 0.5]: next to the one-hot codes, which say
        # nothing of which bins are neighbours. ``self.ordinal[j]``: how many of those token j reads
        # (they come after its one-hot inputs); ``self.ordinal_of[j]``: token j's index among them.
        ordinal = _recipe(c, train).ordinal_inputs  # the private recipe's under DP-SGD
        numeric = [kind != "category" and ordinal for kind, _, _ in self.tokens]
        self.ordinal = [sum(numeric[:j]) for j in range(len(widths) + 1)]
        self.ordinal_of = [self.ordinal[j] if numeric[j] else None for j in range(len(widths))]
        # Column j reads the one-hot tokens of columns < j (the first column a constant 1).
        self.nets = nn.ModuleList(_mlp(max(self.offsets[j], 1) + self.ordinal[j], c.hidden_dims, w)
                                  for j, w in enumerate(widths))
        # Under DP-SGD the rows come from a moving average of the weights over the steps (``finish``
        # puts it in place): post-processing of the private weights, so it spends no budget, and it
        # averages out part of the noise each step adds. Plain tensors, not in the state dict: a DP run
        # is never resumed, and the saved weights are the average itself.
        self.ema_decay = c.private.ema_decay if train.privacy.epsilon is not None else 0.0
        self._ema: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None  # (the average, the weights)
        self._ema_steps = 0

    @torch.no_grad()
    def after_step(self, phase: str) -> None:
        if not self.ema_decay:
            return
        if self._ema is None:  # from the first step's weights; the weights listed once, not per step
            weights = [p.detach() for p in self.nets.parameters()]
            self._ema = ([w.clone() for w in weights], weights)
        self._ema_steps += 1
        torch._foreach_lerp_(*self._ema, 1 - average_decay(self.ema_decay, self._ema_steps))

    @torch.no_grad()
    def finish(self) -> None:
        if self._ema is not None:
            average, weights = self._ema
            torch._foreach_copy_(weights, average)
            self._ema = None

    def phases(self, t: TrainSettings) -> list[Phase]:
        """One phase; without DP a numeric column's nets (its bin's and its place's) learn at
        ``numeric_lr``, a categorical column's at ``lr``, except on a small table: one whose
        recipe epochs make fewer than its ``min_steps`` steps, so that ``train.epochs: auto``
        raises them (a few thousand rows at batch 500), where the numbers' nets already train more
        passes and a faster rate memorises (gapminder: DCR share 0.546 -> 0.594). Under DP-SGD every
        net at the private recipe's rate."""
        recipe = _recipe(self.cfg, t)
        lr = recipe.lr or self.cfg.lr  # the private recipe's under DP-SGD (null: the model's)
        numeric = [p for (kind, _, _), net in zip(self.tokens, self.nets) if kind != "category"
                   for p in net.parameters()]
        faster = recipe is self.cfg and self.cfg.numeric_lr != lr and not self._small(t)
        rates = ((numeric, self.cfg.numeric_lr),) if faster else ()
        return [Phase("autoregressive", list(self.parameters()), lr, betas=(0.9, 0.999),
                      weight_decay=self.cfg.weight_decay, rates=rates)]

    def _small(self, t: TrainSettings) -> bool:
        """A small table: the recipe's epochs make fewer than ``min_steps`` steps over its rows, so
        that ``train.epochs: auto`` raises them (under a few thousand rows at batch 500). Unknown
        rows: not small."""
        return self.rows is not None and epochs_for(
            "auto", t.min_steps, batch_plan(t.batch_size, 1, self.batch_multiple, self.rows)[1], self.recipe,
        ) > self.recipe[0]

    def private_module(self) -> nn.Module:
        return self  # each row's loss is its own tokens' cross-entropies

    # -- tokens ----------------------------------------------------------------------------------

    def _edges(self, start: int, device: torch.device) -> torch.Tensor:
        """The bin edges of the numeric span at ``start`` (value_tokens) on ``device``: float64 (a
        level of 0.16 % of the rows is a narrow interval), float32 on MPS, which has no float64."""
        key = (start, device)
        if key not in self._edge_cache:
            dtype = torch.float32 if device.type == "mps" else torch.float64
            self._edge_cache[key] = torch.tensor(self.edges[start], dtype=dtype, device=device)
        return self._edge_cache[key]

    def _codes(self, rows: torch.Tensor) -> torch.Tensor:
        """[n, tokens] every token: a block's category, a numeric scalar's bin (and its part of it)."""
        out = []
        for kind, start, width in self.tokens:
            if kind == "category":
                out.append(rows[:, start:start + width].argmax(1))
                continue
            if self.edges is not None:
                e = self._edges(start, rows.device)
                p = torch.special.ndtr(rows[:, start].to(e.dtype) * _SCALE)
                drawn = torch.bucketize(p, e[1:-1], right=True).clamp_(0, len(e) - 2)
                if kind == "bin":
                    out.append(drawn)
                else:
                    place = (p - e[drawn]) / (e[drawn + 1] - e[drawn]).clamp_min(1e-300)
                    out.append((place * self.fine).long().clamp_(0, self.fine - 1))
                continue
            level = torch.special.ndtr(rows[:, start].float() * _SCALE) * self.bins
            drawn = level.long().clamp_(0, self.bins - 1)
            out.append(drawn if kind == "bin" else ((level - drawn) * self.fine).long().clamp_(0, self.fine - 1))
        return torch.stack(out, 1)

    def _context(self, onehot: torch.Tensor, places: torch.Tensor, j: int) -> torch.Tensor:
        if not j:
            return onehot.new_ones(onehot.shape[0], 1)
        if not self.ordinal[j]:
            return onehot[:, :self.offsets[j]]
        return torch.cat([onehot[:, :self.offsets[j]], places[:, :self.ordinal[j]]], 1)

    def _places(self, codes: torch.Tensor) -> torch.Tensor:
        """[n, ordinal tokens] each numeric token's code as its place among its width's, in [-0.5,
        0.5] (``ordinal_inputs``; [n, 0] without)."""
        cols = [_place(codes[:, j].float(), w) for j, (_, _, w) in enumerate(self.tokens)
                if self.ordinal_of[j] is not None]
        return torch.stack(cols, 1) if cols else codes.new_zeros(codes.shape[0], 0, dtype=torch.float32)

    # -- training --------------------------------------------------------------------------------

    def row_loss(self, phase: str, real: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Each row's loss ([n]): the sum of its tokens' cross-entropies given the tokens before."""
        loss = self._cross_entropies(real).sum(1)
        return loss, {"nll": loss.mean()}

    @torch.no_grad()
    def token_losses(self, rows: torch.Tensor) -> torch.Tensor:
        """Each token's mean cross-entropy (nats) over ``rows``, given the tokens before it as sampling
        reads them (no part noise): [tokens], in ``self.tokens``' order. Their sum is the mean of
        ``row_loss`` out of training (``benchmarks/heldout_curve.py`` reads held-out rows with it)."""
        was = self.training
        self.eval()
        losses = self._cross_entropies(rows).mean(0)
        self.train(was)
        return losses

    def _cross_entropies(self, real: torch.Tensor) -> torch.Tensor:
        """[n, tokens]: each row's cross-entropy of each token given the tokens before it."""
        codes = self._codes(real)
        onehot, places = self._onehot(codes), self._places(codes)
        # A category's net (and a column of levels' bin's) reads the parts redrawn in a part_noise share
        # of the rows (the other numeric nets read them as they are: a number follows another one's exact place).
        noise = self.training and self.cfg.part_noise > 0 and self.noise_read
        noisy_codes = self._noisy_parts(codes) if noise else None
        noisy = (self._onehot(noisy_codes), self._places(noisy_codes)) if noise else (onehot, places)
        return torch.stack([F.cross_entropy(net(self._context(*(noisy if self.noisy[j] else (onehot, places)), j)),
                                            codes[:, j], reduction="none")
                            for j, net in enumerate(self.nets)], 1)

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
        their columns of the one-hot input (``index``, [n, >= j]): a sum of those weight columns.
        With ``ordinal_inputs`` a numeric code's place is a function of the code, so its weight
        times that place is added to the code's column first: still one sum a row."""
        first = self.nets[j][0]
        if not j:  # the constant 1
            return (first.weight[:, 0] + first.bias).expand(index.shape[0], -1)
        k, o = self.offsets[j], self.ordinal[j]
        table = first.weight[:, :k]
        if o:
            place, which = self._column_places(first.weight.device)
            table = table + first.weight[:, k:k + o][:, which[:k]] * place[:k]
        return F.embedding_bag(index[:, :j], table.t().contiguous(), mode="sum") + first.bias

    def _column_places(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """For each column of the one-hot input: its code's place (``_places``; 0 for a category's
        column) and its token's index among the ordinal ones (0 for a category's: times a 0 place)."""
        if device not in self._place_cache:
            place, which = [], []
            for j, (_, _, w) in enumerate(self.tokens):
                i = self.ordinal_of[j]
                place += [_place(c, w) for c in range(w)] if i is not None else [0.0] * w
                which += [i if i is not None else 0] * w
            with torch.inference_mode(False):  # made while sampling, read by training too (the tests)
                self._place_cache[device] = (torch.tensor(place, device=device), torch.tensor(which, device=device))
        return self._place_cache[device]

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
                level, bin_of = drawn.float(), drawn
                if self.fine > 1:
                    continue  # the part inside the bin comes next
            else:
                level = level + drawn.float() / self.fine
            if self.edges is not None:  # uniform inside the drawn bin (or its part) of its edges
                e = self._edges(start, device)
                place = (level - bin_of.float()
                         + torch.rand(n, device=device, generator=generator) / (self.fine if kind == "part" else 1))
                p = e[bin_of] + place.to(e.dtype) * (e[bin_of + 1] - e[bin_of])
                z = torch.special.ndtri(p.clamp(1e-6, 1 - 1e-6)).float()
                out[:, start] = (z / _SCALE).clamp(-1.0, 1.0)
                continue
            # uniform inside the bin (or its part), in probability; back to the normal score
            u = (level + torch.rand(n, device=device, generator=generator) / (self.fine if kind == "part" else 1))
            z = torch.special.ndtri((u / self.bins).clamp(1e-6, 1 - 1e-6))
            out[:, start] = (z / _SCALE).clamp(-1.0, 1.0)
        return out
