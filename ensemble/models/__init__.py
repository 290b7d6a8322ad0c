"""Models: backbones, the classification module, tree adapters, and the registry.

Imports are explicit so registration is predictable.
"""

from ensemble import trees  # noqa: F401  (registers xgboost, lightgbm, catboost; imports the registry)
from ensemble.models import backbones  # noqa: F401  (registers lstm, gru, transformer, tft, nhits, patchtst, timesfm)
from ensemble.models.classifier import Classifier
from ensemble.models.registry import create_model, get_model, list_models, register

__all__ = ["Classifier", "create_model", "get_model", "list_models", "register"]
