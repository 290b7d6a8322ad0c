"""What defines a study, stored with it: the model, the metric and its direction, the search space, and the data
every trial reads (data root, label horizon, window length, feature names).

A study resumed on the same storage and name must be the same study: trials sampled from another space (a key
that was an int and is now categorical) make Optuna fail every new trial, and trials of another metric or model
are not comparable with the old ones; nor are trials of another horizon, window length, feature set or data
folder (their val metrics are of other labels or other rows). The definition is kept as the study's user
attribute ``definition`` (Optuna's ``Study.set_user_attr``, stored in the study's storage beside its trials), and
a resume that changes it is refused before the first trial, naming what changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import distribution_to_json, json_to_distribution

from ensemble.errors import ConfigError
from ensemble.tuning.space import SearchSpace

ATTR = "definition"


# the keys compared one by one, besides the search space; a definition stored before the data keys were added
# lacks them: its trials' run records give the horizon and seq_len (``_trial_data``), and the resume then stores
# the full definition
KEYS = ("model", "metric", "direction", "horizon", "seq_len", "features", "data_root")


def study_definition(model: str, metric: str, direction: str, space: SearchSpace,
                     data: Mapping[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """The JSON-able definition of a study: model short name, metric, direction, each search-space key's
    Optuna distribution (as ``optuna.distributions.distribution_to_json`` writes it), and ``data``: the trials'
    ``horizon`` (bars), ``seq_len`` (bars), ``features`` (sorted names) and ``data_root`` (absolute folder)."""
    return {"model": model, "metric": metric, "direction": direction, **(data or {}),
            "search_space": {k: distribution_to_json(d) for k, d in sorted(space.distributions.items())}}  # fmt: skip


def _short(value: Any) -> str:
    if isinstance(value, list) and len(value) > 6:
        return f"{len(value)} names [{', '.join(map(str, value[:3]))}, ...]"
    return str(value)


def _feature_change(old: list[str], new: list[str]) -> str:
    gone, added = sorted(set(old) - set(new)), sorted(set(new) - set(old))
    parts = [f"{_short(gone)} removed" if gone else "", f"{_short(added)} added" if added else ""]
    return f"features changed ({'; '.join(p for p in parts if p)})"


def _show(text: str) -> str:
    return repr(json_to_distribution(text))


def _changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    changed = [_feature_change(old[k], new[k]) if k == "features" else f"{k} was '{old[k]}', now '{new[k]}'"
               for k in KEYS if k in old and k in new and old[k] != new[k]]  # fmt: skip
    before, now = old.get("search_space") or {}, new["search_space"]
    for key in sorted(set(before) | set(now)):
        if key not in now:
            changed.append(f"search-space key '{key}' was removed")
        elif key not in before:
            changed.append(f"search-space key '{key}' was added")
        elif json.loads(before[key]) != json.loads(now[key]):
            changed.append(f"search-space key '{key}' was {_show(before[key])}, now {_show(now[key])}")
    return changed


def _trial_data(study: optuna.Study) -> dict[str, Any]:
    """The horizon and seq_len a study's first trial with a run was trained with (its config.yaml, the fit's
    record), for a study stored before its definition held them; empty when no trial's record can be read."""
    import yaml

    for trial in study.get_trials(deepcopy=False):
        run = trial.user_attrs.get("run_dir")
        try:
            data = (yaml.safe_load((Path(run) / "config.yaml").read_text()) or {}).get("data") or {} if run else None
        except (OSError, yaml.YAMLError, AttributeError):
            continue  # a trial whose run folder was moved or deleted: the next one may tell
        if isinstance(data, dict) and "horizon" in data:
            return {k: int(data[k]) for k in ("horizon", "seq_len") if data.get(k) is not None}
    return {}


def _from_trials(study: optuna.Study, new: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    """Changes seen in a study stored before (part of) its definition was: ``old`` as stored (None: nothing),
    completed by its trials' distributions and their runs' horizon and seq_len."""
    seen: dict[str, str] = {}
    for trial in study.get_trials(deepcopy=False):
        for key, dist in trial.distributions.items():
            seen.setdefault(key, distribution_to_json(dist))
    known = {**_trial_data(study), **(old or {"search_space": seen})}
    return [c for c in _changes({**new, **known}, new) if old is not None or "added" not in c]


def check_definition(study: optuna.Study, definition: dict[str, Any]) -> None:
    """Store ``definition`` with a new study; refuse to resume one that was defined otherwise.

    Raises:
        ConfigError: one line naming the study and the first changes (model, metric, direction,
            search-space keys added, removed or with another distribution).
    """
    old = study.user_attrs.get(ATTR)
    whole = old is not None and all(k in old for k in KEYS)
    changes = _changes(old, definition) if whole else _from_trials(study, definition, old)
    if changes:
        more = f" (and {len(changes) - 3} more)" if len(changes) > 3 else ""
        raise ConfigError(
            f"study '{study.study_name}' was made with another definition: {'; '.join(changes[:3])}"
            f"{more}; resume it with its own settings, or start a new study with another --tune.study_name"
        )
    if old != definition:  # a new study, or one whose stored definition predates some of these keys
        study.set_user_attr(ATTR, definition)
