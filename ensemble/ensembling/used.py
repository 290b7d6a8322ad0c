"""The members a fitted blend reads, from its ``state()``: an export or a prediction needs no other.

A blend that weights its members' probabilities (mean, weighted, caruana, best) reads only the members of nonzero
weight: weighted's convex optimum may sit on a face of the simplex, Caruana's selection may never pick a member,
``best`` keeps one. Stacked's logistic regression has coefficients on every member's log-probabilities, so it reads
all of them.
"""

from __future__ import annotations

from typing import Any

from ensemble.errors import ConfigError

WEIGHTED = ("mean", "weighted", "caruana", "best")  # states whose "weights" are the whole combination


def used_members(state: dict[str, Any], members: int) -> list[int]:
    """Indices (ascending, 0-based in the blend's member order) of the ``members`` members that ``state``'s blend
    reads: those of nonzero weight, or all for ``stacked``.

    Raises:
        ConfigError: a weighted state whose ``weights`` are not one per member, or all zero.
    """
    if state.get("method") not in WEIGHTED:
        return list(range(members))
    weights = state.get("weights")
    if not isinstance(weights, list) or len(weights) != members:
        raise ConfigError(f"blend state of method '{state.get('method')}': 'weights' must hold one weight per "
                          f"member ({members}), got {weights!r}")  # fmt: skip
    used = [i for i, w in enumerate(weights) if w != 0]
    if not used:
        raise ConfigError(f"blend state of method '{state['method']}': every weight is 0")
    return used


def restrict(state: dict[str, Any], used: list[int]) -> dict[str, Any]:
    """``state`` over the members ``used`` alone (``used_members``'s indices): its blend, given only their
    probabilities, predicts what ``state``'s blend predicts given all members' (a dropped member's weight is 0,
    and 0 * p adds exactly nothing). A stacked state is returned as is: it reads every member."""
    if state.get("method") not in WEIGHTED:
        return state
    out = {**state, "weights": [state["weights"][i] for i in used]}
    if "counts" in state:  # caruana: selections per member, the weights' numerators
        out["counts"] = [state["counts"][i] for i in used]
    return out
