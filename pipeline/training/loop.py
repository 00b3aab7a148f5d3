"""The training loop: epochs of device-side batches, one optimiser step per model phase.

It knows nothing of GANs or VAEs: a model lists its phases and computes each phase's loss.
Checkpoints are plain dicts of state dicts and tensors (``torch.load(..., weights_only=True)``).
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from pipeline import cancel
from pipeline.errors import CheckpointError, ConfigError, InputDataError
from pipeline.files import atomic_path
from pipeline.models.base import GenerativeModel
from pipeline.progress import Progress
from pipeline.settings import TrainSettings, epochs_for
from pipeline.training import distributed
from pipeline.training.private import DPSGD, Budget

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    history: list[dict[str, float]] = field(default_factory=list)
    planned: tuple[int, int] | None = None  # (epochs asked for, epochs to make) as the checkpoint's run had them
    privacy: dict | None = None  # DP-SGD's record (pipeline.training.private.DPSGD.close), when it ran


def pick_device(name: str) -> torch.device:
    """``auto`` = cuda, then mps, then cpu; an explicit device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but torch sees no CUDA device (use auto or cpu)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("train.device is 'mps' but torch sees no MPS device (use auto or cpu)")
    return torch.device(name)


def lr_scale(epoch: int, epochs: int, decay: float) -> float:
    """The learning-rate factor of ``epoch`` (0-based) in a run of ``epochs``: 1, then falling
    linearly to zero over the last ``decay`` share of the epochs (0: constant). A share and not a
    count of epochs, so that fewer epochs (``--set train.epochs=10``, or a budget's cut) decay over
    their own last part instead of running at a sliver of the rate throughout."""
    span = decay * epochs
    return min(1.0, (epochs - epoch) / span) if span > 0 else 1.0


def make_optimizers(model: GenerativeModel, cfg: TrainSettings) -> dict[str, torch.optim.Optimizer]:
    return {
        p.name: torch.optim.Adam(p.groups(), lr=p.lr, betas=p.betas, weight_decay=p.weight_decay)
        for p in model.phases(cfg)
    }


def save_checkpoint(path: Path, model: GenerativeModel, opts: dict[str, torch.optim.Optimizer],
                    state: TrainState, batch_gen: torch.Generator, fingerprint: str, world: int = 1,
                    planned: tuple[int, int] | None = None) -> None:
    blob = {
        "world_size": world,
        "model": model.state_dict(),
        "optimizers": {k: o.state_dict() for k, o in opts.items()},
        "epoch": state.epoch,
        # (epochs asked for, epochs the run will make): a budget's cut, which the schedule follows
        **({"epochs_planned": list(planned)} if planned else {}),
        "history": state.history,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "batch_rng": batch_gen.get_state(),
        "fingerprint": fingerprint,
    }
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def load_tensors(path: Path, fix: str) -> dict:
    """``torch.load`` of a file this pipeline wrote (tensors and plain containers only). Anything
    else is refused with a one-line error instead of torch's advice to unpickle it (which could
    run code)."""
    if not Path(path).is_file():
        raise InputDataError(path, f"not found; {fix}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever the file is, it is refused in one line
        # torch's weights-only loader raises UnpicklingError for any Python object it will not build.
        why = "it holds Python objects, not only tensors (refused: unpickling could run code)" \
            if type(exc).__name__ == "UnpicklingError" else "truncated or not a torch file"
        raise InputDataError(path, f"cannot be loaded: {why}; {fix}") from None
    if not isinstance(blob, dict):
        raise InputDataError(path, f"cannot be loaded: holds a {type(blob).__name__}, not a dict of tensors; {fix}")
    return blob


def checkpoint_info(path: Path) -> tuple[str | None, int]:
    """(fingerprint, epochs done) of a checkpoint; (None, 0) if it cannot be read."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        return blob.get("fingerprint"), int(blob.get("epoch", 0))
    except Exception:  # noqa: BLE001 - a truncated or foreign file: not something to resume from
        return None, 0


def load_checkpoint(path: Path, model: GenerativeModel, opts: dict[str, torch.optim.Optimizer],
                    batch_gen: torch.Generator, fingerprint: str, restore_rng: bool = True) -> TrainState:
    """Load weights, optimiser states and history; and the RNG states when ``restore_rng`` and the
    checkpoint came from one process (so a one-process resume continues exactly)."""
    blob = load_tensors(path, "delete it or train without --resume")
    if blob.get("fingerprint") != fingerprint:
        raise CheckpointError(
            f"{path}: checkpoint was made from other data or params (fingerprint {blob.get('fingerprint')}, "
            f"now {fingerprint}); delete it or train without --resume"
        )
    model.load_state_dict(blob["model"])
    for k, o in opts.items():
        o.load_state_dict(blob["optimizers"][k])
    if restore_rng and int(blob.get("world_size", 1)) == 1:
        torch.set_rng_state(blob["torch_rng"])
        if blob["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(blob["cuda_rng"])
        batch_gen.set_state(blob["batch_rng"])
    return TrainState(epoch=int(blob["epoch"]), history=list(blob["history"]),
                      planned=tuple(blob["epochs_planned"]) if "epochs_planned" in blob else None)


def rank_rows(data: torch.Tensor, world: int, rank: int, rank_share: bool, multiple: int,
              ddp: bool) -> torch.Tensor:
    """The rows this rank trains on: every rank as many (so the same number of steps and
    collectives), at least one batch of ``multiple``. ``data`` is this rank's share already with
    ``rank_share``; else each rank takes a strided view of the table."""
    n = data.shape[0] if rank_share else data.shape[0] // world
    if n < multiple:
        raise InputDataError("training data", f"{n * world if rank_share else data.shape[0]} rows: fewer than one "
                             f"batch of {multiple}" + (f" per rank ({world} ranks)" if ddp else ""))
    return data if rank_share or not ddp else data[rank::world][:n]


def batch_plan(batch_size: int, world: int, multiple: int, n: int) -> tuple[int, int]:
    """(rows per step on this rank, steps per epoch): the global batch split across the ranks, each
    part a multiple of the model's packing and at most the rank's ``n`` rows."""
    batch = min(max(batch_size // world // multiple, 1) * multiple, n // multiple * multiple)
    return batch, max(1, n // batch)


def planned_epochs(epochs: int, planned: tuple[int, int] | None) -> int:
    """The epochs this run makes: ``epochs``, or the cut a budget made of them in the run a
    checkpoint resumes (the same schedule)."""
    return min(epochs, planned[1]) if planned and planned[0] == epochs else epochs


def set_learning_rates(opts: dict[str, torch.optim.Optimizer], base_lr: dict[str, list[float]], scale: float) -> None:
    """Each phase's optimiser's groups at their base rates times ``scale`` (``lr_scale``)."""
    for name, opt in opts.items():
        for group, lr in zip(opt.param_groups, base_lr[name]):
            group["lr"] = lr * scale


def train_epoch(model: GenerativeModel, opts: dict[str, torch.optim.Optimizer], data: torch.Tensor,
                batch_gen: torch.Generator, batch: int, steps: int, amp: contextlib.AbstractContextManager,
                bar: Progress, world: int = 1, phase_params: dict[str, list] | None = None,
                dp: DPSGD | None = None) -> dict[str, torch.Tensor]:
    """One pass over ``data`` in a random order: per batch, one optimiser step per model phase
    (gradients averaged over the ranks when ``phase_params`` is given). Returns the sums of the
    model's loss figures over the steps, still on the device. Under DP-SGD (``dp``) the batches are
    Poisson samples instead (``steps`` of them, each row in each with probability batch / rows)."""
    if dp is not None:
        return _private_epoch(model, opts, data, steps, amp, bar, dp)
    sums: dict[str, torch.Tensor] = {}
    # Batches are drawn on the device: no host round trip per step.
    order = torch.randperm(data.shape[0], device=data.device, generator=batch_gen)
    started = time.perf_counter()
    for step in range(steps):
        if step and cancel.requested() is not None and not _ends_soon(step, steps, started, world):
            cancel.check()  # abandoned: the last checkpoint stays what a resume continues from
        real = data[order[step * batch:(step + 1) * batch]]
        for name, opt in opts.items():
            opt.zero_grad(set_to_none=True)
            with amp:
                loss, figures = model.loss(name, real)
            loss.backward()
            if phase_params is not None:
                distributed.average_gradients(phase_params[name], world)
            opt.step()
            model.after_step(name)
            for k, v in figures.items():
                sums[k] = sums.get(k, 0) + v.detach().float()
        bar.within(step + 1, steps, "step")  # off a terminal, a long epoch's lines say how far it is
    return sums


def _private_epoch(model: GenerativeModel, opts: dict[str, torch.optim.Optimizer], data: torch.Tensor, steps: int,
                   amp: contextlib.AbstractContextManager, bar: Progress, dp: DPSGD) -> dict[str, torch.Tensor]:
    """``train_epoch`` under DP-SGD: one phase, Poisson batches, each step counted by the accountant."""
    sums: dict[str, torch.Tensor] = {}
    (name, opt), = opts.items()
    started = time.perf_counter()
    with warnings.catch_warnings():  # torch's note, every step, that the rows (inputs) need no gradient
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for step in range(steps):
            if step and cancel.requested() is not None and not _ends_soon(step, steps, started, 1):
                cancel.check()
            real = dp.batch_of(data)
            opt.zero_grad(set_to_none=True)
            if real.shape[0]:
                with amp:
                    row_loss, figures = model.row_loss(name, real)
                dp.backward(row_loss)
                for k, v in figures.items():
                    sums[k] = sums.get(k, 0) + v.detach().float()
            else:
                dp.no_rows()
            opt.step()  # clips each row's gradient, adds the noise, then Adam's step
            dp.stepped()
            model.after_step(name)
            bar.within(step + 1, steps, "step")
    return sums


def _ends_soon(step: int, steps: int, started: float, world: int) -> bool:
    """Whether a cancelled epoch is finished rather than abandoned: it would end within
    ``cancel.GRACE_SECONDS`` at its pace so far (so the whole epoch is checkpointed). Under torchrun
    the ranks could judge differently and wait on each other: there it is always abandoned."""
    if world > 1:
        return False
    return (time.perf_counter() - started) / step * (steps - step) <= cancel.GRACE_SECONDS


def mean_over_ranks(model: GenerativeModel, sums: dict[str, torch.Tensor], world: int,
                    device: torch.device) -> dict[str, torch.Tensor]:
    """After an epoch under torchrun: rank 0's BatchNorm statistics on every rank (the weights
    already agree), and each loss figure's sum averaged over the ranks."""
    distributed.broadcast_state(model)
    keys = sorted(sums)
    if not keys:
        return sums
    together = torch.stack([sums[k] for k in keys]).to(device)
    together = together.cpu() if device.type == "cpu" else together
    torch.distributed.all_reduce(together)
    return {k: v / world for k, v in zip(keys, together)}


def plan_to_budget(budget_seconds: float, asked: int, epochs: int, done: int, first: int, elapsed: float,
                  decay: float) -> int:
    """The epochs to make: those that fit ``budget_seconds`` at the pace of the ``done - first``
    epochs this run made in ``elapsed`` seconds, never fewer than are done nor more than ``asked``.
    The plan is made again after every epoch, from the pace of all of them, so a slow first epoch
    (warming up, or a machine busy for a while) does not fix it: a plan already cut to ``epochs``
    grows back while its learning rate has not begun to fall (``lr_decay``), so the rate never
    rises again; once it falls, the plan can only shrink."""
    per_epoch = elapsed / (done - first)
    fits = min(asked, max(done, first + int(budget_seconds / max(per_epoch, 1e-9))))
    if fits > epochs and lr_scale(done, epochs, decay) < 1.0:
        return epochs
    return fits


def checkpoint_due(done: int, every: int, epochs: int) -> bool:
    """Every ``every`` epochs, and after the last one."""
    return done % every == 0 or done == epochs


def fit(
    model: GenerativeModel,
    data: torch.Tensor,
    cfg: TrainSettings,
    seed: int,
    checkpoint: Path | None = None,
    resume: bool = False,
    fingerprint: str = "",
    on_epoch: Callable[[TrainState], None] | None = None,
    rank_share: bool = False,
    budget: Budget | None = None,
) -> TrainState:
    """Train ``model`` on ``data`` (already on the model's device) for ``cfg.epochs`` epochs (``auto``:
    ``pipeline.settings.epochs_for``).

    Under torchrun (``pipeline.training.distributed``) each rank trains on its shard of ``data``
    (``data`` is that shard already with ``rank_share``: every rank must then hold as many rows)
    with its part of each global batch of ``cfg.batch_size`` rows, gradients are averaged per
    phase, and only rank 0 writes checkpoints and calls ``on_epoch``.

    ``budget``: train with DP-SGD (``pipeline.training.private``) within its DP-SGD part, in one
    process, from the start (never resumed: the accountant's history is this run's steps).
    """
    # Seeds, optimisers, and the state a resumed run continues from.
    ddp = distributed.current()
    world, rank = (ddp.world, ddp.rank) if ddp else (1, 0)
    device = data.device
    torch.manual_seed(seed)
    batch_gen = torch.Generator(device=device).manual_seed(seed)
    opts = make_optimizers(model, cfg)
    base_lr = {name: [g["lr"] for g in opt.param_groups] for name, opt in opts.items()}  # before a resume's rates
    phase_params = {p.name: p.params for p in model.phases(cfg)}
    state = TrainState()
    if budget is not None and (ddp or resume):
        raise ConfigError("train.privacy: a DP-SGD run trains in one process from its first step (no "
                          "train.distributed, no --resume); train afresh")
    if resume and checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint, model, opts, batch_gen, fingerprint, restore_rng=world == 1)
        log.info("resumed from %s after epoch %d", checkpoint, state.epoch)

    # This rank's rows and batches.
    rank_share = rank_share and ddp is not None
    if rank_share and model.needs_whole_table:
        raise ValueError(f"{type(model).__name__} draws from the whole table: give every rank all of it")
    model.prepare(data)  # statistics of the whole table (e.g. category frequencies), on every rank
    data = rank_rows(data, world, rank, rank_share, model.batch_multiple, ddp is not None)
    if ddp:
        distributed.broadcast_state(model)  # one starting point, whatever each rank built or loaded
    batch, steps = batch_plan(cfg.batch_size, world, model.batch_multiple, data.shape[0])
    asked = epochs_for(cfg.epochs, cfg.min_steps, steps, model.recipe)  # auto: more on a small table
    # bf16 autocast on CUDA: tensor-core matmuls, no loss scaling needed (unlike fp16).
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if cfg.amp and device.type == "cuda"
           else contextlib.nullcontext())
    dp = None
    if budget is not None:
        dp = DPSGD(model.private_module(), opts, budget, cfg.privacy, data.shape[0], batch, asked * steps, device)
        log.info("DP-SGD: noise multiplier %.4f for %d steps at sampling rate %.4g (epsilon %.3g, delta %.3g%s; "
                 "%s accountant)", dp.noise, dp.planned, dp.rate, budget.sgd_epsilon, budget.sgd_delta,
                 " with the transformer's histograms" if budget.joint else "", dp.kind)
    if cfg.compile and dp is None:  # (Opacus' hooks need the plain modules)
        model.compile_modules()
    model.train()

    # The epochs: each at its learning rate, checkpointed, and cut when a budget's time runs out.
    writer = rank == 0
    epochs = planned_epochs(asked, state.planned)  # cut to what fits budget_seconds, if one is set
    bar = Progress("train", epochs, "epoch", initial=state.epoch, enabled=writer)
    started, first = time.perf_counter(), state.epoch
    # Cancellation (``pipeline.cancel``): deferred, so that a signal never interrupts a step. An epoch
    # under way is finished if it ends within the grace, else abandoned (``train_epoch``); between
    # epochs the last whole one is checkpointed, due or not, and the loop stops.
    saved = state.epoch  # the epochs the checkpoint on disk holds
    with bar, cancel.deferred():  # the bar is closed however the loop ends (its heartbeat thread stops)
        while state.epoch < epochs:
            if cancel.requested() is not None:  # between epochs: the last whole one is kept, due or not
                if writer and checkpoint is not None and state.epoch > saved:
                    save_checkpoint(checkpoint, model, opts, state, batch_gen, fingerprint, world, (asked, epochs))
                cancel.check()
            epoch, t0 = state.epoch, time.perf_counter()
            if cfg.lr_decay:  # from the epoch and the epochs this run makes alone (a resume continues it)
                set_learning_rates(opts, base_lr, lr_scale(epoch, epochs, cfg.lr_decay))
            if ddp:  # per-rank draws from (seed, rank, epoch): a resume of any world size needs no RNG state
                torch.manual_seed(distributed.rank_seed(seed, rank, epoch))
                batch_gen.manual_seed(distributed.rank_seed(seed, rank, epoch))
            sums = train_epoch(model, opts, data, batch_gen, batch, steps, amp, bar, world,
                               phase_params if ddp else None, dp)
            if ddp:
                sums = mean_over_ranks(model, sums, world, device)
            # .item() is a device sync point: once per epoch, not per step.
            row = {"epoch": epoch + 1, **{k: float(v.item()) / steps for k, v in sums.items()},
                   **({"epsilon": dp.spent()} if dp else {}), "seconds": time.perf_counter() - t0}
            state.epoch, state.history = epoch + 1, state.history + [row]
            bar.advance(1, rows=steps * batch * world, **{k: row[k] for k in sums})
            if cfg.budget_seconds and not ddp:  # (under torchrun the ranks could cut differently)
                elapsed = time.perf_counter() - started
                fits = plan_to_budget(cfg.budget_seconds, asked, epochs, state.epoch, first, elapsed, cfg.lr_decay)
                if fits != epochs:
                    log.info("train.budget_seconds %.0f: %d of %d epochs fit (%.2fs each so far)", cfg.budget_seconds,
                             fits, asked, elapsed / (state.epoch - first))
                    epochs = fits
                    bar.set_total(epochs)
            if writer and checkpoint is not None and checkpoint_due(state.epoch, cfg.checkpoint_every, epochs):
                save_checkpoint(checkpoint, model, opts, state, batch_gen, fingerprint, world, (asked, epochs))
                saved = state.epoch
            if writer and on_epoch is not None:
                on_epoch(state)
    if dp is not None:
        state.privacy = dp.close()
    model.finish()
    model.eval()
    if ddp and not distributed.replicas_agree(model):
        raise RuntimeError(f"rank {rank}: the model replicas differ after training (gradients were not averaged)")
    return state
