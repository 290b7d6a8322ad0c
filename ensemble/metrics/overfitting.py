"""Probability of backtest overfitting (PBO) by combinatorially symmetric cross-validation (CSCV).

Bailey, Borwein, Lopez de Prado and Zhu (2015), "The probability of backtest overfitting", J. of
Computational Finance 20(4), section 2. The T periods of N candidate strategies' returns are cut into S
blocks in time order; each of the C(S, S/2) ways of taking half the blocks as the in-sample set (the rest
out-of-sample) picks the in-sample best strategy and asks where it ranks out of sample. PBO is the share
of those choices that rank at or below the out-of-sample median.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from ensemble.errors import EnsembleError


class OverfittingInputError(EnsembleError):
    """Returns or options the PBO cannot be computed from; the message names the argument."""


@dataclass(frozen=True)
class PBOResult:
    """``pbo``: share of the combinations with logit <= 0, in [0, 1].
    ``logits``: (C(S, S/2),) ln(w / (1 - w)) per combination, w = out-of-sample rank / (N + 1) of the
    in-sample best (rank 1 = lowest Sharpe), combinations in ``itertools.combinations`` order.
    ``best``: (C(S, S/2),) column index of each combination's in-sample best."""

    pbo: float
    logits: np.ndarray
    best: np.ndarray


def _set_sharpe(counts: np.ndarray, sums: np.ndarray, squares: np.ndarray, shift: np.ndarray,
                scale: np.ndarray) -> np.ndarray:
    """(K, N) per-period Sharpe (ddof=1) of K sets of rows from their counts (K, 1) and the sums and sums of
    squares (K, N) of the returns minus ``shift`` (N,), each column's mean: centring first keeps
    ``squares - count mean^2`` free of cancellation. A std at rounding level of ``scale`` (N,), each
    column's largest |return|, gives 0 (constant returns have no Sharpe, as ``stats.sharpe``)."""
    mean = sums / counts
    std = np.sqrt(np.maximum(squares - counts * mean**2, 0.0) / (counts - 1))
    ok = std > 1e-9 * scale
    return np.where(ok, (mean + shift) / np.where(ok, std, 1.0), 0.0)


def pbo(returns: np.ndarray, partitions: int = 16) -> PBOResult:
    """PBO of choosing the best of N strategies by Sharpe ratio, by CSCV.

    Args:
        returns: (T, N) per-period net returns (fractions), rows in time order, one column per candidate
            strategy. Sharpe ratios are per period (mean / std, ddof=1, not annualised); ranks do not
            depend on annualisation.
        partitions: S, even, >= 2. Rows are cut into S contiguous blocks of T // S or T // S + 1 rows
            (``np.array_split``: all rows are used). C(S, S/2) combinations are evaluated (12,870 for 16).

    Returns:
        ``PBOResult``. In-sample ties go to the lowest column index; out-of-sample ties share their average
        rank (as ``scipy.stats.rankdata``). With N odd, the in-sample best ranking exactly at the median has
        logit 0 and counts as overfit (the paper's integral of the logit density up to and including 0).

    Raises:
        OverfittingInputError: ``returns`` not 2-D, not finite, fewer than 2 strategies; ``partitions``
            odd or < 2; fewer than 2 rows per block.

    Every combination's Sharpe ratios come from per-block sums combined by one matrix product, so the
    cost is O(T N + C(S, S/2) S N) with no Python loop over rows or combinations.
    """
    returns = np.asarray(returns, dtype=np.float64)
    if returns.ndim != 2 or returns.shape[1] < 2:
        raise OverfittingInputError(f"pbo: returns must be (periods, strategies) with >= 2 strategies, "
                                    f"got shape {returns.shape}")
    if not np.isfinite(returns).all():
        row = int(np.argwhere(~np.isfinite(returns))[0, 0])
        raise OverfittingInputError(f"pbo: returns hold a non-finite value (row {row})")
    if partitions < 2 or partitions % 2:
        raise OverfittingInputError(f"pbo: partitions must be even and >= 2, got {partitions}")
    t, n = returns.shape
    if t < 2 * partitions:
        raise OverfittingInputError(f"pbo: {t} periods are too few for {partitions} partitions "
                                    f"(need >= 2 per block, {2 * partitions} in all)")
    sizes = np.array([len(b) for b in np.array_split(np.arange(t), partitions)])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    # Per-block sufficient statistics (S, N): Sharpe of any union of blocks follows without revisiting rows.
    shift = returns.mean(axis=0)
    centred = returns - shift
    counts = sizes.astype(np.float64)[:, None]
    sums = np.add.reduceat(centred, starts, axis=0)  # blocks are contiguous runs of rows
    squares = np.add.reduceat(centred**2, starts, axis=0)
    scale = np.abs(returns).max(axis=0)
    combos = list(combinations(range(partitions), partitions // 2))
    chosen = np.zeros((len(combos), partitions))
    chosen[np.repeat(np.arange(len(combos)), partitions // 2), np.ravel(combos)] = 1.0  # (C, S) in-sample
    rest = 1.0 - chosen

    def sharpe_of(sets: np.ndarray) -> np.ndarray:  # (C, S) block indicator -> (C, N)
        return _set_sharpe(sets @ counts, sets @ sums, sets @ squares, shift, scale)

    in_sample, out_of_sample = sharpe_of(chosen), sharpe_of(rest)
    best = in_sample.argmax(axis=1)  # first maximum: ties go to the lowest index
    # Rank of the chosen one alone (1 = worst), ties at their average rank, as scipy's rankdata: no sort.
    mine = out_of_sample[np.arange(len(combos)), best][:, None]
    rank = 1 + (out_of_sample < mine).sum(axis=1) + ((out_of_sample == mine).sum(axis=1) - 1) / 2
    w = rank / (n + 1)
    logits = np.log(w / (1 - w))
    return PBOResult(float(np.mean(logits <= 0)), logits, best)
