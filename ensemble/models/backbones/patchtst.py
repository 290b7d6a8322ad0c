"""PatchTST as a classifier: neuralforecast's channel-independent ``TSTiEncoder`` over patches.

Each feature's window is cut into patches, and every feature runs through the same Transformer
encoder on its own (channel independence). The head is the PatchTST paper's classification head:
each feature's last (most recent) patch token, concatenated over features, dropout, linear.

RevIN is left out: the features arrive scaled on the train split, and their level within the
window is signal that per-window normalisation would remove.

neuralforecast imports ray and the old ``pytorch_lightning`` at import time: it is imported only
when a PatchTST is built, so ``import ensemble`` stays fast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ensemble.data.constants import NUM_CLASSES


class PatchTSTNet(nn.Module):
    """Args:
        patch_len, stride: patching of each feature's window (``patch_len`` is capped at ``seq_len``);
            the oldest end is padded (repeating the first row) so that the last patch ends at the newest row.
        hidden_size, n_heads, n_layers, linear_hidden_size: the encoder (neuralforecast's names).
        norm: ``BatchNorm`` (the library's default) or ``LayerNorm``.
        dropout, attn_dropout: inside the encoder; ``head_dropout`` before the classifier.
    """


    def __init__(
        self,
        num_features: int,
        num_classes: int = NUM_CLASSES,
        seq_len: int = 1,
        patch_len: int = 12,
        stride: int = 6,
        hidden_size: int = 32,
        n_heads: int = 4,
        n_layers: int = 2,
        linear_hidden_size: int = 64,
        norm: str = "BatchNorm",
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        head_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        from neuralforecast.models.patchtst import TSTiEncoder

        self.patch_len = min(patch_len, seq_len)
        self.stride = stride
        self.pad = (stride - (seq_len - self.patch_len) % stride) % stride  # so the last patch ends at t
        patch_num = (seq_len + self.pad - self.patch_len) // stride + 1
        self.encoder = TSTiEncoder(
            num_features,
            patch_num=patch_num,
            patch_len=self.patch_len,
            max_seq_len=patch_num,
            n_layers=n_layers,
            hidden_size=hidden_size,
            n_heads=n_heads,
            linear_hidden_size=linear_hidden_size,
            norm=norm,
            attn_dropout=attn_dropout,
            dropout=dropout,
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(head_dropout), nn.Linear(num_features * hidden_size, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.transpose(1, 2)  # (B, L, F) -> (B, F, L)
        if self.pad:
            z = F.pad(z, (self.pad, 0), mode="replicate")  # pad the oldest end: the newest rows stay a patch
        z = z.unfold(-1, self.patch_len, self.stride).transpose(2, 3)  # (B, F, patch_len, P)
        z = self.encoder(z)  # (B, F, D, P)
        return self.head(z[..., -1])  # last patch per feature: (B, F, D) -> (B, C)
