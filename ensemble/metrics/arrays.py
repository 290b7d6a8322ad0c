"""The metric suite on NumPy arrays: how trees and blends, which predict outside Lightning, are scored."""

from __future__ import annotations

from functools import cache

import numpy as np
import torch

from ensemble.metrics.config import TradingConfig
from ensemble.metrics.suite import INTEGER_METRICS, MetricSuite


def score_probabilities(
    stage: str,
    probs: np.ndarray,
    y: np.ndarray,
    time: np.ndarray,
    fwd_return: np.ndarray,
    horizon: int,
    bars_per_year: float | None,
    symbol: np.ndarray | None = None,
    trading: TradingConfig | None = None,
) -> dict[str, float]:
    """``MetricSuite`` of one split, as nets compute it batch by batch.

    Args:
        stage: the metric prefix (``val``, ``test``).
        probs: (N, 3) class probabilities (short, flat, long).
        y: (N,) class ids 0/1/2.
        time: (N,) int64 nanoseconds since the epoch.
        fwd_return: (N,) the label's realised forward return (a fraction, not percent).
        horizon, bars_per_year, trading: as ``MetricSuite``.
        symbol: (N,) int64 symbol ids, one per symbol of the split (turnover and IC are per symbol).

    Returns:
        ``{stage}/<metric>`` -> value.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tens of thousands of rows: more threads only contend with the caller's own
    def tensor(values: np.ndarray, dtype: type) -> torch.Tensor:
        # torch wants writable memory; pandas hands out read-only views (a copy only when it must)
        array = np.ascontiguousarray(values, dtype=dtype)
        return torch.from_numpy(array if array.flags.writeable else array.copy())

    try:
        suite = MetricSuite(stage, horizon, bars_per_year, trading)
        suite.update(tensor(probs, np.float32), tensor(y, np.int64), tensor(time, np.int64),
                     tensor(fwd_return, np.float32), symbol=None if symbol is None else tensor(symbol, np.int64))
        return suite.compute()
    finally:
        torch.set_num_threads(threads)


@cache
def suite_metric_names() -> frozenset[str]:
    """The metric suite's names without a stage prefix (``log_loss``, ``f1_macro``, ``sharpe``, ...) less its
    counts (``INTEGER_METRICS``), read off the suite itself scored on 6 made-up rows, so a new metric is known
    at once."""
    n = 6
    names = score_probabilities("x", np.full((n, 3), 1 / 3), np.arange(n) % 3, np.arange(n, dtype=np.int64),
                                np.zeros(n), 1, 252.0, symbol=np.zeros(n, dtype=np.int64))  # fmt: skip
    return frozenset(k.split("/", 1)[1] for k in names) - INTEGER_METRICS
