"""Backbones: plain ``nn.Module``s mapping (B, L, F) windows to (B, num_classes) logits.

Each takes ``num_features``, ``num_classes`` and ``seq_len`` first (linked from the data by the CLI).
A backbone that picks columns by name has ``bind_feature_names``; the ``Classifier`` calls it. Each is
imported on first use (TimesFM and the neuralforecast blocks are heavy).
"""

from ensemble.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "GRUNet": ".gru",
    "LSTMNet": ".lstm",
    "NHiTSNet": ".nhits",
    "PatchTSTNet": ".patchtst",
    "TFTNet": ".tft",
    "TimesFMNet": ".timesfm",
    "TransformerNet": ".transformer",
})
__all__ = ["GRUNet", "LSTMNet", "NHiTSNet", "PatchTSTNet", "TFTNet", "TimesFMNet", "TransformerNet"]
