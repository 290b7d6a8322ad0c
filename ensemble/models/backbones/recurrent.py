"""Shared body of the recurrent backbones: run the cell over the window, classify the last state."""

from __future__ import annotations

import torch
from torch import nn

from ensemble.data.constants import NUM_CLASSES


class RecurrentNet(nn.Module):
    cell: type[nn.RNNBase] = nn.LSTM

    def __init__(
        self,
        num_features: int,
        num_classes: int = NUM_CLASSES,
        seq_len: int = 1,
        hidden_size: int = 64,
        num_layers: int = 1,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.rnn = self.cell(
            num_features,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,  # torch applies it between layers only
        )
        self.head = nn.Sequential(nn.LayerNorm(hidden_size), nn.Dropout(dropout), nn.Linear(hidden_size, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)  # (B, L, F) -> (B, L, H)
        return self.head(out[:, -1])  # (B, H) -> (B, C)
