"""From rows (time, symbol, position, score, fwd_return) to per-timestamp book returns and turnover.

The conventions (weights, tranches, costs) are written once, at the top of ``metrics/trading.py``; this file
implements them with sorts and ``index_add`` only, so its cost grows as N log N with no Python loop per row,
symbol or timestamp. A near-rectangular panel (most symbols at most timestamps) is laid out as a dense
(timestamps x symbols) grid, where "the same symbol h timestamps earlier" is a shift and a cross-section is a
row; a ragged one, whose grid would be mostly empty, takes sorts over the rows instead. Both give the same
numbers (``tests/test_trading_metrics.py`` checks one against the other).
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


DUPLICATE_ROWS = "two rows share a (time, symbol): pass one row per symbol and timestamp"


class Grid(NamedTuple):
    """Rows placed in a dense (T, S) grid of sorted timestamps x symbols."""

    cell: Tensor  # (N,) flat index g * S + s of each row, s the symbol's rank among those present
    n_times: int  # T
    n_symbols: int  # S

    def dense(self, values: Tensor, fill: float) -> Tensor:
        """(T, S, *rest) grid of per-row ``values`` (N, *rest), ``fill`` where a symbol has no row."""
        out = values.new_full((self.n_times * self.n_symbols, *values.shape[1:]), fill)
        out[self.cell] = values
        return out.view(self.n_times, self.n_symbols, *values.shape[1:])


def panel_grid(group: Tensor, symbol: Tensor, n_times: int) -> Grid | None:
    """The rows' dense grid, or None for a ragged panel (a grid of over 4N + 1024 cells) or no rows.

    group: (N,) timestamp index in [0, T); symbol: (N,) int64 codes.

    Raises:
        ValueError: two rows with the same (time, symbol).
    """
    n = len(symbol)
    if n == 0:
        return None
    code = symbol - symbol.min()
    span = int(code.max()) + 1
    if span > 4 * n + 1024:  # sparse codes: counting them would cost more than the sorts it saves
        return None
    present = torch.bincount(code, minlength=span) > 0
    n_symbols = int(present.sum())
    if n_times * n_symbols > 4 * n + 1024:
        return None
    cell = group * n_symbols + (torch.cumsum(present, dim=0) - 1)[code]
    if int(torch.bincount(cell, minlength=n_times * n_symbols).max()) > 1:
        raise ValueError(DUPLICATE_ROWS)
    return Grid(cell, n_times, n_symbols)


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


def book_weights(group: Tensor, symbol: Tensor, position: Tensor, score: Tensor, config: TradingConfig,
                 grid: Grid | None = None) -> Tensor:
    """(N,) weight of each row in the book, per unit of capital.

    ``per_symbol``: position / N_t, N_t = rows at the row's timestamp (flat rows count as cash).
    ``topk``: +1/(2k) for the k highest scores at the timestamp, -1/(2k) for the k lowest, 0 otherwise;
    a timestamp with fewer than 2k rows is flat. ``grid``: the rows' ``panel_grid`` when known (else made here).
    """
    if config.book == "per_symbol":
        n = torch.bincount(group).to(position.dtype)
        return position / n[group]
    k = config.k
    grid = grid if grid is not None else panel_grid(group, symbol, int(group.max()) + 1 if len(group) else 0)
    if grid is None:
        order, rank, size = _within_group_order(group, score, symbol)
    else:  # a stable sort of each timestamp's row of the grid: columns are in symbol order, absent cells last
        _, where = torch.sort(grid.dense(score.double(), torch.inf), dim=1, stable=True)
        columns = torch.arange(grid.n_symbols, device=where.device).expand_as(where)
        rank = torch.empty_like(where).scatter_(1, where, columns).view(-1)[grid.cell]
        order, size = slice(None), torch.bincount(group)[group]  # rank and size are already in row order
    leg = torch.where(rank >= size - k, 1.0, torch.where(rank < k, -1.0, 0.0)).to(position.dtype)
    leg = torch.where(size >= 2 * k, leg, torch.zeros_like(leg))
    weight = torch.empty_like(leg)
    weight[order] = leg / (2 * k)
    return weight


def rebalance_turnover(group: Tensor, symbol: Tensor, weight: Tensor, horizon: int, n_times: int,
                       grid: Grid | None = None) -> Tensor:
    """(T, K) turnover at each timestamp's rebalance: sum over symbols of |w(t_g, s) - w(t_{g-h}, s)|.

    ``weight``: (N,) or (N, K) weights of K books over the same rows (one sort serves them all); a (N,)
    weight gives a (T,) result. The previous weight is the same tranche's, h timestamps earlier (0 before
    its first rebalance, or when the symbol had no row then). A symbol held at t_{g-h} with no row at t_g
    is closed at t_g, when g < T: the book is marked to market at the end, not liquidated. ``grid``: the rows'
    ``panel_grid`` when known; without one a near-rectangular panel gets one here.

    Raises:
        ValueError: two rows with the same (time, symbol).
    """
    grid = grid if grid is not None else panel_grid(group, symbol, n_times)
    w2 = weight if weight.dim() == 2 else weight[:, None]
    if grid is not None:  # absent cells hold 0: no weight before the first rebalance, a close where a row is gone
        dense = grid.dense(w2, 0.0)
        previous = torch.zeros_like(dense)
        previous[horizon:] = dense[:-horizon]
        turnover = (dense - previous).abs().sum(dim=1)
        return turnover if weight.dim() == 2 else turnover[:, 0]
    key = symbol.long() * (n_times + horizon) + group  # unique per (symbol, timestamp)
    key, order = torch.sort(key)
    if bool((key[1:] == key[:-1]).any()):
        raise ValueError(DUPLICATE_ROWS)
    w2, g = w2[order], group[order]

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
    return turnover if weight.dim() == 2 else turnover[:, 0]


def book_series(time: Tensor, symbol: Tensor, position: Tensor, score: Tensor, fwd_return: Tensor,
                horizon: int, config: TradingConfig) -> BookSeries:
    """Per-timestamp gross return and turnover of the book and of the equal-weight benchmark.

    Inputs are (N,) rows with finite ``fwd_return``; ``time`` int64, ``symbol`` int64 codes, floats float64.
    """
    times, group = torch.unique(time, sorted=True, return_inverse=True)
    n_times = len(times)

    def per_time(v: Tensor) -> Tensor:
        return torch.zeros(n_times, dtype=v.dtype, device=v.device).index_add_(0, group, v)

    grid = panel_grid(group, symbol, n_times)
    weight = book_weights(group, symbol, position, score, config, grid)
    bench = 1.0 / torch.bincount(group, minlength=n_times).to(weight.dtype)[group]
    turnover = rebalance_turnover(group, symbol, torch.stack([weight, bench], dim=1), horizon, n_times, grid)
    return BookSeries(times, group, weight, per_time(weight * fwd_return), turnover[:, 0],
                      per_time(bench * fwd_return), turnover[:, 1])
