"""A walk-forward's figures: metrics per fold, and the out-of-fold equity curve with the fold boundaries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ensemble.io import write_figure
from ensemble.metrics.config import TradingConfig
from ensemble.metrics.curves import equity_curves
from ensemble.training.artifacts import PROB_COLUMNS, utc_ns
from ensemble.training.plots import equity_curve_figure, plt

PER_FOLD = (("f1_macro", "macro-F1", "macro-F1 (0..1)"), ("log_loss", "log loss", "log loss (nats)"),
            ("sharpe", "Sharpe", "Sharpe ratio (annualised)"))  # fmt: skip


def metrics_per_fold_figure(per_fold: pd.DataFrame, oof: dict[str, float], title: str) -> plt.Figure:
    """One panel per metric: a bar per fold (its test block) and the stitched out-of-fold value as a line."""
    shown = [m for m in PER_FOLD if m[0] in per_fold.columns]
    fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 3.4), squeeze=False)
    for ax, (key, label, unit) in zip(axes[0], shown, strict=True):
        ax.bar(per_fold.index.astype(int), per_fold[key].astype(float), color="C0", label="fold's test block")
        if f"oof/{key}" in oof and oof[f"oof/{key}"] is not None:
            ax.axhline(oof[f"oof/{key}"], color="C1", lw=1.2, ls="--", label="out-of-fold (stitched)")
        ax.set_title(label)
        ax.set_xlabel("fold")
        ax.set_ylabel(unit)
        ax.set_xticks(per_fold.index.astype(int))
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def oof_equity_figure(oof: pd.DataFrame, horizon: int, boundaries: list[int], title: str,
                      trading: TradingConfig | None = None) -> plt.Figure:  # fmt: skip
    """The book's cumulative return over the stitched predictions, a dashed line where each fold's block starts.

    boundaries: (folds,) ns UTC, each fold's first test timestamp."""
    symbol = torch.as_tensor(pd.factorize(oof["symbol"], sort=True)[0])
    # torch.tensor copies: pandas (copy-on-write) hands out read-only arrays, which as_tensor warns about
    curves = equity_curves(torch.tensor(utc_ns(oof["datetime"])), symbol,
                           torch.tensor(oof[list(PROB_COLUMNS)].to_numpy(np.float64)),
                           torch.tensor(oof["fwd_return"].to_numpy(np.float64)), horizon, trading)  # fmt: skip
    benchmark = None if trading is not None and trading.benchmark == "none" else curves.benchmark.numpy()
    fig = equity_curve_figure(curves.times.numpy().astype("datetime64[ns]"), curves.gross.numpy(), title,
                              net=curves.net.numpy(), benchmark=benchmark)  # fmt: skip
    for i, start in enumerate(boundaries):
        for ax in fig.axes:
            ax.axvline(pd.Timestamp(np.datetime64(int(start), "ns")), color="k", lw=0.7, ls=":",
                       label="fold boundary" if i == 0 and ax is fig.axes[0] else None)  # fmt: skip
    fig.axes[0].legend(loc="upper left", fontsize=8)
    return fig


def write_plots(out: Path, per_fold: pd.DataFrame, metrics: dict[str, float], oof: pd.DataFrame, horizon: int,
                boundaries: list[int], name: str, trading: TradingConfig | None = None) -> list[Path]:  # fmt: skip
    """``plots/metrics_per_fold.png`` and ``plots/oof_equity_curve.png``."""
    equity_title = f"{name}: out-of-fold equity ({(trading or TradingConfig()).describe()}), fold boundaries dotted"
    figures = {"metrics_per_fold": metrics_per_fold_figure(per_fold, metrics, f"{name}: metrics per fold"),
               "oof_equity_curve": oof_equity_figure(oof, horizon, boundaries, equity_title, trading)}  # fmt: skip
    paths = []
    for key, fig in figures.items():
        paths.append(write_figure(out / "plots" / f"{key}.png", fig))
        plt.close(fig)
    return paths
