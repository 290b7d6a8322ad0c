"""XGBoost adapter: a ``Booster`` driven round by round, as ``xgboost.train`` drives it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from ensemble.data.constants import NUM_CLASSES
from ensemble.io import atomic_write
from ensemble.models.trees.base import TreeModel, TreeSplit


class XGBoostModel(TreeModel):
    """Multiclass ``multi:softprob`` boosting with the ``hist`` tree method.

    Args:
        learning_rate, max_depth, min_child_weight, subsample, colsample_bytree, reg_lambda, reg_alpha,
            max_bin: the usual XGBoost parameters (native names).
        **kwargs: the shared tree options (see ``TreeModel``), including ``params`` for any other one.
    """

    suffix = ".json"
    importance_type = "total_gain"

    def __init__(
        self,
        learning_rate: float = 0.05,
        max_depth: int = 6,
        min_child_weight: float = 1.0,
        subsample: float = 1.0,
        colsample_bytree: float = 1.0,
        reg_lambda: float = 1.0,
        reg_alpha: float = 0.0,
        max_bin: int = 256,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.named = {
            "learning_rate": learning_rate,
            "max_depth": max_depth,
            "min_child_weight": min_child_weight,
            "subsample": subsample,
            "colsample_bytree": colsample_bytree,
            "reg_lambda": reg_lambda,
            "reg_alpha": reg_alpha,
            "max_bin": max_bin,
        }
        self.booster: xgb.Booster | None = None

    def library_params(self) -> dict[str, Any]:
        params = {"objective": "multi:softprob", "num_class": NUM_CLASSES, "tree_method": "hist", **self.named}
        params.update(seed=self.resolved_seed, device=self.device)
        if self.n_jobs is not None:
            params["nthread"] = self.n_jobs
        return {**params, **self.params}

    def start(self, train: TreeSplit, val: TreeSplit | None = None, init_from: Path | None = None) -> None:
        self._dtrain = xgb.DMatrix(train.X, train.y, weight=self.sample_weight(train), nthread=self.n_jobs)
        self._dval = xgb.DMatrix(val.X, nthread=self.n_jobs) if val is not None else None
        # both matrices in the booster's cache: predicting val after each chunk only adds the new trees
        cache = [d for d in (self._dtrain, self._dval) if d is not None]
        model = str(init_from) if init_from is not None else None
        self.booster = xgb.Booster(self.library_params(), cache, model_file=model)

    def boost(self, rounds: int) -> None:
        done = self.booster.num_boosted_rounds()
        for i in range(done, done + rounds):
            self.booster.update(self._dtrain, iteration=i)

    def val_proba(self) -> np.ndarray:
        return self.booster.predict(self._dval)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.booster.inplace_predict(X)

    @property
    def num_rounds(self) -> int:
        return 0 if self.booster is None else self.booster.num_boosted_rounds()

    def save(self, path: Path, resumable: bool = True) -> None:
        raw = self.booster.save_raw(raw_format="json")  # save_model picks its format from the file suffix
        atomic_write(path, lambda p: p.write_bytes(bytes(raw)))

    def load(self, path: Path) -> None:
        self.booster = xgb.Booster(self.library_params(), model_file=str(path))

    def feature_importance(self) -> pd.Series:
        score = self.booster.get_score(importance_type=self.importance_type)  # keys f0, f1, ... (unnamed DMatrix)
        values = np.zeros(len(self.design_names))
        for key, value in score.items():
            values[int(key[1:])] = value
        return self._importance(values)
