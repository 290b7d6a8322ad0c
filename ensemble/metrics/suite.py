"""One metric suite for every model family, so nets and trees log identical names."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ensemble.metrics.book import size_positions
from ensemble.metrics.classification import CLASS_NAMES, classification_metrics
from ensemble.metrics.config import TradingConfig
from ensemble.metrics.trading import trading_metrics

# metrics whose values are whole numbers (counts, and the bars a year the data has): tables show them as integers
INTEGER_METRICS = frozenset({"n_trades", "ic_skipped", "bars_per_year"})
# metrics where lower is better (the training loss included); every other metric of the suite is higher-is-better
LOWER_IS_BETTER = ("loss", "log_loss", "brier", "ece", "max_drawdown", "turnover", "cost_drag")


# the classification metrics' names (``classification_metrics``: per-class ones end in _short/_flat/_long) and the
# training loss: the only suite metrics the ``trading`` section (costs, sizing, book, benchmark) cannot change
_CLASSIFICATION = ("accuracy", "balanced_accuracy", "brier", "ece", "f1", "log_loss", "precision", "recall", "loss",
                   "partial")  # fmt: skip


def books_on_trading(metric: str) -> bool:
    """Whether a suite metric is booked with the ``trading`` section (Sharpe, turnover, IC, ... and the
    ``bars_per_year`` it annualised with): every metric but the classification ones and the loss. ``metric``: a
    suite name, with or without its stage prefix (``val/sharpe_net``, ``log_loss``)."""
    name = metric.rsplit("/", 1)[-1]
    return not any(name == c or name.startswith(f"{c}_") for c in _CLASSIFICATION)


def metric_mode(metric: str) -> Literal["min", "max"]:
    """``"min"`` for a metric where lower is better (``val/log_loss``, ``oof/brier``, ``loss``), else ``"max"``.

    ``metric``: a suite name, with or without its stage prefix (``val/``, ``oof/``, ``test/``).
    """
    return "min" if metric.rsplit("/", 1)[-1].startswith(LOWER_IS_BETTER) else "max"


class MetricSuite(torch.nn.Module):
    """Classification and trading metrics of one stage, keyed ``{stage}/{name}``.

    An ``nn.Module`` so it moves with the LightningModule that owns it and its metrics sync under DDP.

    Args:
        stage: key prefix (``val``, ``test``, ...).
        horizon: h, bars per forward return.
        bars_per_year: annualisation; ``None``: inferred from the evaluated timestamps. ``trading.bars_per_year``,
            when set, wins over it.
        trading: costs, sizing, book and benchmark (default: ``TradingConfig()``, 5 bps, arg-max, per symbol).
    """

    def __init__(self, stage: str, horizon: int, bars_per_year: float | None = 252.0,
                 trading: TradingConfig | None = None) -> None:
        super().__init__()
        self.stage = stage
        self.trading_config = trading or TradingConfig()
        self.classification = classification_metrics(CLASS_NAMES)
        self.trading = trading_metrics(horizon, bars_per_year, self.trading_config)

    def update(self, probs: Tensor, target: Tensor, time: Tensor, fwd_return: Tensor,
               symbol: Tensor | None = None) -> None:
        """probs: (B, 3) class probabilities; target: (B,) in {0, 1, 2}; time: (B,) int64 ns; fwd_return: (B,)
        h-bar return (NaN: no trading row); symbol: (B,) int64 symbol codes, required.

        Raises:
            ValueError: ``symbol`` missing (turnover, costs and the top-k book follow each symbol).
        """
        if symbol is None:
            raise ValueError("MetricSuite.update needs symbol= (B,) int64 symbol codes: turnover, costs and "
                             "the top-k book follow each symbol")
        probs, target = probs.detach(), target.detach()
        self.classification.update(probs, target)
        score = probs[:, 2] - probs[:, 0]  # p_long - p_short: ranks the top-k book and feeds the IC
        position = size_positions(probs, self.trading_config)
        self.trading.update(time, position, fwd_return.detach(), symbol.detach(), score)

    def compute(self) -> dict[str, float]:
        results = {**self.classification.compute(), **self.trading.compute()}
        return {f"{self.stage}/{name}": float(value) for name, value in results.items()}

    def confusion_matrix(self) -> Tensor:
        """(3, 3) counts; rows are true classes, columns predicted ones."""
        with self.classification.sync_context():  # the sum over every process under DDP
            return self.classification.confusion.clone()

    def reset(self) -> None:
        self.classification.reset()
        self.trading.reset()
