"""Differential privacy for the table models: the budget's split, and DP-SGD on Opacus.

With ``train.privacy.epsilon`` set, the model and every row generated from it are (epsilon,
delta)-differentially private with respect to the training rows (add/remove one row; the number of
training rows is treated as public, as Opacus and MOSTLY AI's engine do):

* the transformer's statistics (quantile knots, category lists, missing rates) are noisy
  histograms whose noise would make them, on their own, (``preprocessing_share`` x epsilon,
  ``preprocessing_share`` x delta)-DP (``pipeline.models.private_stats``);
* the network trains with DP-SGD: Poisson-sampled batches (each row in a step with probability
  batch / rows), each row's gradient clipped to ``max_grad_norm``, Gaussian noise of the multiplier
  the accountant finds for the planned steps; the accountant counts what was spent;
* with the RDP accountant (the default) the two are one account (``pipeline.training.accounting``):
  the histograms' Rényi-DP curve is added to DP-SGD's and the noise multiplier is the one that
  makes the whole (epsilon, delta)-DP, which costs DP-SGD far less than the histograms' own share;
  with ``prv`` they add up (sequential composition) and DP-SGD spends the rest. The weight
  average, the sampler and value protection only post-process the private model.

The noise and the Poisson batches come from a secret seed (``Budget.noise_seed``), drawn from the
operating system's secure source for every run (``secret_seed``) and kept only in the work folder
(model.json's ``privacy_noise_seed``), never in the release: the run's ``seed`` is published with
its lineage, and noise anyone can regenerate from it protects nothing. So a DP run is not
reproducible from params and seed alone, by design; with the secret it is (the same bytes).
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, replace

import torch

from pipeline.errors import ConfigError
from pipeline.settings import PrivacySettings, dp_delta
from pipeline.training import accounting

SAMPLING_SEED = 7_919  # the Poisson batches' generator: noise_seed + this (the noise's: noise_seed)


@dataclass(frozen=True)
class Budget:
    """An (epsilon, delta) budget and its two parts: preprocessing, then DP-SGD.

    ``preprocessing_epsilon`` and ``preprocessing_delta`` bound the transformer's histograms on their
    own. With the RDP accountant (``joint``) the histograms and DP-SGD's steps are one account: their
    RDP curves add up (``statistics``: the histograms' pure epsilons, known once the transformer is
    fitted; ``threshold_delta``: its thresholds' deltas) and DP-SGD's noise is what makes the whole
    (epsilon, delta)-DP; ``sgd_epsilon`` and ``sgd_delta`` are then the whole budget less the
    thresholds' delta. With ``prv`` the two parts add up (sequential composition) and DP-SGD gets the
    rest: ``sgd_epsilon = epsilon - preprocessing_epsilon``."""

    epsilon: float
    delta: float
    preprocessing_epsilon: float
    preprocessing_delta: float
    sgd_epsilon: float
    sgd_delta: float
    noise_seed: int = 0  # secret: seeds the noise and the batches (never in a release)
    joint: bool = False
    statistics: tuple[float, ...] = ()
    threshold_delta: float = 0.0

    def record(self) -> dict[str, float]:
        """The budget as the release may show it (without the secret seed)."""
        return {k: v for k, v in asdict(self).items() if k not in ("noise_seed", "statistics")}

    def with_statistics(self, record: dict) -> Budget:
        """This budget once the transformer's private fit has recorded what its histograms spend
        (``laplace_epsilons``, ``threshold_delta``): the joint account's DP-SGD delta leaves the
        thresholds'."""
        if self.joint and "laplace_epsilons" not in record:  # else DP-SGD would spend the histograms' part again
            raise ConfigError("train.privacy: the transformer's private fit did not record what its histograms spent; "
                              "this build cannot account for them, set train.privacy.accountant: prv")
        stats, threshold = tuple(record.get("laplace_epsilons", ())), float(record.get("threshold_delta", 0.0))
        if not self.joint:
            return replace(self, statistics=stats, threshold_delta=threshold)
        return replace(self, statistics=stats, threshold_delta=threshold, sgd_delta=self.delta - threshold)

    def statistics_rdp(self):
        """The histograms' RDP curve over ``accounting.rdp_orders()``."""
        return accounting.statistics_rdp(self.statistics)


def _orders(accountant: str) -> dict:
    """The orders an accountant's epsilon is taken over (RDP's; PRV has none)."""
    return {"alphas": accounting.rdp_orders()} if accountant == "rdp" else {}


def noise_multiplier(budget: Budget, rate: float, steps: int, accountant: str) -> float:
    """The noise multiplier with which ``steps`` DP-SGD steps at sampling ``rate`` spend the budget's
    DP-SGD part (Opacus' search, to within 0.01 of its epsilon), or with the RDP accountant the whole
    budget together with the histograms' (``Budget.joint``); ValueError when none does."""
    if budget.joint:
        return accounting.joint_noise(budget.sgd_epsilon, budget.sgd_delta, rate, steps, budget.statistics_rdp())
    from opacus.accountants.utils import get_noise_multiplier

    return get_noise_multiplier(target_epsilon=budget.sgd_epsilon, target_delta=budget.sgd_delta, sample_rate=rate,
                                steps=steps, accountant=accountant, **_orders(accountant))


def secret_seed() -> int:
    """A seed for a DP run's noise from the operating system's secure source (``secrets``)."""
    return secrets.randbits(62)


def budget(privacy: PrivacySettings, rows: int, noise_seed: int = 0) -> Budget | None:
    """The budget ``train.privacy`` sets for ``rows`` training rows, split between the transformer's
    statistics (``preprocessing_share``) and DP-SGD, its noise from ``noise_seed`` (a secret:
    ``secret_seed``); None when differential privacy is off."""
    if privacy.epsilon is None:
        return None
    eps, delta, share = float(privacy.epsilon), dp_delta(privacy.delta, rows), privacy.preprocessing_share
    if privacy.accountant == "rdp":  # one account: DP-SGD's noise makes the whole budget with the histograms'
        return Budget(eps, delta, eps * share, delta * share, eps, delta, noise_seed, joint=True)
    return Budget(eps, delta, eps * share, delta * share, eps * (1 - share), delta * (1 - share), noise_seed)


class DPSGD:
    """One training run's DP-SGD on Opacus: the noise multiplier its accountant finds for the planned
    steps, Poisson batches, per-row clipping and noise, and the epsilon spent so far.

    Clipping is Opacus' ghost clipping: its hooks find each row's gradient norm from the layers'
    inputs and output gradients without making the per-row gradients (which for the default
    denoiser would be 1.5 million numbers a row), a second backward pass sums the rows' gradients
    each scaled to at most ``max_grad_norm``, and Opacus' optimiser adds the noise. A step costs
    about two ordinary ones.

    ``module``: the network the model's one phase trains (``GenerativeModel.private_module``);
    ``optimizer`` is replaced by the private one in ``opts``."""

    def __init__(self, module: torch.nn.Module, opts: dict[str, torch.optim.Optimizer], budget: Budget,
                 privacy: PrivacySettings, rows: int, batch: int, planned_steps: int, device: torch.device):
        from opacus.accountants import create_accountant
        from opacus.grad_sample.grad_sample_module_fast_gradient_clipping import GradSampleHooksFastGradientClipping
        from opacus.optimizers import DPOptimizerFastGradientClipping

        if privacy.max_grad_norm == "auto":  # Config.for_dataset gives a DP run its model's clip
            raise ConfigError("train.privacy.max_grad_norm: auto is resolved by the run's config "
                              "(Config.for_dataset); give DP-SGD a number")
        if len(opts) != 1:
            raise ConfigError(f"train.privacy: DP-SGD needs a model trained in one phase, not {len(opts)}")
        self.budget, self.kind, self.clip = budget, privacy.accountant, float(privacy.max_grad_norm)
        self.rows, self.batch, self.rate = rows, batch, batch / rows
        self.planned = planned_steps
        try:
            self.noise = noise_multiplier(budget, self.rate, planned_steps, self.kind)
        except ValueError:  # Opacus: "The privacy budget is too low" (a noise multiplier beyond its search)
            raise ConfigError(f"train.privacy.epsilon {budget.epsilon:g}: too small for {planned_steps} DP-SGD steps "
                              f"at sampling rate {self.rate:.4g}; raise it, or train fewer epochs "
                              "(train.epochs) or larger batches (train.batch_size)") from None
        self.hooks = GradSampleHooksFastGradientClipping(module, batch_first=True, loss_reduction="mean",
                                                         max_grad_norm=self.clip, use_ghost_clipping=True)
        (name, plain), = opts.items()
        # Noise and batches from the budget's secret seed (the same secret gives the same model).
        noise_gen = torch.Generator(device=device).manual_seed(budget.noise_seed)
        self.sampler = torch.Generator(device=device).manual_seed(budget.noise_seed + SAMPLING_SEED)
        self.optimizer = opts[name] = DPOptimizerFastGradientClipping(
            plain, noise_multiplier=self.noise, max_grad_norm=self.clip, expected_batch_size=batch,
            loss_reduction="mean", generator=noise_gen)
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.accountant = create_accountant(mechanism=self.kind)
        self.steps = 0

    def batch_of(self, data: torch.Tensor) -> torch.Tensor:
        """A Poisson batch: each row of ``data`` in it with probability ``rate``, independently
        (the sampling the accountant assumes; the batch size varies, and may be zero)."""
        keep = torch.rand(data.shape[0], device=data.device, generator=self.sampler) < self.rate
        return data[keep]

    def backward(self, row_loss: torch.Tensor) -> None:
        """The clipped sum of the rows' gradients of ``row_loss`` ([n], one loss a row) into the
        parameters' ``.grad`` (the optimiser's step adds the noise and divides by the batch size)."""
        from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping

        DPTensorFastGradientClipping(self.hooks, self.optimizer, row_loss, "mean").backward()

    def no_rows(self) -> None:
        """An empty Poisson batch still makes a step (noise only), as the accountant counts it."""
        for p in self.params:
            p.grad = torch.zeros_like(p)

    def stepped(self) -> None:
        self.accountant.step(noise_multiplier=self.noise, sample_rate=self.rate)
        self.steps += 1

    def spent(self) -> float:
        """The epsilon spent so far at the budget's DP-SGD delta: with the RDP accountant the whole
        run's (the transformer's histograms and the steps so far, one account), else DP-SGD's own."""
        if self.budget.joint:
            return accounting.rdp_epsilon(accounting.sgd_rdp(self.rate, self.noise, self.steps)
                                          + self.budget.statistics_rdp(), self.budget.sgd_delta)
        return self.sgd_spent()

    def sgd_spent(self) -> float:
        """The epsilon DP-SGD's steps alone have spent so far (at the budget's DP-SGD delta)."""
        if not self.steps:
            return 0.0
        return float(self.accountant.get_epsilon(delta=self.budget.sgd_delta, **_orders(self.kind)))

    def close(self) -> dict:
        """Removes Opacus' hooks from the network; returns the record of the run."""
        self.hooks.cleanup()
        spent = self.spent()
        joint = {"composition": "one Renyi-DP account with the transformer's histograms",
                 "sgd_alone_epsilon": self.sgd_spent()} if self.budget.joint else {}
        return {"accountant": self.kind, "clipping": "per row (Opacus ghost clipping)",
                "noise_multiplier": self.noise, "max_grad_norm": self.clip,
                "sample_rate": self.rate, "expected_batch_size": self.batch, "steps": self.steps,
                "planned_steps": self.planned, "epsilon": spent, "delta": self.budget.sgd_delta, **joint}
