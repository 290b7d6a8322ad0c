"""``ensemble experiment --config configs/experiments/baseline.yaml``: models x horizons, leaderboard, blends."""

from __future__ import annotations

from jsonargparse import ActionConfigFile, ArgumentParser

from ensemble.experiments.runner import Experiment, run_experiment
from ensemble.training.config import read_yaml
from ensemble.training.runs import check_name


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="ensemble experiment", description=__doc__, exit_on_error=False)
    p.add_argument("--config", action=ActionConfigFile, help="experiment YAML")
    p.add_class_arguments(Experiment, None)  # top-level keys: name, models, horizons, ...
    return p


def run(argv: list[str]) -> int:
    for i, arg in enumerate(argv):  # a config that does not load safely (a Python tag): one line naming it
        key, eq, value = arg.partition("=")
        if key == "--config" and (eq or i + 1 < len(argv)):
            read_yaml(value if eq else argv[i + 1])
    p = parser()
    cfg = p.parse_args(argv).as_dict()
    cfg.pop("config", None)
    if cfg.get("name"):
        check_name(cfg["name"], "name")  # it names experiments/<name>/
    run_experiment(Experiment(**cfg))
    return 0
