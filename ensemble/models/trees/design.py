"""Tree design matrices: one row per window end, built from the split tensor with batched gathers.

``seq_len == 1`` gives the plain feature rows. For ``seq_len > 1`` a tree cannot read a (L, F) window,
so the window is flattened into named columns:

- ``lags``: every feature at every lag, ``f@t`` (the end row) then ``f@t-1`` ... ``f@t-(L-1)``;
- ``summary``: per feature ``f_last``, ``f_mean``, ``f_std`` (population), ``f_min``, ``f_max``.

Windows come from ``gather_windows`` (symbol-isolated, past-only), in chunks that bound memory.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from ensemble.data import gather_windows
from ensemble.errors import ConfigError

WindowFeatures = Literal["lags", "summary"]
SUMMARIES = ("last", "mean", "std", "min", "max")
_CHUNK_BYTES = 64 << 20  # gathered (B, L, F) float32 per chunk


def design_names(names: list[str], seq_len: int, window_features: WindowFeatures) -> list[str]:
    """Column names of the design matrix, in column order."""
    if seq_len == 1:
        return list(names)
    if window_features == "lags":
        return [f"{f}@t" if k == 0 else f"{f}@t-{k}" for k in range(seq_len) for f in names]
    if window_features == "summary":
        return [f"{f}_{s}" for s in SUMMARIES for f in names]
    raise ConfigError(f"window_features must be 'lags' or 'summary', got '{window_features}'")


def _flatten(windows: torch.Tensor, window_features: WindowFeatures) -> torch.Tensor:
    # (B, L, F) -> (B, F')
    if window_features == "lags":
        return windows.flip(1).reshape(windows.shape[0], -1)  # lag 0 first
    std, mean = torch.std_mean(windows, dim=1, unbiased=False)
    parts = (windows[:, -1], mean, std, windows.amin(dim=1), windows.amax(dim=1))
    return torch.cat(parts, dim=1)


def design_matrix(
    features: torch.Tensor, ends: torch.Tensor, seq_len: int, window_features: WindowFeatures = "lags"
) -> np.ndarray:
    """(N, F) split rows + (B,) window end rows -> (B, F') float32, C-contiguous."""
    features, ends = features.cpu(), ends.cpu()
    if seq_len == 1:
        return features.index_select(0, ends).numpy()
    width = len(design_names(["x"] * features.shape[1], seq_len, window_features))
    out = np.empty((ends.shape[0], width), dtype=np.float32)
    chunk = max(1, _CHUNK_BYTES // (seq_len * features.shape[1] * 4))
    for start in range(0, ends.shape[0], chunk):
        windows = gather_windows(features, ends[start : start + chunk], seq_len)
        out[start : start + windows.shape[0]] = _flatten(windows, window_features).numpy()
    return out
