"""Metrics shared by every model family: torchmetrics `Metric`s that sync under DDP."""

from ensemble.data.calendar import infer_bars_per_year
from ensemble.metrics.classification import (
    CLASS_NAMES,
    BrierScore,
    ClassificationMetrics,
    LogLoss,
    classification_metrics,
)
from ensemble.metrics.config import TradingConfig
from ensemble.metrics.suite import MetricSuite
from ensemble.metrics.trading import (
    Exposure,
    MaxDrawdown,
    NumTrades,
    ProfitFactor,
    SharpeRatio,
    TradingMetrics,
    WinRate,
    equity_curve,
    portfolio_returns,
    trading_metrics,
)

__all__ = [
    "CLASS_NAMES",
    "BrierScore",
    "ClassificationMetrics",
    "Exposure",
    "LogLoss",
    "MaxDrawdown",
    "MetricSuite",
    "NumTrades",
    "ProfitFactor",
    "SharpeRatio",
    "TradingConfig",
    "TradingMetrics",
    "WinRate",
    "classification_metrics",
    "equity_curve",
    "infer_bars_per_year",
    "portfolio_returns",
    "trading_metrics",
]
