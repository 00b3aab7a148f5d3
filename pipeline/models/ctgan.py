"""A conditional tabular GAN with the ideas of CTGAN (Xu et al. 2019): a conditional vector over
the categorical columns with training-by-sampling, so rare categories are learned; a PacGAN critic
and WGAN-GP loss; the generator also pays a cross-entropy for missing its condition.

Everything is vectorised on the device: a batch's conditions, the real rows that match them, and
the conditional loss are a handful of tensor ops, with no Python loop over rows or columns.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.models.base import OutputLayout, activate
from pipeline.models.gan import TabularGAN, gradient_penalty
from pipeline.models.registry import register_model
from pipeline.settings import ModelSettings, TrainSettings


@register_model("ctgan")
class ConditionalGAN(TabularGAN):
    needs_whole_table = True  # training-by-sampling draws real rows of each category from all of them

    def __init__(self, layout: OutputLayout, cfg: ModelSettings, train: TrainSettings):
        groups = [layout.groups[g] for g in layout.category_groups]
        self.cond_dim = sum(s.width for s in groups)
        super().__init__(layout, cfg, train)
        self.log_frequency = cfg.gan.log_frequency
        n_cols = len(groups)
        width = max((s.width for s in groups), default=1)
        # Per categorical column: where its one-hot block starts in the cond vector, and the
        # category frequencies (filled by prepare(); buffers, so they travel with the weights).
        offsets = (torch.tensor([0] + [s.width for s in groups[:-1]], dtype=torch.long).cumsum(0) if groups
                   else torch.zeros(0, dtype=torch.long))
        self.register_buffer("cond_offsets", offsets)
        self.register_buffer("cond_widths", torch.tensor([s.width for s in groups], dtype=torch.long))
        # Integer counts: exact however many rows (float32 stops at 2**24).
        self.register_buffer("category_counts", torch.zeros(n_cols, width, dtype=torch.long))
        self.register_buffer("group_of_col", torch.tensor(layout.category_groups, dtype=torch.long), persistent=False)
        self.data_starts = [s.start for s in groups]

    # -- training-by-sampling ------------------------------------------------------------------

    def prepare(self, data: torch.Tensor) -> None:
        """Index the training rows by category, once: rows sorted per column, with offsets."""
        super().prepare(data)
        self.data = data
        if not self.cond_dim:
            return
        codes = torch.stack([data[:, s:s + int(w)].argmax(1) for s, w in zip(self.data_starts, self.cond_widths)])
        counts = self.category_counts.zero_()
        counts.scatter_add_(1, codes, torch.ones_like(codes))
        self.rows_by_category = codes.argsort(dim=1, stable=True)  # [cols, n]
        self.category_starts = torch.cumsum(counts, 1) - counts  # first sorted position per category

    def _draw_conditions(self, n: int, log_frequency: bool, generator: torch.Generator | None = None):
        """A column uniformly, then a category by (log) frequency; returns (cond, col, cat)."""
        device = self.category_counts.device
        col = torch.randint(len(self.cond_widths), (n,), device=device, generator=generator)
        counts = self.category_counts.float()
        weights = torch.log1p(counts) if log_frequency else counts
        cat = torch.multinomial(weights[col], 1, generator=generator).squeeze(1)
        cond = torch.zeros(n, self.cond_dim, device=device)
        cond[torch.arange(n, device=device), self.cond_offsets[col] + cat] = 1.0
        return cond, col, cat

    def _real_rows(self, col: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        """For each (column, category), a uniformly drawn training row that has it."""
        count = self.category_counts[col, cat]
        pick = torch.minimum((torch.rand(col.shape[0], device=col.device) * count).long(), count - 1)
        pos = self.category_starts[col, cat] + pick
        return self.data[self.rows_by_category[col, pos]]

    def _generate(self, cond: torch.Tensor, generator: torch.Generator | None = None,
                  net: torch.nn.Module | None = None) -> torch.Tensor:
        z = torch.randn(cond.shape[0], self.noise_dim, device=cond.device, generator=generator)
        return (net or self.generator)(torch.cat([z, cond], dim=1))

    def _condition_loss(self, raw: torch.Tensor, col: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of each row's conditioned column against its condition (one op)."""
        lay = self.layout
        logits = raw[:, lay.group_index].masked_fill(~lay.group_mask, float("-inf"))  # [B, G, W]
        picked = logits[torch.arange(raw.shape[0], device=raw.device), self.group_of_col[col]]
        return F.cross_entropy(picked, cat)

    def loss(self, phase: str, real: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not self.cond_dim:  # no categorical column: a plain GAN
            return super().loss(phase, real)
        n = real.shape[0]
        if phase == "critic":
            cond_f, _, _ = self._draw_conditions(n, self.log_frequency)
            cond_r, col_r, cat_r = self._draw_conditions(n, self.log_frequency)
            real = torch.cat([self._real_rows(col_r, cat_r), cond_r], dim=1)
            with torch.no_grad():
                fake = torch.cat([activate(self._generate(cond_f), self.layout), cond_f], dim=1)
            wdist = self.critic(real).mean() - self.critic(fake).mean()
            gp = gradient_penalty(self.critic, real, fake)
            return -wdist + self.gp_weight * gp, {"critic_loss": -wdist, "gradient_penalty": gp}
        cond, col, cat = self._draw_conditions(n, self.log_frequency)
        raw = self._generate(cond)
        adv = -self.critic(torch.cat([activate(raw, self.layout), cond], dim=1)).mean()
        ce = self._condition_loss(raw, col, cat)
        return adv + ce, {"generator_loss": adv, "condition_loss": ce}

    # -- sampling --------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, condition: tuple[int, int] | None = None) -> torch.Tensor:
        if not self.cond_dim:
            return super().sample(n, generator)
        # Conditions drawn by the true category frequencies, so the rows follow the real marginals.
        cond, _, _ = self._draw_conditions(n, log_frequency=False, generator=generator)
        if condition is not None and condition[0] in self.layout.category_groups:
            col = self.layout.category_groups.index(condition[0])
            cond.zero_()
            cond[:, self.cond_offsets[col] + condition[1]] = 1.0
        return activate(self._generate(cond, generator, self.sampler), self.layout, generator=generator, hard=True)

    def inference_state(self) -> dict[str, torch.Tensor]:
        state = super().inference_state()
        state.update({k: getattr(self, k) for k in ("cond_offsets", "cond_widths", "category_counts")})
        return state

    def load_inference_state(self, state: dict[str, torch.Tensor]) -> None:
        state = dict(state)  # the caller's dict stays whole
        for k in ("cond_offsets", "cond_widths", "category_counts"):
            getattr(self, k).copy_(state.pop(k))
        super().load_inference_state(state)
