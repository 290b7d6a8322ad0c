"""Where a tree library trains: one device, from the nets' ``accelerator``/``devices``/``strategy`` flags."""

from __future__ import annotations

import torch

from ensemble.errors import ConfigError


def single_device(accelerator: str, devices: int | str | list[int], strategy: str | None) -> str:
    """``cpu`` or ``cuda:N``; each adapter maps it to its library's own GPU mode. Tree libraries do not run
    under DDP (they parallelise over the cores of one machine), so more than one device is refused."""
    ids = devices if isinstance(devices, list) else None
    count = len(ids) if ids is not None else (1 if devices in ("auto", None) else int(devices))
    if strategy not in (None, "auto", "single_device") or count != 1:
        raise ConfigError(
            f"tree models train on one device (trainer.strategy='{strategy}', trainer.devices={devices!r}): "
            "the libraries use every CPU core, or one GPU with trainer.accelerator=cuda"
        )
    if accelerator == "auto":
        accelerator = "cuda" if torch.cuda.is_available() else "cpu"
    if accelerator == "cpu":
        return "cpu"
    if accelerator in ("cuda", "gpu"):
        if not torch.cuda.is_available():  # the libraries would fail deep inside, or quietly use the CPU
            raise ConfigError(f"trainer.accelerator={accelerator}, but this machine has no visible CUDA device; "
                              "use trainer.accelerator=cpu")  # fmt: skip
        return f"cuda:{ids[0] if ids else 0}"
    raise ConfigError(f"trainer.accelerator for tree models is cpu, cuda, gpu or auto, got '{accelerator}'")
