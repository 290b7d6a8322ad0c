"""Load a TimesFM 3 model from a local checkpoint directory, with errors that say what to do.

The directory is what the ``timesfm`` package's ``TimesFM3Torch.save_pretrained`` writes and what
Hugging Face hosts: ``config.json`` (the model's constructor arguments) and ``model.safetensors``.
It is read with ``json`` and ``safetensors`` only: no Hugging Face Hub call, so nothing is ever
downloaded at run time and an offline machine behaves like an online one.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from torch import nn

from ensemble.errors import EnsembleError
from ensemble.models.checks import CheckpointMismatchError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PUBLISHED_REPO = "google/timesfm-3.0-pytorch"  # the timesfm package's default TimesFM 3 repository
HOW_TO_GET = (
    f"on a machine with internet, download {CONFIG_FILE} and {WEIGHTS_FILE} of the Hugging Face repository "
    f"{PUBLISHED_REPO} (e.g. `hf download {PUBLISHED_REPO} --local-dir timesfm-3.0-pytorch`), copy that "
    "directory here and point model.init_args.net.init_args.checkpoint at it"
)
INSTALL_HINT = "TimesFM needs `pip install ensemble[timesfm]`"


class TimesFMWeightsNotFoundError(EnsembleError, FileNotFoundError):
    """The configured TimesFM checkpoint directory (or a file in it) does not exist."""


class TimesFMCheckpointError(CheckpointMismatchError):
    """The checkpoint directory does not hold a TimesFM 3 model matching its own config."""


def timesfm_model_class() -> type[nn.Module]:
    """``timesfm3.torch.TimesFM3Torch``, imported on first use: the package is an optional extra."""
    try:
        from timesfm3.torch import TimesFM3Torch
    except ImportError as err:
        raise ImportError(f"{INSTALL_HINT} ({err})") from err
    return TimesFM3Torch


def _read_config(directory: Path) -> dict[str, Any]:
    try:
        config = json.loads((directory / CONFIG_FILE).read_text())
    except (OSError, ValueError) as err:
        raise TimesFMCheckpointError(f"TimesFM checkpoint {directory}: cannot read {CONFIG_FILE}: {err}") from err
    if not isinstance(config, dict):
        raise TimesFMCheckpointError(f"TimesFM checkpoint {directory}: {CONFIG_FILE} is not a JSON object")
    return config


def build_timesfm(config: dict[str, Any], source: str = "config") -> nn.Module:
    """A randomly initialised TimesFM 3 from its constructor arguments (``config.json`` as a dict).

    Keys the constructor does not take are ignored, as the package's own ``from_pretrained`` does.
    """
    cls = timesfm_model_class()
    accepted = inspect.signature(cls).parameters
    try:
        return cls(**{k: v for k, v in config.items() if k in accepted})
    except (TypeError, ValueError, KeyError) as err:
        message = f"TimesFM checkpoint {source}: {CONFIG_FILE} does not build a model: {err}"
        raise TimesFMCheckpointError(message) from err


def _first_mismatch(expected: dict[str, Any], found: dict[str, Any]) -> str | None:
    """The first key (in the model's order) that is missing or has another shape, else the first extra key."""
    for key, tensor in expected.items():
        if key not in found:
            return f"key '{key}' is missing from {WEIGHTS_FILE}"
        if tuple(found[key].shape) != tuple(tensor.shape):
            return (f"key '{key}' has shape {tuple(found[key].shape)} in {WEIGHTS_FILE} but "
                    f"{tuple(tensor.shape)} in the model its {CONFIG_FILE} describes")
    extra = [k for k in found if k not in expected]
    return f"unexpected key '{extra[0]}' in {WEIGHTS_FILE} ({len(extra)} extra)" if extra else None


def load_timesfm(checkpoint: str | Path | None) -> nn.Module:
    """Build the model ``config.json`` describes and load ``model.safetensors`` into it, strictly."""
    if checkpoint is None:
        raise TimesFMWeightsNotFoundError(f"TimesFM needs pretrained weights (net.init_args.checkpoint); {HOW_TO_GET}")
    directory = Path(checkpoint).expanduser()
    if not directory.is_dir():
        raise TimesFMWeightsNotFoundError(f"TimesFM checkpoint directory {directory} not found; {HOW_TO_GET}")
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (directory / name).is_file()]
    if missing:
        raise TimesFMWeightsNotFoundError(f"TimesFM checkpoint {directory} lacks {', '.join(missing)}; {HOW_TO_GET}")
    model = build_timesfm(_read_config(directory), str(directory))
    from safetensors.torch import load_file

    try:
        state = load_file(directory / WEIGHTS_FILE)
    except Exception as err:  # safetensors raises its own error types for a corrupt or truncated file
        raise TimesFMCheckpointError(f"TimesFM checkpoint {directory}: cannot read {WEIGHTS_FILE}: {err}") from err
    problem = _first_mismatch(model.state_dict(), state)
    if problem is not None:
        raise TimesFMCheckpointError(f"TimesFM checkpoint {directory} does not match its {CONFIG_FILE}: {problem}")
    model.load_state_dict(state, strict=True)
    return model
