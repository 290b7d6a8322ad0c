"""``TreeModel``: what the XGBoost, LightGBM and CatBoost adapters share.

An adapter wraps one library behind a handful of hooks (``start``, ``boost``, ``val_proba``,
``predict_proba``, ``save``, ``load``, ``feature_importance``); the design matrix, the sample weights,
the seed and the checkpoint metadata live here, so the three libraries see exactly the same inputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import numpy as np
import pandas as pd
import torch

from ensemble.data import NUM_CLASSES, SplitPanel
from ensemble.errors import ConfigError
from ensemble.metrics.arrays import score_probabilities
from ensemble.metrics.config import TradingConfig
from ensemble.models.trees.design import WindowFeatures, design_matrix, design_names

# Library parameters that would fight the trainer's own round count and early stopping.
# fmt: off
TRAINER_OWNED = frozenset((
    "iterations", "n_estimators", "num_boost_round", "num_iterations", "num_iteration", "num_round", "num_rounds",
    "num_trees", "n_iter", "early_stopping_rounds", "early_stopping_round", "early_stopping", "od_type", "od_wait",
))
# fmt: on


@dataclass
class TreeSplit:
    """One split as a tree sees it: a design matrix plus what the metrics and artifacts need."""

    X: np.ndarray  # (N, F') float32
    y: np.ndarray  # (N,) int64 class ids 0/1/2
    weight: np.ndarray  # (N,) float32 sample_weight_h{H} (ones when the data has none)
    time: np.ndarray  # (N,) int64 ns
    symbol: np.ndarray  # (N,) int64 codes into ``symbols``
    fwd_return: np.ndarray  # (N,) float32
    symbols: list[str]
    tz: str | None = None  # the input's timezone, for the predictions' datetime column


class TreeModel:
    """Base of the tree adapters.

    Args:
        class_weights: weights for short/flat/long, or ``"balanced"`` (n / (3 * class count) on train).
        use_sample_weights: multiply in ``sample_weight_h{H}`` from the data.
        window_features: how a ``seq_len > 1`` window becomes columns: ``lags`` or ``summary``.
        seed: the library's seed; ``None`` takes ``seed_everything``'s.
        n_jobs: library threads; ``None`` keeps the library's default (all cores).
        params: any other native library parameters; they win over the named ones.
        horizon, bars_per_year, feature_names, seq_len: linked from the data (``bars_per_year``: inferred from
            its timestamps); stored in every checkpoint.
        trading: the config's ``trading:`` section as a dict (see ``TradingConfig``), linked from it; its
            ``bars_per_year``, when set, wins.
    """

    suffix: ClassVar[str] = ""  # native checkpoint format
    importance_type: ClassVar[str] = "the library's importance"  # what ``feature_importance`` measures

    def __init__(
        self,
        class_weights: list[float] | Literal["balanced"] | None = None,
        use_sample_weights: bool = False,
        window_features: WindowFeatures = "lags",
        seed: int | None = None,
        n_jobs: int | None = None,
        params: dict[str, Any] | None = None,
        horizon: int = 5,
        bars_per_year: float | None = None,
        feature_names: list[str] | None = None,
        seq_len: int = 1,
        trading: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(class_weights, list) and len(class_weights) != NUM_CLASSES:
            raise ConfigError(
                f"model.class_weights needs {NUM_CLASSES} values (short, flat, long), got {class_weights}"
            )
        if isinstance(class_weights, str) and class_weights != "balanced":
            raise ConfigError(
                f"model.class_weights must be {NUM_CLASSES} numbers or 'balanced', got '{class_weights}'"
            )
        if window_features not in get_args(WindowFeatures):
            raise ConfigError(f"model.window_features must be 'lags' or 'summary', got '{window_features}'")
        owned = sorted(set(params or {}) & TRAINER_OWNED)
        if owned:
            raise ConfigError(
                f"model.params {owned}: the trainer owns rounds and early stopping; use trainer.max_epochs x "
                "trainer.rounds_per_epoch and trainer.callbacks (EarlyStopping)"
            )
        self.class_weights = class_weights
        self.use_sample_weights = use_sample_weights
        self.window_features = window_features
        self.seed = seed
        self.n_jobs = n_jobs
        self.params = dict(params or {})
        self.horizon = horizon
        self.bars_per_year = bars_per_year
        self.trading_config = TradingConfig.from_mapping(trading)
        self.feature_names = list(feature_names or [])
        self.seq_len = seq_len
        self.device = "cpu"  # set by TreeTrainer: "cpu" or "cuda:N"

    # -- shared
    @property
    def name(self) -> str:
        from ensemble.models.registry import entry_for

        entry = entry_for(f"{type(self).__module__}.{type(self).__qualname__}")
        return entry.name if entry is not None else type(self).__name__.lower()

    @property
    def design_names(self) -> list[str]:
        return design_names(self.feature_names, self.seq_len, self.window_features)

    @property
    def resolved_seed(self) -> int:
        # seed_everything records its seed in PL_GLOBAL_SEED; the libraries do not read numpy's global state
        return self.seed if self.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))

    def split(self, panel: SplitPanel, ends: torch.Tensor) -> TreeSplit:
        ends = ends.cpu()
        take = lambda t: t.cpu().index_select(0, ends).numpy()  # noqa: E731
        return TreeSplit(
            X=design_matrix(panel.features, ends, self.seq_len, self.window_features),
            y=take(panel.label),
            weight=take(panel.weight),
            time=take(panel.time),
            symbol=take(panel.symbol),
            fwd_return=take(panel.fwd_return),
            symbols=list(panel.symbols),
            tz=panel.tz,
        )

    def score(self, probs: np.ndarray, data: TreeSplit, stage: str) -> dict[str, float]:
        """The shared metric suite of ``probs`` (N, 3) on ``data``, plus ``{stage}/loss`` (the nets' key;
        trees optimise log loss)."""
        metrics = score_probabilities(stage, probs, data.y, data.time, data.fwd_return, self.horizon,
                                      self.bars_per_year, symbol=data.symbol, trading=self.trading_config)  # fmt: skip
        metrics[f"{stage}/loss"] = metrics[f"{stage}/log_loss"]
        return metrics

    def sample_weight(self, train: TreeSplit) -> np.ndarray | None:
        """Per-row training weight: class weight x sample weight, or None when both are off."""
        weight = None
        if self.class_weights is not None:
            if self.class_weights == "balanced":
                counts = np.bincount(train.y, minlength=NUM_CLASSES).astype(np.float64)
                per_class = len(train.y) / (NUM_CLASSES * np.maximum(counts, 1.0))
            else:
                per_class = np.asarray(self.class_weights, dtype=np.float64)
            weight = per_class[train.y]
        if self.use_sample_weights:
            weight = train.weight.astype(np.float64) if weight is None else weight * train.weight
        return None if weight is None else weight.astype(np.float32)

    def hparams(self) -> dict[str, Any]:
        """What the loggers record as the run's hyperparameters (as a net's ``hparams``)."""
        shared = ("horizon", "bars_per_year", "seq_len", "window_features", "class_weights", "use_sample_weights")
        return {"model": self.name, **{k: getattr(self, k) for k in shared}, "trading": self.trading_config.as_dict(),
                **self.library_params()}

    def metadata(self) -> dict[str, Any]:
        """What a checkpoint must carry to be used again: features, horizon and windowing."""
        return {
            "model": self.name,
            "class_path": f"{type(self).__module__}.{type(self).__qualname__}",
            "feature_names": self.feature_names,
            "design_names": self.design_names,
            "horizon": self.horizon,
            "seq_len": self.seq_len,
            "window_features": self.window_features,
            "rounds": self.num_rounds,
            "params": self.library_params(),
        }

    # -- library hooks
    def library_params(self) -> dict[str, Any]:
        """The native parameters handed to the library (named ones, seed, device, threads, then ``params``)."""
        raise NotImplementedError

    def start(self, train: TreeSplit, val: TreeSplit | None = None, init_from: Path | None = None) -> None:
        """Build the library's datasets once; continue from ``init_from`` (a native model file) if given."""
        raise NotImplementedError

    def boost(self, rounds: int) -> None:
        """Add ``rounds`` boosting rounds, exactly as the library's own training loop would."""
        raise NotImplementedError

    def val_proba(self) -> np.ndarray:
        """(N_val, 3) probabilities of the current model on the ``start`` val split, incrementally."""
        raise NotImplementedError

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(N, F') design rows -> (N, 3) class probabilities."""
        raise NotImplementedError

    @property
    def num_rounds(self) -> int:
        raise NotImplementedError

    def save(self, path: Path, resumable: bool = True) -> None:
        """Write the native model file atomically; ``resumable`` adds what continuing it exactly needs."""
        raise NotImplementedError

    def load(self, path: Path) -> None:
        raise NotImplementedError

    def feature_importance(self) -> pd.Series:
        """Importance per design column, normalised to sum to 1."""
        raise NotImplementedError

    def _importance(self, values: np.ndarray) -> pd.Series:
        values = np.asarray(values, dtype=np.float64)
        total = values.sum()
        return pd.Series(values / total if total > 0 else values, index=self.design_names, name="importance")
