"""``ensemble experiment --config configs/experiments/baseline.yaml``: models x horizons, leaderboard, blends."""

from __future__ import annotations

from jsonargparse import ActionConfigFile, ArgumentParser

from ensemble.experiments.runner import Experiment, run_experiment


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="ensemble experiment", description=__doc__, exit_on_error=False)
    p.add_argument("--config", action=ActionConfigFile, help="experiment YAML")
    p.add_class_arguments(Experiment, None)  # top-level keys: name, models, horizons, ...
    return p


def run(argv: list[str]) -> int:
    p = parser()
    cfg = p.parse_args(argv).as_dict()
    cfg.pop("config", None)
    run_experiment(Experiment(**cfg))
    return 0
