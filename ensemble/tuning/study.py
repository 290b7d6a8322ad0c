"""Create or resume a study on shared storage, run trials, and write the study's outputs."""

from __future__ import annotations

import collections
import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml

from ensemble import console
from ensemble.errors import ConfigError, EnsembleError, one_line
from ensemble.io import atomic_write
from ensemble.launchers.progress import Progress
from ensemble.metrics.suite import metric_mode
from ensemble.training.config import model_short_name, resolve_config
from ensemble.training.family import StopRequest
from ensemble.training.tracking import Tracking, finish_run, parent_run
from ensemble.tuning.definition import check_definition, study_definition
from ensemble.tuning.objective import check_keys, run_trial, trial_config, trial_only
from ensemble.tuning.record import tune_record_line
from ensemble.tuning.report import study_subject, write_report
from ensemble.tuning.space import SearchSpace
from ensemble.tuning.trial_lines import trial_outcome, wall_s


class StorageError(EnsembleError):
    """The study storage cannot be reached or opened."""


@dataclass
class TuneConfig:
    """``--tune.*`` flags. ``storage``: an RDB URL (sqlite:///optuna.db, postgresql://...) or
    ``journal:PATH`` for Optuna's journal file. ``heartbeat`` (seconds, RDB storages only; 0 turns it off):
    a worker that stops beating for twice that (killed, its machine lost) has its trial marked FAIL by the
    next worker, which retries it up to ``retries`` times with the same parameters."""

    n_trials: int = 20
    search_space: str | None = None
    study_name: str | None = None
    storage: str = "sqlite:///optuna.db"
    metric: str = "val/log_loss"  # the bundled configs' monitor (docs/benchmarks.md, "Checkpoint monitor")
    direction: str | None = None  # None: the metric's own (minimize for a loss, maximize otherwise)
    pruner: str = "median"
    seed: int | None = None
    out: str | None = None
    heartbeat: int = 30
    retries: int = 1
    test: bool = False
    workers: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


def open_storage(url: str, heartbeat: int = 0, retries: int = 0) -> optuna.storages.BaseStorage:
    """The study storage at ``url``; with ``heartbeat`` > 0 (RDB only) dead workers' trials become FAIL and
    are retried ``retries`` times (Optuna's ``RetryFailedTrialCallback``).

    Raises:
        StorageError: the storage cannot be opened, named with the cause.
    """
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(3):
        try:
            if heartbeat <= 0:
                return optuna.storages.RDBStorage(url)
            # Optuna 4.9 renamed the callback (the old name warns of its removal); older releases have the old one
            retry_class = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback",
                                  getattr(optuna.storages, "RetryFailedTrialCallback", None))  # fmt: skip
            retry = retry_class(max_retry=retries) if retries > 0 else None
            return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                                              heartbeat_stale_trial_callback=retry)  # fmt: skip
        except (IntegrityError, ProgrammingError):
            # workers starting together on a fresh database race to create Optuna's tables;
            # the loser retries once the winner has created them
            if attempt == 2:
                raise
            time.sleep(1.0 + attempt)
        except Exception as err:  # sqlalchemy raises many kinds; re-raise one clear error with the cause
            raise StorageError(f"storage '{url}' cannot be opened: {str(err).splitlines()[0]}") from err
    raise AssertionError("unreachable")


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    pruners = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
        "hyperband": optuna.pruners.HyperbandPruner,
        "none": optuna.pruners.NopPruner,
    }
    if name not in pruners:
        raise ConfigError(f"--tune.pruner must be one of {', '.join(pruners)}, got '{name}'")
    return pruners[name]()


def objective(trial: optuna.Trial, base: dict[str, Any], space: SearchSpace, cfg: TuneConfig,
              worker: int | None = None) -> float:  # fmt: skip
    """One trial: its parameters suggested, its fit run, its ``cfg.metric`` returned; ``worker`` (of
    ``--tune.workers``) is recorded in its user attrs, for the parent's line per trial and trials.csv."""
    if worker is not None:
        trial.set_user_attr("worker", worker)
    params = space.suggest(trial)
    config = trial_config(base, params, cfg.metric, cfg.direction, f"{cfg.study_name}/trial_{trial.number}",
                          cfg.test)
    try:
        return run_trial(trial, config, cfg.metric)
    except optuna.TrialPruned:
        raise
    except Exception as err:
        trial.set_user_attr("error", f"{type(err).__name__}: {one_line(err)}")  # kept in trials.csv
        raise


def default_space(base: dict[str, Any], config_dir: Path | None) -> str:
    """``search_spaces/<model>.yaml`` beside the config file (or under ./configs)."""
    name = f"{model_short_name(base)}.yaml"
    for folder in [*([config_dir] if config_dir else []), Path("configs")]:
        if (folder / "search_spaces" / name).is_file():
            return str(folder / "search_spaces" / name)
    return str(Path("configs/search_spaces") / name)


def data_definition(datamodule: Any) -> dict[str, Any]:
    """What a study's trials read, for its definition: the label ``horizon`` and window ``seq_len`` (bars), the
    sorted ``features`` names and the absolute ``data_root`` (the same folder named from elsewhere is the same)."""
    return {"horizon": int(datamodule.horizon), "seq_len": int(datamodule.seq_len),
            "features": sorted(datamodule.feature_names), "data_root": str(Path(datamodule.root).resolve())}


def objective_label(metric: str) -> str:
    """What a study's value is: the checkpoint monitor's best value during training, before the temperature
    that ``calibrate`` fits on val afterwards (metrics.json's ``val/*`` are after it; its
    ``calibration/val_log_loss_before`` is the number a ``val/log_loss`` study compares)."""
    return f"{metric} before calibration"


def announce_seed(base: Mapping[str, Any]) -> None:
    """The seed line, once per ``ensemble tune``, printed only when the study really starts (not when its
    settings or a resume are refused)."""
    console.say(f"Seed set to {base.get('seed_everything', 0)} for every trial")  # once; the trials are muted


def open_study(cfg: TuneConfig, base: dict[str, Any], config_dir: Path | None = None
               ) -> tuple[optuna.Study, SearchSpace, dict[str, Any]]:  # fmt: skip
    """Check the settings, then create the study (or load it: several workers share one) and, with MLflow,
    its parent run (kept in the study's user attrs, so every worker nests its trials under the same run).

    Returns:
        The study, its search space, and the run config every trial starts from.

    Raises:
        ConfigError, SearchSpaceError, StorageError: before trial 1, naming the setting at fault (a resumed
            study whose model, metric, direction or search space changed included).
    """
    if cfg.direction is None:
        cfg.direction = "minimize" if metric_mode(cfg.metric) == "min" else "maximize"
    if cfg.direction not in ("maximize", "minimize"):
        raise ConfigError(f"--tune.direction must be maximize or minimize, got '{cfg.direction}'")
    pruner = make_pruner(cfg.pruner)  # a bad name fails before any model is built
    space = SearchSpace.from_yaml(cfg.search_space or default_space(base, config_dir))
    data = data_definition(check_keys(base, space).datamodule)  # before trial 1: a bad key fails now, named
    storage = open_storage(cfg.storage, cfg.heartbeat, cfg.retries)
    # lstm_h5: a study of another horizon never resumes this one by default (as run folders are named)
    cfg.study_name = cfg.study_name or f"{Path(space.source).stem}_h{data['horizon']}"
    study = optuna.create_study(
        study_name=cfg.study_name, storage=storage, direction=cfg.direction, load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=cfg.seed), pruner=pruner,
    )
    check_definition(study, study_definition(model_short_name(base), cfg.metric, cfg.direction, space, data))
    trial_base = base
    if Tracking(**(base.get("tracking") or {})).mlflow:  # trials become child runs of the study's run
        parent = study.user_attrs.get("mlflow_parent_run_id")
        if parent is None:
            parent = parent_run(Tracking(**(base.get("tracking") or {})), f"tune:{cfg.study_name}")
            study.set_user_attr("mlflow_parent_run_id", parent)
        trial_base = resolve_config(base, {"tracking.parent_run_id": parent})
    return study, space, trial_base


def tune(cfg: TuneConfig, base: dict[str, Any], config_dir: Path | None = None,
         ran: list[optuna.trial.FrozenTrial] | None = None, report: bool = True,
         worker: int | None = None, record_base: dict[str, Any] | None = None,
         progress: Progress | None = None) -> optuna.Study:  # fmt: skip
    """Run ``cfg.n_trials`` trials of the study over ``base`` (a resolved run config) in this process.

    Args:
        cfg: the ``--tune.*`` settings.
        base: the run config every trial starts from.
        config_dir: the folder of the config file; its ``search_spaces/`` is searched first.
        ran: when given, the trials this process ran are appended to it (other workers' are not).
        report: finish the study's MLflow run and write its outputs (a worker of ``--tune.workers`` leaves
            that to the process that started it).
        worker: the number of this ``--tune.workers`` worker, recorded with each trial it runs.
        record_base: the user's run config, before the study's resource settings (tree threads) were added to
            ``base``; best.yaml keeps its settings (default: ``base``).
        progress: prints a line per finished trial, in ``--tune.workers``' format (``trial_lines``).

    Raises:
        ConfigError, SearchSpaceError, StorageError: before trial 1, naming the setting at fault.
    """
    study, space, trial_base = open_study(cfg, base, config_dir)
    if report:  # a worker of --tune.workers: its parent said it
        announce_seed(base)

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if ran is not None:
            ran.append(trial)
        if progress is not None:
            progress.finish(f"trial {trial.number}", trial_outcome(trial, objective_label(cfg.metric), here=True),
                            wall_s(trial))
        if stop.seen:  # a SIGTERM while the trial evaluated: no new trial starts
            study.stop()

    # a raising trial is recorded as failed with its error, and the study goes on
    with StopRequest() as stop:
        study.optimize(functools.partial(objective, base=trial_base, space=space, cfg=cfg, worker=worker),
                       n_trials=cfg.n_trials, catch=(Exception,), gc_after_trial=True, callbacks=[after_trial])
        stop.check(f"study {study.study_name!r} stopped after {len(study.trials)} trials; re-run the same command "
                   "to go on (the study resumes from its storage)")  # fmt: skip
    if report:
        finish_study(study, cfg, record_base if record_base is not None else base)
    return study


def finish_study(study: optuna.Study, cfg: TuneConfig, base: dict[str, Any]) -> None:
    """Mark the study's MLflow parent run finished; write trials.csv, the plots and best.yaml."""
    tracking = Tracking(**(base.get("tracking") or {}))
    if tracking.mlflow:
        finish_run(tracking, study.user_attrs["mlflow_parent_run_id"])
    out = Path(cfg.out or Path("tune") / str(cfg.study_name))
    write_report(study, out, cfg.metric, study_subject(base))
    if any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        write_best_config(study, out / "best.yaml", base)


def study_metric(study: optuna.Study) -> str:
    """The metric a study optimises, from its stored definition (``objective`` for a study without one)."""
    return str((study.user_attrs.get("definition") or {}).get("metric", "objective"))


def write_best_config(study: optuna.Study, path: Path, base: dict[str, Any] | None = None) -> Path | None:
    """The full run config of the best trial that has a run (trials added by hand have none), renamed so
    refitting it lands beside the study, without the switches only a trial sets (quiet output, no test, the
    MLflow parent: as ``base`` has them); None when no completed trial has a run."""
    ran = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and "run_dir" in t.user_attrs]
    if not ran:
        return None
    pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    best = pick(ran, key=lambda t: t.value)
    cfg = trial_only(yaml.safe_load((Path(best.user_attrs["run_dir"]) / "config.yaml").read_text()), base or {})
    cfg.setdefault("tracking", {})["name"] = f"{study.study_name}/best"
    cfg.pop("ckpt_path", None)
    label = objective_label(study_metric(study))
    header = f"# best of study '{study.study_name}': trial {best.number}, {label} {best.value}\n"
    count = collections.Counter(t.state for t in study.trials)
    states = optuna.trial.TrialState
    header += tune_record_line(study.study_name, count[states.COMPLETE], count[states.PRUNED], count[states.FAIL],
                               best.number, label, best.value)  # what an experiment running this config counts as tried
    return atomic_write(path, lambda p: p.write_text(header + yaml.safe_dump(cfg, sort_keys=False)))
