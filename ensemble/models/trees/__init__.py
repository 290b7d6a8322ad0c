"""Tree adapters: XGBoost, LightGBM and CatBoost behind one ``TreeModel`` interface.

Each adapter imports its own library only, and only when it is used: a LightGBM run never loads XGBoost.
"""

from ensemble.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "TreeModel": ".base",
    "TreeSplit": ".base",
    "XGBoostModel": ".xgboost_model",
    "LightGBMModel": ".lightgbm_model",
    "CatBoostModel": ".catboost_model",
})
__all__ = ["CatBoostModel", "LightGBMModel", "TreeModel", "TreeSplit", "XGBoostModel"]
