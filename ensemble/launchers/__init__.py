"""Launchers: run a list of independent cells (experiment cells, walk-forward folds), each in a fresh
process, one after another (``sequential``), several at once on this machine (``local``), or as Ray tasks
(``ray``). See ``base.py`` for the contract and docs/scaling.md for the user's side."""

from __future__ import annotations

from ensemble.launchers.base import CellResult, CellSpec, Launcher, LauncherSettings, Outcome, Slot
from ensemble.launchers.progress import Progress, key_metric
from ensemble.training.threads import check_threads

__all__ = ["CellResult", "CellSpec", "Launcher", "LauncherSettings", "Outcome", "Progress", "Slot", "key_metric",
           "make_launcher"]


def make_launcher(settings: LauncherSettings, threads: int | None = None) -> Launcher:
    """The launcher ``settings.kind`` names, checked.

    Raises:
        ConfigError: a bad setting or ``threads`` < 1.
    """
    settings.check()
    check_threads(threads)
    if settings.kind == "sequential":
        from ensemble.launchers.sequential import SequentialLauncher as cls
    elif settings.kind == "local":
        from ensemble.launchers.local import LocalLauncher as cls
    else:
        from ensemble.launchers.ray_launcher import RayLauncher as cls
    return cls(settings, threads)
