"""Tree models: XGBoost, LightGBM and CatBoost adapters trained by ``TreeTrainer``.

Importing this package registers ``xgboost``, ``lightgbm`` and ``catboost`` (family "tree").
"""

from ensemble.trees.base import TreeModel, TreeSplit
from ensemble.trees.callbacks import ArtifactWriter, EarlyStopping, ModelCheckpoint, TreeCallback
from ensemble.trees.catboost_model import CatBoostModel
from ensemble.trees.lightgbm_model import LightGBMModel
from ensemble.trees.trainer import TreeTrainer
from ensemble.trees.xgboost_model import XGBoostModel

__all__ = [
    "ArtifactWriter",
    "CatBoostModel",
    "EarlyStopping",
    "LightGBMModel",
    "ModelCheckpoint",
    "TreeCallback",
    "TreeModel",
    "TreeSplit",
    "TreeTrainer",
    "XGBoostModel",
]
