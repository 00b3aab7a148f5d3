"""The Rényi-DP account (pipeline.training.accounting): the Laplace mechanism's RDP is the Rényi
divergence of its two output densities (computed here by quadrature), at most its pure epsilon; the
histograms' column epsilon is the largest whose composition is within the part it is given, never
less than sequential composition's split; the joint noise search agrees with Opacus' when there are
no histograms."""

import math

import numpy as np
import pytest

from pipeline.training.accounting import (
    joint_noise,
    laplace_rdp,
    rdp_epsilon,
    rdp_orders,
    statistics_epsilon,
    statistics_rdp,
)


def _renyi_laplace(epsilon: float, alpha: float) -> float:
    """D_alpha(Lap(0, 1/eps) || Lap(1, 1/eps)) by quadrature (scipy's ``quad``), on each side of the
    densities' kinks at 0 and 1."""
    from scipy.integrate import quad

    b = 1.0 / epsilon

    def integrand(x: float) -> float:  # p^alpha q^(1 - alpha), the densities' 1 / (2b) kept once
        return math.exp((-alpha * abs(x) - (1 - alpha) * abs(x - 1)) / b) / (2 * b)

    total = sum(quad(integrand, lo, hi, epsabs=0, epsrel=1e-12, limit=200)[0]
                for lo, hi in ((-math.inf, 0.0), (0.0, 1.0), (1.0, math.inf)))
    return math.log(total) / (alpha - 1)


@pytest.mark.slow  # quadrature, over a second: the fast tier stays under a minute
@pytest.mark.parametrize("epsilon", [0.01, 0.3, 2.0])
def test_laplace_rdp_is_the_renyi_divergence_and_at_most_epsilon(epsilon):
    orders = [1.5, 2.0, 8.0, 32.0]
    ours = laplace_rdp(epsilon, orders)
    for a, r in zip(orders, ours):
        assert r == pytest.approx(_renyi_laplace(epsilon, a), rel=1e-4, abs=1e-9)
    assert np.all(laplace_rdp(epsilon) <= epsilon + 1e-15) and np.all(np.diff(laplace_rdp(epsilon)) >= -1e-15)
    assert laplace_rdp(0.01, [2.0])[0] == pytest.approx(2.0 * 0.01 ** 2 / 2, rel=0.02)  # about alpha e^2 / 2


def test_the_column_epsilon_is_the_largest_within_the_part():
    delta = 1e-6
    weights = [1.0] * 13 + [0.5] * 4  # Adult's: 13 histograms, 2 columns whose range is estimated too
    e = statistics_epsilon(weights, 0.3, delta)
    cost = min(e * sum(weights), rdp_epsilon(statistics_rdp([e * w for w in weights]), delta))
    assert 0.3 - 1e-6 <= cost <= 0.3 and e > 1.05 * 0.3 / sum(weights)  # RDP's composition beats the split
    more = 1.01 * e
    assert min(more * sum(weights), rdp_epsilon(statistics_rdp([more * w for w in weights]), delta)) > 0.3
    # One histogram: RDP's conversion costs more than its pure epsilon, so the split (all of it) stands.
    assert statistics_epsilon([1.0], 0.3, delta) == pytest.approx(0.3)


@pytest.mark.slow  # over a second: Opacus' own search: the fast tier stays under a minute
def test_with_no_histograms_the_joint_noise_is_opacus():
    from opacus.accountants.utils import get_noise_multiplier

    rate, steps = 2_000 / 32_561, 4_071
    ours = joint_noise(3.0, 3e-6, rate, steps, np.zeros(len(rdp_orders())))
    theirs = get_noise_multiplier(target_epsilon=3.0, target_delta=3e-6, sample_rate=rate, steps=steps,
                                  accountant="rdp", alphas=rdp_orders())
    assert ours == pytest.approx(theirs, rel=0.01)
    heavier = joint_noise(3.0, 3e-6, rate, steps, statistics_rdp([0.05] * 15))
    assert heavier > ours
    with pytest.raises(ValueError, match="too low"):
        joint_noise(0.5, 3e-6, rate, steps, statistics_rdp([1.0]))  # the histograms alone spend more than 0.5
