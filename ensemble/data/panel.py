"""Load one parquet split into contiguous tensors, validating the data contract on the way.

Rows are reordered to (symbol, time) so every symbol is one contiguous block; a window is then
a plain slice of rows. Features are filled column by column into one preallocated float32 matrix,
so peak memory stays near one copy of the feature matrix whatever the file's dtypes. Features are read
by name, in the order the caller asks for (a trained model's order), never by position in the file.
Every value is checked after the float32 cast: a float64 of 1e300 is finite in the file and inf here.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from ensemble.data.contract import ColumnRoles, DataContractError, detect_roles, is_numeric, is_string

_FEATURE_CHUNK = 16  # columns read per pass: bounds the Arrow-side memory
# Labels may be stored as the class names the package itself reports (metrics, artifacts).
LABEL_WORDS: dict[str, int] = {"short": -1, "flat": 0, "long": 1}
_FLOAT32_MAX = float(np.finfo(np.float32).max)


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
    tz: str | None = None  # the file's datetime timezone; ``time`` is UTC, outputs convert back

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


def timezone(pf: pq.ParquetFile, datetime_col: str) -> str | None:
    """The datetime column's timezone (e.g. 'America/New_York'), None for naive times and dates."""
    return getattr(pf.schema_arrow.field(datetime_col).type, "tz", None)


def format_time(ns: int, tz: str | None = None) -> str:
    """A time for a message, in the file's own timezone: times are held as UTC ns inside."""
    t = np.datetime64(int(ns), "ns")
    return str(t) if tz is None else pd.Timestamp(t).tz_localize("UTC").tz_convert(tz).isoformat()


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


def sort_and_check_order(
    path: Path, codes: np.ndarray, times: np.ndarray, names: list[str], tz: str | None = None
) -> np.ndarray:
    """Permutation to (symbol, time) order; fails on duplicates or rows out of time order."""
    by_key = np.lexsort((times, codes))
    dup = (codes[by_key][1:] == codes[by_key][:-1]) & (times[by_key][1:] == times[by_key][:-1])
    if dup.any():
        i = int(np.flatnonzero(dup)[0]) + 1
        _raise_at(path, "duplicate (symbol, datetime)", by_key, i, codes, times, names, tz)
    order = np.argsort(codes, kind="stable")  # keeps each symbol's file order
    c, t = codes[order], times[order]
    late = (c[1:] == c[:-1]) & (np.diff(t) < 0)
    if late.any():
        _raise_at(path, "row out of time order", order, int(np.flatnonzero(late)[0]) + 1, codes, times, names, tz)
    return order


def _raise_at(path: Path, what: str, order: np.ndarray, i: int, codes, times, names, tz: str | None) -> None:
    row, prev = int(order[i]), int(order[i - 1])
    raise DataContractError(
        f"{path}: {what} for symbol '{names[codes[row]]}' at {format_time(times[row], tz)} "
        f"(file row {row}, after file row {prev})"
    )


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _where(names: list[str], codes: np.ndarray, row: int) -> str:
    return f"at row {row} (symbol '{names[codes[row]]}')"


def _column(pf: pq.ParquetFile, path: Path, name: str) -> np.ndarray:
    """A numeric role column (forward return, sample weight) as float64, nulls as NaN."""
    col = pf.read(columns=[name]).column(name)
    if not is_numeric(col.type):
        raise DataContractError(f"{path}: column '{name}' is {col.type}, not numeric")
    return _float64(col)


def _float64(col: pa.ChunkedArray) -> np.ndarray:
    # through Arrow, so a null reads as NaN whatever the type (a nullable bool would become objects)
    return pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)


def _label_values(col: pa.ChunkedArray, path: Path, column: str, names: list[str], codes: np.ndarray) -> np.ndarray:
    """Label column as float64 -1/0/1 with NaN where missing; the words short/flat/long are accepted."""
    if is_numeric(col.type):
        return _float64(col)
    if not is_string(col.type):
        raise DataContractError(f"{path}: column '{column}' is {col.type}; labels must be -1, 0, 1 or short/flat/long")
    missing = col.is_null().to_numpy(zero_copy_only=False)
    text = pc.cast(col, pa.large_string()).to_numpy(zero_copy_only=False)  # (N,) object, None where missing
    values = np.full(len(text), np.nan)
    for word, value in LABEL_WORDS.items():
        values[text == word] = value
    unknown = ~missing & np.isnan(values)
    if unknown.any():
        row = _first(unknown)
        raise DataContractError(
            f"{path}: column '{column}' has value {text[row]!r} {_where(names, codes, row)}; "
            f"labels must be -1, 0, 1 or short/flat/long (or null)"
        )
    return values


def label_present(pf: pq.ParquetFile, path: Path, column: str, codes: np.ndarray, names: list[str]) -> np.ndarray:
    """(N,) bool in file order: whether the row has a label in ``column`` (null and NaN are missing)."""
    return ~np.isnan(_label_values(pf.read(columns=[column]).column(column), path, column, names, codes))


def read_labels(
    pf: pq.ParquetFile, path: Path, column: str, order: np.ndarray, codes: np.ndarray, names: list[str]
) -> np.ndarray:
    """(N,) int64 class ids 0/1/2 (-1 where missing), in ``order``."""
    raw = _label_values(pf.read(columns=[column]).column(column), path, column, names, codes)
    bad = ~np.isnan(raw) & ~np.isin(raw, (-1.0, 0.0, 1.0))
    if bad.any():
        row = _first(bad)
        raise DataContractError(
            f"{path}: column '{column}' has value {float(raw[row])!r} {_where(names, codes, row)}; "
            f"labels must be -1, 0 or 1 (or null)"
        )
    y = np.where(np.isnan(raw), -1, raw + 1).astype(np.int64)
    return y[order]


def _check_float32(values: np.ndarray, path: Path, what: str, names: list[str], codes: np.ndarray,
                   allow_nan: bool = False) -> None:
    """Raise unless every value is finite once cast to float32 (NaN passes if ``allow_nan``)."""
    if values.dtype.kind != "f":
        return  # integers and booleans always fit (|int64| < 1e19 << 3.4e38)
    with np.errstate(invalid="ignore"):
        lo, hi = values.min(initial=0.0), values.max(initial=0.0)
    if lo >= -_FLOAT32_MAX and hi <= _FLOAT32_MAX:  # the common case, without a copy (False for NaN)
        return
    with np.errstate(over="ignore"):
        as32 = values.astype(np.float32)
    bad = ~np.isfinite(as32) & ~(allow_nan & np.isnan(values))
    if bad.any():
        row = _first(bad)
        value = float(values[row])
        problem = (f"value {value!r} does not fit float32 (|x| <= {_FLOAT32_MAX:.4g})" if np.isfinite(value)
                   else f"non-finite value {value!r}")
        raise DataContractError(f"{path}: {problem} in {what} {_where(names, codes, row)}")


def read_features(
    pf: pq.ParquetFile, path: Path, features: Sequence[str], order: np.ndarray, codes: np.ndarray, names: list[str]
) -> np.ndarray:
    """(N, F) float32 matrix of ``features``, read by name in the given order, rows in ``order``."""
    out = np.empty((len(order), len(features)), dtype=np.float32)
    for start in range(0, len(features), _FEATURE_CHUNK):
        chunk = list(features[start : start + _FEATURE_CHUNK])
        table = pf.read(columns=chunk)
        for j, name in enumerate(chunk, start):
            col = table.column(name)
            if col.null_count:  # a nullable column (e.g. pandas "boolean") would otherwise read as objects
                row = _first(col.is_null().to_numpy(zero_copy_only=False))
                raise DataContractError(f"{path}: null in feature column '{name}' {_where(names, codes, row)}")
            values = col.to_numpy()
            if not np.issubdtype(values.dtype, np.number) and values.dtype != np.bool_:
                raise DataContractError(f"{path}: feature column '{name}' has dtype {col.type}, not numeric")
            _check_float32(values, path, f"feature column '{name}'", names, codes)
            out[:, j] = values[order]
        del table
    return out


def _read_weights(pf: pq.ParquetFile, path: Path, column: str, label: np.ndarray, order: np.ndarray,
                  codes: np.ndarray, names: list[str]) -> np.ndarray:
    """(N,) float32 weights in ``order``: finite and >= 0 where a label exists, 0 elsewhere."""
    raw = _column(pf, path, column)
    labelled = np.empty(len(order), dtype=bool)
    labelled[order] = label >= 0  # file order, so the error names the file row
    with np.errstate(over="ignore", invalid="ignore"):
        bad = labelled & ~(np.isfinite(raw.astype(np.float32)) & (raw >= 0))
    if bad.any():
        row = _first(bad)
        raise DataContractError(
            f"{path}: column '{column}' must be finite in float32 and >= 0 where a label exists; "
            f"got {float(raw[row])!r} {_where(names, codes, row)}"
        )
    return np.where(labelled, raw, 0.0).astype(np.float32)[order]


def load_split(
    path: Path,
    roles: ColumnRoles,
    horizon: int,
    require_labels: bool = True,
    feature_names: Sequence[str] | None = None,
) -> SplitPanel:
    """Read and validate one split for one horizon.

    Args:
        path: the parquet file.
        roles: the reference roles (datetime/symbol names, features, and the columns already set aside
            as non-features, which stay aside here).
        horizon: reads ``label_h{H}``, ``fwd_return_h{H}`` and ``sample_weight_h{H}``.
        require_labels: without it (predicting new data) a missing label or forward-return column reads
            as all-missing.
        feature_names: the features to read, by name and in this order (a trained model's order);
            default ``roles.features``. Column positions in the file never matter.

    Raises:
        DataContractError: naming the file and the column, row or symbol at fault.
    """
    pf = open_parquet(path)
    exclude = tuple(glob.escape(name) for name in roles.excluded)  # exact names, not patterns
    file_roles = detect_roles(pf.schema_arrow, path, roles.datetime, roles.symbol, exclude, require_labels)
    features = tuple(roles.features if feature_names is None else feature_names)
    present = set(file_roles.features)
    missing = [f for f in features if f not in present]
    if missing:
        more = " ..." if len(missing) > 10 else ""
        raise DataContractError(f"{path}: missing feature columns {missing[:10]}{more}")
    if require_labels:
        file_roles.require_horizon(horizon, path)
    codes, times, names = read_keys(pf, path, roles)
    tz = timezone(pf, roles.datetime)
    order = sort_and_check_order(path, codes, times, names, tz)
    if horizon in file_roles.labels:
        label = read_labels(pf, path, file_roles.labels[horizon], order, codes, names)
    else:
        label = np.full(len(order), -1, dtype=np.int64)
    if horizon in file_roles.fwd_returns:
        column = file_roles.fwd_returns[horizon]  # NaN is "unknown" (near a series' end); inf is an error
        raw = _column(pf, path, column)
        _check_float32(raw, path, f"column '{column}'", names, codes, allow_nan=True)
        fwd = raw[order].astype(np.float32)
    else:
        fwd = np.full(len(order), np.nan, dtype=np.float32)
    if horizon in file_roles.weights:
        weight = _read_weights(pf, path, file_roles.weights[horizon], label, order, codes, names)
    else:
        weight = np.ones(len(order), dtype=np.float32)
    matrix = read_features(pf, path, features, order, codes, names)
    return SplitPanel(
        path=path,
        features=torch.from_numpy(matrix),
        label=torch.from_numpy(label),
        fwd_return=torch.from_numpy(fwd),
        weight=torch.from_numpy(weight),
        symbol=torch.from_numpy(codes[order]),
        time=torch.from_numpy(times[order]),
        symbols=names,
        is_context=torch.zeros(len(order), dtype=torch.bool),
        tz=tz,
    )
