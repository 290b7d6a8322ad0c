"""The study summary: trials table (CSV), optimisation history and parameter importances (PNG)."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna

from ensemble.io import atomic_write, write_figure


def write_report(study: optuna.Study, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # the plots are "experimental"
    out.mkdir(parents=True, exist_ok=True)
    table = study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs", "duration"))
    atomic_write(out / "trials.csv", lambda p: table.to_csv(p, index=False))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        ax = plot_optimization_history(study)
        write_figure(out / "history.png", ax.figure)
        plt.close(ax.figure)
    if len(complete) >= 2 and len({tuple(sorted(t.params.items())) for t in complete}) >= 2:
        ax = plot_param_importances(study)
        write_figure(out / "param_importances.png", ax.figure)
        plt.close(ax.figure)
