"""LightGBM adapter: a ``Booster`` updated round by round, as ``lightgbm.train`` updates it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from ensemble.data.constants import NUM_CLASSES
from ensemble.io import atomic_write
from ensemble.models.trees.base import TreeModel, TreeSplit


def softmax(raw: np.ndarray) -> np.ndarray:
    z = np.exp(raw - raw.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


class LightGBMModel(TreeModel):
    """Multiclass (softmax) leaf-wise boosting.

    Args:
        learning_rate, num_leaves, max_depth, min_data_in_leaf, bagging_fraction, bagging_freq,
            feature_fraction, lambda_l2, lambda_l1, max_bin: the usual LightGBM parameters (native names).
        **kwargs: the shared tree options (see ``TreeModel``), including ``params`` for any other one.
    """

    suffix = ".txt"
    importance_type = "gain"

    def __init__(
        self,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        max_depth: int = -1,
        min_data_in_leaf: int = 20,
        bagging_fraction: float = 1.0,
        bagging_freq: int = 0,
        feature_fraction: float = 1.0,
        lambda_l2: float = 0.0,
        lambda_l1: float = 0.0,
        max_bin: int = 255,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.named = {
            "learning_rate": learning_rate,
            "num_leaves": num_leaves,
            "max_depth": max_depth,
            "min_data_in_leaf": min_data_in_leaf,
            "bagging_fraction": bagging_fraction,
            "bagging_freq": bagging_freq,
            "feature_fraction": feature_fraction,
            "lambda_l2": lambda_l2,
            "lambda_l1": lambda_l1,
            "max_bin": max_bin,
        }
        self.booster: lgb.Booster | None = None
        self._continue = False

    def library_params(self) -> dict[str, Any]:
        params = {"objective": "multiclass", "num_class": NUM_CLASSES, "verbosity": -1, **self.named,
                  "seed": self.resolved_seed}  # fmt: skip
        if self.device.startswith("cuda"):  # the PyPI wheels carry the OpenCL ("gpu") build, not CUDA
            params.update(device_type="gpu", gpu_device_id=int(self.device.partition(":")[2] or 0))
        if self.n_jobs is not None:
            params["num_threads"] = self.n_jobs
        return {**params, **self.params}

    def start(self, train: TreeSplit, val: TreeSplit | None = None, init_from: Path | None = None) -> None:
        params = self.library_params()
        self._train = lgb.Dataset(train.X, train.y, weight=self.sample_weight(train), params=params)
        self._val_X = val.X if val is not None else None
        self._val_raw, self._val_rounds = None, 0
        self._continue = init_from is not None
        self.booster = lgb.Booster(model_file=str(init_from)) if init_from is not None else None

    def boost(self, rounds: int) -> None:
        params = self.library_params()
        if self._continue:
            # a loaded model cannot be updated: lightgbm.train merges it in and keeps the booster trainable
            self.booster = lgb.train(params, self._train, rounds, init_model=self.booster, keep_training_booster=True)
            self._continue = False
            return
        if self.booster is None:
            self.booster = lgb.Booster(params, self._train)
        for _ in range(rounds):
            self.booster.update()

    def val_proba(self) -> np.ndarray:
        # raw scores are additive over iteration ranges: predict only the rounds added since last time
        done = self.booster.current_iteration()
        part = self.booster.predict(
            self._val_X,
            start_iteration=self._val_rounds,
            num_iteration=done - self._val_rounds,
            raw_score=True,
            **self._threads(),
        )
        self._val_raw = part if self._val_raw is None else self._val_raw + part
        self._val_rounds = done
        return softmax(self._val_raw)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.booster.predict(X, num_iteration=-1, **self._threads())

    def _threads(self) -> dict[str, int]:
        # predict otherwise resets LightGBM's OpenMP threads to all cores, and later rounds then train with those
        return {} if self.n_jobs is None else {"num_threads": self.n_jobs}

    @property
    def num_rounds(self) -> int:
        return 0 if self.booster is None else self.booster.current_iteration()

    def save(self, path: Path, resumable: bool = True) -> None:
        text = self.booster.model_to_string(num_iteration=-1)
        atomic_write(path, lambda p: p.write_text(text))

    def load(self, path: Path) -> None:
        self.booster = lgb.Booster(model_file=str(path))

    def feature_importance(self) -> pd.Series:
        return self._importance(self.booster.feature_importance(importance_type=self.importance_type))
