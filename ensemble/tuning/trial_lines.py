"""``ensemble tune --tune.workers N``: the parent's line per finished trial, read from the study's storage while
the workers run (their own output goes to their ``worker_<i>.log``), in the launchers' one format
(``ensemble.launchers.progress.cell_line``):

    [2/6] trial 3: complete in 12s, val/log_loss before calibration 1.0931 (worker 1)
    [3/6] trial 4: pruned in 5s, val/log_loss before calibration 1.1020 (worker 0, at step 1)
    [4/6] trial 5: failed in 2s (worker 1: ValueError: ...)
"""

from __future__ import annotations

import optuna

from ensemble.launchers import Outcome, Progress

_STATES = {optuna.trial.TrialState.COMPLETE: "complete", optuna.trial.TrialState.PRUNED: "pruned",
           optuna.trial.TrialState.FAIL: "failed"}  # fmt: skip


def trial_outcome(trial: optuna.trial.FrozenTrial, metric: str, here: bool = False) -> Outcome:
    """What a finished trial's line says: its state, its ``metric`` value (a pruned trial's last reported one;
    none for a failed trial) and the worker that ran it (``worker`` user attr; a process not started by this
    command has none), with a failed trial's error. ``here``: this process ran it (one-process ``tune``), so
    no worker is named."""
    state = _STATES[trial.state]
    worker = trial.user_attrs.get("worker")
    note = "" if here else f"worker {worker}" if worker is not None else "another process"
    value = trial.value
    if trial.state == optuna.trial.TrialState.PRUNED and trial.intermediate_values:
        step = max(trial.intermediate_values)
        value, note = trial.intermediate_values[step], ", ".join(filter(None, (note, f"at step {step}")))
    if trial.state == optuna.trial.TrialState.FAIL:
        error = trial.user_attrs.get("error", "no value (non-finite metric)")
        return Outcome(state, note=f"{note}: {error}" if note else error)
    return Outcome(state, metric, value, note)


def wall_s(trial: optuna.trial.FrozenTrial) -> float | None:
    """Seconds from the trial's start to its end (None when the storage lacks either)."""
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


class TrialLines:
    """Prints each trial of ``study`` that finishes after this was made, once, through ``progress``.

    Args:
        study: the study the workers share (loaded from its storage in this process).
        metric: the study's metric (``--tune.metric``), named on each line.
        progress: one line per trial, and a bar over the trials on a terminal.
    """

    def __init__(self, study: optuna.Study, metric: str, progress: Progress) -> None:
        self.study, self.metric, self.progress = study, metric, progress
        self.seen = {t.number for t in self._finished()}  # an earlier run's trials are not this run's

    def poll(self) -> None:
        """Print the trials finished since the last poll, in the order they finished; update the running count."""
        new = [t for t in self._finished() if t.number not in self.seen]
        ended = lambda t: (t.datetime_complete.timestamp() if t.datetime_complete else 0.0, t.number)  # noqa: E731
        for trial in sorted(new, key=ended):
            self.seen.add(trial.number)
            self.progress.finish(f"trial {trial.number}", trial_outcome(trial, self.metric), wall_s(trial))
        running = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        self.progress.set_running(len(running))

    def _finished(self) -> list[optuna.trial.FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=tuple(_STATES))
