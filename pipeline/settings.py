"""The model and train settings, defined once: plain dataclasses with no pydantic and no I/O, so the
networks, the loop and the benchmarks (also on a bare GPU box with only torch, pandas, pyarrow and
scikit-learn) build them directly.

Each field declares its default and, through ``setting(...)``, what ``pipeline.config`` checks of a
value params.yaml gives it (bounds, a description). ``pipeline.config`` builds its validated
``model`` and ``train`` sections from these classes, so the two cannot drift; their defaults are
params.yaml's (``tests/unit/test_config.py`` compares every key). ``model.json`` stores the settings
as JSON and ``from_dict`` reads them back.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, Callable, Literal, TypeVar, get_type_hints

T = TypeVar("T")

# What a field may declare for the config to check (pydantic's ``Field`` arguments of these names).
CHECKS = ("ge", "gt", "le", "lt", "min_length", "description")
# A layer's width: bounded so that a typo (1e9) is one line, not an allocation the machine cannot
# make; ``pipeline.stages.check_config`` also weighs the whole network against its memory.
MAX_WIDTH = 1 << 16
WIDTH = {"ge": 1, "le": MAX_WIDTH}


def setting(default: Any = MISSING, *, factory: Callable[[], Any] | None = None, each: dict[str, Any] | None = None,
            models: tuple[str, ...] = (), absent: Any = MISSING, **checks: Any) -> Any:
    """A settings field: its ``default`` (or ``factory`` for a list or a section), and what the
    config checks of a value params gives it: ``ge``, ``gt``, ``le``, ``lt``, ``min_length``, a
    ``description``; ``each``: the same bounds for every item of a list. ``models``: on a section of
    ``ModelSettings``, the models that read it besides the one of its name. ``absent``: what a
    recorded mapping without this key means (``from_dict``: a ``model.json`` written before the
    setting existed was made the way ``absent`` says, whatever today's default)."""
    unknown = set(checks) - set(CHECKS)
    if unknown:
        raise TypeError(f"setting(): unknown check(s) {sorted(unknown)}; known: {', '.join(CHECKS)}")
    meta = {**checks, **({"each": each} if each else {}), **({"models": models} if models else {}),
            **({"absent": absent} if absent is not MISSING else {})}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class GanSettings:
    """The GANs (``gan``, ``ctgan``): generator and PacGAN critic sizes."""

    noise_dim: int = setting(128, **WIDTH)
    generator_dims: list[int] = setting(factory=lambda: [256, 256], each=WIDTH)
    discriminator_dims: list[int] = setting(factory=lambda: [256, 256], each=WIDTH)
    pac: int = setting(5, ge=1, description="rows the critic judges together (PacGAN)")
    dropout: float = setting(0.5, ge=0.0, lt=1.0)
    log_frequency: bool = setting(True, description="ctgan: condition on categories by log frequency in training")
    ema_decay: float = setting(0.99, ge=0.0, lt=1.0,
                               description="rows come from an average of the generator's weights (0: off)")


@dataclass
class TvaeSettings:
    """The tabular VAE (``tvae``)."""

    latent_dim: int = setting(128, **WIDTH)
    encoder_dims: list[int] = setting(factory=lambda: [128, 128], each=WIDTH)
    decoder_dims: list[int] = setting(factory=lambda: [128, 128], each=WIDTH)
    loss_factor: float = setting(2.0, gt=0)
    lr: float = setting(1e-3, gt=0)
    weight_decay: float = setting(1e-5, ge=0)


@dataclass
class DiffusionSettings:
    """The diffusion-class table model (``diffusion``): flow matching on the numeric scalars, masked
    diffusion on the categories, an MLP denoiser; rows from an average of its weights."""

    hidden_dims: list[int] = setting(factory=lambda: [256, 256, 256, 256], each=WIDTH, min_length=1)
    lr: float = setting(1e-3, gt=0)
    weight_decay: float = setting(0.0, ge=0)
    ema_decay: float = setting(0.999, ge=0.0, lt=1.0,
                               description="rows come from an average of the denoiser's weights (0: off)")
    sample_steps: int = setting(10, ge=1, description="denoising steps per row (more: slower; on Adult 10 match 50, "
                                                     "docs/models.md#sampling)")
    categorical: Literal["masked", "gaussian"] = setting(
        "masked", description="masked: masked diffusion on the categories; gaussian: the flow on the one-hot "
                              "vectors, argmax at the end")


# ``train.epochs: auto``'s epochs on a table big enough to make ``min_steps`` optimiser steps in
# them, unless the model has its own recipe (``auto_recipe``: the autoregressive model's settings):
# the diffusion model's recipe, measured on Adult (docs/models.md).
AUTO_EPOCHS = 250
DEFAULT_CLIP = 1.0  # train.privacy.max_grad_norm auto for a DP model without its own (diffusion, tvae)


@dataclass
class AutoregressiveRecipe:
    """The autoregressive model's parts that differ under DP-SGD (``model.autoregressive.private``)."""

    fine_bins: int = setting(1, ge=1, le=4096)
    epochs: int = setting(AUTO_EPOCHS, ge=1, le=1_000_000)
    min_steps: int = setting(3000, ge=1)
    value_tokens: bool = setting(True)
    ordinal_inputs: bool = setting(False, absent=False, description="model.autoregressive.ordinal_inputs under "
                                                                    "DP-SGD (off: not measured there)")
    lr: float | None = setting(0.004, gt=0, description="its learning rate under DP-SGD; null = the model's lr")
    max_grad_norm: float = setting(20.0, gt=0, description="DP-SGD's clip for this model (train.privacy.max_grad_norm "
                                                          "auto): about its rows' gradient norms, so that clipping "
                                                          "does not reweigh the rows")
    ema_decay: float = setting(0.999, ge=0, lt=1, absent=0.0,
                               description="the rows come from an exponential moving average of the weights over "
                                           "DP-SGD's steps (post-processing of the private weights: no budget); "
                                           "0: the last step's weights")


@dataclass
class AutoregressiveSettings:
    """The autoregressive table model (``autoregressive``): each column a categorical draw given the
    columns before it, a small MLP a column; numeric columns as equal-mass bins, a tied value one token."""

    hidden_dims: list[int] = setting(factory=lambda: [128], each=WIDTH, min_length=1)
    bins: int = setting(32, ge=2, le=4096, description="equal-mass bins of a numeric column (values are drawn "
                                                      "uniformly inside a bin)")
    fine_bins: int = setting(16, ge=1, le=4096, description="a numeric value's place inside its bin: a second "
                                                           "token among this many equal parts (1: none)")
    epochs: int = setting(90, ge=1, le=1_000_000, description="train.epochs auto for this model: its epochs on a "
                                                             "table big enough to make min_steps steps in them")
    min_steps: int = setting(300, ge=1, description="train.epochs auto for this model: the fewest optimiser steps "
                                                    "(its train.min_steps; more overfit a small table)")
    target_first: bool = setting(True, absent=False,
                                 description="the dataset's target column is drawn first and every other column given "
                                             "it (false, no target, or a small table, one where train.epochs auto "
                                             "raises the recipe's epochs: the table's column order)")
    ordinal_inputs: bool = setting(True, absent=False,
                                   description="each later column's net also reads every earlier numeric token (a "
                                               "bin, its part) as one number, its place among its width's, beside "
                                               "its one-hot code (false: the one-hot codes only)")
    value_tokens: bool = setting(True, absent=False,
                                 description="a tied numeric value (a spike such as capital-gain's zeros, each level "
                                             "of a column of at most bins values) is one token, not spread over the "
                                             "equal-mass bins it covers (false: bins equal-mass bins each)")
    private: AutoregressiveRecipe = setting(factory=AutoregressiveRecipe,
                                            description="fine_bins, epochs, min_steps and value_tokens under "
                                                        "DP-SGD (train.privacy.epsilon set)")
    part_noise: float = setting(0.5, ge=0, le=1, description="in training, each earlier number's place inside its "
                                                            "bin is redrawn at random in this share of the rows "
                                                            "a categorical column (or, with value_tokens, a column "
                                                            "of at most bins values) learns from (0: off)")
    lr: float = setting(1e-3, gt=0, description="a categorical column's net's learning rate")
    numeric_lr: float = setting(2e-3, gt=0, description="a numeric column's nets' learning rate (its bin's and its "
                                                       "place's): at lr they under-fit a table of many numbers, "
                                                       "while a categorical net drifts at twice lr")
    weight_decay: float = setting(0.0, ge=0)


@dataclass
class DcganSettings:
    """The class-conditional image GAN (``dcgan``)."""

    noise_dim: int = setting(64, **WIDTH)
    width: int = setting(32, ge=4, le=4096,
                         description="channels of the outer conv layers (the inner ones have twice as many)")
    label_loss: float = setting(1.0, ge=0, description="weight of the auxiliary classifier loss (AC-GAN) that "
                                                       "keeps images on their label")
    ema_decay: float = setting(0.997, ge=0.0, lt=1.0,
                               description="images come from an average of the generator's weights (0: off)")


@dataclass
class ConvVaeSettings:
    """The class-conditional convolutional VAE (``conv_vae``)."""

    latent_dim: int = setting(16, **WIDTH)
    width: int = setting(32, ge=4, le=4096)
    lr: float = setting(1e-3, gt=0)
    beta: float = setting(1.0, gt=0, description="weight of the KL term")


@dataclass
class AutoSettings:
    """``model.name: auto``: train each candidate on the training split less a validation part,
    score each on that part, keep the best (``pipeline/training/auto.py``)."""

    candidates: list[str] = setting(factory=lambda: ["autoregressive", "diffusion", "ctgan", "tvae"], min_length=1,
                                    description="table models to try, each with the train section's recipe; "
                                                "cross-validated (a small table), the first is kept unless another "
                                                "beats it by more than one standard error of the folds")
    validation_fraction: float = setting(0.2, gt=0, lt=1, description="share of the training rows held out to "
                                                                       "score the candidates (never the holdout)")
    validation_rows: int = setting(5000, ge=20, description="at most this many validation rows")
    min_validation_rows: int = setting(300, ge=0, description="fewer validation rows than this (a small table): "
                                                               "the candidates are cross-validated on `folds` folds "
                                                               "of the training rows instead, the winner trained on "
                                                               "all of them (0: never)")
    folds: int = setting(5, ge=2, le=20, description="folds of that cross-validation")
    refit: bool = setting(False, description="train the kept model again on every training row (the validation "
                                             "part too) with the same recipe: one more training, a model that has "
                                             "seen all the rows")


@dataclass
class ModelSettings:
    """What to train: the model's name and the settings of each model, a section each (a model reads
    the section of its name, or the one that lists it in ``models``: ``model_section``)."""

    name: str = setting("autoregressive", description="the model to train (names checked against the registry: "
                                                 "pipeline.stages.check_config), or auto")
    quantile_knots: int = setting(1001, ge=3, description="knots of the per-column quantile transform")
    max_categories: int = setting(500, ge=2, description="rarer categories share one slot in the model")
    gan: GanSettings = setting(factory=GanSettings, models=("gan", "ctgan"))
    tvae: TvaeSettings = setting(factory=TvaeSettings)
    diffusion: DiffusionSettings = setting(factory=DiffusionSettings)
    autoregressive: AutoregressiveSettings = setting(factory=AutoregressiveSettings)
    dcgan: DcganSettings = setting(factory=DcganSettings)
    conv_vae: ConvVaeSettings = setting(factory=ConvVaeSettings)
    auto: AutoSettings = setting(factory=AutoSettings)


@dataclass
class DistributedSettings:
    """Data-parallel training (``pipeline/training/distributed.py``): the train stage launches itself
    under torchrun with nproc_per_node x nnodes ranks (or joins the ranks torchrun started it as)."""

    nproc_per_node: int = setting(1, ge=1, description="ranks per machine (GPUs, or CPU processes)")
    nnodes: int = setting(1, ge=1, description="machines; each runs the train stage with the same params")
    backend: Literal["auto", "nccl", "gloo"] = setting("auto", description="auto: nccl on CUDA, gloo on CPU")
    rdzv_endpoint: str | None = setting(None, description="host:port of the rendezvous (node 0) when nnodes > 1")


@dataclass
class PrivacySettings:
    """Differential privacy (``pipeline/training/private.py``, docs/privacy.md#differential-privacy):
    with an ``epsilon`` the model trains with DP-SGD on Opacus and the transformer is fitted from
    private estimates, so that the model and every row generated from it are (epsilon, delta)-DP
    with respect to the training rows. null: off (today's training, same bytes)."""

    epsilon: float | None = setting(None, gt=0, le=1000, description="the whole budget, every touch of the training "
                                                                    "rows included; null = no differential privacy")
    delta: float | Literal["auto"] = setting(
        "auto", gt=0, lt=1, description="auto: 1 / (10 x training rows), well below one in a row")
    accountant: Literal["rdp", "prv"] = setting("rdp", description="Opacus' accountant that sets the noise and "
                                                                   "counts the spent epsilon (rdp: Renyi DP; prv: "
                                                                   "privacy random variables, tighter)")
    max_grad_norm: float | Literal["auto"] = setting(
        "auto", gt=0, description="each row's gradient is clipped to this L2 norm; auto = the DP model's own "
                                  "(model.autoregressive.private.max_grad_norm), 1.0 for diffusion and tvae")
    batch_size: int | None = setting(
        2000, ge=1, description="DP-SGD's expected batch (each row in a step with probability batch / rows): "
                                "train.batch_size in a DP run of a table; null = train.batch_size")
    model: str | None = setting(
        "autoregressive", description="the table model a DP run trains, in place of model.name (measured best under "
                                      "DP-SGD: benchmarks/README.md); null: model.name")
    preprocessing_share: float = setting(
        0.3, gt=0, lt=1, description="the share of epsilon (and of delta) the transformer's private statistics "
                                     "would spend on their own (quantile knots, category lists, missing rates); "
                                     "with the rdp accountant they and DP-SGD are one account (DP-SGD's noise "
                                     "makes the whole budget, at far less cost than this share), with prv "
                                     "DP-SGD spends the rest")


def dp_delta(delta: float | str, rows: int) -> float:
    """``train.privacy.delta`` for ``rows`` training rows: ``auto`` is 1 / (10 x rows)."""
    return 1.0 / (10.0 * max(rows, 1)) if delta == "auto" else float(delta)


def epochs_for(epochs: int | str, min_steps: int, steps_per_epoch: int,
               recipe: tuple[int, int] | None = None) -> int:
    """The epochs a run asks for: ``epochs``, or for ``auto`` ``AUTO_EPOCHS`` raised so that
    ``steps_per_epoch``-step epochs make at least ``min_steps`` steps (a small table: tips' 195
    rows are one step an epoch); a model's own ``recipe`` (its epochs, its fewest steps) in place
    of both."""
    if epochs != "auto":
        return int(epochs)
    auto, fewest = recipe or (AUTO_EPOCHS, min_steps)
    return max(auto, -(-fewest // max(1, steps_per_epoch)))


@dataclass
class TrainSettings:
    """The training recipe the loop (``pipeline.training.loop.fit``) runs."""

    epochs: int | Literal["auto"] = setting(
        "auto", ge=1, le=1_000_000, description="auto: the model's recipe (autoregressive 90, the others 250), or "
                                                "more on a small table, so that training makes at least min_steps "
                                                "optimiser steps; a number: exactly that many")
    min_steps: int = setting(3000, ge=1, description="epochs auto: the fewest optimiser steps (a table of under about "
                                                     "6,000 rows at batch 500 gets more than 250 epochs)")
    batch_size: int = setting(500, ge=2)
    lr_generator: float = setting(4e-4, gt=0)
    lr_discriminator: float = setting(4e-4, gt=0)
    weight_decay: float = setting(1e-6, ge=0)
    gp_weight: float = setting(10.0, ge=0)
    device: Literal["auto", "cpu", "cuda", "mps"] = setting("auto")
    checkpoint_every: int = setting(10, ge=1, description="epochs between resumable checkpoints")
    max_rows: int | None = setting(None, ge=2, description="train on at most this many rows, a seeded sample of the "
                                                          "training split (a big table); null = every row")
    amp: bool = setting(True, description="bf16 autocast on CUDA (ignored on CPU)")
    compile: bool = setting(False, description="torch.compile the model's networks (CUDA: helps; CPU: rarely)")
    lr_decay: float = setting(0.5, ge=0, le=1, description="learning rates fall linearly to zero over this share of "
                                                          "the epochs, the last ones (0.5: the last half; 0: "
                                                          "constant). A share, so fewer epochs decay over their "
                                                          "own last part")
    budget_seconds: float | None = setting(
        None, gt=0, description="stop training within about this many seconds: after each epoch the epochs are "
                                "planned to what fits at the pace so far (the decay follows; the plan grows back only "
                                "before the rate falls); with model.name auto, shared by the candidates. "
                                "The epochs then depend on the machine's speed; model.json records them")
    distributed: DistributedSettings = setting(factory=DistributedSettings)
    privacy: PrivacySettings = setting(factory=PrivacySettings)


def model_section(name: str) -> str | None:
    """The ``model`` section model ``name`` reads its settings from: the one that lists it in its
    ``models``, else the one of its name; None when there is none (an unknown name, which
    ``pipeline.stages.check_config`` names)."""
    hints = get_type_hints(ModelSettings)
    sections = [f for f in fields(ModelSettings) if is_dataclass(hints[f.name])]
    listed = [f.name for f in sections if name in f.metadata.get("models", ())]
    own = [f.name for f in sections if f.name == name]
    return (listed or own or [None])[0]


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """``cls`` from a mapping (as ``model.json`` stores it), nested sections included; keys that
    ``cls`` does not have are left out, missing ones take the defaults (or the value a setting
    declares ``absent``: how a record from before the setting was made)."""
    hints = get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            value, kind = data[f.name], hints[f.name]
            kwargs[f.name] = from_dict(kind, value) if is_dataclass(kind) and isinstance(value, dict) else value
        elif "absent" in f.metadata:
            kwargs[f.name] = f.metadata["absent"]
    return cls(**kwargs)
