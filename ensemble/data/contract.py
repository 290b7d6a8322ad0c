"""Column roles of the upstream splits, and the error every contract breach raises.

Roles are assigned explicitly: forward-looking and target patterns first, then user exclusions,
and only what is left may become a feature. A non-numeric leftover is an error, never a silent drop.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

import pyarrow as pa

from ensemble.errors import EnsembleError

# Columns matching these are forward-looking or targets: never features, whatever the user says.
FORWARD_PATTERNS: tuple[str, ...] = ("label_*", "fwd_return_*", "sample_weight_*")
_HORIZON_RE = re.compile(r"^(label|fwd_return|sample_weight)_h(\d+)$")


class DataContractError(EnsembleError):
    """Bad input data. The message names the file and the column, symbol or row at fault."""


@dataclass(frozen=True)
class ColumnRoles:
    """What each column of a split is for. ``features`` is ordered and travels with every artifact."""

    datetime: str
    symbol: str
    features: tuple[str, ...]
    labels: dict[int, str] = field(default_factory=dict)
    fwd_returns: dict[int, str] = field(default_factory=dict)
    weights: dict[int, str] = field(default_factory=dict)
    excluded: tuple[str, ...] = ()

    @property
    def horizons(self) -> list[int]:
        return sorted(self.labels)

    def require_horizon(self, horizon: int, path: str | Path) -> None:
        """Fail unless the split carries the label and forward return for ``horizon``."""
        for kind, cols in (("label", self.labels), ("fwd_return", self.fwd_returns)):
            if horizon not in cols:
                have = ", ".join(f"h{h}" for h in sorted(cols)) or "none"
                raise DataContractError(
                    f"{path}: missing column '{kind}_h{horizon}' for horizon {horizon} "
                    f"(horizons present: {have})"
                )


def is_numeric(dtype: pa.DataType) -> bool:
    """Integers, floats and booleans: what a feature, forward return or weight may be stored as."""
    return pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_boolean(dtype)


def is_string(dtype: pa.DataType) -> bool:
    """Every Arrow text layout (string, large_string, string_view), dictionary-encoded or not:
    writers differ (recent polars writes string_view, pandas categoricals become dictionaries)."""
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype)


def pandas_index_columns(schema: pa.Schema) -> set[str]:
    """The columns pandas stored as the frame's index when it wrote the file (``to_parquet`` without
    ``index=False``: ``__index_level_0__`` for a filtered frame's row numbers), from the schema's pandas metadata;
    empty for a file pandas did not write."""
    meta = schema.pandas_metadata or {}
    return {c for c in meta.get("index_columns", []) if isinstance(c, str)}


def detect_roles(
    schema: pa.Schema,
    path: str | Path,
    datetime_col: str = "datetime",
    symbol_col: str = "symbol",
    exclude: Sequence[str] = (),
    require_label: bool = True,
) -> ColumnRoles:
    """Assign a role to every column of ``schema`` (the schema of the file at ``path``).
    ``require_label=False`` accepts unlabelled data, for prediction."""
    names = schema.names
    repeated = [(name, n) for name, n in Counter(names).items() if n > 1]
    if repeated:  # Arrow would later report the column as missing, which sends the user the wrong way
        name, n = repeated[0]
        raise DataContractError(f"{path}: column '{name}' appears {n} times; column names must be unique")
    for role, col in (("datetime", datetime_col), ("symbol", symbol_col)):
        if col not in names:
            raise DataContractError(f"{path}: missing {role} column '{col}'")
    dt_type = schema.field(datetime_col).type
    if not (pa.types.is_timestamp(dt_type) or pa.types.is_date(dt_type)):
        raise DataContractError(
            f"{path}: column '{datetime_col}' must be a timestamp or date, got {dt_type}"
        )
    sym_type = schema.field(symbol_col).type
    if not is_string(sym_type):
        raise DataContractError(f"{path}: column '{symbol_col}' must hold strings, got {sym_type}")

    labels: dict[int, str] = {}
    fwd: dict[int, str] = {}
    weights: dict[int, str] = {}
    excluded: list[str] = []
    features: list[str] = []
    by_kind = {"label": labels, "fwd_return": fwd, "sample_weight": weights}
    index = pandas_index_columns(schema)
    for name in names:
        if name in (datetime_col, symbol_col):
            continue
        if name in index:  # pandas' stored row index (a file written without index=False): a row number, no feature
            excluded.append(name)
            continue
        if any(fnmatchcase(name, p) for p in FORWARD_PATTERNS):
            match = _HORIZON_RE.match(name)
            if match:
                by_kind[match.group(1)][int(match.group(2))] = name
            excluded.append(name)
            continue
        if any(fnmatchcase(name, p) for p in exclude):
            excluded.append(name)
            continue
        dtype = schema.field(name).type
        if not is_numeric(dtype):
            raise DataContractError(
                f"{path}: column '{name}' is {dtype}, not numeric; a feature must be numeric "
                f"(declare it in data.exclude if it is not a feature)"
            )
        features.append(name)
    if not features:
        raise DataContractError(f"{path}: no feature columns left after assigning roles")
    if not labels and require_label:
        raise DataContractError(f"{path}: no label column (expected 'label_h{{H}}', e.g. label_h5)")
    return ColumnRoles(
        datetime=datetime_col,
        symbol=symbol_col,
        features=tuple(features),
        labels=labels,
        fwd_returns=fwd,
        weights=weights,
        excluded=tuple(excluded),
    )


def check_same_features(reference: ColumnRoles, other: ColumnRoles, ref_path: Path, path: Path) -> None:
    """Every split must offer the features of the training split (order may differ: we read by name)."""
    missing = [f for f in reference.features if f not in set(other.features)]
    extra = [f for f in other.features if f not in set(reference.features)]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing[:10]}" + (" ..." if len(missing) > 10 else ""))
        if extra:
            parts.append(f"extra {extra[:10]}" + (" ..." if len(extra) > 10 else ""))
        raise DataContractError(
            f"{path}: feature columns differ from {ref_path.name}: " + "; ".join(parts)
        )
