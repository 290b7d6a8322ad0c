"""Blend finished runs: fitted on the members' val predictions, judged on test."""

from ensemble.ensembling.methods import (
    METHODS,
    BestMember,
    CaruanaBlend,
    MeanBlend,
    StackedBlend,
    WeightedBlend,
    from_state,
)

__all__ = ["METHODS", "BestMember", "CaruanaBlend", "MeanBlend", "StackedBlend", "WeightedBlend", "from_state"]
