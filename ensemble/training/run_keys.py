"""What a run must share with a config for ``--ckpt_path best|last`` to pick it (``RunKey``), read from a run's
config.yaml, and how a run is described when none matches."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ensemble.errors import EnsembleError

# keys of the ``model`` section that are not the trained model's hyper-parameters: how it was optimised (a run
# evaluated or resumed with another learning rate is the same model) and the threads it used; and what the data
# and the checkpoint link into the model (num_features, seq_len, horizon, trading, monitor...: compared as the
# data's own keys, or not part of what was trained)
_NOT_HYPER = frozenset({"optimizer", "scheduler", "n_jobs", "num_features", "num_classes", "seq_len", "horizon",
                        "bars_per_year", "feature_names", "trading", "monitor"})


def model_hyperparameters(config: Mapping[str, Any]) -> dict[str, Any]:
    """The trained model's hyper-parameters in a run config, flattened to dotted keys below ``model.init_args``
    (``net.hidden_size``, ``num_leaves``; ``net`` itself holds the backbone's class), with values as JSON reads
    them (tuples as lists); the optimiser, scheduler, tree threads and data-linked sizes are left out."""
    model = config.get("model") if isinstance(config, Mapping) else None
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping) and "class_path" in node:
            out[prefix or "class"] = str(node["class_path"]).rsplit(".", 1)[-1]
            node = node.get("init_args") or {}
        if not isinstance(node, Mapping):
            return
        for key, value in node.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key in _NOT_HYPER:
                continue
            if isinstance(value, Mapping) and "class_path" in value:
                walk(value, name)
            else:
                out[name] = json.loads(json.dumps(value, default=str))

    walk(model, "")
    return out


@dataclass(frozen=True)
class RunKey:
    """What a run must share with a config for ``--ckpt_path best|last`` to pick it: the model's short name,
    the label horizon, the window length, (when known) the feature names, in any order, and the model's
    hyper-parameters (``model_hyperparameters``, as canonical JSON; a run of another ``hidden_size`` would not
    load into this config's model)."""

    model: str
    horizon: int
    seq_len: int
    features: frozenset[str] | None = None
    hyper: str | None = None

    @classmethod
    def of(cls, config: Mapping[str, Any], features: Sequence[str] | None = None) -> RunKey:
        """The key of a run config (``model`` and ``data`` sections, as a run's config.yaml holds them)."""
        from ensemble.training.config import get_dotted, model_short_name

        horizon, seq_len = int(get_dotted(config, "data.horizon", 5)), int(get_dotted(config, "data.seq_len", 1))
        hyper = json.dumps(model_hyperparameters(config), sort_keys=True)
        return cls(model_short_name(config), horizon, seq_len, None if features is None else frozenset(features),
                   hyper)  # fmt: skip

    def describe(self) -> str:
        return f"{self.model}, horizon {self.horizon}, seq_len {self.seq_len}"

    def hyper_differences(self, other: RunKey) -> list[str]:
        """``key other-value (this: value)`` for each hyper-parameter ``other`` has otherwise than this key."""
        mine, theirs = json.loads(self.hyper or "{}"), json.loads(other.hyper or "{}")
        return [f"{k} {theirs.get(k, 'unset')} (this config: {mine.get(k, 'unset')})"
                for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]  # fmt: skip


def recorded_key(run: Path) -> RunKey | None:
    """The key of a run from its config.yaml (the fit's record), or None when it has none or it is unreadable."""
    from ensemble.training.config import read_yaml

    try:
        return RunKey.of(read_yaml(run / "config.yaml"))
    except (EnsembleError, TypeError, ValueError):  # not a run's record: never the run asked for
        return None


def _names(features: Sequence[str]) -> str:
    shown = ", ".join(list(features)[:4]) + (", ..." if len(features) > 4 else "")
    return f"{len(features)} features {shown}"


def describe_run(run: Path, key: RunKey, wanted: RunKey, newest: Path | None,
                  features_of: Callable[[Path], Sequence[str]] | None) -> str:  # fmt: skip
    """``lstm_h5/version_0 (lstm, horizon 5, seq_len 30, 4 features f0, ...; net.hidden_size 8 (this config:
    16))``: what a run was trained on, and how its model differs from the config's."""
    parts = [key.model, f"horizon {key.horizon}", f"seq_len {key.seq_len}"]
    if newest is not None and features_of is not None:
        try:
            names = list(features_of(newest))
        except EnsembleError:
            names = None  # a damaged checkpoint: the run is listed without its features
        if names is not None:
            same = wanted.features is None or frozenset(names) == wanted.features
            parts.append(_names(names) + ("" if same else " (not this config's)"))
    text = ", ".join(parts)
    differ = wanted.hyper_differences(key) if key.model == wanted.model else []
    if differ:
        text += "; " + ", ".join(differ[:3]) + (f" and {len(differ) - 3} more" if len(differ) > 3 else "")
    return f"{run.parent.name}/{run.name} ({text})"
