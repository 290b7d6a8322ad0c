"""Search spaces are data: a YAML mapping config keys to Optuna distributions.

    model.init_args.net.init_args.hidden_size: {type: int, low: 16, high: 128, log: true}
    model.init_args.optimizer.init_args.lr:    {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    model.init_args.net.init_args.num_layers:  {type: categorical, choices: [1, 2]}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from ensemble.errors import EnsembleError

_KINDS = {"int": IntDistribution, "float": FloatDistribution, "categorical": CategoricalDistribution}


class SearchSpaceError(EnsembleError):
    """A search space that cannot be used; the message names the file and key."""


class SearchSpace:
    def __init__(self, distributions: dict[str, BaseDistribution], source: str = "<dict>") -> None:
        if not distributions:
            raise SearchSpaceError(f"{source}: the search space is empty")
        self.distributions = distributions
        self.source = source

    @classmethod
    def from_dict(cls, spec: dict[str, Any], source: str = "<dict>") -> SearchSpace:
        dists: dict[str, BaseDistribution] = {}
        for key, entry in spec.items():
            if not isinstance(entry, dict) or "type" not in entry:
                raise SearchSpaceError(f"{source}: key '{key}' needs a mapping with a 'type' (int, float, categorical)")
            kind = entry["type"]
            if kind not in _KINDS:
                raise SearchSpaceError(
                    f"{source}: key '{key}' has unknown distribution '{kind}'; use one of {', '.join(_KINDS)}"
                )
            args = {k: v for k, v in entry.items() if k != "type"}
            try:
                dists[key] = _KINDS[kind](**args)
            except (TypeError, ValueError) as err:
                raise SearchSpaceError(f"{source}: key '{key}': {err}") from err
        return cls(dists, source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        path = Path(path)
        if not path.is_file():
            raise SearchSpaceError(f"{path}: search space file not found; give one with --tune.search_space FILE "
                                   "(a YAML of dotted config keys to distributions, as configs/search_spaces/)")
        spec = yaml.safe_load(path.read_text()) or {}
        if not isinstance(spec, dict):
            raise SearchSpaceError(f"{path}: a search space is a mapping of config keys to distributions")
        return cls.from_dict(spec, str(path))

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for key, d in self.distributions.items():
            if isinstance(d, CategoricalDistribution):
                params[key] = trial.suggest_categorical(key, d.choices)
            elif isinstance(d, IntDistribution):
                params[key] = trial.suggest_int(key, d.low, d.high, step=d.step, log=d.log)
            else:
                params[key] = trial.suggest_float(key, d.low, d.high, step=d.step, log=d.log)
        return params

    def first_point(self) -> dict[str, Any]:
        """A valid value for every key, to check the keys against the config before trial 1."""
        point = {}
        for key, dist in self.distributions.items():
            point[key] = dist.choices[0] if isinstance(dist, CategoricalDistribution) else dist.low
        return point

    @staticmethod
    def as_cli_args(params: dict[str, Any]) -> list[str]:
        args: list[str] = []
        for key, value in params.items():
            text = "null" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))
            args += [f"--{key}", text]
        return args
