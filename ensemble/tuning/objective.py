"""One Optuna trial = one ordinary fit of the base config with the trial's params, pruned by its family."""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from typing import Any

import optuna

from ensemble.errors import EnsembleError
from ensemble.training.config import merge, resolve_config
from ensemble.training.family import family_for
from ensemble.tuning.space import SearchSpace, SearchSpaceError

# quiet trials: the study reports progress; the user's own config still wins over these
TRIAL_DEFAULTS = {"trainer": {"enable_progress_bar": False, "enable_model_summary": False}}


def trial_config(base: Mapping[str, Any], params: Mapping[str, Any], metric: str, direction: str,
                 name: str) -> dict[str, Any]:  # fmt: skip
    """The run config of one trial: ``base`` with the sampled ``params`` (dotted keys), the checkpoint
    monitoring the tuned metric, and the run named ``name``."""
    mode = "max" if direction == "maximize" else "min"
    return resolve_config(merge(TRIAL_DEFAULTS, base), {
        **params, "checkpoint.monitor": metric, "checkpoint.mode": mode, "tracking.name": name})


def check_keys(base: Mapping[str, Any], space: SearchSpace) -> None:
    """Build the config once per key (no training, no run folder) so a key that does not exist fails
    before trial 1, named.

    Raises:
        SearchSpaceError: a key the config does not have, naming the search-space file and the key.
    """
    for key, value in space.first_point().items():
        config = resolve_config(base, {key: value, "trainer.logger": False})
        try:
            family_for(config).build(config)
        except (argparse.ArgumentError, EnsembleError) as err:
            raise SearchSpaceError(f"{space.source}: key '{key}' is not a valid config key ({err})") from err


def run_trial(trial: optuna.Trial, config: Mapping[str, Any], metric: str) -> float:
    """Fit with pruning, evaluate the best checkpoint (artifacts), return the best monitored value."""
    family = family_for(config)
    job = family.build(config)
    job.fit(train_callbacks=[family.pruning_callback(trial, metric)])
    trial.set_user_attr("run_dir", str(job.run_dir))
    score = job.best_score
    return score if score is not None else math.nan  # NaN marks the trial failed: never "best"
