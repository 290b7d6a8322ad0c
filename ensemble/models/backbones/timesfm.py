"""TimesFM as a classifier: a pretrained forecasting foundation model's view of the window, then an MLP.

The ``context_features`` columns of the window (one symbol's last ``seq_len`` rows, e.g. its return
series) go to TimesFM 3 (``timesfm3.torch.TimesFM3Torch`` from the ``timesfm`` package) as one
multivariate series per sample: each column is a variate, and TimesFM 3's variate attention lets them
inform each other. The window is left-padded with masked values to whole input patches. All variates
are marked as targets, so the model's "future covariate" inputs stay masked: nothing after the
window's last row is ever seen, and TimesFM's causal attention keeps each patch to its past.

What the head sees (``use``):
- ``embedding``: the transformer's output at the last context patch, per variate (V x model_dims);
- ``forecast``: TimesFM's median point forecast of the next ``forecast_len`` steps, per variate,
  read from the last context patch (its direct forecast, without the package's decode-time
  detrending and patch stitching).
That representation (layer-normed), optionally with the window's last row of all features, feeds a
small MLP to the class logits.

``freeze: true`` keeps TimesFM in eval mode with ``requires_grad=False`` and runs it under
``torch.no_grad`` (only the head trains); ``freeze: false`` fine-tunes it with the head.

The weights come from a local directory (``checkpoint``); see ``timesfm_weights``. Rebuilding the net
reads that directory, so it must exist wherever a run is reloaded. A frozen TimesFM is therefore left
out of the net's ``state_dict``: a run's Lightning checkpoints hold the head only (kilobytes, not the
1.3 GB of published weights), plus a fingerprint of the weights it was trained on, and reloading
refuses a directory whose weights differ from them. Fine-tuned weights are saved in full.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ensemble.data import DataContractError
from ensemble.data.constants import NUM_CLASSES
from ensemble.models.backbones.timesfm_weights import TimesFMCheckpointError, load_timesfm


class ContextFeatureError(DataContractError):
    """``context_features`` names a column that is not a feature of the data."""


class TimesFMNet(nn.Module):
    """Args:
        checkpoint: local directory with TimesFM 3's ``config.json`` and ``model.safetensors`` (required).
        context_features: feature columns fed to TimesFM as the variates of one series (required).
        use: ``embedding`` (last context patch's hidden state) or ``forecast`` (median point forecast).
        forecast_len: forecast steps per variate the head sees when ``use: forecast``.
        include_features: also feed the window's last row of all features to the head.
        hidden_size, dropout: the head MLP.
        freeze: keep TimesFM's weights fixed (default) or fine-tune them.
        feature_names: the data's feature columns in order; the ``Classifier`` passes them (from the
            data) through ``bind_feature_names``, so configs leave this out.
    """


    def __init__(
        self,
        num_features: int,
        num_classes: int = NUM_CLASSES,
        seq_len: int = 1,
        checkpoint: str | None = None,
        context_features: list[str] | None = None,
        use: Literal["embedding", "forecast"] = "embedding",
        forecast_len: int = 16,
        include_features: bool = True,
        hidden_size: int = 64,
        dropout: float = 0.1,
        freeze: bool = True,
        feature_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        if not context_features:
            raise ContextFeatureError("TimesFM needs context_features: the feature columns it reads, e.g. [ret_lag_1]")
        if use not in ("embedding", "forecast"):
            raise ValueError(f"use must be 'embedding' or 'forecast', got '{use}'")
        self.timesfm = load_timesfm(checkpoint)
        self.patch_len: int = self.timesfm.input_patch_len
        if use == "forecast" and not 1 <= forecast_len <= self.timesfm.output_patch_len:
            raise TimesFMCheckpointError(
                f"forecast_len must be in [1, {self.timesfm.output_patch_len}] (the output patch length of the "
                f"TimesFM checkpoint {checkpoint}), got {forecast_len}"
            )
        max_variates = getattr(self.timesfm.transformer_config.transformer, "max_variates", None)
        if max_variates is not None and len(context_features) > max_variates:
            raise ContextFeatureError(
                f"TimesFM takes at most {max_variates} context_features (variates), got {len(context_features)}"
            )
        quantiles = list(self.timesfm.quantiles)
        self.median_index = quantiles.index(0.5) if 0.5 in quantiles else len(quantiles) // 2
        self.num_features, self.use, self.forecast_len = num_features, use, forecast_len
        self.include_features, self.freeze = include_features, freeze
        self.context_features = list(context_features)
        self.register_buffer("context_index", None, persistent=False)  # set once the feature names are known
        if feature_names is not None:
            self.bind_feature_names(feature_names)

        width = self.timesfm.transformer_config.transformer.model_dims if use == "embedding" else forecast_len
        rep_size = len(self.context_features) * width
        self.rep_norm = nn.LayerNorm(rep_size)  # pretrained activations and scaled features live on other scales
        self.head = nn.Sequential(
            nn.Linear(rep_size + (num_features if include_features else 0), hidden_size),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, num_classes),
        )
        if freeze:
            self.timesfm.requires_grad_(False)
            self.timesfm.eval()
        self.register_buffer("weights_fingerprint", weights_fingerprint(self.timesfm))
        self.checkpoint = checkpoint
        self.register_state_dict_post_hook(_drop_frozen_weights)
        self.register_load_state_dict_pre_hook(_restore_frozen_weights)

    def bind_feature_names(self, feature_names: list[str]) -> None:
        """Map ``context_features`` to column indices of the (B, L, F) window; fails on an unknown name."""
        names = list(feature_names)
        if len(names) != self.num_features:
            raise ContextFeatureError(f"TimesFM got {len(names)} feature names for {self.num_features} features")
        unknown = [c for c in self.context_features if c not in names]
        if unknown:
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise ContextFeatureError(
                f"context feature '{unknown[0]}' is not a feature column of the data "
                f"(unknown: {unknown}; features: {shown})"
            )
        self.context_index = torch.tensor([names.index(c) for c in self.context_features], dtype=torch.long)

    def train(self, mode: bool = True) -> TimesFMNet:
        super().train(mode)
        if self.freeze:
            self.timesfm.eval()  # a frozen foundation model always runs as published
        return self

    def _patched(self, context: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, V, L) -> TimesFM 3's patched inputs, left-padded with masked zeros to whole patches."""
        batch, variates, length = context.shape
        pad = (-length) % self.patch_len
        values = F.pad(context, (pad, 0))
        masks = torch.zeros_like(values, dtype=torch.bool)
        masks[..., :pad] = True
        patches = values.shape[-1] // self.patch_len
        shape = (batch, variates, patches, self.patch_len)
        is_target = torch.ones(shape[:3], dtype=torch.bool, device=context.device)
        return {"values": values.view(shape), "masks": masks.view(shape), "patch_is_target": is_target}

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """TimesFM's (B, V * width) view of the window's context features."""
        if self.context_index is None:
            raise ContextFeatureError(
                "TimesFM does not know the data's feature names: build it with feature_names or inside a Classifier"
            )
        context = x[:, :, self.context_index].transpose(1, 2)  # (B, L, F) -> (B, V, L)
        with torch.no_grad() if self.freeze else nullcontext():
            out = self.timesfm(self._patched(context), return_aux_outputs=self.use == "embedding")
        if self.use == "embedding":
            rep = out["__call__:transformer_output"][:, :, -1]  # (B, V, model_dims), last context patch
        else:
            rep = out["logits"][:, :, -1, : self.forecast_len, self.median_index]  # (B, V, forecast_len)
        return rep.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rep = self.rep_norm(self.representation(x).to(x.dtype))
        if self.include_features:
            rep = torch.cat([rep, x[:, -1]], dim=-1)  # the window's newest row of every feature
        return self.head(rep)  # (B, C)


def weights_fingerprint(module: nn.Module) -> torch.Tensor:
    """(count, sum, sum of squares) of all weights, in float64: tells two sets of weights apart."""
    total = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        for tensor in module.state_dict().values():  # tensor by tensor: no float64 copy of all weights at once
            values = tensor.detach().double()
            total += torch.stack([torch.tensor(float(values.numel()), dtype=torch.float64), values.sum(),
                                  values.square().sum()]).cpu()
    return total


def _drop_frozen_weights(module: TimesFMNet, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    if module.freeze:  # they are the checkpoint directory's, unchanged: the fingerprint stands for them
        for key in [k for k in state_dict if k.startswith(f"{prefix}timesfm.")]:
            del state_dict[key]


def _restore_frozen_weights(module: TimesFMNet, state_dict: dict, prefix: str, *args: object) -> None:
    if not module.freeze:
        return
    saved = state_dict.get(f"{prefix}weights_fingerprint")
    if saved is not None and not torch.allclose(saved.double().cpu(), module.weights_fingerprint.cpu(), rtol=1e-4):
        raise TimesFMCheckpointError(
            f"TimesFM weights in {module.checkpoint} differ from those this model was trained with "
            f"(fingerprint {saved.tolist()} vs {module.weights_fingerprint.tolist()}); point "
            "model.init_args.net.init_args.checkpoint at the original weights"
        )
    for key, value in module.timesfm.state_dict(prefix=f"{prefix}timesfm.").items():
        state_dict.setdefault(key, value)  # the frozen weights, as loaded from the directory
