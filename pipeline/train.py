"""Stage 2, train: fit the transformer and the model named in params; save weights + JSON metadata.

Tables and images go through the same loop: the modality's handler (``pipeline.modalities``) turns
the prepared data into the tensor (a table through the fitted transformer, images as
``[label, pixels...]`` rows).

Output ``<work>/<dataset>/model/``: ``model.pt`` (a state dict of tensors, loaded with
``weights_only=True``) and ``model.json`` (model name and config, transformer state and schema, or
the image spec; training summary). ``train_log.csv`` holds one row of losses per epoch; a resumable checkpoint is
kept under ``checkpoints/`` every ``train.checkpoint_every`` epochs.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import time
from dataclasses import dataclass

import torch

from pipeline.artifacts import StagePaths
from pipeline.config import Config
from pipeline.errors import ConfigError
from pipeline.files import atomic_dir, atomic_path, read_json, sha256_files, write_json
from pipeline.modalities import modality_of
from pipeline.models.registry import AUTO, AUTO_MODALITY, check_model, model_class, private_models
from pipeline.models.saved import model_hash
from pipeline.options import Option
from pipeline.settings import epochs_for
from pipeline.training import distributed
from pipeline.training.auto import choose
from pipeline.training.loop import TrainState, batch_plan, checkpoint_info, fit, pick_device
from pipeline.training.private import Budget, budget, secret_seed
from pipeline.training.resume import Resume
from pipeline.training.setup import build_model

log = logging.getLogger(__name__)

LOG_SECONDS = 5.0  # the loss log is rewritten at most this often while training

# This stage's own command-line options (the CLI adds them; a flow run gives each its ``flow`` value).
OPTIONS = (
    Option("--resume", "continue from the last checkpoint (an error if it does not match); "
                       "if-compatible: only when it matches, else start afresh",
           {"nargs": "?", "const": "yes", "choices": ["yes", "if-compatible"], "default": "no"},
           keyword="resume", convert=Resume.of,
           flow="if-compatible"),  # a retry (or a re-run) of an orchestrated run continues from its checkpoint
)


@dataclass
class TrainResult:
    dataset: str
    epochs: int
    seconds: float
    device: str
    model_hash: str
    final: dict[str, float]


def _write_log(paths: StagePaths, history: list[dict[str, float]]) -> None:
    """The loss log, one row per epoch; and, for ``dvc plots show``, one CSV (epoch, loss) per loss
    column in ``train_plots/``: DVC draws a column only from a file that has it, and each model logs
    its own losses (flow_loss; critic_loss, generator_loss; reconstruction_loss, ...)."""
    if not history:
        return
    with atomic_path(paths.train_log) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
    losses = [c for c in history[0] if c not in ("epoch", "seconds")]
    for old in paths.train_plots.glob("*.csv"):  # another model's, from an earlier run
        if old.stem not in losses:
            old.unlink(missing_ok=True)
    for loss in losses:
        with atomic_path(paths.train_plots / f"{loss}.csv") as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", loss])
            w.writerows([row["epoch"], row[loss]] for row in history)


def run(cfg: Config, dataset: str, resume: Resume | bool | str = Resume.NO) -> TrainResult:
    """Train the configured model on the prepared data of ``dataset``.

    ``resume``: True continues from the checkpoint (an error if it was made from other data or
    params); ``"if-compatible"`` continues from it when it matches and starts afresh otherwise
    (what a retried or re-run orchestrated task wants)."""
    cfg = cfg.for_dataset(dataset)  # itself when resolved already (run_stage resolves it)
    resume = Resume.of(resume)
    paths = StagePaths.of(cfg.work_dir, dataset)
    handler = modality_of(paths)
    auto = cfg.model.name == AUTO
    _check_model(cfg, dataset, paths, handler, resume)
    _check_private(cfg, dataset, resume)
    dcfg = cfg.train.distributed
    if dcfg.nproc_per_node * dcfg.nnodes > 1 and not distributed.launched():
        return _launch_ranks(cfg, dataset, paths, resume)
    rank = None
    if distributed.launched():
        rank, device = distributed.setup(dcfg.backend, cfg.train.device)
        log.info("rank %d of %d on %s", rank.rank, rank.world, device)
    else:
        device = pick_device(cfg.train.device)

    model_settings, train_settings = cfg.model.settings(), cfg.train.settings()  # what the model and loop take
    t0 = time.perf_counter()
    # Under torchrun a table rank reads and holds only its share of the rows, unless the model
    # draws from all of them (ctgan's training-by-sampling).
    ranked = rank is not None and not model_class(cfg.model.name).needs_whole_table
    rank_slice = (rank.rank, rank.world) if ranked else None
    dp_budget = _private_budget(cfg, paths)  # None unless train.privacy.epsilon
    data = handler.training_data(paths, model_settings, cfg.seed, device, cfg.train.max_rows, rank_slice,
                                 **({"privacy": _private_fit(cfg, dataset, dp_budget)} if dp_budget else {}))
    if dp_budget is not None and "private" not in data.described["transformer"]:  # no guarantee it lacks
        raise ConfigError("train.privacy: the transformer was fitted from exact statistics of the real rows, "
                          "outside the budget; this build cannot train privately, set train.privacy.epsilon: null")
    if dp_budget is not None:  # what the histograms spent: the RDP accountant adds it to DP-SGD's
        dp_budget = dp_budget.with_statistics(data.described["transformer"]["private"])
    if data.rank_share:
        log.info("rank %d of %d: holds %d of the %d training rows", rank.rank, rank.world, data.tensor.shape[0],
                 data.rows)
    t_transform = time.perf_counter() - t0
    log.info("transform: %d rows -> %d features in %.2fs", *data.tensor.shape, t_transform)

    torch.manual_seed(cfg.seed)
    if auto:  # every candidate trained and scored on a validation part of the training rows; the best kept
        model, state, chosen = choose(data.frame, data.tensor, data.codec, data.schema, model_settings,
                                      train_settings, cfg.seed, device)
        _write_log(paths, state.history)
    else:
        model = build_model(model_settings, train_settings, data.codec).to(device)
        state = _fit(cfg, model, data.tensor, train_settings, paths, Resume.NO if dp_budget else resume,
                     rank_share=data.rank_share, budget=dp_budget)
    seconds = time.perf_counter() - t0
    final = state.history[-1] if state.history else {}
    if rank is not None:
        torch.distributed.destroy_process_group()
        if rank.rank != 0:
            log.info("rank %d of %d: done; rank 0 writes the model", rank.rank, rank.world)
            return TrainResult(dataset, state.epoch, seconds, str(device), "", final)

    info = {
        "model": chosen["chosen"] if auto else cfg.model.name,
        "model_config": cfg.model.model_dump(mode="json"),
        "train_config": cfg.train.model_dump(mode="json", exclude=_unset_privacy(cfg)),
        "seed": cfg.seed,
        "device": str(device),
        "world_size": rank.world if rank else 1,
        "epochs": state.epoch,
        "seconds": round(seconds, 3),
        "transform_seconds": round(t_transform, 3),
        "source_hash": data.source_hash,
        "rows": data.rows,
        "final": final,
        "modality": model.modality,
        **({"auto": chosen} if auto else {}),
        **data.described,
        **({"privacy": _privacy_record(dp_budget, data.described, state),
            "privacy_noise_seed": dp_budget.noise_seed} if dp_budget else {}),  # the secret stays in the work folder
    }
    with atomic_dir(paths.model) as tmp:
        torch.save(model.inference_state(), tmp / "model.pt")
        write_json(tmp / "model.json", info)
    log.info("trained %s on %s for %d epochs in %.1fs (%s)", info["model"], dataset, state.epoch, seconds, device)
    return TrainResult(dataset, state.epoch, seconds, str(device), model_hash(paths.model), final)


def _check_model(cfg: Config, dataset: str, paths: StagePaths, handler, resume: Resume) -> None:
    if cfg.model.name == AUTO:
        check_model(AUTO, handler.MODALITY, dataset)  # its candidates are models of one modality
        dcfg = cfg.train.distributed
        if resume is Resume.YES or dcfg.nproc_per_node * dcfg.nnodes > 1:
            raise ConfigError(f"{dataset}: model.name auto trains its {AUTO_MODALITY} candidates in one process and "
                              "does not resume: name one model for images, --resume or train.distributed")
        return
    modality = model_class(cfg.model.name).modality
    if modality != handler.MODALITY:
        raise ConfigError(f"{dataset}: model '{cfg.model.name}' is for {modality}s, but {paths.prepared} holds "
                          f"{handler.UNIT}")


def _unset_privacy(cfg: Config) -> set[str]:
    """``{"privacy"}`` when differential privacy is off: a record (model.json, the lineage, a
    checkpoint's fingerprint) without it then stays what it was before the setting existed."""
    return {"privacy"} if cfg.train.privacy.epsilon is None else set()


def _check_private(cfg: Config, dataset: str, resume: Resume) -> None:
    """A DP run (``train.privacy.epsilon``) trains one named model that can (``private``), in one
    process, afresh: one line otherwise, before any real row is read."""
    if cfg.train.privacy.epsilon is None:
        return
    fix = "or set train.privacy.epsilon: null"
    dcfg = cfg.train.distributed
    if cfg.model.name == AUTO:
        raise ConfigError(f"{dataset}: train.privacy: model.name auto chooses on real validation rows, outside any "
                          f"privacy budget; name the model (model.name: diffusion), {fix}")
    if not getattr(model_class(cfg.model.name), "private", False):
        raise ConfigError(f"{dataset}: train.privacy: DP-SGD does not train '{cfg.model.name}'; set model.name: "
                          f"{private_models()}, {fix}")
    if dcfg.nproc_per_node * dcfg.nnodes > 1:
        raise ConfigError(f"{dataset}: train.privacy: DP-SGD trains in one process; set "
                          f"train.distributed.nproc_per_node and nnodes to 1, {fix}")
    if resume is Resume.YES:
        raise ConfigError(f"{dataset}: train.privacy: a DP-SGD run is never resumed (its accountant counts this "
                          f"run's steps); train without --resume, {fix}")
    if cfg.train.compile:
        log.warning("train.privacy: train.compile is ignored under DP-SGD (Opacus' per-row gradient hooks need "
                    "the plain modules)")


def _private_budget(cfg: Config, paths: StagePaths) -> Budget | None:
    """This run's DP budget (None when differential privacy is off), for the rows it trains on (the
    count alone, from the file's footer: public under the guarantee), its noise from a fresh secret
    seed (``secret_seed``: never published)."""
    if cfg.train.privacy.epsilon is None:
        return None
    from pipeline.artifacts import prepared_rows

    rows = prepared_rows(paths)
    return budget(cfg.train.privacy, min(rows, cfg.train.max_rows or rows), secret_seed())


def _privacy_record(b: Budget, described: dict, state: TrainState) -> dict:
    """model.json's ``privacy``: the (epsilon, delta) guarantee, the budget as set, and what each
    part spent: with the RDP accountant one account (DP-SGD's record holds the whole run's epsilon,
    the histograms' thresholds add their delta), else sequential composition (the parts add up)."""
    pre, sgd = described["transformer"]["private"], state.privacy
    if b.joint:
        eps, delta = sgd["epsilon"], sgd["delta"] + b.threshold_delta
    else:
        eps, delta = pre["epsilon"] + sgd["epsilon"], pre["delta"] + sgd["delta"]
    return {"dp": {"epsilon": eps, "delta": delta, "composition": "renyi" if b.joint else "sequential",
                   "budget": b.record(),
                   "neighbouring": "add or remove one training row (the row count is public)",
                   "preprocessing": pre, "dp_sgd": sgd}}


def _fit(cfg: Config, model, tensor: torch.Tensor, train_settings, paths: StagePaths, resume: Resume,
         rank_share: bool = False, budget: Budget | None = None) -> TrainState:
    """Train one model, resuming from its checkpoint when asked and when it matches."""
    fingerprint = _fingerprint(cfg, paths)
    ckpt = paths.checkpoints / "last.pt"
    resume_now = resume is Resume.YES
    if resume is Resume.IF_COMPATIBLE:
        # Same data and recipe, and not past the epochs asked for (that run would train nothing).
        found, done = checkpoint_info(ckpt) if ckpt.exists() else (None, 0)
        steps = batch_plan(train_settings.batch_size, 1, model.batch_multiple, tensor.shape[0])[1]
        resume_now = found == fingerprint and done <= epochs_for(cfg.train.epochs, cfg.train.min_steps, steps,
                                                                     model.recipe)
    # The loss log is rewritten whole: after the first epoch, then at most every LOG_SECONDS (a small
    # table's 3,000 short epochs would otherwise rewrite it 3,000 times), and when training ends or stops.
    last: dict[str, object] = {"written": -float("inf"), "history": None}

    def on_epoch(st: TrainState) -> None:
        last["history"] = st.history
        if time.perf_counter() - last["written"] >= LOG_SECONDS:
            _write_log(paths, st.history)
            last["written"], last["history"] = time.perf_counter(), None

    try:
        return fit(model, tensor, train_settings, cfg.seed, checkpoint=ckpt, resume=resume_now,
                   fingerprint=fingerprint, on_epoch=on_epoch, rank_share=rank_share, budget=budget)
    finally:
        if last["history"] is not None:  # epochs since the last write
            _write_log(paths, last["history"])


def resumable_epochs(cfg: Config, dataset: str) -> int:
    """Epochs done in ``dataset``'s checkpoint when ``--resume`` would continue it (made from the
    same data and recipe as ``cfg``), else 0: what the command line names after a Ctrl-C."""
    cfg = cfg.for_dataset(dataset)
    paths = StagePaths.of(cfg.work_dir, dataset)
    ckpt = paths.checkpoints / "last.pt"
    try:
        found, done = checkpoint_info(ckpt) if ckpt.is_file() else (None, 0)
        return done if found is not None and found == _fingerprint(cfg, paths) else 0
    except OSError:  # the prepared data is gone: nothing to resume
        return 0


def _launch_ranks(cfg: Config, dataset: str, paths: StagePaths, resume: Resume) -> TrainResult:
    """This process only launches: torchrun starts the ranks, which run ``run`` again."""
    dcfg = cfg.train.distributed
    t0 = time.perf_counter()
    distributed.launch_train(cfg.to_dict(), dataset, dcfg.nproc_per_node, dcfg.nnodes, dcfg.rdzv_endpoint,
                             resume, cfg.work_dir)
    info = read_json(paths.model / "model.json")
    return TrainResult(dataset, info["epochs"], time.perf_counter() - t0, info["device"],
                       model_hash(paths.model), info["final"])


def _fingerprint(cfg: Config, paths: StagePaths) -> str:
    """What a checkpoint must match to be resumed: the same data, model and recipe (epochs may
    grow; where and how fast it runs does not matter)."""
    recipe = cfg.train.model_dump(exclude={"epochs", "checkpoint_every", "device", "amp", "compile",
                                           "distributed", *_unset_privacy(cfg)})
    recipe_hash = hashlib.sha256(repr((sorted(recipe.items()), cfg.seed)).encode()).hexdigest()[:12]
    data_hash = sha256_files([paths.train_data, paths.schema])
    return f"{cfg.fingerprint('model')}-{data_hash[:12]}-{recipe_hash}"


def _private_fit(cfg: Config, dataset: str, b: Budget):
    """What the transformer's private fit spends and knows (``private_stats.Privacy``): the budget's
    preprocessing part, its secret seed, the declared bounds and categories."""
    from pipeline.models.private_stats import Privacy

    ds = cfg.dataset(dataset)
    return Privacy(b.preprocessing_epsilon, b.preprocessing_delta, b.noise_seed, dict(ds.bounds), dataset,
                   dict(ds.categories))
