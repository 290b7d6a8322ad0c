"""Trailing rolling-window statistics along axis 0 (bars) of (bars, ...) arrays, from past rows only, for the
demo's features. The first w - 1 rows see a partial window (partial sums, the first row repeated); the demo's
unwritten burn-in keeps those rows out of the data it writes."""

from __future__ import annotations

import numpy as np


def rsum(x: np.ndarray, w: int) -> np.ndarray:
    """Sum of the last ``w`` rows, this one included."""
    c = np.cumsum(x, axis=0)
    c[w:] = c[w:] - c[:-w]
    return c


def rmean(x: np.ndarray, w: int) -> np.ndarray:
    """Mean of the last ``w`` rows."""
    return rsum(x, w) / w


def rstd(x: np.ndarray, w: int) -> np.ndarray:
    """Population standard deviation of the last ``w`` rows (floored at 1e-10)."""
    x = x - x[:1]  # shift-invariant; keeps the cumulative sums small
    return np.sqrt(np.maximum(rmean(x**2, w) - rmean(x, w) ** 2, 1e-20))


def rext(x: np.ndarray, w: int, fn) -> np.ndarray:
    """``fn`` (``np.max`` or ``np.min``) over the last ``w`` rows."""
    pad = np.concatenate([np.repeat(x[:1], w - 1, axis=0), x])
    return fn(np.lib.stride_tricks.sliding_window_view(pad, w, axis=0), axis=-1)


def lag(x: np.ndarray, k: int) -> np.ndarray:
    """The row ``k`` bars back (the first row for the first ``k``)."""
    return x if k == 0 else np.concatenate([np.repeat(x[:1], k, axis=0), x[:-k]])
