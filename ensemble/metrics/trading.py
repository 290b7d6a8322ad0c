"""Trading metrics of the predicted position, one equal-weight portfolio across symbols.

Convention
----------
Each row is (time, position, fwd_return): position = predicted class - 1 in {-1, 0, +1}, fwd_return the
realised h-bar forward return from that row. Rows whose fwd_return is NaN are dropped.

* Portfolio: R(t) = mean over the rows at timestamp t of position * fwd_return. Flat rows (position 0)
  are cash and still count in the mean, so R(t) is the return of an equal-weight book of all symbols.
* No overlap: an h-bar return must not be counted h times. Sort the unique timestamps t_0..t_{T-1}; the
  phase-j series R_j = [R(t_k) for k = j (mod h)] is the per-period return of a book rebalanced every h
  bars starting at bar j. Return-series metrics are computed on each R_j and averaged over the h phases,
  so every row is used and none is counted twice.

  - ``SharpeRatio``: mean(R_j) / std(R_j, unbiased) * sqrt(bars_per_year / h); a phase with fewer than
    2 periods or zero std contributes 0.
  - ``MaxDrawdown``: on additive equity E = [0, cumsum(R_j)...], max_k(max_{i<=k} E_i - E_k) >= 0.

* Per-trade metrics use every row; a row with position != 0 opens one tranche (a trade):
  ``NumTrades`` = count of such rows, ``Exposure`` = NumTrades / rows, ``WinRate`` = fraction of trades
  with position * fwd_return > 0 (0 with no trades), ``ProfitFactor`` = sum of trade gains / |sum of
  trade losses| (0 with no gains, inf with gains and no losses).
* With no rows every metric is 0.0, never NaN.
* ``equity_curve`` is the book of h staggered tranches of size 1/h each: cumsum over sorted unique
  timestamps of R(t) / h. Its final value is the phase average of sum(R_j).

DDP: the states are cat lists, so after sync every rank sees all rows; the grouping by timestamp happens in
``compute`` because the rows of one timestamp may come from different ranks.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.utilities import dim_zero_cat
from torchmetrics.utilities.distributed import gather_all_tensors


def _wide(x: Tensor) -> Tensor:
    # float64 keeps long sums of small returns accurate; MPS has no float64, so compute there on the CPU.
    return (x.cpu() if x.device.type == "mps" else x).double()


def portfolio_returns(time: Tensor, position: Tensor, fwd_return: Tensor) -> tuple[Tensor, Tensor]:
    """Sorted unique timestamps (T,) and the equal-weight portfolio return R(t) (T,) at each."""
    times, group = torch.unique(time, sorted=True, return_inverse=True)
    pnl = _wide(position) * _wide(fwd_return)
    group = group.to(pnl.device)
    total = torch.zeros(len(times), dtype=pnl.dtype, device=pnl.device).index_add_(0, group, pnl)
    rows = torch.zeros_like(total).index_add_(0, group, torch.ones_like(pnl))
    return times, total / rows


def equity_curve(time: Tensor, position: Tensor, fwd_return: Tensor, horizon: int) -> tuple[Tensor, Tensor]:
    """(unique_times (T,), cumulative pnl (T,)) of h staggered tranches of size 1/h, for plotting."""
    keep = ~torch.isnan(fwd_return)
    times, returns = portfolio_returns(time[keep], position[keep], fwd_return[keep])
    return times, torch.cumsum(returns / horizon, dim=0)


class _TradingMetric(Metric):
    """Holds the (time, position, fwd_return) rows; subclasses compute one number from them."""

    is_differentiable = False
    full_state_update = False

    def __init__(self, horizon: int, bars_per_year: float = 252.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.horizon = horizon
        self.bars_per_year = bars_per_year
        self.add_state("time", default=[], dist_reduce_fx="cat")
        self.add_state("position", default=[], dist_reduce_fx="cat")
        self.add_state("fwd_return", default=[], dist_reduce_fx="cat")

    def update(self, time: Tensor, position: Tensor, fwd_return: Tensor) -> None:
        """time: (B,) int64 timestamps; position: (B,) in {-1, 0, 1}; fwd_return: (B,) h-bar return."""
        keep = ~torch.isnan(fwd_return)
        self.time.append(time[keep].long())
        # One float dtype on every rank: all_gather needs matching dtypes.
        self.position.append(position[keep].to(self.dtype))
        self.fwd_return.append(fwd_return[keep].to(self.dtype))

    def _sync_dist(self, dist_sync_fn=gather_all_tensors, process_group=None) -> None:
        # torchmetrics pads a rank that saw no rows with float32 empties; int64 `time` needs an int64 one.
        if isinstance(self.time, list) and not self.time:
            self.time.append(torch.empty(0, dtype=torch.long, device=self.device))
        super()._sync_dist(dist_sync_fn, process_group)

    def _rows(self) -> tuple[Tensor, Tensor, Tensor]:
        if isinstance(self.time, list) and not self.time:
            empty = torch.empty(0, device=self.device)
            return empty.long(), empty, empty
        return dim_zero_cat(self.time), dim_zero_cat(self.position), dim_zero_cat(self.fwd_return)

    def _phases(self) -> list[Tensor]:
        """Non-overlapping per-period portfolio returns R_j for each phase j = 0..h-1."""
        _, returns = portfolio_returns(*self._rows())
        return [returns[j :: self.horizon] for j in range(self.horizon)]

    def _trade_pnl(self) -> tuple[Tensor, int]:
        """position * fwd_return of each trade (position != 0), and the number of rows."""
        _, position, fwd_return = self._rows()
        trades = position != 0
        return _wide(position[trades]) * _wide(fwd_return[trades]), len(position)


class SharpeRatio(_TradingMetric):
    """Annualised Sharpe ratio of the non-overlapping h-bar returns, averaged over the h phases."""

    higher_is_better = True

    def compute(self) -> Tensor:
        scale = math.sqrt(self.bars_per_year / self.horizon)
        ratios = []
        for r in self._phases():
            if len(r) < 2:
                ratios.append(0.0)
                continue
            std = r.std()
            # A std at rounding level means constant returns, whose Sharpe is undefined: count it as 0.
            ratios.append(0.0 if std <= 1e-9 * r.abs().max() else float(r.mean() / std) * scale)
        return torch.tensor(sum(ratios) / self.horizon, dtype=torch.float64)


class MaxDrawdown(_TradingMetric):
    """Largest peak-to-trough fall of the additive equity curve, averaged over the h phases."""

    higher_is_better = False

    def compute(self) -> Tensor:
        drawdowns = []
        for r in self._phases():
            equity = torch.cat([r.new_zeros(1), torch.cumsum(r, dim=0)])
            drawdowns.append(float((torch.cummax(equity, dim=0).values - equity).max()))
        return torch.tensor(sum(drawdowns) / self.horizon, dtype=torch.float64)


class ProfitFactor(_TradingMetric):
    """Sum of trade gains over |sum of trade losses|."""

    higher_is_better = True

    def compute(self) -> Tensor:
        pnl, _ = self._trade_pnl()
        gains, losses = float(pnl[pnl > 0].sum()), float(-pnl[pnl < 0].sum())
        value = 0.0 if gains == 0 else (math.inf if losses == 0 else gains / losses)
        return torch.tensor(value, dtype=torch.float64)


class WinRate(_TradingMetric):
    """Fraction of trades with a positive return."""

    higher_is_better = True

    def compute(self) -> Tensor:
        pnl, _ = self._trade_pnl()
        return torch.tensor(float((pnl > 0).sum()) / len(pnl) if len(pnl) else 0.0, dtype=torch.float64)


class NumTrades(_TradingMetric):
    """Number of rows with a non-zero position (each opens one tranche)."""

    def compute(self) -> Tensor:
        pnl, _ = self._trade_pnl()
        return torch.tensor(float(len(pnl)), dtype=torch.float64)


class Exposure(_TradingMetric):
    """Fraction of rows holding a non-zero position."""

    def compute(self) -> Tensor:
        pnl, rows = self._trade_pnl()
        return torch.tensor(len(pnl) / rows if rows else 0.0, dtype=torch.float64)


def trading_metrics(horizon: int, bars_per_year: float = 252.0) -> MetricCollection:
    """All trading metrics as one collection; they share a single copy of the row states."""
    kinds = {
        "sharpe": SharpeRatio,
        "win_rate": WinRate,
        "max_drawdown": MaxDrawdown,
        "profit_factor": ProfitFactor,
        "n_trades": NumTrades,
        "exposure": Exposure,
    }
    return MetricCollection(
        {name: kind(horizon, bars_per_year) for name, kind in kinds.items()},
        compute_groups=[list(kinds)],
    )
