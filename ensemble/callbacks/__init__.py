from ensemble.callbacks.artifacts import ArtifactWriter, write_stage
from ensemble.callbacks.importance import FeatureImportance  # noqa: F401  (add to __all__)

__all__ = ["ArtifactWriter", "write_stage"]
