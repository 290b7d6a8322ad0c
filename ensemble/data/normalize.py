"""Feature normalisation fitted on the training windows' rows only, stored with the model and applied everywhere.

Two methods, per feature, with scikit-learn's definitions (we compute them directly because a scaler cannot
be fitted on "the rows that the training windows read", a set of rows chosen by window ends, not a slice):

- ``zscore``: ``(x - mean) / std``, population std (ddof=0), as ``sklearn.preprocessing.StandardScaler``.
- ``robust``: ``(x - median) / (IQR / 1.3490)``, IQR = q75 - q25 (linear interpolation), as
  ``sklearn.preprocessing.RobustScaler(unit_variance=True)``: for normal data the scale equals the std,
  because the IQR of a standard normal is ``2 * Phi^-1(0.75) = 1.3490``.

A zero spread (a constant feature, or one symbol with a single training row) gets scale 1, as scikit-learn's
``_handle_zeros_in_scale`` does, so the feature is only centred. Statistics are computed in float64 and
applied in float32, the same way at training, evaluation and prediction time, so a row's normalised value is
bit-identical wherever it is computed.

``per_symbol``: each symbol gets its own statistics from its own training rows; a symbol with no training row
(it starts later, or is new at prediction time) gets the pooled statistics of all training rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import torch

from ensemble.data.contract import DataContractError
from ensemble.data.panel import SplitPanel

NormalizeMethod = Literal["none", "zscore", "robust"]
NORMALIZE_METHODS: tuple[str, ...] = get_args(NormalizeMethod)
IQR_OF_NORMAL = 1.3489795003921634  # scipy.stats.norm.ppf(0.75) - norm.ppf(0.25)
_COLUMN_CHUNK = 64  # features per pass: bounds the float64 copy of the training rows
POOLED = "*"  # the key of the pooled statistics in a per-symbol normaliser


def check_method(method: str, key: str = "data.normalize") -> str:
    """``method`` if it is one of ``none|zscore|robust``, else a one-line ``DataContractError`` naming ``key``."""
    if method not in NORMALIZE_METHODS:
        raise DataContractError(f"{key} must be one of {'|'.join(NORMALIZE_METHODS)}, got '{method}'")
    return method


def window_rows(ends: torch.Tensor, seq_len: int) -> torch.Tensor:
    """(R,) sorted distinct rows read by windows ending at ``ends`` (B,): each end and its ``seq_len - 1``
    look-back rows. A row counts once however many windows read it."""
    ends = ends.cpu()
    if seq_len == 1:
        return torch.unique(ends)
    offsets = torch.arange(1 - seq_len, 1)
    return torch.unique((ends.unsqueeze(1) + offsets).reshape(-1))


def _center_scale(x: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """(F,) center and (F,) scale of the (R, F) float64 rows ``x``; zero spread -> scale 1."""
    if method == "zscore":
        center, spread = x.mean(axis=0), x.std(axis=0)
    else:
        q25, center, q75 = np.quantile(x, [0.25, 0.5, 0.75], axis=0)
        spread = (q75 - q25) / IQR_OF_NORMAL
    # scikit-learn's _handle_zeros_in_scale: a spread within float rounding of zero is treated as zero
    tiny = 10 * np.finfo(np.float64).eps * np.maximum(np.abs(center), 1.0)
    return center, np.where(spread < tiny, 1.0, spread)


def _stats(features: torch.Tensor, rows: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    n_features = features.shape[1]
    center, scale = np.empty(n_features), np.empty(n_features)
    idx = torch.from_numpy(rows).to(features.device)
    for lo in range(0, n_features, _COLUMN_CHUNK):
        block = features[:, lo : lo + _COLUMN_CHUNK].index_select(0, idx).cpu().numpy().astype(np.float64)
        center[lo : lo + block.shape[1]], scale[lo : lo + block.shape[1]] = _center_scale(block, method)
    return center, scale


@dataclass
class Normalizer:
    """Fitted per-feature statistics: ``center`` and ``scale`` per key (``POOLED``, or a symbol name).

    ``apply`` maps a panel's features ``x`` (N, F) float32 in place to ``(x - center) / scale``.
    """

    method: str
    feature_names: list[str]
    per_symbol: bool = False
    center: dict[str, list[float]] = field(default_factory=dict)  # key -> (F,)
    scale: dict[str, list[float]] = field(default_factory=dict)  # key -> (F,)

    @classmethod
    def fit(cls, panel: SplitPanel, rows: torch.Tensor, method: str, feature_names: Sequence[str],
            per_symbol: bool = False) -> Normalizer:
        """Statistics of ``panel``'s feature rows ``rows`` (R,), pooled and (``per_symbol``) per symbol.

        Raises:
            DataContractError: an unknown method, or no row to fit on.
        """
        check_method(method)
        rows_np = rows.cpu().numpy()
        if method != "none" and rows_np.size == 0:
            raise DataContractError(f"{panel.path}: data.normalize={method} has no training row to fit on")
        norm = cls(method, list(feature_names), per_symbol)
        if method == "none":
            return norm
        center, scale = _stats(panel.features, rows_np, method)
        norm.center[POOLED], norm.scale[POOLED] = center.tolist(), scale.tolist()
        if per_symbol:
            codes = panel.symbol.cpu().numpy()[rows_np]
            for code in np.unique(codes):
                center, scale = _stats(panel.features, rows_np[codes == code], method)
                name = panel.symbols[int(code)]
                norm.center[name], norm.scale[name] = center.tolist(), scale.tolist()
        return norm

    # -- storage: plain JSON-able values, so a weights-only checkpoint and a sidecar can both hold it
    def state_dict(self) -> dict[str, Any]:
        return {"method": self.method, "per_symbol": self.per_symbol, "feature_names": list(self.feature_names),
                "center": dict(self.center), "scale": dict(self.scale)}  # fmt: skip

    @classmethod
    def from_state(cls, state: Any, source: str) -> Normalizer:
        """A normaliser from ``state_dict()`` output read back from ``source`` (a checkpoint, sidecar, export).

        Raises:
            DataContractError: the stored statistics are damaged or incomplete.
        """
        try:
            norm = cls(str(state["method"]), list(state["feature_names"]), bool(state["per_symbol"]),
                       dict(state["center"]), dict(state["scale"]))  # fmt: skip
        except (KeyError, TypeError, ValueError) as err:
            reason = f"{type(err).__name__}: {err}"
            raise DataContractError(f"{source}: damaged normalisation statistics ({reason})") from err
        check_method(norm.method, f"{source}: normalizer.method")
        sizes = {len(v) for v in [*norm.center.values(), *norm.scale.values()]}
        if norm.method != "none" and (POOLED not in norm.center or set(norm.center) != set(norm.scale)
                                      or sizes != {len(norm.feature_names)}):
            raise DataContractError(f"{source}: damaged normalisation statistics (missing or mis-sized center/scale)")
        return norm

    # -- use
    def apply(self, panel: SplitPanel, feature_names: Sequence[str]) -> None:
        """Replace ``panel.features`` by its normalised copy; ``feature_names`` is the panel's column order.

        A copy, not an in-place edit: walk-forward folds are shallow copies of one span panel that share its
        feature tensor, and each fold's statistics differ.

        Raises:
            DataContractError: the panel's features are not those the statistics were fitted on.
        """
        if self.method == "none":
            return
        names = list(feature_names)
        if sorted(names) != sorted(self.feature_names):
            missing = sorted(set(self.feature_names) - set(names))[:5]
            raise DataContractError(f"{panel.path}: its features are not those the normalisation was fitted on "
                                    f"(missing {missing}, extra {sorted(set(names) - set(self.feature_names))[:5]})")
        position = {name: i for i, name in enumerate(self.feature_names)}
        order = torch.tensor([position[name] for name in names])  # the statistics in the panel's column order
        x = panel.features = panel.features.clone()
        pooled = self._tensors(POOLED, order, x.device)
        if not self.per_symbol:
            x.sub_(pooled[0]).div_(pooled[1])
            return
        starts = panel.block_starts()
        for lo, hi in zip(starts, np.r_[starts[1:], len(panel)], strict=True):
            name = panel.symbols[int(panel.symbol[lo])]
            center, scale = self._tensors(name, order, x.device) if name in self.center else pooled
            x[lo:hi].sub_(center).div_(scale)

    def _tensors(self, key: str, order: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        as32 = lambda v: torch.tensor(v, dtype=torch.float64)[order].to(torch.float32).to(device)  # noqa: E731
        return as32(self.center[key]), as32(self.scale[key])
