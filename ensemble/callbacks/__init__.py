from ensemble.callbacks.artifacts import ArtifactWriter, write_stage
from ensemble.callbacks.importance import FeatureImportance

__all__ = ["ArtifactWriter", "FeatureImportance", "write_stage"]
