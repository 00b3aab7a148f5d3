"""Differential privacy for the table models: the budget's split, and DP-SGD on Opacus.

With ``train.privacy.epsilon`` set, the model and every row generated from it are (epsilon,
delta)-differentially private with respect to the training rows (add/remove one row; the number of
training rows is treated as public, as Opacus and MOSTLY AI's engine do):

* the transformer's statistics (quantile knots, category lists, missing rates) are private estimates
  that spend ``preprocessing_share`` of epsilon and of delta (``pipeline.models.private_stats``);
* the network trains with DP-SGD on the rest: Poisson-sampled batches (each row in a step with
  probability batch / rows), each row's gradient clipped to ``max_grad_norm``, Gaussian noise of the
  multiplier Opacus' accountant finds for the planned steps; the accountant counts what was spent;
* the two add up (sequential composition); the weight average, the sampler and value protection
  only post-process the private model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pipeline.settings import PrivacySettings, dp_delta


@dataclass(frozen=True)
class Budget:
    """An (epsilon, delta) budget and its two parts: preprocessing, then DP-SGD."""

    epsilon: float
    delta: float
    preprocessing_epsilon: float
    preprocessing_delta: float
    sgd_epsilon: float
    sgd_delta: float

    def record(self) -> dict[str, float]:
        return asdict(self)


def budget(privacy: PrivacySettings, rows: int) -> Budget | None:
    """The budget ``train.privacy`` sets for ``rows`` training rows, split between the transformer's
    statistics (``preprocessing_share``) and DP-SGD; None when differential privacy is off."""
    if privacy.epsilon is None:
        return None
    eps, delta, share = float(privacy.epsilon), dp_delta(privacy.delta, rows), privacy.preprocessing_share
    return Budget(eps, delta, eps * share, delta * share, eps * (1 - share), delta * (1 - share))
