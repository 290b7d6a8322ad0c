"""CatBoost adapter: chunks of rounds through CatBoost's own training snapshots.

CatBoost has no public one-round update. ``fit(init_model=...)`` continues only approximately from a
loaded model (its RNG and learn state are not in the ``.cbm`` file) and, chained twice from a loaded
model, even double-counts trees (CatBoost 1.2). A training snapshot holds the whole learn state, so each
chunk is ``fit(iterations=done + rounds)`` restarting from the snapshot: the same trees as one
uninterrupted ``fit`` (tested), also after a resume, as the checkpoint keeps the snapshot beside the model.
The training pool is quantized once, so a chunk pays only CatBoost's fixed per-``fit`` set-up.
"""

from __future__ import annotations

import inspect
import shutil
import tempfile
from pathlib import Path
from typing import Any

import catboost
import numpy as np
import pandas as pd

from ensemble.data.constants import NUM_CLASSES
from ensemble.errors import ConfigError
from ensemble.io import atomic_write
from ensemble.models.trees.base import TreeModel, TreeSplit

_QUANTIZE_ARGS = set(inspect.signature(catboost.Pool.quantize).parameters) - {"self"}
SNAPSHOT_SUFFIX = ".cbsnapshot"


class CatBoostModel(TreeModel):
    """Multiclass (``MultiClass`` loss) oblivious-tree boosting.

    Args:
        learning_rate: always explicit: CatBoost would otherwise derive it from the iteration count.
        depth, l2_leaf_reg, border_count, random_strength, bootstrap_type, subsample, rsm: the usual
            CatBoost parameters (native names; ``None`` keeps CatBoost's default).
        **kwargs: the shared tree options (see ``TreeModel``), including ``params`` for any other one.
    """

    suffix = ".cbm"
    importance_type = "PredictionValuesChange"

    def __init__(
        self,
        learning_rate: float = 0.05,
        depth: int = 6,
        l2_leaf_reg: float = 3.0,
        border_count: int = 254,
        random_strength: float = 1.0,
        bootstrap_type: str | None = None,
        subsample: float | None = None,
        rsm: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.named = {
            "learning_rate": learning_rate,
            "depth": depth,
            "l2_leaf_reg": l2_leaf_reg,
            "border_count": border_count,
            "random_strength": random_strength,
            "bootstrap_type": bootstrap_type,
            "subsample": subsample,
            "rsm": rsm,
        }
        self.model: catboost.CatBoostClassifier | None = None

    def library_params(self) -> dict[str, Any]:
        # classes_count: CatBoost otherwise learns only the classes it sees, and a train split without
        # "short" would give 2 probability columns; every model must give short/flat/long.
        params = {"loss_function": "MultiClass", "classes_count": NUM_CLASSES}
        params.update({k: v for k, v in self.named.items() if v is not None})
        params.update(random_seed=self.resolved_seed, verbose=False)
        if self.device.startswith("cuda"):
            params.update(task_type="GPU", devices=self.device.partition(":")[2] or "0")
        if self.n_jobs is not None:
            params["thread_count"] = self.n_jobs
        return {**params, **self.params}

    def start(self, train: TreeSplit, val: TreeSplit | None = None, init_from: Path | None = None) -> None:
        params = self.library_params()
        self._pool = catboost.Pool(train.X, train.y, weight=self.sample_weight(train))
        if params.get("task_type", "CPU") == "CPU":  # quantize once, not once per chunk
            self._pool.quantize(**{k: v for k, v in params.items() if k in _QUANTIZE_ARGS})
        self._val = catboost.Pool(val.X) if val is not None else None
        self._workdir = tempfile.TemporaryDirectory(prefix="ensemble-catboost-")  # CatBoost's train_dir
        self._snapshot = Path(self._workdir.name) / "snapshot"
        self.model = None
        if init_from is not None:
            snapshot = init_from.with_suffix(SNAPSHOT_SUFFIX)
            if not snapshot.is_file():  # only "last" keeps one: best is for evaluating, not for continuing
                raise ConfigError(
                    f"{init_from}: CatBoost continues from its training snapshot ({snapshot.name}), which only "
                    "the 'last' checkpoint keeps; resume with --ckpt_path last"
                )
            shutil.copyfile(snapshot, self._snapshot)
            self.load(init_from)

    def boost(self, rounds: int) -> None:
        params = {
            # CatBoost derives max_ctr_complexity from the planned iterations (it changes at 200) and a snapshot
            # refuses other params; with numeric features only (the data contract) it shapes no tree.
            "max_ctr_complexity": 4,
            **self.library_params(),
            "train_dir": self._workdir.name,
            "save_snapshot": True,
            "snapshot_file": str(self._snapshot),
            "snapshot_interval": 10**9,  # only the snapshot written when fit returns
            "allow_writing_files": True,  # snapshots are files
        }
        self.model = catboost.CatBoostClassifier(iterations=self.num_rounds + rounds, **params).fit(self._pool)

    def val_proba(self) -> np.ndarray:
        return self.predict_proba(self._val)

    def predict_proba(self, X: np.ndarray | catboost.Pool) -> np.ndarray:
        """(N, F') rows -> (N, 3) probabilities; a class the model never learnt gets probability 0."""
        probs = self.model.predict_proba(X, thread_count=self.n_jobs or -1)
        if probs.shape[1] == NUM_CLASSES:
            return probs
        # a model saved without classes_count (before it was set) knows only the classes it saw
        full = np.zeros((len(probs), NUM_CLASSES), dtype=probs.dtype)
        full[:, np.asarray(self.model.classes_, dtype=np.int64)] = probs
        return full

    @property
    def num_rounds(self) -> int:
        return 0 if self.model is None else self.model.tree_count_

    def save(self, path: Path, resumable: bool = True) -> None:
        atomic_write(path, lambda p: self.model.save_model(str(p), format="cbm"))
        snapshot = getattr(self, "_snapshot", None)  # only a model trained here has one
        if resumable and snapshot is not None and snapshot.is_file():
            atomic_write(path.with_suffix(SNAPSHOT_SUFFIX), lambda p: shutil.copyfile(snapshot, p))

    def load(self, path: Path) -> None:
        self.model = catboost.CatBoostClassifier()
        self.model.load_model(str(path), format="cbm")

    def feature_importance(self) -> pd.Series:
        return self._importance(self.model.get_feature_importance(type=self.importance_type))
