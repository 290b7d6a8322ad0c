"""``TreeTrainer`` and its callbacks: the tree family's counterpart of Lightning's Trainer."""

from ensemble.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "TreeTrainer": ".trainer",
    "TreeCallback": ".callbacks",
    "EarlyStopping": ".callbacks",
    "ModelCheckpoint": ".callbacks",
    "ArtifactWriter": ".callbacks",
    "TreePruningCallback": ".pruning",
})
__all__ = ["ArtifactWriter", "EarlyStopping", "ModelCheckpoint", "TreeCallback", "TreePruningCallback", "TreeTrainer"]
