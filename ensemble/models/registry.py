"""Short model names for configs, experiments, search spaces and ``ensemble models``.

Third-party packages add models through the ``ensemble.models`` entry-point group: each entry
point names a module (or object) whose import calls ``register``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "ensemble.models"
FAMILIES = ("neural", "tree")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    cls: type
    family: str
    config: str  # the bundled config that trains it
    needs_weights: bool = False  # pretrained weights the user supplies (not in the default experiment grid)

    @property
    def class_path(self) -> str:
        return f"{self.cls.__module__}.{self.cls.__qualname__}"


_REGISTRY: dict[str, ModelEntry] = {}
_entry_points_loaded = False


def register(
    name: str, family: str = "neural", config: str | None = None, needs_weights: bool = False
) -> Callable[[type], type]:
    """Class decorator: ``@register("lstm", family="neural")``; ``needs_weights`` for a model that
    loads pretrained weights from a path the user gives (TimesFM)."""
    if family not in FAMILIES:
        raise ValueError(f"model family must be one of {FAMILIES}, got '{family}'")

    def wrap(cls: type) -> type:
        known = _REGISTRY.get(name)
        if known is not None and known.cls is not cls:
            raise ValueError(f"model name '{name}' is already registered by {known.class_path}")
        _REGISTRY[name] = ModelEntry(name, cls, family, config or f"configs/{name}.yaml", needs_weights)
        return cls

    return wrap


def _load_entry_points() -> None:
    global _entry_points_loaded
    if not _entry_points_loaded:
        _entry_points_loaded = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            ep.load()


def list_models(family: str | None = None) -> list[ModelEntry]:
    _load_entry_points()
    return [e for _, e in sorted(_REGISTRY.items()) if family in (None, e.family)]


def get_model(name: str) -> ModelEntry:
    _load_entry_points()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model '{name}'; known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_model(name: str, **kwargs) -> object:
    """Instantiate a registered model class by its short name."""
    return get_model(name).cls(**kwargs)
