"""Load one parquet split into contiguous tensors, validating the data contract on the way.

Rows are reordered to (symbol, time) so every symbol is one contiguous block; a window is then
a plain slice of rows. Features are filled column by column into one preallocated float32 matrix,
so peak memory stays near one copy of the feature matrix whatever the file's dtypes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from ensemble.data.contract import ColumnRoles, DataContractError, detect_roles

_FEATURE_CHUNK = 16  # columns read per pass: bounds the Arrow-side memory


@dataclass
class SplitPanel:
    """One split, sorted by (symbol, time). ``label`` holds class ids 0/1/2, or -1 where missing."""

    path: Path
    features: torch.Tensor  # (N, F) float32, contiguous
    label: torch.Tensor  # (N,) int64
    fwd_return: torch.Tensor  # (N,) float32, NaN where unknown
    weight: torch.Tensor  # (N,) float32
    symbol: torch.Tensor  # (N,) int64 code into ``symbols``
    time: torch.Tensor  # (N,) int64 nanoseconds
    symbols: list[str]
    is_context: torch.Tensor  # (N,) bool: rows borrowed from the previous split, never targets

    def __len__(self) -> int:
        return self.features.shape[0]

    def block_starts(self) -> np.ndarray:
        """Index of the first row of each symbol block (rows are grouped by symbol)."""
        codes = self.symbol.numpy()
        return np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])


def open_parquet(path: Path) -> pq.ParquetFile:
    if not path.exists():
        raise DataContractError(f"{path}: file not found")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise DataContractError(f"{path}: unreadable parquet file ({err})") from err


def read_roles(path: Path, datetime_col: str, symbol_col: str, exclude: tuple[str, ...]) -> ColumnRoles:
    return detect_roles(open_parquet(path).schema_arrow, path, datetime_col, symbol_col, exclude)


def read_keys(pf: pq.ParquetFile, path: Path, roles: ColumnRoles) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(symbol codes, int64 ns times, symbol names) in file order, with nulls rejected."""
    if pf.metadata.num_rows == 0:
        raise DataContractError(f"{path}: empty split (0 rows)")
    table = pf.read(columns=[roles.datetime, roles.symbol])
    dt = table.column(roles.datetime)
    sym = table.column(roles.symbol)
    for name, col in ((roles.datetime, dt), (roles.symbol, sym)):
        if col.null_count:
            row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataContractError(f"{path}: column '{name}' is null at row {row}")
    if pa.types.is_date(dt.type):
        dt = pc.cast(dt, pa.timestamp("s"))
    times = pc.cast(dt, pa.timestamp("ns")).to_numpy().astype("int64")
    encoded = pc.dictionary_encode(sym).combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    names = [str(s) for s in encoded.dictionary.to_pylist()]
    return codes, times, names


def sort_and_check_order(path: Path, codes: np.ndarray, times: np.ndarray, names: list[str]) -> np.ndarray:
    """Permutation to (symbol, time) order; fails on duplicates or rows out of time order."""
    by_key = np.lexsort((times, codes))
    dup = (codes[by_key][1:] == codes[by_key][:-1]) & (times[by_key][1:] == times[by_key][:-1])
    if dup.any():
        i = int(np.flatnonzero(dup)[0]) + 1
        _raise_at(path, "duplicate (symbol, datetime)", by_key, i, codes, times, names)
    order = np.argsort(codes, kind="stable")  # keeps each symbol's file order
    c, t = codes[order], times[order]
    late = (c[1:] == c[:-1]) & (np.diff(t) < 0)
    if late.any():
        _raise_at(path, "row out of time order", order, int(np.flatnonzero(late)[0]) + 1, codes, times, names)
    return order


def _raise_at(path: Path, what: str, order: np.ndarray, i: int, codes, times, names) -> None:
    row, prev = int(order[i]), int(order[i - 1])
    raise DataContractError(
        f"{path}: {what} for symbol '{names[codes[row]]}' at {np.datetime64(int(times[row]), 'ns')} "
        f"(file row {row}, after file row {prev})"
    )


def _column(pf: pq.ParquetFile, name: str) -> np.ndarray:
    return pf.read(columns=[name]).column(name).to_numpy().astype(np.float64, copy=False)


def read_labels(
    pf: pq.ParquetFile, path: Path, column: str, order: np.ndarray, codes: np.ndarray, names: list[str]
) -> np.ndarray:
    raw = _column(pf, column)
    bad = ~np.isnan(raw) & ~np.isin(raw, (-1.0, 0.0, 1.0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataContractError(
            f"{path}: column '{column}' has value {raw[row]!r} at row {row} (symbol '{names[codes[row]]}'); "
            f"labels must be -1, 0 or 1 (or null)"
        )
    y = np.where(np.isnan(raw), -1, raw + 1).astype(np.int64)
    return y[order]


def read_features(
    pf: pq.ParquetFile, path: Path, features: tuple[str, ...], order: np.ndarray, codes: np.ndarray, names: list[str]
) -> np.ndarray:
    out = np.empty((len(order), len(features)), dtype=np.float32)
    for start in range(0, len(features), _FEATURE_CHUNK):
        chunk = list(features[start : start + _FEATURE_CHUNK])
        table = pf.read(columns=chunk)
        for j, name in enumerate(chunk, start):
            col = table.column(name)
            values = col.to_numpy()
            if not np.issubdtype(values.dtype, np.number) and values.dtype != np.bool_:
                raise DataContractError(f"{path}: feature column '{name}' has dtype {col.type}, not numeric")
            finite = np.isfinite(values) if values.dtype.kind == "f" else np.ones(len(values), bool)
            if not finite.all():
                row = int(np.flatnonzero(~finite)[0])
                raise DataContractError(
                    f"{path}: non-finite value {values[row]!r} in feature column '{name}' at row {row} "
                    f"(symbol '{names[codes[row]]}')"
                )
            out[:, j] = values[order]
        del table
    return out


def load_split(path: Path, roles: ColumnRoles, horizon: int, require_labels: bool = True) -> SplitPanel:
    """Read and validate one split for one horizon. Without ``require_labels`` (predicting new data)
    a missing label or forward-return column reads as all-missing."""
    pf = open_parquet(path)
    file_roles = detect_roles(pf.schema_arrow, path, roles.datetime, roles.symbol, (), require_labels)
    if require_labels:
        file_roles.require_horizon(horizon, path)
    codes, times, names = read_keys(pf, path, roles)
    order = sort_and_check_order(path, codes, times, names)
    if horizon in file_roles.labels:
        label = read_labels(pf, path, file_roles.labels[horizon], order, codes, names)
    else:
        label = np.full(len(order), -1, dtype=np.int64)
    if horizon in file_roles.fwd_returns:
        fwd = _column(pf, file_roles.fwd_returns[horizon])[order].astype(np.float32)
    else:
        fwd = np.full(len(order), np.nan, dtype=np.float32)
    if horizon in file_roles.weights:
        weight = _column(pf, file_roles.weights[horizon])[order].astype(np.float32)
        bad = (label >= 0) & ~(np.isfinite(weight) & (weight >= 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataContractError(
                f"{path}: column '{file_roles.weights[horizon]}' must be finite and >= 0 where a label "
                f"exists; got {weight[i]!r} at file row {int(order[i])} (symbol '{names[codes[order[i]]]}')"
            )
        weight = np.where(label >= 0, weight, 0.0).astype(np.float32)
    else:
        weight = np.ones(len(order), dtype=np.float32)
    features = read_features(pf, path, roles.features, order, codes, names)
    return SplitPanel(
        path=path,
        features=torch.from_numpy(features),
        label=torch.from_numpy(label),
        fwd_return=torch.from_numpy(fwd),
        weight=torch.from_numpy(weight),
        symbol=torch.from_numpy(codes[order]),
        time=torch.from_numpy(times[order]),
        symbols=names,
        is_context=torch.zeros(len(order), dtype=torch.bool),
    )
