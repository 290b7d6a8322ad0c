from ensemble.callbacks.artifacts import ArtifactWriter, write_stage

__all__ = ["ArtifactWriter", "write_stage"]
