"""Selection-bias statistics: the deflated Sharpe ratio against its closed form and the paper's worked
example, and the PBO by CSCV against hand-worked cases, a loop reference and its known behaviour on noise."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
import torch
from scipy import stats

from ensemble.errors import EnsembleError
from ensemble.metrics.overfitting import OverfittingInputError, pbo
from ensemble.metrics.stats import (
    dsr,
    expected_max_sharpe,
    phase_matrix,
    probabilistic_sharpe,
    psr_from_moments,
)

# 20 per-period returns (the PSR test's series): Sharpe 0.2467 per period.
R = np.array([0.012, -0.004, 0.021, 0.003, -0.015, 0.009, 0.030, -0.002, 0.006, 0.011, -0.027, 0.014,
              0.002, 0.008, -0.006, 0.019, 0.004, -0.001, 0.013, 0.007])


def _rows(r: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return phase_matrix(torch.tensor(r, dtype=torch.float64), 1)


def _psr_scipy(r: np.ndarray, benchmark: float) -> float:
    """PSR (Bailey and Lopez de Prado 2012, eq. 11) computed independently with scipy."""
    sr = r.mean() / r.std(ddof=1)
    g3, g4 = stats.skew(r), stats.kurtosis(r, fisher=False)
    z = (sr - benchmark) * math.sqrt(len(r) - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)
    return float(stats.norm.cdf(z))


def test_dsr_with_one_trial_is_psr_against_zero():
    x, mask = _rows(R)
    one = float(dsr(x, mask, n_trials=1, sharpe_variance=0.37)[0])  # the variance is irrelevant for one trial
    assert one == float(probabilistic_sharpe(x, mask)[0])
    assert one == pytest.approx(_psr_scipy(R, 0.0), abs=1e-9)
    assert expected_max_sharpe(1, 4.0) == 0.0


def test_dsr_falls_strictly_as_trials_grow():
    x, mask = _rows(R)
    values = [float(dsr(x, mask, n, sharpe_variance=0.01)[0]) for n in (1, 10, 100)]
    assert values[0] > values[1] > values[2] > 0, values
    # Each against scipy with the benchmark written out: SR0 = sqrt(V)((1-g)z(1-1/N) + g z(1-1/(Ne))).
    for n, value in zip((10, 100), values[1:], strict=True):
        g = np.euler_gamma
        sr0 = 0.1 * ((1 - g) * stats.norm.ppf(1 - 1 / n) + g * stats.norm.ppf(1 - 1 / (n * np.e)))
        assert value == pytest.approx(_psr_scipy(R, sr0), abs=1e-9)


def test_dsr_reproduces_the_papers_worked_example():
    # Bailey and Lopez de Prado (2014), section 4 (numerical example): N = 100 trials whose annualised
    # Sharpe ratios have variance 1/2, a best annualised Sharpe of 2.5 over T = 1250 daily returns (250
    # a year), skewness -3, kurtosis 10. The paper finds SR0 = 0.1132 per day and DSR = 0.9004.
    sr0 = expected_max_sharpe(100, 0.5 / 250)  # annualised variance -> per-period: divide by 250
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    value = psr_from_moments(torch.tensor(2.5 / math.sqrt(250), dtype=torch.float64), torch.tensor(1250.0),
                             torch.tensor(-3.0), torch.tensor(10.0), sr0)
    assert float(value) == pytest.approx(0.9004, abs=5e-4)


def test_expected_max_sharpe_is_close_to_the_exact_expected_maximum_of_normals():
    # E[max of N standard normals], exact by numerical integration of N x phi(x) Phi(x)^(N-1).
    # The approximation is asymptotic in N: 2.3% high at N = 10, 0.9% at 100, 0.4% at 1000.
    grid = np.linspace(-10, 10, 200_001)
    for n, rel in ((10, 0.03), (100, 0.01), (1000, 0.005)):
        exact = np.trapezoid(grid * n * stats.norm.pdf(grid) * stats.norm.cdf(grid) ** (n - 1), grid)
        assert expected_max_sharpe(n, 4.0) == pytest.approx(2 * exact, rel=rel)  # sqrt(V) = 2


@pytest.mark.parametrize(("n_trials", "variance"), [(0, 1.0), (2.5, 1.0), (10, -1.0), (10, math.nan)])
def test_dsr_refuses_impossible_trials(n_trials, variance):
    with pytest.raises(EnsembleError, match=r"n_trials|sharpe_variance"):
        expected_max_sharpe(n_trials, variance)


# PBO. Hand-worked, N = 2, S = 2: blocks are rows 0-1 and 2-3; each half is one block.
#   A = [.01, .03 | -.01, .01]: block Sharpe (mean / std, ddof=1): .02 / .01414 = 1.414 | 0 / .01414 = 0
#   B = [.00, .02 |  .01, .03]:                                     .01 / .01414 = 0.707 | .02 / .01414 = 1.414
# Combination 1 (in-sample block 1): best A (1.414 > .707); out of sample A has 0 < 1.414: rank 1 of 2,
# w = 1/3, logit ln(1/2). Combination 2 (in-sample block 2): best B; out of sample .707 < 1.414: rank 1 again.
# The in-sample winner always loses out of sample: PBO = 1.
REVERSAL = np.array([[0.01, 0.00], [0.03, 0.02], [-0.01, 0.01], [0.01, 0.03]])
# Replace A's block 2 by [.03, .05] (Sharpe .04 / .01414 = 2.83): A wins both blocks, both combinations
# pick A and it ranks 2 of 2 out of sample: w = 2/3, logit ln 2, PBO = 0.
PERSISTENT = np.array([[0.01, 0.00], [0.03, 0.02], [0.03, 0.01], [0.05, 0.03]])


def test_pbo_hand_worked_cases():
    out = pbo(REVERSAL, partitions=2)
    assert out.pbo == 1.0 and out.best.tolist() == [0, 1]
    np.testing.assert_allclose(out.logits, [math.log(0.5)] * 2, rtol=1e-12)
    out = pbo(PERSISTENT, partitions=2)
    assert out.pbo == 0.0 and out.best.tolist() == [0, 0]
    np.testing.assert_allclose(out.logits, [math.log(2)] * 2, rtol=1e-12)
    # Three strategies: D = [-.01, .03 | -.03, -.01], block Sharpes .01 / .02828 = .354 | -.02 / .01414 = -1.414.
    # Comb. 1: best A (1.414), out of sample D -1.414 < A 0 < B 1.414: rank 2 of 3, w = 1/2, logit 0 (overfit).
    # Comb. 2: best B (1.414), out of sample D .354 < B .707 < A 1.414: rank 2 of 3 again.
    out = pbo(np.column_stack([REVERSAL, [-0.01, 0.03, -0.03, -0.01]]), partitions=2)
    np.testing.assert_allclose(out.logits, [0.0, 0.0], atol=1e-12)
    assert out.pbo == 1.0 and out.best.tolist() == [0, 1]
    # Ties, with a copy of B as column 2 (identical columns: exactly equal Sharpe ratios).
    # Comb. 1: best A, out of sample A 0 < B = B' 1.414: rank 1 of 3, logit ln(1/3).
    # Comb. 2: B and B' tie in sample (1.414): the lowest index, 1, is the best; out of sample B and B' tie
    # at .707 below A: average rank 1.5, w = 1.5 / 4, logit ln(1.5 / 2.5).
    out = pbo(np.column_stack([REVERSAL, REVERSAL[:, 1]]), partitions=2)
    np.testing.assert_allclose(out.logits, [math.log(1 / 3), math.log(1.5 / 2.5)], rtol=1e-12)
    assert out.pbo == 1.0 and out.best.tolist() == [0, 1]


def _pbo_loop(returns: np.ndarray, s: int) -> np.ndarray:
    """The paper's procedure written plainly: one combination at a time, Sharpe by np.std."""
    blocks = np.array_split(np.arange(len(returns)), s)
    logits = []
    for combo in combinations(range(s), s // 2):
        ins = np.concatenate([blocks[i] for i in combo])
        oos = np.concatenate([blocks[i] for i in range(s) if i not in combo])
        sharpe_in = returns[ins].mean(0) / returns[ins].std(0, ddof=1)
        sharpe_out = returns[oos].mean(0) / returns[oos].std(0, ddof=1)
        best = int(np.argmax(sharpe_in))
        w = (1 + np.sum(sharpe_out < sharpe_out[best])) / (returns.shape[1] + 1)
        logits.append(math.log(w / (1 - w)))
    return np.array(logits)


def test_pbo_matches_a_plain_loop_over_combinations():
    rng = np.random.default_rng(3)
    returns = rng.normal(0.0005, 0.01, (203, 7)) + rng.normal(0, 0.01, (203, 1))  # uneven blocks, correlated
    out = pbo(returns, partitions=6)
    np.testing.assert_allclose(out.logits, _pbo_loop(returns, 6), rtol=1e-12)


def test_pbo_of_pure_noise_is_one_half():
    # 50 strategies of i.i.d. N(0, 1%) daily returns, 500 days, S = 8 (70 combinations) per seed.
    values = [pbo(np.random.default_rng(seed).normal(0, 0.01, (500, 50)), partitions=8).pbo for seed in range(20)]
    assert abs(np.mean(values) - 0.5) <= 0.1, values


def test_pbo_is_small_when_one_strategy_has_real_skill():
    # Strategy 0 has an annualised Sharpe of 2 (daily mean 2 / sqrt(252) x 1%, 252 days a year) over 10
    # years of daily returns; the 49 others are noise. S = 16, the default.
    values = []
    for seed in range(5):
        returns = np.random.default_rng(seed).normal(0, 0.01, (2520, 50))
        returns[:, 0] += 2 / math.sqrt(252) * 0.01
        values.append(pbo(returns).pbo)
    assert max(values) < 0.1, values


@pytest.mark.parametrize(
    ("returns", "partitions", "message"),
    [
        (np.zeros((40, 1)), 4, "2 strategies"),
        (np.zeros(40), 4, "shape"),
        (np.full((40, 3), np.nan), 4, "non-finite value \\(row 0\\)"),
        (np.zeros((40, 3)), 5, "even"),
        (np.zeros((7, 3)), 4, "too few"),
    ],
)
def test_pbo_bad_input_is_one_line(returns, partitions, message):
    with pytest.raises(OverfittingInputError, match=message):
        pbo(returns, partitions)
