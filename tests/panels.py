"""Tiny hand-made splits for tests: fast, fully controlled, independent of the demo generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SPLIT_FILES = {"train": "train_scaled.parquet", "val": "val_scaled.parquet", "test": "test_scaled.parquet"}


def make_frames(
    n_symbols: int = 3,
    rows: tuple[int, int, int] = (60, 30, 30),
    n_features: int = 4,
    horizons: tuple[int, ...] = (5, 20),
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """Three consecutive, non-overlapping splits; rows are time-major (symbols interleaved)."""
    rng = np.random.default_rng(seed)
    total = sum(rows)
    times = pd.date_range("2021-01-01", periods=total, freq="B")  # weekdays, as the demo: 252 bars a year
    frames, start = {}, 0
    for split, n in zip(SPLIT_FILES, rows, strict=True):
        parts = []
        for s in range(n_symbols):
            df = pd.DataFrame({"datetime": times[start : start + n], "symbol": f"S{s}"})
            for j in range(n_features):
                df[f"f{j}"] = rng.standard_normal(n).astype("float32")
            for h in horizons:
                label = rng.integers(-1, 2, n).astype("float64")
                label[-h:] = np.nan
                df[f"label_h{h}"] = label
                df[f"fwd_return_h{h}"] = np.where(np.isnan(label), np.nan, rng.normal(0, 0.01, n))
                df[f"sample_weight_h{h}"] = rng.uniform(0.5, 1.5, n)
            parts.append(df)
        frames[split] = pd.concat(parts).sort_values(["datetime", "symbol"], kind="stable").reset_index(drop=True)
        start += n
    return frames


def write_frames(root: Path, frames: dict[str, pd.DataFrame]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split, df in frames.items():
        df.to_parquet(root / SPLIT_FILES[split], index=False)
    return root


def write_splits(root: Path, **kwargs) -> Path:
    return write_frames(root, make_frames(**kwargs))
