"""What a checkpoint or an export may ask to import: registered models and an explicit allow-list, nothing else.

A checkpoint's hyperparameters and an export's ``config.yaml`` name classes by ``class_path``; Lightning and
jsonargparse import whatever module such a string names, before any type check runs. A model file from
elsewhere must not choose modules, so every ``class_path`` (and Lightning's ``_class_path`` and
``_instantiator``) read from one is checked here first, as a string, without importing anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ensemble.errors import EnsembleError
from ensemble.models.registry import list_models

# the keys under which Lightning and jsonargparse read an importable dotted path
IMPORT_KEYS = ("class_path", "_class_path", "_instantiator")

# classes a run's model section names besides its backbone or tree model
_CLASSES = frozenset({
    "ensemble.models.Classifier", "ensemble.models.classifier.Classifier",
    "ensemble.data.WindowDataModule", "ensemble.data.datamodule.WindowDataModule",
    "lightning.pytorch.cli.instantiate_module",  # Lightning's _instantiator for CLI-built modules
})  # fmt: skip

# packages whose classes a config may name: optimizers, schedulers, callbacks (and the loggers, strategies and
# plugins a run's trainer section lists); a class in a sub-module of one counts too
_PACKAGES = (
    "torch.optim",  # optimizers, and schedulers in torch.optim.lr_scheduler
    "lightning.pytorch.cli",  # ReduceLROnPlateau with a monitor
    "lightning.pytorch.callbacks",
    "lightning.pytorch.loggers",
    "lightning.pytorch.strategies",
    "lightning.pytorch.plugins",
    "lightning.pytorch.profilers",
    "lightning.pytorch.accelerators",
    "ensemble.training.callbacks",
    "ensemble.training.trees",  # the trees' callbacks, which configs name as ensemble.training.trees.EarlyStopping
)


class UntrustedFileError(EnsembleError):
    """A checkpoint or export names a module that is neither a registered model nor on the allow-list."""


def _in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def is_allowed(class_path: str) -> bool:
    """Whether ``class_path`` names a registered model class or an allowed class, judged on the string alone.

    A registered model counts under its registered path or under a module inside that path's package
    (``ensemble.models.backbones.lstm.LSTMNet`` for ``ensemble.models.backbones.LSTMNet``), with the same
    class name; a look-alike class name in another package does not.
    """
    if class_path in _CLASSES:
        return True
    module, _, name = class_path.rpartition(".")
    if not module or not name.isidentifier():
        return False
    if any(_in_package(module, package) for package in _PACKAGES):
        return True
    for entry in list_models():
        registered_module, _, registered_name = entry.class_path.rpartition(".")
        if name == registered_name and _in_package(module, registered_module):
            return True
    return False


def import_paths(data: Any, where: str = "") -> list[tuple[str, str]]:
    """Every (key path, dotted path) under an import key in nested mappings and lists; tensors are skipped."""
    found: list[tuple[str, str]] = []
    if isinstance(data, Mapping):
        for key, value in data.items():
            at = f"{where}.{key}" if where else str(key)
            if key in IMPORT_KEYS and isinstance(value, str):
                found.append((at, value))
            else:
                found += import_paths(value, at)
    elif isinstance(data, list | tuple):
        for i, value in enumerate(data):
            found += import_paths(value, f"{where}[{i}]")
    return found


def check_import_paths(data: Any, source: str) -> None:
    """Refuse ``data`` (a checkpoint's dict, an export's config) if any import key names a module not allowed.

    Raises:
        UntrustedFileError: naming ``source``, the key and the dotted path.
    """
    for key, path in import_paths(data):
        if not is_allowed(path):
            raise UntrustedFileError(
                f"{source}: {key} names '{path}', which is neither a registered model nor an allowed optimizer, "
                "scheduler or callback; refusing to import it (register the model, or fix the file)"
            )
