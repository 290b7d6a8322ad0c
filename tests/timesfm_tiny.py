"""A tiny, randomly initialised TimesFM 3 of the package's own architecture, saved the way the
published weights are (``config.json`` + ``model.safetensors``), for tests that must not download;
and the arguments registry-wide tests add for models that cannot run without such weights."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

NET = "model.init_args.net.init_args."


def tiny_timesfm_config(model_dims: int = 16) -> dict:
    """TimesFM 3 constructor arguments: 2 layers, input patches of 4 bars (a 5-bar window is
    2 patches), forecasts of 16 (the configs' ``forecast_len``)."""
    from timesfm3.torch import ResidualBlockConfig, StackedTransformersConfig, TransformerConfig

    transformer = TransformerConfig(
        model_dims=model_dims, hidden_dims=2 * model_dims, num_heads=2, attention_norm="rms", feedforward_norm="rms",
        qk_norm="rms", use_bias=False, use_rope_seq=True, use_rope_var=True, ff_activation="relu", deterministic=True,
    )
    return {
        "input_patch_len": 4,
        "output_patch_len": 16,
        "residual_block_config": ResidualBlockConfig(
            hidden_dims=model_dims, output_dims=model_dims, use_bias=False, activation="relu"
        ),
        "transformer_config": StackedTransformersConfig(num_layers=2, transformer=transformer),
    }


def write_tiny_timesfm(directory: Path, model_dims: int = 16, seed: int = 0) -> Path:
    """Save a random tiny TimesFM 3 with the package's own ``save_pretrained`` (once per directory)."""
    from timesfm3.torch import TimesFM3Torch

    directory = Path(directory)
    if not (directory / "model.safetensors").is_file():
        torch.manual_seed(seed)
        TimesFM3Torch(**tiny_timesfm_config(model_dims)).save_pretrained(directory)
    return directory


def required_net_args(name: str, directory: Path) -> dict:
    """Backbone arguments a registered model cannot do without, for tests over every model: TimesFM's
    weights (a tiny random TimesFM 3 written under ``directory``) and a column it reads. Without the
    timesfm package there are none, and the TimesFM cases fail with its install hint."""
    if name != "timesfm" or importlib.util.find_spec("timesfm3") is None:
        return {}
    return {"checkpoint": str(write_tiny_timesfm(Path(directory) / "timesfm-tiny")), "context_features": ["f0"]}


def required_cli_args(name: str, directory: Path) -> list[str]:
    """``required_net_args`` as ``ensemble fit`` flags."""
    args: list[str] = []
    for key, value in required_net_args(name, directory).items():
        args += [f"--{NET}{key}", value if isinstance(value, str) else json.dumps(value)]
    return args
