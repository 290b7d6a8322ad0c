"""Models: backbones, the classification module, tree adapters, and the registry.

Attributes import on first use: ``import ensemble.models`` loads no tree library, no trainer and (until
``Classifier`` is touched) not Lightning. Registration is the table in ``registry.py``, so it is predictable.
"""

from ensemble.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "Classifier": ".classifier",
    "create_model": ".registry",
    "entry_for": ".registry",
    "get_model": ".registry",
    "list_models": ".registry",
    "register": ".registry",
})
__all__ = ["Classifier", "create_model", "entry_for", "get_model", "list_models", "register"]
