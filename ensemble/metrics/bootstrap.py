"""Block-bootstrap interval of the difference of two prediction sets' mean per-row loss on the same rows.

Rows of one timestamp share a market move, and an h-bar label overlaps the next h - 1 labels, so rows are
not independent: resampling them one by one understates the spread. The moving-block bootstrap (Kuensch
1989, "The jackknife and the bootstrap for general stationary observations", Ann. Statist. 17(3)) resamples
runs of ``block`` consecutive **timestamps**, every symbol of a timestamp with it, and keeps the
dependence within a block. With ``block`` >= h no label's overlap is cut by more than the block's edge.

The statistic of a resample is sum(d over its rows) / (its rows): the per-row mean, with each timestamp
weighted by its row count, as the full-sample mean is. Per-timestamp sums and counts are prefix-summed once,
so a block's sum is one subtraction: the cost is O(rows + resamples x blocks), with no loop over rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ensemble.errors import EnsembleError


class BootstrapError(EnsembleError):
    """Inputs the interval cannot be computed from; the message names the argument."""


@dataclass(frozen=True)
class BootstrapInterval:
    """``difference``: mean(a) - mean(b) over all rows; ``low``/``high``: the percentile interval at
    ``level``; ``block``: timestamps per block; ``resamples``: how many were drawn."""

    difference: float
    low: float
    high: float
    level: float
    block: int
    resamples: int


def default_block(n_times: int, horizon: int) -> int:
    """max(h, ceil(T^(1/3))) timestamps: at least the label horizon, and growing as T^(1/3), the rate that
    minimises the error of a block-bootstrap variance (Hall, Horowitz and Jing 1995, Biometrika 82(3))."""
    return max(int(horizon), math.ceil(n_times ** (1 / 3)))


def block_bootstrap_difference(loss_a: np.ndarray, loss_b: np.ndarray, time: np.ndarray, horizon: int = 1,
                               block: int | None = None, level: float = 0.9, resamples: int = 2000,
                               seed: int = 0) -> BootstrapInterval:  # fmt: skip
    """Difference of mean per-row losses ``mean(loss_a - loss_b)`` with a moving-block bootstrap interval.

    Args:
        loss_a, loss_b: (N,) per-row losses of two prediction sets on the same rows (e.g. -ln p(true class),
            nats), row i of both being the same (timestamp, symbol).
        time: (N,) the rows' timestamps (any sortable dtype: int64 ns, datetime64); rows of one timestamp
            are resampled together.
        horizon: h, bars per label; the block is never shorter.
        block: timestamps per block; default ``default_block(T, h)``. Capped at T.
        level: the interval's coverage, in (0, 1); the bounds are the (1 - level)/2 and (1 + level)/2
            quantiles of the resampled differences (the percentile interval, Efron and Tibshirani 1993).
        resamples: B, bootstrap resamples (each is ceil(T / block) blocks with uniform random starts in
            [0, T - block], the last one cut so every resample holds exactly T timestamps).
        seed: numpy ``default_rng`` seed: the same inputs and seed give the same interval.

    Raises:
        BootstrapError: shapes that differ, no rows, non-finite losses, ``level`` outside (0, 1), ``block``,
            ``horizon`` or ``resamples`` < 1.
    """
    a, b = np.asarray(loss_a, dtype=np.float64), np.asarray(loss_b, dtype=np.float64)
    time = np.asarray(time)
    if a.ndim != 1 or a.shape != b.shape or a.shape != time.shape:
        raise BootstrapError(f"block bootstrap: loss_a, loss_b and time must be (N,) alike, got {a.shape}, "
                             f"{b.shape}, {time.shape}")  # fmt: skip
    if not len(a):
        raise BootstrapError("block bootstrap: no rows")
    d = a - b
    if not np.isfinite(d).all():
        raise BootstrapError(f"block bootstrap: a non-finite loss (row {int(np.flatnonzero(~np.isfinite(d))[0])})")
    if not 0 < level < 1:
        raise BootstrapError(f"block bootstrap: level must lie in (0, 1), got {level}")
    if horizon < 1 or resamples < 1 or (block is not None and block < 1):
        raise BootstrapError(f"block bootstrap: horizon, block and resamples must be >= 1, got {horizon}, "
                             f"{block}, {resamples}")  # fmt: skip
    _, group = np.unique(time, return_inverse=True)
    n_times = int(group.max()) + 1
    block = min(int(block or default_block(n_times, horizon)), n_times)
    sums = np.concatenate([[0.0], np.cumsum(np.bincount(group, weights=d, minlength=n_times))])
    counts = np.concatenate([[0.0], np.cumsum(np.bincount(group, minlength=n_times).astype(np.float64))])
    k = -(-n_times // block)
    lengths = np.full(k, block)
    lengths[-1] = n_times - block * (k - 1)  # the last block is cut: T timestamps per resample
    starts = np.random.default_rng(seed).integers(0, n_times - block + 1, size=(resamples, k))
    ends = starts + lengths

    def total(prefix: np.ndarray) -> np.ndarray:  # (B,) sum over each resample's blocks
        return (prefix[ends] - prefix[starts]).sum(axis=1)

    stats = total(sums) / total(counts)
    low, high = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return BootstrapInterval(float(d.mean()), float(low), float(high), float(level), block, int(resamples))
