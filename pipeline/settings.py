"""The plain settings the models and the training loop take: dataclasses with no pydantic and no
I/O, so the networks, the loop and the benchmarks (also on a bare GPU box with only torch, pandas,
pyarrow and scikit-learn) build them directly.

``pipeline.config`` validates ``params.yaml`` (bounds, names, descriptions) and hands a stage these
with ``.settings()``; ``model.json`` stores them as JSON and ``from_dict`` reads them back. Their
defaults equal the config's (``tests/unit/test_config.py`` checks it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, TypeVar, get_type_hints

T = TypeVar("T")


@dataclass
class GanSettings:
    noise_dim: int = 128
    generator_dims: list[int] = field(default_factory=lambda: [256, 256])
    discriminator_dims: list[int] = field(default_factory=lambda: [256, 256])
    pac: int = 5
    dropout: float = 0.5
    log_frequency: bool = True
    ema_decay: float = 0.99


@dataclass
class TvaeSettings:
    latent_dim: int = 128
    encoder_dims: list[int] = field(default_factory=lambda: [128, 128])
    decoder_dims: list[int] = field(default_factory=lambda: [128, 128])
    loss_factor: float = 2.0
    lr: float = 1e-3
    weight_decay: float = 1e-5


@dataclass
class DiffusionSettings:
    hidden_dims: list[int] = field(default_factory=lambda: [512, 512, 512, 512])
    lr: float = 1e-3
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    sample_steps: int = 50
    categorical: str = "masked"


@dataclass
class DcganSettings:
    noise_dim: int = 64
    width: int = 32
    label_loss: float = 1.0
    ema_decay: float = 0.997


@dataclass
class ConvVaeSettings:
    latent_dim: int = 16
    width: int = 32
    lr: float = 1e-3
    beta: float = 1.0


@dataclass
class AutoSettings:
    candidates: list[str] = field(default_factory=lambda: ["diffusion", "ctgan", "tvae"])
    validation_fraction: float = 0.2
    validation_rows: int = 5000
    refit: bool = False


@dataclass
class ModelSettings:
    name: str = "ctgan"
    quantile_knots: int = 1001
    max_categories: int = 500
    gan: GanSettings = field(default_factory=GanSettings)
    tvae: TvaeSettings = field(default_factory=TvaeSettings)
    diffusion: DiffusionSettings = field(default_factory=DiffusionSettings)
    dcgan: DcganSettings = field(default_factory=DcganSettings)
    conv_vae: ConvVaeSettings = field(default_factory=ConvVaeSettings)
    auto: AutoSettings = field(default_factory=AutoSettings)


@dataclass
class DistributedSettings:
    nproc_per_node: int = 1
    nnodes: int = 1
    backend: str = "auto"
    rdzv_endpoint: str | None = None


@dataclass
class TrainSettings:
    epochs: int = 100
    batch_size: int = 500
    lr_generator: float = 4e-4
    lr_discriminator: float = 4e-4
    weight_decay: float = 1e-6
    gp_weight: float = 10.0
    device: str = "auto"
    checkpoint_every: int = 10
    max_rows: int | None = None
    amp: bool = True
    compile: bool = False
    lr_decay: float = 0.0
    budget_seconds: float | None = None
    distributed: DistributedSettings = field(default_factory=DistributedSettings)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """``cls`` from a mapping (as ``model.json`` stores it), nested sections included; keys that
    ``cls`` does not have are left out, missing ones take the defaults."""
    hints = get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            value, kind = data[f.name], hints[f.name]
            kwargs[f.name] = from_dict(kind, value) if is_dataclass(kind) and isinstance(value, dict) else value
    return cls(**kwargs)
