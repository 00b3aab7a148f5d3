"""A diffusion-class table model (the TabDDPM / TabDiff family): one MLP denoiser, two processes.

* Numeric scalars: flow matching (a rectified flow) in the transformer's quantile-normal space.
  The transformer stores each numeric column as its normal score divided by 5, so ``5 * x`` is
  already a standard normal marginally: the flow starts from the very distribution the data has,
  and the tails are reached without any special handling.
* One-hot blocks: masked (absorbing-state) diffusion. At time ``t`` each categorical column is
  hidden with probability ``t``; the net predicts the hidden ones' categories (cross-entropy,
  weighted by 1/t as in the ELBO), and sampling reveals them step by step, each drawn from the
  predicted distribution. Outputs are
  exact categories, and conditioning is inpainting: the conditioned column starts revealed.
  (``categorical: gaussian`` instead runs the flow on the one-hot vectors and takes the argmax at
  the end: simpler, and measurably worse; kept for comparison.)

Both share the time ``t`` of a row: ``t = 1`` is pure noise with every column hidden, ``t = 0`` the
data. Rows come from an exponential moving average of the denoiser's weights.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.base import AveragedGenerator, OutputLayout, Phase, TabularModel
from pipeline.models.registry import register_model
from pipeline.models.transformer import NORMAL_SCALE as _SCALE  # scalars are normal scores / 5
from pipeline.progress import within
from pipeline.settings import ModelSettings, TrainSettings

# Rows denoised at once when sampling (bounds memory for any n). On a CPU a chunk whose activations
# stay in cache runs the matrix products near the machine's peak: the default 4 x 256 net made
# 183,000 row-evaluations a second in chunks of 4,096 rows, 131,000 in chunks of 16,384 (2 threads,
# docs/models.md#the-denoisers-width). A GPU needs far more rows at once to be busy.
_CHUNK, _CHUNK_CUDA = 4_096, 65_536
_MIN_T = 0.05  # the 1/t weight of the category loss is capped at 1/_MIN_T (its variance grows as t -> 0)


def sampling_precision(asked: str, device: torch.device) -> str:
    """``asked`` (auto | float32 | bfloat16) as it will run on ``device``: auto is bfloat16 where
    the device multiplies bf16 natively (a CUDA GPU that supports it; a CPU with avx512_bf16 or
    AMX, as oneDNN reports), else float32."""
    if asked != "auto":
        return asked
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    try:
        native = device.type == "cpu" and torch.backends.mkldnn.is_available() and \
            bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without the check: the safe choice
        native = False
    return "bfloat16" if native else "float32"


class Denoiser(nn.Module):
    """TabDDPM's MLP: project the noisy row, add an embedding of the time, then SiLU layers."""

    def __init__(self, in_dim: int, out_dim: int, dims: list[int], time_dim: int = 128):
        super().__init__()
        width = dims[0]
        self.time_dim = time_dim
        self.time = nn.Sequential(nn.Linear(time_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.proj = nn.Linear(in_dim, width)
        layers: list[nn.Module] = []
        for i, o in zip([width, *dims[:-1]], dims):
            layers += [nn.SiLU(), nn.Linear(i, o)]
        self.body = nn.Sequential(*layers, nn.SiLU())
        self.head = nn.Linear(dims[-1], out_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``t``: [n] times, or [1] shared by every row (sampling: the time net runs once)."""
        half = self.time_dim // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
        angles = 1000.0 * t.float()[:, None] * freqs[None]
        emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
        return self.head(self.body(self.proj(x) + self.time(emb)))


@register_model("diffusion")
class TabularDiffusion(AveragedGenerator, TabularModel):
    sample_chunk = _CHUNK  # rows denoised at once on a CPU
    private = True  # DP-SGD (train.privacy): private_module
    sample_chunk_cuda = _CHUNK_CUDA  # and on a GPU

    def __init__(self, layout: OutputLayout, cfg: ModelSettings, train: TrainSettings):
        super().__init__(layout)
        c = self.cfg = cfg.diffusion
        self.masked = c.categorical == "masked"
        self.n_num, self.n_cat, self.n_groups = layout.tanh_idx.numel(), layout.flat_index.numel(), len(layout.groups)
        # Masked diffusion also tells the net which columns are hidden (one flag per column).
        in_dim = self.n_num + self.n_cat + (self.n_groups if self.masked else 0)
        self.generator = Denoiser(in_dim, self.n_num + self.n_cat, c.hidden_dims)
        # The column (block) of every flat one-hot slot, to zero the slots of hidden columns; and its
        # inverse, the flat slot of each block's k-th category ([groups, width]; padding points at 0).
        self.register_buffer("slot_group", layout.group_mask.nonzero()[:, 0], persistent=False)
        group_slot = torch.zeros_like(layout.group_mask, dtype=torch.long)
        group_slot[layout.group_mask] = torch.arange(self.n_cat)
        self.register_buffer("group_slot", group_slot, persistent=False)
        self.init_average(c.ema_decay)  # rows come from the denoiser's weight average
        self.steps = c.sample_steps  # the generate section may ask for another count (use_sampling)

    def phases(self, t: TrainSettings) -> list[Phase]:
        return [Phase("denoiser", list(self.generator.parameters()), self.cfg.lr, betas=(0.9, 0.999),
                      weight_decay=self.cfg.weight_decay)]

    def prepare(self, data: torch.Tensor) -> None:
        self.prepare_average()

    def private_module(self) -> nn.Module:
        return self.generator  # each row's loss is its own: noise, time and hidden columns drawn per row

    def after_step(self, phase: str) -> None:
        self.update_average()

    def use_sampling(self, generate_cfg) -> dict:
        self.steps = generate_cfg.sample_steps or self.cfg.sample_steps
        self.precision = sampling_precision(generate_cfg.sample_precision, self.slot_group.device)
        return {"sample_steps": self.steps, "precision": self.precision}

    def compile_modules(self) -> None:
        self.generator.compile()  # the average is only sampled from

    # -- between rows and the processes' states --------------------------------------------------

    def _codes(self, rows: torch.Tensor) -> torch.Tensor:
        """[n, groups] category index of every one-hot block."""
        lay = self.layout
        return rows[:, lay.group_index].masked_fill(~lay.group_mask, -1.0).argmax(-1)

    def _one_hot(self, codes: torch.Tensor) -> torch.Tensor:
        """[n, n_cat]: the blocks of ``codes`` side by side, in the layout's flat order."""
        lay = self.layout
        padded = torch.zeros(codes.shape[0], *lay.group_mask.shape, device=codes.device)
        return padded.scatter_(-1, codes[..., None], 1.0)[:, lay.group_mask]

    def _logits(self, flat: torch.Tensor) -> torch.Tensor:
        """[n, groups, width] per-block logits from the flat output (padding at -inf)."""
        lay = self.layout
        padded = flat.new_full((flat.shape[0], *lay.group_mask.shape), float("-inf"))
        padded[:, lay.group_mask] = flat
        return padded

    def _rows(self, z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        lay = self.layout
        out = z.new_zeros(z.shape[0], lay.width)
        out[:, lay.tanh_idx] = (z / _SCALE).clamp(-1.0, 1.0)
        if self.n_groups:
            out[:, lay.flat_index] = self._one_hot(codes)
        return out

    def _input(self, z: torch.Tensor, codes: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """The net's input under masked diffusion: scalars, revealed blocks (hidden ones all zero), flags."""
        if not self.n_groups:
            return z
        shown = self._one_hot(codes) * (~hidden).float()[:, self.slot_group]
        return torch.cat([z, shown, hidden.float()], dim=1)

    # -- training --------------------------------------------------------------------------------

    def loss(self, phase: str, real: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms = self._row_terms(real)
        flow = terms["flow_loss"].mean()
        if "category_loss" in terms:
            cat = terms["category_loss"].mean()
            return flow + cat, {"flow_loss": flow, "category_loss": cat}
        return flow, {"flow_loss": flow}

    def row_loss(self, phase: str, real: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Each row's loss ([n]; its mean is ``loss``'s), and the batch's loss figures: DP-SGD
        clips each row's gradient of it."""
        terms = self._row_terms(real)
        return sum(terms.values()), {k: v.mean() for k, v in terms.items()}

    def _row_terms(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss terms of every row ([n] each): the flow's, and the hidden categories' under
        masked diffusion."""
        n = real.shape[0]
        t = torch.rand(n, 1, device=real.device)
        codes = self._codes(real) if self.n_groups else None
        x0 = real[:, self.layout.tanh_idx] * _SCALE
        if not self.masked and self.n_groups:  # the flow runs on the one-hot vectors too
            x0 = torch.cat([x0, self._one_hot(codes) * 2 - 1], dim=1)
        noise = torch.randn_like(x0)
        xt = (1 - t) * x0 + t * noise
        if self.masked and self.n_groups:
            hidden = torch.rand(n, self.n_groups, device=real.device) < t
            out = self.generator(self._input(xt, codes, hidden), t[:, 0])
            flow = ((out[:, :self.n_num] - (noise - x0)) ** 2).sum(1)
            logits = self._logits(out[:, self.n_num:])
            ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes.reshape(-1), reduction="none")
            # The masked-diffusion ELBO weights a hidden column by 1/t: the late, nearly revealed
            # rows (where columns must agree with each other) count as much as the early ones.
            # Measured on Adult: pair trends 0.960 -> 0.970, detection AUC 0.71 -> 0.66.
            cat = (ce.view(n, -1) * hidden / t.clamp_min(_MIN_T)).sum(1)
            return {"flow_loss": flow, "category_loss": cat}
        out = self.generator(xt, t[:, 0])
        return {"flow_loss": ((out - (noise - x0)) ** 2).sum(1)}

    # -- sampling --------------------------------------------------------------------------------

    # How rows are drawn (measured on Adult, benchmarks/sampler.py and docs/models.md#sampling):
    # "ab2": each flow step uses this step's and the last step's velocity (Adams-Bashforth,
    # second order, no extra network evaluation); "euler": this step's alone. "count": each row
    # reveals a set number of its hidden columns per step, the share (t - s) / t of them
    # (stochastically rounded), chosen at random; "random": each hidden column is revealed with
    # probability (t - s) / t, so some steps reveal several columns of a row at once from
    # independent draws, which costs pair trends when the steps are few.
    solver: str = "ab2"
    reveal: str = "count"
    precision: str = "float32"

    def _precision(self, device: torch.device):
        if self.precision == "bfloat16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def rows_at_once(self) -> int:
        """Rows one denoising pass holds, on the device the model is on (validate's memory estimate reads it)."""
        return self.sample_chunk_cuda if self.slot_group.device.type == "cuda" else self.sample_chunk

    @torch.inference_mode()
    def sample(self, n: int, generator: torch.Generator, condition: tuple[int, int] | None = None) -> torch.Tensor:
        chunk = self.rows_at_once
        starts = range(0, n, chunk)
        parts = [self._sample(min(chunk, n - i), generator, condition, (k, len(starts))) for k, i in enumerate(starts)]
        return torch.cat(parts) if parts else torch.zeros(0, self.layout.width, device=self.slot_group.device)

    def _sample(self, n: int, generator: torch.Generator, condition: tuple[int, int] | None,
                chunk: tuple[int, int] = (0, 1)) -> torch.Tensor:
        """``n`` rows (chunk ``chunk[0]`` of ``chunk[1]``: a long shard's progress lines count its steps)."""
        device = self.layout.tanh_idx.device
        net, steps = self.sampler, self.steps
        times = torch.linspace(1.0, 0.0, steps + 1, device=device)
        if not self.masked and self.n_groups:
            return self._sample_gaussian(n, generator, condition, times)
        lay = self.layout
        z = torch.randn(n, self.n_num, device=device, generator=generator)
        codes = torch.zeros(n, self.n_groups, dtype=torch.long, device=device)
        hidden = torch.ones(n, self.n_groups, dtype=torch.bool, device=device)
        # The net's input, kept in place between steps: scalars, the revealed one-hot slots, the
        # hidden flags. A revealed column's slot is set once, never rebuilt.
        x = torch.zeros(n, self.n_num + self.n_cat + self.n_groups, device=device)
        shown, flags = x[:, self.n_num:self.n_num + self.n_cat], x[:, self.n_num + self.n_cat:]
        flags.fill_(1.0)
        if condition is not None:  # inpainting: the conditioned column is known from the start
            codes[:, condition[0]], hidden[:, condition[0]] = condition[1], False
            shown[:, int(self.group_slot[condition[0], condition[1]])] = 1.0
            flags[:, condition[0]] = 0.0
        velocity = None
        for step, (t, s) in enumerate(zip(times[:-1], times[1:])):
            within(chunk[0] * steps + step, chunk[1] * steps, "denoising step")
            x[:, :self.n_num] = z
            with self._precision(device):
                out = net(x, t.reshape(1)).float()
            v = out[:, :self.n_num]
            if self.solver == "ab2" and velocity is not None:  # Adams-Bashforth 2: the last velocity too
                v = 1.5 * v - 0.5 * velocity
            velocity = out[:, :self.n_num]
            z = z + (s - t) * v
            if not self.n_groups:
                continue
            # The share (t - s) / t of the hidden columns is revealed (all of them at s = 0), each
            # as a draw from the predicted categories (Gumbel-max, from the generator alone).
            u = torch.rand(n, self.n_groups, device=device, generator=generator)
            if self.reveal == "count":
                left = hidden.sum(1, dtype=torch.float32)
                keep = torch.floor(left * (s / t) + torch.rand(n, device=device, generator=generator))
                order = u.masked_fill(~hidden, 2.0).argsort(1).argsort(1)  # a random order of the hidden ones
                reveal = hidden & (order < (left - keep)[:, None])
            else:
                reveal = hidden & (u < (t - s) / t)
            # Only the revealed (row, column) pairs draw: each column once per row over all the
            # steps, not every column at every step.
            rows, groups = reveal.nonzero(as_tuple=True)
            logits = out[:, self.n_num:][rows[:, None], self.group_slot[groups]].masked_fill_(
                ~lay.group_mask[groups], float("-inf"))
            g = torch.rand(logits.shape, device=device, generator=generator).clamp_min_(1e-20)
            drawn = (logits - torch.log(-torch.log(g))).argmax(-1)
            codes[rows, groups] = drawn
            shown[rows, self.group_slot[groups, drawn]] = 1.0
            hidden &= ~reveal
            flags.copy_(hidden)
        return self._rows(z, codes)

    def _sample_gaussian(self, n: int, generator: torch.Generator, condition: tuple[int, int] | None,
                         times: torch.Tensor) -> torch.Tensor:
        device, net = times.device, self.sampler
        x = torch.randn(n, self.n_num + self.n_cat, device=device, generator=generator)
        if condition is not None:  # inpainting: the conditioned block follows its known path
            cols = self.n_num + self.group_slot[condition[0], self.layout.group_mask[condition[0]]]
            known = -torch.ones(cols.numel(), device=device)
            known[condition[1]] = 1.0
            start = x[:, cols].clone()
        for t, s in zip(times[:-1], times[1:]):
            if condition is not None:
                x[:, cols] = (1 - t) * known + t * start
            with self._precision(device):
                v = net(x, t.reshape(1)).float()
            x = x + (s - t) * v
        codes = self._logits(x[:, self.n_num:]).argmax(-1)
        if condition is not None:
            codes[:, condition[0]] = condition[1]
        return self._rows(x[:, :self.n_num], codes)

    # -- weights ---------------------------------------------------------------------------------

    def inference_state(self) -> dict[str, torch.Tensor]:
        return self.averaged_state()

    def load_inference_state(self, state: dict[str, torch.Tensor]) -> None:
        rest = self.load_averaged_state(state)
        if rest:
            raise RuntimeError(f"model.pt does not fit the diffusion architecture: {sorted(rest)[:5]}")
