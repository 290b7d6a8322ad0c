"""Trading metrics of the predicted book: before and after costs, against a benchmark, and the IC.

Rows and weights
----------------
A row is (time t, symbol s, position, score, fwd_return): the position comes from the class probabilities
per ``TradingConfig.sizing`` (argmax: -1/0/+1), score = p_long - p_short, fwd_return is the realised h-bar
return from t. Rows whose fwd_return is NaN are dropped (that symbol is out of the book at t). One row per (t, s).

* Weights w(t, s), per unit of capital:
  - ``per_symbol``: w = position / N_t, N_t = rows at t; flat rows are cash, so R(t) = mean of position * r.
  - ``topk``: +1/(2k) on the k highest scores at t, -1/(2k) on the k lowest (ties broken by symbol code):
    dollar-neutral, gross exposure 1; flat at a timestamp with fewer than 2k rows.
  - benchmark ``equal_weight``: w = 1/N_t on every row, long the universe.
* Gross return of the rebalance at t: R(t) = sum_s w(t, s) * fwd_return(t, s).

No overlap: h staggered tranches
--------------------------------
Sort the unique timestamps t_0..t_{T-1}. An h-bar return must not be counted h times, so the book is h
tranches: tranche (phase) j rebalances at t_k for k = j (mod h) and holds w(t_k, .) until its next rebalance
h bars later, earning fwd_return(t_k, .). Its per-period returns R_j = [R(t_k) for k = j (mod h)] do not
overlap. Return-series metrics are computed on each R_j and averaged over the h phases: every row is used
once and none twice.

Turnover and costs under the tranches
-------------------------------------
* Each tranche is a book of its own. At t_k it trades from its previous holding w(t_{k-h}, .) to w(t_k, .):
  TO(t_k) = sum_s |w(t_k, s) - w(t_{k-h}, s)|, with w(t_{k-h}, s) = 0 before the tranche's first
  rebalance or when s had no row at t_{k-h}. A symbol held at t_{k-h} with no row at t_k is closed at t_k.
  Nothing is liquidated after the last timestamp (marked to market): a constant position pays at entry
  only, and at exit only if it is closed within the data.
* Net return: R_net(t_k) = R(t_k) - c * TO(t_k), c = (cost_bps + slippage_bps) * 1e-4 per unit of |dw|.
* The staggered book (the h tranches at 1/h each: the equity curve) trades TO(t)/h and pays c * TO(t)/h at
  each bar: the average of the phase books, so curves and metrics agree.
* ``turnover``: mean over phases of the mean TO per rebalance (a tranche rebalances every h bars).
* ``cost_drag`` = c * turnover * P: annualised return lost to costs, P = bars_per_year / h periods a year.
* ``break_even_bps`` = 1e4 * mean(R) / turnover: the cost + slippage at which the mean net return is 0
  (0 with no turnover, which means no position either).

Metrics
-------
Means over periods are averaged over the phases; annualised returns are arithmetic, mean * P.

* ``sharpe`` (gross) and ``sharpe_net``: mean / std(ddof=1) * sqrt(P); a phase with fewer than 2 periods
  or zero std gives 0.
* ``psr``: probabilistic Sharpe ratio of the net per-period returns against 0 (Bailey and Lopez de Prado
  2012, see ``stats.probabilistic_sharpe``); skew, kurtosis and track length n are those of each phase.
* ``max_drawdown``: of the gross additive equity [0, cumsum(R_j)...] per phase (>= 0).
* ``excess_return`` = mean(R_net - B_net) * P and ``information_ratio`` = Sharpe of R_net - B_net, B the
  benchmark charged under the same convention (entry, exits, 1/N_t changes). Absent with benchmark ``none``.
* Per row: a trade is a row with a non-zero position (``topk``: +-1 for a row in a leg); ``n_trades`` counts
  them (position-bars, not position changes: ``turnover`` measures those), ``exposure`` = mean |position|
  over rows (trades / rows for -1/0/+1 positions, mean |p_long - p_short| under ``prob_diff``),
  ``win_rate`` = share of trades with position * fwd_return > 0,
  ``profit_factor`` = trade gains / |trade losses| (0 without gains, inf with gains and no losses).
* ``ic`` / ``rank_ic``: per timestamp, the Pearson / Spearman correlation across symbols of score and
  fwd_return, averaged over timestamps; ``icir`` / ``rank_icir``: their mean / std (ddof=1), not
  annualised (as Qlib reports them). A timestamp with fewer than 3 rows or a constant score or return is
  skipped; ``ic_skipped`` counts them. Each timestamp is one cross-section: nothing is counted twice. With
  no cross-section left (one symbol), they are NaN (undefined, written as null), as is an IR of under 2.
* ``bars_per_year``: the annualisation used (given, or inferred from the timestamps).

With no rows every metric is 0.0, never NaN.

DDP: the states are cat lists, so after sync every rank sees all rows; the grouping by timestamp happens in
``compute`` because the rows of one timestamp may come from different ranks.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat
from torchmetrics.utilities.distributed import gather_all_tensors

from ensemble.data.calendar import infer_bars_per_year
from ensemble.metrics.book import book_series
from ensemble.metrics.config import TradingConfig
from ensemble.metrics.stats import (
    cross_sectional_ics,
    masked_mean,
    max_drawdown,
    phase_matrix,
    probabilistic_sharpe,
    sharpe,
)


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
    """(unique_times (T,), cumulative gross pnl (T,)) of h staggered tranches of size 1/h, for plotting."""
    keep = ~torch.isnan(fwd_return)
    times, returns = portfolio_returns(time[keep], position[keep], fwd_return[keep])
    return times, torch.cumsum(returns / horizon, dim=0)


def trade_stats(position: Tensor, fwd_return: Tensor) -> dict[str, float]:
    """win_rate, profit_factor, n_trades and exposure of rows (N,), a trade being a non-zero position.

    ``exposure`` is the mean |position| over the rows: the share of rows held for -1/0/+1 positions, and the
    mean |p_long - p_short| under ``prob_diff`` sizing (a book a few percent invested must not read as 1.0).
    """
    trades = position != 0
    pnl = _wide(position[trades]) * _wide(fwd_return[trades])
    gains, losses = float(pnl[pnl > 0].sum()), float(-pnl[pnl < 0].sum())
    return {
        "win_rate": float((pnl > 0).sum()) / len(pnl) if len(pnl) else 0.0,
        "profit_factor": 0.0 if gains == 0 else (math.inf if losses == 0 else gains / losses),
        "n_trades": float(len(pnl)),
        "exposure": float(position.abs().mean()) if len(position) else 0.0,
    }


class _TradingMetric(Metric):
    """Holds the rows (time, symbol, position, score, fwd_return); subclasses compute from them."""

    is_differentiable = False
    full_state_update = False

    def __init__(self, horizon: int, bars_per_year: float | None = 252.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if bars_per_year is not None and not bars_per_year > 0:
            raise ValueError(f"bars_per_year must be > 0 (or None to infer it), got {bars_per_year}")
        self.horizon = horizon
        self.bars_per_year = bars_per_year
        for name in ("time", "symbol", "position", "score", "fwd_return"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, time: Tensor, position: Tensor, fwd_return: Tensor, symbol: Tensor | None = None,
               score: Tensor | None = None) -> None:
        """time: (B,) int64 ns; position: (B,) sized position; fwd_return: (B,) h-bar return;
        symbol: (B,) int64 symbol codes (None: -1, enough for the gross metrics); score: (B,) ranking
        score p_long - p_short (None: the position)."""
        keep = ~torch.isnan(fwd_return)
        self.time.append(time[keep].long())
        self.symbol.append(torch.full_like(self.time[-1], -1) if symbol is None else symbol[keep].long())
        # One float dtype on every rank (all_gather needs matching dtypes): float64, so that costs of a few
        # 1e-4 on returns of a few 1e-2 keep their digits; MPS has no float64.
        dtype = torch.float32 if self.device.type == "mps" else torch.float64
        self.position.append(position[keep].to(dtype))
        self.score.append((position if score is None else score)[keep].to(dtype))
        self.fwd_return.append(fwd_return[keep].to(dtype))

    def _sync_dist(self, dist_sync_fn=gather_all_tensors, process_group=None) -> None:
        # torchmetrics pads a rank that saw no rows with float32 empties; the gather needs every rank's dtypes.
        if isinstance(self.time, list) and not self.time:
            dtype = torch.float32 if self.device.type == "mps" else torch.float64
            for name in ("time", "symbol", "position", "score", "fwd_return"):
                kind = torch.long if name in ("time", "symbol") else dtype
                getattr(self, name).append(torch.empty(0, dtype=kind, device=self.device))
        super()._sync_dist(dist_sync_fn, process_group)

    def _rows(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(time, symbol, position, score, fwd_return), the floats as float64."""
        if isinstance(self.time, list) and not self.time:
            empty = torch.empty(0, device=self.device, dtype=torch.float64)
            return empty.long(), empty.long(), empty, empty, empty
        time, symbol = dim_zero_cat(self.time), dim_zero_cat(self.symbol)
        return time, symbol, *(_wide(dim_zero_cat(x)) for x in (self.position, self.score, self.fwd_return))

    def _annualisation(self, time: Tensor) -> float:
        """bars_per_year as given, else inferred from the rows' timestamps (0 with fewer than 2)."""
        if self.bars_per_year is not None:
            return float(self.bars_per_year)
        times = torch.unique(time)
        return infer_bars_per_year(times.cpu().numpy()) if len(times) >= 2 else 0.0

    def _gross_phases(self) -> tuple[Tensor, Tensor]:
        time, _, position, _, fwd_return = self._rows()
        return phase_matrix(portfolio_returns(time, position, fwd_return)[1], self.horizon)


class TradingMetrics(_TradingMetric):
    """Every trading metric of the book from one copy of the rows: ``compute`` returns {name: value}.

    The convention is in this module's docstring. ``update`` needs ``symbol`` (turnover and costs follow
    each symbol's weight; ``topk`` breaks ties by it).

    Args:
        horizon: h, bars per forward return.
        bars_per_year: annualisation; ``None``: inferred from the evaluated timestamps.
        config: costs, sizing, book, benchmark; its ``bars_per_year``, when set, wins over the argument.
    """

    def __init__(self, horizon: int, bars_per_year: float | None = 252.0, config: TradingConfig | None = None,
                 **kwargs) -> None:
        self.config = config or TradingConfig()
        super().__init__(horizon, self.config.bars_per_year or bars_per_year, **kwargs)

    def update(self, time: Tensor, position: Tensor, fwd_return: Tensor, symbol: Tensor | None = None,
               score: Tensor | None = None) -> None:
        """As the base class; raises ValueError without ``symbol``."""
        if symbol is None:
            raise ValueError("trading metrics need symbol= (B,) int64 symbol codes: turnover, costs and the "
                             "top-k book follow each symbol")
        super().update(time, position, fwd_return, symbol, score)

    def compute(self) -> dict[str, Tensor]:
        """{name: float64 scalar} of every metric in the module docstring.

        Raises:
            ValueError: a ``topk`` book whose k exceeds half the symbols seen; two rows with one (time, symbol).
        """
        time, symbol, position, score, fwd_return = self._rows()
        h, cfg = self.horizon, self.config
        if cfg.book == "topk" and len(symbol):  # else a k too large for the universe gives a silently flat book
            cfg.check_symbols(len(torch.unique(symbol)))
        bars_per_year = self._annualisation(time)
        annual = math.sqrt(bars_per_year / h)  # Sharpe of an h-bar period -> per year
        s = book_series(time, symbol, position, score, fwd_return, h, cfg)
        gross, mask = phase_matrix(s.gross, h)
        turnover = phase_matrix(s.turnover, h)[0]
        net = phase_matrix(s.net(cfg.cost_rate), h)[0]
        mean_gross, mean_turnover = float(masked_mean(gross, mask).mean()), float(masked_mean(turnover, mask).mean())
        out = {
            "sharpe": float(sharpe(gross, mask).mean()) * annual,
            "sharpe_net": float(sharpe(net, mask).mean()) * annual,
            "psr": float(probabilistic_sharpe(net, mask).mean()),
            "max_drawdown": float(max_drawdown(gross, mask).mean()),
            "turnover": mean_turnover,
            "cost_drag": cfg.cost_rate * mean_turnover * bars_per_year / h,
            "break_even_bps": 1e4 * mean_gross / mean_turnover if mean_turnover > 0 else 0.0,
        }
        if cfg.benchmark == "equal_weight":
            excess = phase_matrix(s.net(cfg.cost_rate) - s.bench_net(cfg.cost_rate), h)[0]
            out["excess_return"] = float(masked_mean(excess, mask).mean()) * bars_per_year / h
            out["information_ratio"] = float(sharpe(excess, mask).mean()) * annual
        traded = position if cfg.book == "per_symbol" else torch.sign(s.weight)  # topk: +-1 in a leg
        out.update(trade_stats(traded, fwd_return))
        out.update(self._information_coefficients(s.group, len(s.times), score, fwd_return))
        out["bars_per_year"] = bars_per_year
        return {k: torch.tensor(v, dtype=torch.float64) for k, v in out.items()}

    @staticmethod
    def _information_coefficients(group: Tensor, n_times: int, score: Tensor, fwd_return: Tensor
                                  ) -> dict[str, float]:
        ic, rank_ic, valid = cross_sectional_ics(group, n_times, score, fwd_return)
        out = {"ic_skipped": float(n_times - int(valid.sum()))}
        for name, values in (("ic", ic[valid]), ("rank_ic", rank_ic[valid])):
            # no cross-section (one symbol, or every timestamp skipped): undefined (NaN, written as null), not 0
            mean = float(values.mean()) if len(values) else math.nan
            std = float(values.std()) if len(values) >= 2 else 0.0
            out[name] = mean
            out[f"{name}ir"] = mean / std if std > 0 else math.nan
        return out


class SharpeRatio(_TradingMetric):
    """Annualised gross Sharpe ratio of the non-overlapping h-bar returns, averaged over the h phases."""

    higher_is_better = True

    def compute(self) -> Tensor:
        scale = math.sqrt(self._annualisation(self._rows()[0]) / self.horizon)
        return torch.tensor(float(sharpe(*self._gross_phases()).mean()) * scale, dtype=torch.float64)


class MaxDrawdown(_TradingMetric):
    """Largest peak-to-trough fall of the gross additive equity curve, averaged over the h phases."""

    higher_is_better = False

    def compute(self) -> Tensor:
        return torch.tensor(float(max_drawdown(*self._gross_phases()).mean()), dtype=torch.float64)


class _TradeStat(_TradingMetric):
    key = ""

    def compute(self) -> Tensor:
        _, _, position, _, fwd_return = self._rows()
        return torch.tensor(trade_stats(position, fwd_return)[self.key], dtype=torch.float64)


class ProfitFactor(_TradeStat):
    """Sum of trade gains over |sum of trade losses|."""

    higher_is_better = True
    key = "profit_factor"


class WinRate(_TradeStat):
    """Fraction of trades with a positive return."""

    higher_is_better = True
    key = "win_rate"


class NumTrades(_TradeStat):
    """Number of rows with a non-zero position (each opens one tranche)."""

    key = "n_trades"


class Exposure(_TradeStat):
    """Mean |position| over rows: the share of rows held for -1/0/+1 positions, mean |p_long - p_short| under
    ``prob_diff``."""

    key = "exposure"


def trading_metrics(horizon: int, bars_per_year: float | None = 252.0, config: TradingConfig | None = None
                    ) -> TradingMetrics:
    """All trading metrics as one ``Metric`` whose ``compute`` returns {name: value}."""
    return TradingMetrics(horizon, bars_per_year, config)
