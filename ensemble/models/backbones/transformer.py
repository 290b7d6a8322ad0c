"""Transformer encoder over the window (pre-norm, learned positions), classifying the last token."""

from __future__ import annotations

import torch
from torch import nn

from ensemble.data.constants import NUM_CLASSES


class TransformerNet(nn.Module):

    def __init__(
        self,
        num_features: int,
        num_classes: int = NUM_CLASSES,
        seq_len: int = 1,
        d_model: int = 64,
        nhead: int = 4,
        num_layers: int = 2,
        dim_feedforward: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.embed = nn.Linear(num_features, d_model)
        self.position = nn.Parameter(torch.zeros(1, seq_len, d_model))
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward, dropout, batch_first=True, norm_first=True
        )
        # nested tensors are a padding optimisation; our windows are never padded
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.position[:, : x.shape[1]]  # (B, L, F) -> (B, L, D)
        h = self.encoder(h)  # every row of the window is past: no causal mask needed
        return self.head(h[:, -1])  # (B, D) -> (B, C)
