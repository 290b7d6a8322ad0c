"""Figures every run writes: confusion matrix, equity curve with drawdown, IC per timestamp, feature importance,
reliability diagram."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: runs land on servers and CI
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ensemble.data.constants import NUM_CLASSES
from ensemble.metrics.calibration import apply_temperature, expected_calibration_error, reliability_bins

CLASS_LABELS = ("short", "flat", "long")
TIME_ZONE_LABEL = "UTC"  # the curves' timestamps are the rows' UTC instants (``metrics.curves``)


def confusion_matrix_figure(cm: np.ndarray, title: str) -> plt.Figure:
    """(3, 3) counts, rows true and columns predicted classes; each cell shows its count and its share of the
    true class's rows (the colour)."""
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{int(cm[i, j])}\n{share[i, j]:.0%}", ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(NUM_CLASSES), CLASS_LABELS)
    ax.set_yticks(range(NUM_CLASSES), CLASS_LABELS)
    ax.set_xlabel("predicted class (cells: rows, share of the true class)")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def equity_curve_figure(times: np.ndarray, gross: np.ndarray, title: str, net: np.ndarray | None = None,
                        benchmark: np.ndarray | None = None) -> plt.Figure:
    """Cumulative return of the book (gross, net of costs, benchmark) over a drawdown panel.

    times: (T,) datetime64; gross, net, benchmark: (T,) cumulative additive returns as fractions (0.01 = 1%),
    e.g. ``metrics.curves.equity_curves``. The drawdown panel is of the net curve when given, else gross.
    """
    fig, (ax, dd_ax) = plt.subplots(2, 1, figsize=(7, 4.4), sharex=True, height_ratios=(3, 1))
    t = pd.to_datetime(times)
    curves = {"gross": gross, "net of costs": net, "benchmark (equal weight, net)": benchmark}
    for (label, curve), color in zip(curves.items(), ("C0", "C1", "grey"), strict=True):
        if curve is not None:
            ax.plot(t, 100 * np.asarray(curve), lw=1.2, label=label, color=color)
    ax.axhline(0.0, color="grey", lw=0.6)
    ax.set_ylabel("cumulative return (%)")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title)
    equity = np.asarray(net if net is not None else gross, dtype=float)
    drawdown = 100 * (np.maximum.accumulate(np.maximum(equity, 0.0)) - equity)  # from the start's 0 too
    dd_ax.fill_between(t, 0, -drawdown, color="C3", alpha=0.4, lw=0)
    dd_ax.set_ylabel("drawdown of net (%)" if net is not None else "drawdown (%)")
    dd_ax.set_xlabel(f"time ({TIME_ZONE_LABEL})")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def ic_figure(times: np.ndarray, ic: np.ndarray, title: str, window: int = 100, skipped: int = 0) -> plt.Figure:
    """Information coefficient per timestamp with its rolling mean over ``window`` timestamps.

    times: (T,) datetime64 of the timestamps that count; ic: (T,) correlations in [-1, 1]; skipped: timestamps
    left out (fewer than 3 symbols). With T = 0 the figure says the IC is undefined rather than drawing an
    empty time axis (which matplotlib would start at 1970).
    """
    fig, ax = plt.subplots(figsize=(7, 3.2))
    if len(times) == 0:
        ax.set_title(f"{title}: no IC (undefined)")
        ax.text(0.5, 0.5, f"no timestamp with 3 or more symbols ({skipped} skipped):\nthe IC is undefined "
                "(null in metrics.json)", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    series = pd.Series(np.asarray(ic, dtype=float), index=pd.to_datetime(times))
    window = max(1, min(window, len(series)))
    ax.plot(series.index, series.to_numpy(), lw=0.5, color="C0", alpha=0.4, label="IC per timestamp")
    rolling = series.rolling(window, min_periods=1).mean()
    ax.plot(rolling.index, rolling.to_numpy(), lw=1.5, color="C1", label=f"rolling mean ({window} timestamps)")
    ax.axhline(0.0, color="grey", lw=0.6)
    ax.set_ylabel("IC (correlation, -1 to 1)")
    ax.set_xlabel(f"time ({TIME_ZONE_LABEL})")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def feature_importance_figure(importance: pd.Series, title: str, xlabel: str, top: int = 30) -> plt.Figure:
    """The ``top`` features by importance (index: feature names), largest at the top. Features at exactly 0
    (never used) are left out and counted in the title, so the bars show what the model uses."""
    used = importance[importance != 0]
    dropped = len(importance) - len(used)
    top_items = used.sort_values(ascending=True).tail(top)
    fig, ax = plt.subplots(figsize=(6, 0.22 * max(len(top_items), 1) + 1.2))
    ax.barh(top_items.index, top_items.to_numpy())
    note = f"\n({dropped} feature{'s' if dropped != 1 else ''} at 0 not shown)" if dropped else ""
    ax.set_title(title + note, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("feature")
    fig.tight_layout()
    return fig


def reliability_figure(probs: np.ndarray, y: np.ndarray, name: str, temperature: float | None = 1.0,
                       n_bins: int = 15) -> plt.Figure:
    """Reliability diagram (Guo et al. 2017, figure 1) of (N, 3) probabilities ``probs`` against class ids ``y``:
    per confidence bin (``n_bins`` equal-width bins, the suite's ECE bins), the accuracy of the arg-max against
    the mean confidence, with the diagonal of perfect calibration, and below it the share of rows per bin.

    ``probs`` are the temperature-scaled ones when ``temperature`` != 1; the model's own (``softmax(T log p)``)
    are then drawn too, so the effect of the scaling shows. The title gives the ECE (before -> after) and T;
    ``temperature`` None (a blend's probabilities, no model temperature) names no T.
    """
    scaled = temperature is not None and temperature != 1.0
    fig, (ax, share_ax) = plt.subplots(2, 1, figsize=(4.8, 5.4), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":", label="perfect calibration")
    curves = {f"calibrated (T = {temperature:.3f})" if scaled else "model": probs}
    if scaled:
        curves = {"uncalibrated (T = 1)": apply_temperature(probs, 1.0 / temperature), **curves}
    eces = []
    for label, p in curves.items():
        conf, acc, count = reliability_bins(p, y, n_bins)
        ece = expected_calibration_error(p, y, n_bins)
        eces.append(ece)
        used = count > 0
        line = ax.plot(conf[used], acc[used], marker="o", ms=3, lw=1.2, label=f"{label}, ECE {ece:.4f}")[0]
        centres = (np.arange(n_bins) + 0.5) / n_bins
        share_ax.step(centres, count / max(count.sum(), 1), where="mid", color=line.get_color(), lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy of the arg-max (share of rows)")
    ax.legend(fontsize=7, loc="upper left")
    share_ax.set_xlabel(f"confidence: top-class probability ({n_bins} bins, 0 to 1)")
    share_ax.set_ylabel("rows (share, 0 to 1)")
    ece_text = " -> ".join(f"{e:.4f}" for e in eces)
    t_text = "" if temperature is None else f", T = {temperature:.3f}"
    ax.set_title(f"{name}: reliability\nECE {ece_text}{t_text}", fontsize=9)
    fig.tight_layout()
    return fig
