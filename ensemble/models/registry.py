"""Short model names for configs, experiments, search spaces and ``ensemble models``.

Each model's family is recorded here once. The bundled models are a table of class paths, imported only
when a class is used, so listing models loads neither torch's training stack nor a tree library.
Third-party packages add models through the ``ensemble.models`` entry-point group: each entry point names
a module (or object) whose import calls ``register``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from ensemble.errors import ConfigError

ENTRY_POINT_GROUP = "ensemble.models"
FAMILIES = ("neural", "tree")  # neural: a backbone under ``Classifier``; tree: a ``TreeModel`` adapter


@dataclass(frozen=True)
class ModelEntry:
    """One registered model.

    Attributes:
        name: the short name (``lstm``, ``lightgbm``).
        class_path: the importable class, as configs write it (the backbone for neural models).
        family: one of ``FAMILIES``; the training layer picks the trainer by it.
        config: the bundled config that trains it.
        needs_weights: loads pretrained weights from a path the user gives (left out of default grids).
    """

    name: str
    class_path: str
    family: str
    config: str
    needs_weights: bool = False

    @property
    def cls(self) -> type:
        """The model class, imported on first use."""
        module, _, attr = self.class_path.rpartition(".")
        return getattr(importlib.import_module(module), attr)


_B = "ensemble.models.backbones."
_T = "ensemble.models.trees."
_BUNDLED = [
    ("lstm", _B + "LSTMNet", "neural"), ("gru", _B + "GRUNet", "neural"),
    ("transformer", _B + "TransformerNet", "neural"), ("tft", _B + "TFTNet", "neural"),
    ("nhits", _B + "NHiTSNet", "neural"), ("patchtst", _B + "PatchTSTNet", "neural"),
    ("timesfm", _B + "TimesFMNet", "neural"),
    ("xgboost", _T + "XGBoostModel", "tree"), ("lightgbm", _T + "LightGBMModel", "tree"),
    ("catboost", _T + "CatBoostModel", "tree"),
]  # fmt: skip
_REGISTRY: dict[str, ModelEntry] = {
    name: ModelEntry(name, path, family, f"configs/{name}.yaml", needs_weights=name == "timesfm")
    for name, path, family in _BUNDLED
}
_entry_points_loaded = False


def register(
    name: str, family: str = "neural", config: str | None = None, needs_weights: bool = False
) -> Callable[[type], type]:
    """Class decorator for third-party models: ``@register("mynet", family="neural")``.

    Raises:
        ConfigError: an unknown family, or a name already registered by another class.
    """
    if family not in FAMILIES:
        raise ConfigError(f"model family must be one of {FAMILIES}, got '{family}'")

    def wrap(cls: type) -> type:
        path = f"{cls.__module__}.{cls.__qualname__}"
        known = _REGISTRY.get(name)
        if known is not None and known.class_path != path:
            raise ConfigError(f"model name '{name}' is already registered by {known.class_path}")
        _REGISTRY[name] = ModelEntry(name, path, family, config or f"configs/{name}.yaml", needs_weights)
        return cls

    return wrap


def _load_entry_points() -> None:
    global _entry_points_loaded
    if not _entry_points_loaded:
        _entry_points_loaded = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            ep.load()


def list_models(family: str | None = None) -> list[ModelEntry]:
    """Registered models sorted by name, optionally of one family."""
    _load_entry_points()
    return [e for _, e in sorted(_REGISTRY.items()) if family in (None, e.family)]


def get_model(name: str) -> ModelEntry:
    """The entry of a short name.

    Raises:
        ConfigError: the name is unknown; the message lists the known names.
    """
    _load_entry_points()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model '{name}'; known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def entry_for(class_path: str | None) -> ModelEntry | None:
    """The entry whose class a config names: by its registered path (``ensemble.models.backbones.LSTMNet``)
    or by the path of the module inside that package that defines it (``...backbones.lstm.LSTMNet``, as
    saved configs write it). A class of the same name elsewhere is not a match. None when nothing matches."""
    if not class_path:
        return None
    module, _, name = class_path.rpartition(".")
    for entry in list_models():
        package, _, registered = entry.class_path.rpartition(".")
        if entry.class_path == class_path or (name == registered and module.startswith(package + ".")):
            return entry
    return None


def create_model(name: str, **kwargs) -> object:
    """Instantiate a registered model class by its short name."""
    return get_model(name).cls(**kwargs)
