"""One Rényi-DP account of every touch of the training rows: the transformer's Laplace histograms and
DP-SGD's subsampled Gaussian steps (``train.privacy.accountant: rdp``).

A mechanism is (alpha, r)-RDP when the Rényi divergence of order alpha between its outputs on
neighbouring datasets is at most r (Mironov, "Rényi Differential Privacy", CSF 2017). RDP composes
by adding r at each order, and converts to (epsilon, delta)-DP at the best order; Opacus' RDP
accountant does exactly this for DP-SGD's steps. The Laplace mechanism of sensitivity 1 and
pure epsilon ``e`` is RDP with (Mironov 2017, Table II)

    r(alpha) = e + log(alpha / (2 alpha - 1) + (alpha - 1) / (2 alpha - 1) * exp(-(2 alpha - 1) e)) / (alpha - 1),

about alpha e^2 / 2 for a small ``e``: so a dozen histograms of small epsilon add little at the
orders where DP-SGD's bound is tight, where adding their pure epsilons to DP-SGD's (sequential
composition) charges each its whole ``e``. A histogram whose threshold lists values of an unknown
domain (the stability histogram) is RDP as above except with probability its ``delta`` (the only
difference between neighbours it cannot hide is a value of one row passing the threshold): those
deltas add to the conversion's.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

# RDP orders: Opacus' default ones (1.1 to 63), then these. Early in a run, or at a small epsilon,
# the best order passes 63: Opacus' bound is then looser than it need be and it warns at every count
# (the noise search's probes included). The larger orders only tighten such bounds; where the best
# order is at most 63 the figures are Opacus'.
LARGER_RDP_ORDERS = [64, 80, 96, 128, 160, 192, 256, 384, 512, 768, 1024]
MAX_NOISE = 1e6  # Opacus' MAX_SIGMA: past this noise multiplier the budget is too small
TOLERANCE = 0.01  # of epsilon, as Opacus' noise search (``get_noise_multiplier``'s default)


def rdp_orders() -> list[float]:
    """The orders every RDP figure is taken over: Opacus' default ones, then ``LARGER_RDP_ORDERS``."""
    from opacus.accountants import RDPAccountant

    return [*RDPAccountant.DEFAULT_ALPHAS, *LARGER_RDP_ORDERS]


def laplace_rdp(epsilon: float, orders: Sequence[float] | None = None) -> np.ndarray:
    """The RDP of the Laplace mechanism of sensitivity 1 and pure ``epsilon`` (scale 1 / epsilon) at
    each order (Mironov 2017): at most ``epsilon`` (its pure-DP bound) at every order."""
    a = np.asarray(rdp_orders() if orders is None else orders, dtype=np.float64)
    if epsilon <= 0:
        return np.zeros_like(a)
    inner = a / (2 * a - 1) + (a - 1) / (2 * a - 1) * np.exp(-(2 * a - 1) * epsilon)
    return np.minimum(epsilon + np.log(inner) / (a - 1), epsilon)


def statistics_rdp(epsilons: Sequence[float], orders: Sequence[float] | None = None) -> np.ndarray:
    """The RDP of Laplace histograms of pure ``epsilons`` composed (added at each order)."""
    a = rdp_orders() if orders is None else orders
    return np.sum([laplace_rdp(e, a) for e in epsilons], axis=0) if len(epsilons) else np.zeros(len(a))


def rdp_epsilon(rdp: np.ndarray, delta: float, orders: Sequence[float] | None = None) -> float:
    """The epsilon an RDP curve gives at ``delta`` (Opacus' conversion, at the best order). Opacus
    warns when that is the largest order: for histograms of a large epsilon it is (their RDP is near
    their pure epsilon at every order, and the conversion's term falls with the order), and sequential
    composition's figure is then the smaller one anyway (``statistics_epsilon``)."""
    from opacus.accountants.analysis.rdp import get_privacy_spent

    if delta <= 0:
        return math.inf
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        eps, _ = get_privacy_spent(orders=list(rdp_orders() if orders is None else orders), rdp=np.asarray(rdp),
                                   delta=delta)
    return float(eps)


def sgd_rdp(rate: float, noise: float, steps: int, orders: Sequence[float] | None = None) -> np.ndarray:
    """The RDP of ``steps`` subsampled Gaussian steps (Poisson ``rate``, noise multiplier ``noise``):
    Opacus' computation, as its RDP accountant adds it up."""
    from opacus.accountants.analysis.rdp import compute_rdp

    a = list(rdp_orders() if orders is None else orders)
    if steps <= 0:
        return np.zeros(len(a))
    return np.asarray(compute_rdp(q=rate, noise_multiplier=noise, steps=steps, orders=a), dtype=np.float64)


def statistics_epsilon(weights: Sequence[float], epsilon: float, delta: float) -> float:
    """The column epsilon ``e`` that the histograms of pure epsilons ``e * w`` (``weights``) may
    have for their composition to be (``epsilon``, ``delta``)-DP on its own: the largest ``e`` whose
    cost, the smaller of sequential composition's (``e * sum(weights)``, pure) and RDP's at ``delta``,
    is at most ``epsilon``. At least ``epsilon / sum(weights)`` (sequential composition's split)."""
    total = float(sum(weights))
    if total <= 0:
        return epsilon
    low = epsilon / total

    def cost(e: float) -> float:
        return min(e * total, rdp_epsilon(statistics_rdp([e * w for w in weights]), delta))

    high = low * 2.0
    while cost(high) <= epsilon and high < low * 1e6:
        low, high = high, high * 2.0
    for _ in range(60):
        mid = math.sqrt(low * high)
        low, high = (mid, high) if cost(mid) <= epsilon else (low, mid)
    return low


def joint_noise(epsilon: float, delta: float, rate: float, steps: int, statistics: np.ndarray) -> float:
    """The smallest noise multiplier (to within ``TOLERANCE`` of ``epsilon``, as Opacus' search) with
    which ``steps`` DP-SGD steps at sampling ``rate``, composed with the histograms' RDP
    ``statistics``, are (``epsilon``, ``delta``)-DP; ValueError when none does (Opacus' message)."""
    def spent(noise: float) -> float:
        return rdp_epsilon(sgd_rdp(rate, noise, steps) + statistics, delta)

    low, high = 0.0, 10.0
    while spent(high) > epsilon:
        low, high = high, 2.0 * high
        if high > MAX_NOISE:
            raise ValueError("The privacy budget is too low.")
    while epsilon - spent(high) > TOLERANCE and high - low > 1e-6:
        mid = (low + high) / 2.0
        low, high = (mid, high) if spent(mid) > epsilon else (low, mid)
    return high
