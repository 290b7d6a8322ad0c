"""One Optuna trial = one ordinary fit of the base config with the trial's params, pruned by its family."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import optuna

from ensemble import console
from ensemble.errors import EnsembleError, one_line
from ensemble.training.config import get_dotted, merge, resolve_config
from ensemble.training.family import build, family_for
from ensemble.tuning.space import SearchSpace, SearchSpaceError

# quiet trials: the study reports progress; the user's own config still wins over these. ``best.yaml`` drops
# them again (``trial_only``), with the other keys a trial sets that a refit of the best config must not keep.
TRIAL_DEFAULTS = {"trainer": {"enable_progress_bar": False, "enable_model_summary": False}}
# ``model.init_args.n_jobs``: the tree threads ``--threads``/``--tune.workers`` gave each parallel trial, a
# resource setting of the study, not of the model a user refits
TRIAL_ONLY = ("trainer.enable_progress_bar", "trainer.enable_model_summary", "test", "tracking.parent_run_id",
              "model.init_args.n_jobs")


def trial_config(base: Mapping[str, Any], params: Mapping[str, Any], metric: str, direction: str,
                 name: str, test: bool = False) -> dict[str, Any]:  # fmt: skip
    """The run config of one trial: ``base`` with the sampled ``params`` (dotted keys), the checkpoint and every
    early-stopping callback watching the tuned metric in its direction, test evaluated only when ``test``, and
    the run named ``name``."""
    mode = "max" if direction == "maximize" else "min"
    config = resolve_config(merge(TRIAL_DEFAULTS, base), {
        **params, "checkpoint.monitor": metric, "checkpoint.mode": mode, "tracking.name": name, "test": test})
    for callback in get_dotted(config, "trainer.callbacks") or []:
        if isinstance(callback, dict) and str(callback.get("class_path", "")).endswith("EarlyStopping"):
            init = callback.get("init_args") or {}
            callback["init_args"] = {**init, "monitor": metric, "mode": mode}  # stops on what the study judges
    return config


def trial_only(config: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` (a trial's run config) with the keys only a trial sets (``TRIAL_ONLY``) as ``base`` has them,
    or removed where ``base`` has none, so the parser's defaults apply again."""
    out = resolve_config(config)
    for key in TRIAL_ONLY:
        section, _, name = key.rpartition(".")
        parent = get_dotted(out, section) if section else out
        if not isinstance(parent, dict):
            continue
        given = get_dotted(base, key, _MISSING)
        if given is _MISSING:
            parent.pop(name, None)
        else:
            parent[name] = given
    return out


_MISSING = object()


def check_keys(base: Mapping[str, Any], space: SearchSpace) -> Any:
    """Before trial 1 (no training, no run folder): build the run config alone, so its own errors are named
    as such, then with a whole point of the space; only if that fails, key by key, to name the bad key.

    Returns:
        The job ``base`` alone builds (its ``datamodule`` tells what data every trial reads).

    Raises:
        ConfigError: the run config itself is invalid (not the search space's fault).
        SearchSpaceError: a key the config does not have, naming the search-space file and the key.
    """
    quiet = {"trainer.logger": False}
    with _lightning_quiet():  # checks, not runs: no "GPU available" lines per check
        job = build(base, quiet)  # raises ConfigError about the run flags or config file
        try:
            build(base, {**space.first_point(), **quiet})
            return job
        except EnsembleError:
            pass
        for key, value in space.first_point().items():
            try:
                build(base, {key: value, **quiet})
            except EnsembleError as err:
                raise SearchSpaceError(
                    f"{space.source}: key '{key}' is not a valid config key ({one_line(err)})"
                ) from err


@contextmanager
def _lightning_quiet() -> Iterator[None]:
    """INFO log lines (Lightning's seed, devices and tips) off for the block; Lightning may be imported inside
    it and set its own loggers' levels, so this disables the level itself rather than one logger."""
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def run_trial(trial: optuna.Trial, config: Mapping[str, Any], metric: str) -> float:
    """Fit with pruning, evaluate the best checkpoint (artifacts), return the best monitored value. The trial
    prints nothing but errors (no seed line, epoch lines or result table): the study logs one line a trial."""
    family = family_for(config)
    with console.muted():
        job = family.build(config)
        job.fit(train_callbacks=[family.pruning_callback(trial, metric)])
    trial.set_user_attr("run_dir", str(job.run_dir))
    score = job.best_score
    return score if score is not None else math.nan  # NaN marks the trial failed: never "best"
