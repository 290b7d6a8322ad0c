"""Per-timestamp series behind the figures: the book's equity curves and the IC, same conventions as the metrics."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ensemble.metrics.book import book_series, size_positions
from ensemble.metrics.config import TradingConfig
from ensemble.metrics.stats import cross_sectional_ics


class EquityCurves(NamedTuple):
    """Cumulative returns (fractions, additive) of the staggered book at each sorted unique timestamp (T,)."""

    times: Tensor  # (T,) int64 ns
    gross: Tensor  # (T,) cumsum(R(t) / h)
    net: Tensor  # (T,) cumsum((R(t) - c * TO(t)) / h)
    benchmark: Tensor  # (T,) cumsum(B_net(t) / h); zeros with benchmark "none"


class ICSeries(NamedTuple):
    """Per sorted unique timestamp (T,): Pearson and Spearman IC, and whether the timestamp counts."""

    times: Tensor  # (T,) int64 ns
    ic: Tensor  # (T,) float64, 0 where not valid
    rank_ic: Tensor  # (T,)
    valid: Tensor  # (T,) bool: >= 3 rows and non-constant score and return


def _rows(time: Tensor, symbol: Tensor, probs: Tensor, fwd_return: Tensor) -> tuple[Tensor, ...]:
    keep = ~torch.isnan(fwd_return)
    return time[keep].long(), symbol[keep].long(), probs[keep].double(), fwd_return[keep].double()


def equity_curves(time: Tensor, symbol: Tensor, probs: Tensor, fwd_return: Tensor, horizon: int,
                  config: TradingConfig | None = None) -> EquityCurves:
    """The h staggered tranches at 1/h each (see ``metrics/trading.py``), before and after costs.

    time: (N,) int64 ns; symbol: (N,) int64 codes; probs: (N, 3) short/flat/long; fwd_return: (N,), NaN dropped.
    """
    config = config or TradingConfig()
    time, symbol, probs, fwd_return = _rows(time, symbol, probs, fwd_return)
    score = probs[:, 2] - probs[:, 0]
    s = book_series(time, symbol, size_positions(probs, config), score, fwd_return, horizon, config)
    bench = s.bench_net(config.cost_rate) if config.benchmark == "equal_weight" else torch.zeros_like(s.gross)
    return EquityCurves(s.times, *(torch.cumsum(x / horizon, dim=0)
                                   for x in (s.gross, s.net(config.cost_rate), bench)))


def ic_series(time: Tensor, probs: Tensor, fwd_return: Tensor) -> ICSeries:
    """IC of the score p_long - p_short against fwd_return across the rows of each timestamp."""
    time, _, probs, fwd_return = _rows(time, torch.zeros_like(time), probs, fwd_return)
    times, group = torch.unique(time, sorted=True, return_inverse=True)
    score = probs[:, 2] - probs[:, 0]
    return ICSeries(times, *cross_sectional_ics(group, len(times), score, fwd_return))
