"""The block-bootstrap interval of a loss difference against closed forms: a constant difference, the normal
approximation for i.i.d. differences, and whole timestamps moving together."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ensemble.metrics.bootstrap import BootstrapError, block_bootstrap_difference, default_block


def test_a_constant_difference_gives_a_zero_width_interval_at_that_value():
    rng = np.random.default_rng(0)
    b = rng.uniform(0.5, 1.5, 3000)
    out = block_bootstrap_difference(b + 0.0125, b, np.repeat(np.arange(1000), 3), horizon=5, resamples=300)
    assert out.difference == pytest.approx(0.0125, abs=1e-12)
    assert out.low == pytest.approx(0.0125, abs=1e-12) and out.high == pytest.approx(0.0125, abs=1e-12)
    assert out.block == 10 and out.level == 0.9  # max(h = 5, ceil(1000^(1/3)) = 10)


def test_iid_differences_match_the_normal_approximation():
    # i.i.d. N(0.01, 0.2^2) differences, one row per timestamp: the mean's 90% interval is
    # mean +- z(0.95) * 0.2 / sqrt(n) whatever the block length (blocks of independent rows are independent).
    n, sd = 40_000, 0.2
    d = np.random.default_rng(1).normal(0.01, sd, n)
    out = block_bootstrap_difference(d, np.zeros(n), np.arange(n), horizon=5, resamples=2000, seed=2)
    half = stats.norm.ppf(0.95) * sd / np.sqrt(n)
    assert out.high - out.low == pytest.approx(2 * half, rel=0.08)
    assert (out.low + out.high) / 2 == pytest.approx(d.mean(), abs=0.15 * half)


def test_blocks_keep_each_timestamps_symbols_together():
    # 10 symbols per timestamp. Correlated: every symbol of a timestamp has the same difference, so the mean
    # has the variance of 2,000 draws, not 20,000: the interval is sqrt(10) = 3.16 times the i.i.d. one's.
    # Resampling rows one by one would see 20,000 rows in both cases and give equal widths.
    rng = np.random.default_rng(3)
    times, symbols = 2000, 10
    time = np.repeat(np.arange(times), symbols)
    iid = rng.normal(0, 1, times * symbols)
    shared = np.repeat(rng.normal(0, 1, times), symbols)
    zero = np.zeros(times * symbols)
    width = {name: (lambda r: r.high - r.low)(block_bootstrap_difference(d, zero, time, horizon=1, block=1))
             for name, d in (("iid", iid), ("shared", shared))}
    assert width["shared"] / width["iid"] == pytest.approx(np.sqrt(symbols), rel=0.15)


def test_the_interval_is_seeded_and_the_block_is_at_least_the_horizon():
    d = np.random.default_rng(4).normal(0, 1, 500)
    first = block_bootstrap_difference(d, np.zeros(500), np.arange(500), horizon=20, seed=7)
    assert first == block_bootstrap_difference(d, np.zeros(500), np.arange(500), horizon=20, seed=7)
    assert first.block == 20 and default_block(500, 3) == 8


@pytest.mark.parametrize(("a", "b", "time", "kwargs", "message"), [
    (np.zeros(3), np.zeros(4), np.arange(3), {}, "alike"),
    (np.zeros(0), np.zeros(0), np.arange(0), {}, "no rows"),
    (np.array([0.0, np.inf]), np.zeros(2), np.arange(2), {}, "non-finite loss \\(row 1\\)"),
    (np.zeros(3), np.zeros(3), np.arange(3), {"level": 1.0}, "level"),
    (np.zeros(3), np.zeros(3), np.arange(3), {"block": 0}, ">= 1"),
])  # fmt: skip
def test_bad_input_is_one_line(a, b, time, kwargs, message):
    with pytest.raises(BootstrapError, match=message):
        block_bootstrap_difference(a, b, time, **kwargs)
