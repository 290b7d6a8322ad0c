"""N-HiTS as a classifier: neuralforecast's ``NHITSBlock`` stack over each feature of the window.

Channel-independent, as neuralforecast runs N-HiTS on many series: every feature's window is one
univariate series. A stack of blocks with coarse-to-fine input pooling and output interpolation
(multi-rate) forecasts ``embed_size`` knots-interpolated values, doubly residual as in the library
model (each block fits what the previous ones left of the input, forecasts add up from the naive
last value). That per-feature "forecast" is the feature's embedding; our head classifies the
concatenation of all features' embeddings.

neuralforecast imports ray and the old ``pytorch_lightning`` at import time: it is imported only
when an N-HiTS is built, so ``import ensemble`` stays fast.
"""

from __future__ import annotations

import torch
from torch import nn

from ensemble.data.constants import NUM_CLASSES


class NHiTSNet(nn.Module):
    """Args:
        embed_size: the per-feature forecast length used as its embedding (N-HiTS's ``h``).
        n_pool_kernel_size: input max-pool kernel per block (coarse to fine).
        n_freq_downsample: output knots are ``embed_size // k`` per block, interpolated to ``embed_size``.
        mlp_units: hidden width of each block's MLP; ``mlp_layers`` hidden layers.
        dropout: inside the block MLPs; ``head_dropout`` before the classifier.
    """


    def __init__(
        self,
        num_features: int,
        num_classes: int = NUM_CLASSES,
        seq_len: int = 1,
        embed_size: int = 8,
        n_pool_kernel_size: tuple[int, ...] = (4, 2, 1),
        n_freq_downsample: tuple[int, ...] = (4, 2, 1),
        mlp_units: int = 64,
        mlp_layers: int = 2,
        pooling_mode: str = "MaxPool1d",
        interpolation_mode: str = "linear",
        activation: str = "ReLU",
        dropout: float = 0.0,
        head_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        from neuralforecast.models.nhits import NHITSBlock, _IdentityBasis

        if len(n_pool_kernel_size) != len(n_freq_downsample):
            raise ValueError(
                f"n_pool_kernel_size {list(n_pool_kernel_size)} and n_freq_downsample "
                f"{list(n_freq_downsample)} need one entry per block"
            )
        self.seq_len = seq_len
        self.blocks = nn.ModuleList(
            NHITSBlock(
                input_size=seq_len,
                h=embed_size,
                n_theta=seq_len + max(embed_size // freq, 1),
                mlp_units=[[mlp_units, mlp_units]] * mlp_layers,
                basis=_IdentityBasis(seq_len, embed_size, interpolation_mode),
                futr_input_size=0,
                hist_input_size=0,
                stat_input_size=0,
                n_pool_kernel_size=min(pool, seq_len),
                pooling_mode=pooling_mode,
                dropout_prob=dropout,
                activation=activation,
            )
            for pool, freq in zip(n_pool_kernel_size, n_freq_downsample, strict=True)
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.LayerNorm(num_features * embed_size), nn.Dropout(head_dropout),
            nn.Linear(num_features * embed_size, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, num_features = x.shape
        residuals = x.transpose(1, 2).reshape(batch * num_features, -1)  # (B, L, F) -> (B*F, L)
        forecast = residuals[:, -1:]  # naive last value, broadcast over the embedding
        for block in self.blocks:
            backcast, block_forecast = block(residuals, None, None, None)  # (B*F, L), (B*F, E, 1)
            residuals = residuals - backcast
            forecast = forecast + block_forecast.squeeze(-1)  # (B*F, E)
        return self.head(forecast.view(batch, num_features, -1))  # (B, F, E) -> (B, C)
