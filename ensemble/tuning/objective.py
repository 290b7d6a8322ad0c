"""One Optuna trial = one ordinary ``ensemble fit`` run, with a pruning callback attached."""

from __future__ import annotations

import argparse
import math
import warnings
from pathlib import Path
from typing import Any

import optuna

from ensemble.commands.lightning import EnsembleCLI
from ensemble.tuning.space import SearchSpace, SearchSpaceError

# quiet trials: the study reports progress; a user can still override these with their own flags
TRIAL_DEFAULTS = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def trial_args(base_args: list[str], params: dict[str, Any], metric: str, direction: str) -> list[str]:
    mode = "max" if direction == "maximize" else "min"
    return [*TRIAL_DEFAULTS, *base_args, *SearchSpace.as_cli_args(params),
            "--checkpoint.monitor", metric, "--checkpoint.mode", mode]


def check_keys(base_args: list[str], space: SearchSpace, family: str) -> None:
    """Instantiate the config once per key (no training, no run folder) so a key that does not
    exist fails before trial 1, named."""
    for key, value in space.first_point().items():
        args = [*base_args, *SearchSpace.as_cli_args({key: value}), "--trainer.logger", "false"]
        try:
            build_cli(args, family)
        except argparse.ArgumentError as err:
            raise SearchSpaceError(f"{space.source}: key '{key}' is not a valid config key ({err})") from err


def build_cli(args: list[str], family: str) -> Any:
    if family == "tree":
        from ensemble.commands.trees import build_tree_cli

        return build_tree_cli(args)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
        return EnsembleCLI(args=args, run=False)


def run_trial(trial: optuna.Trial, cli: Any, metric: str, family: str) -> float:
    """Fit with pruning, evaluate the best checkpoint (artifacts), return the best monitored value."""
    if family == "tree":
        from ensemble.trees.pruning import TreePruningCallback as Pruning
    else:
        from optuna_integration import PyTorchLightningPruningCallback as Pruning
    pruning = Pruning(trial, monitor=metric)
    cli.trainer.callbacks.append(pruning)
    if hasattr(cli, "before_fit"):
        cli.before_fit()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    cli.trainer.callbacks.remove(pruning)  # the best-checkpoint evaluation below is not a pruning step
    score = cli.trainer.checkpoint_callback.best_model_score
    trial.set_user_attr("run_dir", str(Path(cli.trainer.log_dir)))
    cli.after_fit()
    value = float(score) if score is not None else math.nan
    return value  # NaN marks the trial failed: a non-finite metric is never "best"
