"""Refuse a checkpoint trained on other features or another horizon than the data at hand."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ensemble.errors import EnsembleError


class CheckpointMismatchError(EnsembleError):
    """The checkpoint does not fit the configured data."""


def check_checkpoint_matches(saved: Mapping[str, Any], current: Mapping[str, Any], source: str = "checkpoint") -> None:
    """Compare the feature list and horizon stored at training time with the current ones.

    Raises:
        CheckpointMismatchError: another horizon; other feature names; or the same names in another order,
            naming the ``--data.feature_order`` value that reads the data in the checkpoint's order.
    """
    saved_h, now_h = saved.get("horizon"), current.get("horizon")
    if saved_h is not None and now_h is not None and saved_h != now_h:
        raise CheckpointMismatchError(f"{source} was trained for horizon {saved_h}, but the data has horizon {now_h}")
    before, now = saved.get("feature_names"), current.get("feature_names")
    if before is None or now is None or list(before) == list(now):
        return
    missing = [f for f in before if f not in set(now)]
    extra = [f for f in now if f not in set(before)]
    if missing or extra:
        raise CheckpointMismatchError(f"{source} was trained on other features than the data: "
                                      f"missing {missing[:10]}, extra {extra[:10]}")  # fmt: skip
    # the same names in another order (the train file's columns were reordered): the data is read by name, so
    # reading it in the checkpoint's order is the whole fix
    raise CheckpointMismatchError(
        f"{source} was trained on the same features in another order; read the data in its order with "
        f"--data.feature_order \"[{', '.join(map(str, before))}]\" (data: feature_order in a config)"
    )
