"""``ensemble tune``: an Optuna study over any ``ensemble fit`` config.

    ensemble tune --config configs/lstm.yaml --tune.n_trials 50 [--tune.storage postgresql://...] [fit flags]
    ensemble tune --config configs/lightgbm.yaml --tune.n_trials 40 --tune.workers 4   # 4 processes, one study

Every flag that is not ``--tune.*`` is passed to each trial's ``fit`` (data root, horizon, ...).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from datetime import datetime
from pathlib import Path

from ensemble import console
from ensemble.commands.parsing import OneLineParser
from ensemble.errors import ConfigError
from ensemble.training.config import config_from_flags, read_yaml
from ensemble.training.runs import check_name
from ensemble.tuning.study import TuneConfig

HELP = {
    "n_trials": "trials this process runs (several processes on one storage share the study)",
    "search_space": "YAML of config keys -> distributions (default: search_spaces/<model>.yaml beside the config)",
    "study_name": "study name; re-running the same name on the same storage resumes it, if the model, metric, "
                  "search space, data root, horizon, seq_len and features are the same (default: <model>_h<horizon>, "
                  "e.g. lstm_h5)",
    "storage": "sqlite:///optuna.db (default), journal:PATH, or any RDB URL such as postgresql://user@host/db",
    "metric": "the val metric to optimise (default val/log_loss; e.g. val/f1_macro, val/sharpe); checkpoints and "
              "early stopping follow it",
    "direction": "maximize or minimize; default: the metric's own (minimize for a loss or error, maximize else)",
    "pruner": "median (default), hyperband or none",
    "seed": "sampler seed (give each parallel worker its own, or none)",
    "out": "folder for best.yaml, trials.csv and plots (default: tune/<study_name>)",
    "heartbeat": "seconds between a worker's heartbeats (RDB storages); a dead worker's trial turns FAIL; 0: off",
    "retries": "how often a trial whose worker died is retried with the same parameters",
    "test": "also evaluate each trial's best checkpoint on test (default false: a study chooses on val only)",
    "workers": "worker processes on this machine sharing the study and n_trials, one GPU (or core share) each",
}


def _bool(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")
    return text.lower() == "true"


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="ensemble tune", description=__doc__, add_help=True,
                      formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    defaults = TuneConfig()
    for f in fields(TuneConfig):
        if f.name == "extra":
            continue
        ints = ("n_trials", "seed", "heartbeat", "retries", "workers")
        kind = int if f.name in ints else _bool if f.name == "test" else str
        p.add_argument(f"--tune.{f.name}", dest=f.name, type=kind, default=getattr(defaults, f.name),
                       help=HELP[f.name] if "default" in HELP[f.name] else f"{HELP[f.name]} (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch, OpenMP and tree-library threads per worker (default: the usable cores / workers)")
    return p


def run(argv: list[str]) -> int:
    import optuna

    from ensemble.launchers.progress import Progress
    from ensemble.training.threads import check_threads, default_threads
    from ensemble.tuning.study import objective_label, study_metric, tune
    from ensemble.tuning.workers import threaded_base, tune_in_workers

    known, base_args = parser().parse_known_args(argv)
    threads = check_threads(vars(known).pop("threads"), "--threads")
    check_threads(known.workers, "--tune.workers")
    unknown = [a.split("=", 1)[0] for a in base_args if a.startswith("--tune.")]
    if unknown:  # not a run flag either: say so, rather than pass it on to every trial's fit
        raise ConfigError(f"ensemble tune: unknown option {unknown[0]}; see ensemble tune --help")
    if known.search_space:
        read_yaml(known.search_space)  # a file that does not load safely (a Python tag): one line naming it
    if known.study_name:
        check_name(known.study_name, "tune.study_name")  # it names tune/<study>/ and every trial's run folder
    configs = [Path(a.split("=", 1)[1] if "=" in a else base_args[i + 1])
               for i, a in enumerate(base_args) if a.split("=", 1)[0] in ("--config", "-c")]  # fmt: skip
    base = config_from_flags(base_args)
    if console.level() < console.NORMAL:
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # --quiet: not even a line per trial
    config_dir = configs[-1].parent if configs else None
    ran: list = []
    previous = optuna.logging.get_verbosity()
    try:
        if known.workers > 1:
            started = datetime.now()
            optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created": the parent's lines are its own
            study = tune_in_workers(TuneConfig(**vars(known)), base, config_dir, threads)
            ran = [t for t in study.trials if t.datetime_start is not None and t.datetime_start >= started]
        else:
            # the line per trial is ours, as with --tune.workers; a failed trial's is too (Optuna logs it, with its
            # traceback, as a WARNING)
            optuna.logging.set_verbosity(optuna.logging.ERROR)
            with Progress(known.n_trials, label="trials") as progress:
                study = tune(TuneConfig(**vars(known)), threaded_base(base, threads or default_threads(1)), config_dir,
                             ran, record_base=base, progress=progress)  # best.yaml: the user's config, not threads
    finally:
        optuna.logging.set_verbosity(previous)
    done = [t for t in study.trials if t.value is not None]
    n = len(study.trials)
    print(f"study '{study.study_name}': {n} trial{'s' * (n != 1)}, {len(done)} finished")
    if done:
        label = objective_label(study_metric(study))  # not metrics.json's calibrated val metrics
        print(f"best trial {study.best_trial.number}: {label} {study.best_value:.5f}  params {study.best_params}")
    return _report_failures(ran)


def _report_failures(trials: list) -> int:
    """Exit 1 when every trial this process ran failed (nothing was learned), naming the first errors."""
    import optuna

    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    for trial in failed[:3]:
        print(f"trial {trial.number} failed: {trial.user_attrs.get('error', 'no value (non-finite metric)')}")
    if trials and len(failed) == len(trials):
        print(f"ensemble tune: all {len(trials)} trials of this run failed", file=sys.stderr)
        return 1
    return 0
