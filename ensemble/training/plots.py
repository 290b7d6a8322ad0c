"""Figures every run writes: confusion matrix, equity curve, feature importance."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: runs land on servers and CI
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ensemble.data.constants import NUM_CLASSES

CLASS_LABELS = ("short", "flat", "long")


def confusion_matrix_figure(cm: np.ndarray, title: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{int(cm[i, j])}\n{share[i, j]:.0%}", ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(NUM_CLASSES), CLASS_LABELS)
    ax.set_yticks(range(NUM_CLASSES), CLASS_LABELS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def equity_curve_figure(times: np.ndarray, pnl: np.ndarray, title: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(pd.to_datetime(times), pnl, lw=1.2)
    ax.axhline(0.0, color="grey", lw=0.6)
    ax.set_ylabel("cumulative return (sum)")
    ax.set_title(title)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def feature_importance_figure(importance: pd.Series, title: str, top: int = 30) -> plt.Figure:
    top_items = importance.sort_values(ascending=True).tail(top)
    fig, ax = plt.subplots(figsize=(6, 0.22 * len(top_items) + 1))
    ax.barh(top_items.index, top_items.to_numpy())
    ax.set_title(title)
    fig.tight_layout()
    return fig
