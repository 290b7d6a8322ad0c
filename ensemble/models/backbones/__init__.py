"""Backbones: plain ``nn.Module``s mapping (B, L, F) windows to (B, num_classes) logits.

Each takes ``num_features``, ``num_classes`` and ``seq_len`` first (linked from the data by the CLI).
A backbone that picks columns by name has ``bind_feature_names``; the ``Classifier`` calls it.
"""

from ensemble.models.backbones.gru import GRUNet
from ensemble.models.backbones.lstm import LSTMNet
from ensemble.models.backbones.nhits import NHiTSNet
from ensemble.models.backbones.patchtst import PatchTSTNet
from ensemble.models.backbones.tft import TFTNet
from ensemble.models.backbones.timesfm import TimesFMNet
from ensemble.models.backbones.transformer import TransformerNet

__all__ = ["GRUNet", "LSTMNet", "NHiTSNet", "PatchTSTNet", "TFTNet", "TimesFMNet", "TransformerNet"]
