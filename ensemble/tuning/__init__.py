"""Hyperparameter tuning with Optuna: search spaces as YAML, pruning, shared storage."""

from ensemble.tuning.space import SearchSpace, SearchSpaceError

__all__ = ["SearchSpace", "SearchSpaceError"]
