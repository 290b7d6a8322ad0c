"""Temporal Fusion Transformer as a classifier over a symbol window, on pytorch-forecasting's blocks.

The window is TFT's encoder; the prediction point is its last step. Per step: variable selection
over the F real features -> LSTM -> gated skip -> static-free enrichment GRN -> interpretable
attention from the last step over the window -> gated skip -> position-wise GRN -> gated skip over
the LSTM -> linear to the classes. There are no static covariates here, so the static context
GRNs of the library model are left out (without statics they only add learned constants).

pytorch-forecasting costs ~0.7 s to import, so it is imported when a TFT is built.
"""

from __future__ import annotations

import torch
from torch import nn

from ensemble.data.constants import NUM_CLASSES
from ensemble.models.backbones.tft_blocks import LibraryVariableSelection, VectorisedVariableSelection

VARIABLE_SELECTION = {"vectorised": VectorisedVariableSelection, "library": LibraryVariableSelection}


class TFTNet(nn.Module):
    """Args:
        hidden_size: H, the width of every block.
        hidden_continuous_size: per-feature embedding size inside variable selection (c <= H).
        attention_heads: heads of the interpretable attention (H must divide by it).
        lstm_layers: LSTM encoder depth.
        dropout: as in the library blocks.
        variable_selection: ``vectorised`` (ours) or ``library`` (pytorch-forecasting's loop;
            the reference, for tests and benchmarks). Both hold the same parameters.

    After each forward, ``variable_weights`` holds the (B, F) selection weights averaged over the
    window's steps (detached), which ``FeatureImportance`` turns into a feature-importance table.
    """


    def __init__(
        self,
        num_features: int,
        num_classes: int = NUM_CLASSES,
        seq_len: int = 1,
        hidden_size: int = 16,
        hidden_continuous_size: int = 8,
        attention_heads: int = 4,
        lstm_layers: int = 1,
        dropout: float = 0.1,
        variable_selection: str = "vectorised",
    ) -> None:
        super().__init__()
        from pytorch_forecasting.models.temporal_fusion_transformer.sub_modules import (
            GateAddNorm,
            GatedResidualNetwork,
            InterpretableMultiHeadAttention,
        )

        if variable_selection not in VARIABLE_SELECTION:
            known = list(VARIABLE_SELECTION)
            raise ValueError(f"variable_selection must be one of {known}, got '{variable_selection}'")
        if hidden_size % attention_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be divisible by attention_heads ({attention_heads})")
        h = hidden_size
        self.variable_selection = VARIABLE_SELECTION[variable_selection](
            num_features, min(hidden_continuous_size, h), h, dropout
        )
        self.lstm = nn.LSTM(h, h, lstm_layers, batch_first=True, dropout=dropout if lstm_layers > 1 else 0.0)
        self.post_lstm_gate = GateAddNorm(h, dropout=dropout, trainable_add=False)
        self.static_enrichment = GatedResidualNetwork(h, h, h, dropout)
        self.attention = InterpretableMultiHeadAttention(attention_heads, h, dropout=dropout)
        self.post_attention_gate = GateAddNorm(h, dropout=dropout, trainable_add=False)
        self.positionwise_grn = GatedResidualNetwork(h, h, h, dropout)
        self.pre_output_gate = GateAddNorm(h, dropout=None, trainable_add=False)
        self.head = nn.Linear(h, num_classes)
        self.variable_weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        selected, weights = self.variable_selection(x)  # (B, L, F) -> (B, L, H), (B, L, F)
        self.variable_weights = weights.detach().mean(dim=1)  # (B, F)
        encoded, _ = self.lstm(selected)  # (B, L, H)
        lstm_out = self.post_lstm_gate(encoded, selected)  # gated skip over the LSTM
        enriched = self.static_enrichment(lstm_out)  # (B, L, H)
        last = enriched[:, -1:]  # the prediction point queries the whole (past-only) window
        attended, _ = self.attention(last, enriched, enriched)  # (B, 1, H)
        out = self.post_attention_gate(attended, last)
        out = self.positionwise_grn(out)
        out = self.pre_output_gate(out, lstm_out[:, -1:])  # skip over the temporal fusion decoder
        return self.head(out[:, 0])  # (B, H) -> (B, C)
