"""From rows (time, symbol, position, score, fwd_return) to per-timestamp book returns and turnover.

The conventions (weights, tranches, costs) are written once, at the top of ``metrics/trading.py``; this file
implements them with sorts and ``index_add`` only, so its cost grows as N log N with no Python loop per row,
symbol or timestamp.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ensemble.metrics.config import TradingConfig


class BookSeries(NamedTuple):
    """Per sorted unique timestamp (T,): the book's gross return and turnover, and the benchmark's."""

    times: Tensor  # (T,) int64 ns
    group: Tensor  # (N,) index of each row's timestamp in ``times``
    weight: Tensor  # (N,) each row's weight in the book
    gross: Tensor  # (T,) sum_s w(t, s) * fwd_return(t, s)
    turnover: Tensor  # (T,) sum_s |w(t, s) - w(t - h, s)|, w(t - h, s) = 0 before the first rebalance
    bench_gross: Tensor  # (T,) equal-weight long book of the same rows
    bench_turnover: Tensor  # (T,)

    def net(self, cost_rate: float) -> Tensor:
        """(T,) net return of the book: gross - cost_rate * turnover (cost_rate = (cost + slippage bps) * 1e-4)."""
        return self.gross - cost_rate * self.turnover

    def bench_net(self, cost_rate: float) -> Tensor:
        """(T,) net return of the benchmark, charged under the same convention."""
        return self.bench_gross - cost_rate * self.bench_turnover


def size_positions(probs: Tensor, config: TradingConfig) -> Tensor:
    """(B,) position of each row from its (B, 3) probabilities (short, flat, long), per ``config.sizing``."""
    side = (probs.argmax(dim=1) - 1).to(probs.dtype)  # class 0/1/2 -> short/flat/long = -1/0/+1
    if config.sizing == "prob_diff":
        return probs[:, 2] - probs[:, 0]
    if config.sizing == "threshold":
        return torch.where(probs.max(dim=1).values >= config.threshold, side, torch.zeros_like(side))
    return side


def _within_group_order(group: Tensor, score: Tensor, symbol: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Rows ordered by (group, score, symbol): (order, rank within the group, group size), per sorted row.

    The symbol breaks ties, so the order never depends on the order the rows arrived in.
    """
    order = torch.argsort(symbol, stable=True)
    order = order[torch.argsort(score[order], stable=True)]
    order = order[torch.argsort(group[order], stable=True)]
    g = group[order]
    size = torch.bincount(g)
    start = torch.cumsum(size, dim=0) - size
    return order, torch.arange(len(g), device=g.device) - start[g], size[g]


def book_weights(group: Tensor, symbol: Tensor, position: Tensor, score: Tensor, config: TradingConfig
                 ) -> Tensor:
    """(N,) weight of each row in the book, per unit of capital.

    ``per_symbol``: position / N_t, N_t = rows at the row's timestamp (flat rows count as cash).
    ``topk``: +1/(2k) for the k highest scores at the timestamp, -1/(2k) for the k lowest, 0 otherwise;
    a timestamp with fewer than 2k rows is flat.
    """
    if config.book == "per_symbol":
        n = torch.bincount(group).to(position.dtype)
        return position / n[group]
    k = config.k
    order, rank, size = _within_group_order(group, score, symbol)
    leg = torch.where(rank >= size - k, 1.0, torch.where(rank < k, -1.0, 0.0)).to(position.dtype)
    leg = torch.where(size >= 2 * k, leg, torch.zeros_like(leg))
    weight = torch.empty_like(leg)
    weight[order] = leg / (2 * k)
    return weight


def rebalance_turnover(group: Tensor, symbol: Tensor, weight: Tensor, horizon: int, n_times: int) -> Tensor:
    """(T, K) turnover at each timestamp's rebalance: sum over symbols of |w(t_g, s) - w(t_{g-h}, s)|.

    ``weight``: (N,) or (N, K) weights of K books over the same rows (one sort serves them all); a (N,)
    weight gives a (T,) result. The previous weight is the same tranche's, h timestamps earlier (0 before
    its first rebalance, or when the symbol had no row then). A symbol held at t_{g-h} with no row at t_g
    is closed at t_g, when g < T: the book is marked to market at the end, not liquidated.

    Raises:
        ValueError: two rows with the same (time, symbol).
    """
    key = symbol.long() * (n_times + horizon) + group  # unique per (symbol, timestamp)
    key, order = torch.sort(key)
    if bool((key[1:] == key[:-1]).any()):
        raise ValueError("two rows share a (time, symbol): pass one row per symbol and timestamp")
    w, g = weight[order], group[order]
    w2 = w if w.dim() == 2 else w[:, None]

    def lookup(shift: int) -> tuple[Tensor, Tensor]:  # (found, index into the sorted rows) of key + shift
        # A symbol with a row at every timestamp has it exactly `shift` rows away: try that first, and
        # search only the rows where a gap breaks it.
        target = key + shift
        idx = (torch.arange(len(key), device=key.device) + shift).clamp(0, max(len(key) - 1, 0))
        miss = key[idx] != target
        if bool(miss.any()):
            idx[miss] = torch.searchsorted(key, target[miss]).clamp_max(max(len(key) - 1, 0))
        return key[idx] == target, idx

    found, idx = lookup(-horizon)
    previous = torch.where(found[:, None], w2[idx], torch.zeros_like(w2))
    turnover = w2.new_zeros(n_times, w2.shape[1]).index_add_(0, g, (w2 - previous).abs())
    has_next, _ = lookup(horizon)
    closed = ~has_next & (g + horizon < n_times)
    turnover.index_add_(0, g[closed] + horizon, w2[closed].abs())
    return turnover if w.dim() == 2 else turnover[:, 0]


def book_series(time: Tensor, symbol: Tensor, position: Tensor, score: Tensor, fwd_return: Tensor,
                horizon: int, config: TradingConfig) -> BookSeries:
    """Per-timestamp gross return and turnover of the book and of the equal-weight benchmark.

    Inputs are (N,) rows with finite ``fwd_return``; ``time`` int64, ``symbol`` int64 codes, floats float64.
    """
    times, group = torch.unique(time, sorted=True, return_inverse=True)
    n_times = len(times)

    def per_time(v: Tensor) -> Tensor:
        return torch.zeros(n_times, dtype=v.dtype, device=v.device).index_add_(0, group, v)

    weight = book_weights(group, symbol, position, score, config)
    bench = 1.0 / torch.bincount(group, minlength=n_times).to(weight.dtype)[group]
    turnover = rebalance_turnover(group, symbol, torch.stack([weight, bench], dim=1), horizon, n_times)
    return BookSeries(times, group, weight, per_time(weight * fwd_return), turnover[:, 0],
                      per_time(bench * fwd_return), turnover[:, 1])
