"""Blend finished runs: fitted on the members' val predictions, judged on test."""

from ensemble.ensembling.methods import METHODS, MeanBlend, StackedBlend, WeightedBlend

__all__ = ["METHODS", "MeanBlend", "StackedBlend", "WeightedBlend"]
