"""Refuse a checkpoint trained on other features or another horizon than the data at hand."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ensemble.errors import EnsembleError


class CheckpointMismatchError(EnsembleError):
    """The checkpoint does not fit the configured data."""


def check_checkpoint_matches(saved: Mapping[str, Any], current: Mapping[str, Any], source: str = "checkpoint") -> None:
    """Compare the feature list and horizon stored at training time with the current ones."""
    saved_h, now_h = saved.get("horizon"), current.get("horizon")
    if saved_h is not None and now_h is not None and saved_h != now_h:
        raise CheckpointMismatchError(f"{source} was trained for horizon {saved_h}, but the data has horizon {now_h}")
    before, now = saved.get("feature_names"), current.get("feature_names")
    if before is None or now is None or list(before) == list(now):
        return
    missing = [f for f in before if f not in set(now)]
    extra = [f for f in now if f not in set(before)]
    detail = f"missing {missing[:10]}, extra {extra[:10]}" if missing or extra else "same names in another order"
    raise CheckpointMismatchError(f"{source} was trained on other features than the data: {detail}")
