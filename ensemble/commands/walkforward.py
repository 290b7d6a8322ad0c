"""``ensemble walkforward``: walk-forward evaluation of any ``ensemble fit`` config, with purge and embargo.

    ensemble walkforward --config configs/lightgbm.yaml --wf.folds 6 [--wf.mode rolling --wf.train_bars 2000]
                         [--wf.embargo 5] [--wf.refit_every 2] [--wf.span all] [fit flags]
                         [--launcher local --launcher.workers 2 | --launcher ray] [--threads 4]

Every flag that is not ``--wf.*``, ``--launcher*`` or ``--threads`` is a ``fit`` flag, applied to each fold's run
(data root, horizon, ...). ``--launcher local|ray`` runs the folds in their own processes, several at once
(docs/scaling.md).
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from ensemble.commands.parsing import OneLineParser, launcher_flags
from ensemble.errors import ConfigError
from ensemble.training.config import config_from_flags
from ensemble.walkforward.config import HELP, WalkForward

_TYPES = {"folds": int, "train_bars": int, "val_bars": int, "embargo": int, "refit_every": int,
          "val_fraction": float}  # fmt: skip


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="ensemble walkforward", description=__doc__, add_help=True, allow_abbrev=False,
                      formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip  (--wf.fold is no --wf.folds)
    defaults = WalkForward()
    for f in fields(WalkForward):
        p.add_argument(f"--wf.{f.name}", dest=f.name, type=_TYPES.get(f.name, str), default=getattr(defaults, f.name),
                       help=f"{HELP[f.name]} (default: %(default)s)")  # fmt: skip
    p.add_argument("--launcher.kind", dest="launcher_kind", choices=("sequential", "local", "ray"),
                   default="sequential", help="sequential (the folds one after another in this process), local "
                   "(--launcher.workers folds at once, each in its own process) or ray (each fold a Ray task); "
                   "--launcher KIND for short (default: %(default)s)")  # fmt: skip
    p.add_argument("--launcher.workers", dest="launcher_workers", type=int, default=None, metavar="N",
                   help="folds at once (default: one per visible GPU, else 1)")  # fmt: skip
    p.add_argument("--launcher.address", dest="launcher_address", default=None, metavar="ADDRESS",
                   help="ray only: an existing cluster (auto, host:6379, ray://head:10001); none starts a local one")
    p.add_argument("--launcher.retries", dest="launcher_retries", type=int, default=1, metavar="N",
                   help="how often a fold whose process died is retried, from its last checkpoint (default: 1)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch, OpenMP and tree-library threads per fold process (default: the usable cores / workers)")
    return p


def run(argv: list[str]) -> int:
    from ensemble.launchers import LauncherSettings, make_launcher
    from ensemble.training.threads import apply_threads, check_threads, default_threads
    from ensemble.walkforward.runner import run_walkforward

    known, base_args = parser().parse_known_args(launcher_flags(argv))
    unknown = [a.split("=", 1)[0] for a in base_args if a.startswith(("--wf.", "--launcher."))]
    if unknown:  # not a run flag either: say so, rather than hand it to every fold's fit
        raise ConfigError(f"ensemble walkforward: unknown option {unknown[0]}; see ensemble walkforward --help")
    given = vars(known)
    threads = check_threads(given.pop("threads"), "--threads")
    keys = ("kind", "workers", "address", "retries")
    settings = LauncherSettings(**{key: given.pop(f"launcher_{key}") for key in keys})
    launcher = make_launcher(settings, threads)  # checked before any fold runs
    wf = WalkForward(**given)
    if settings.kind == "sequential":  # the folds run in this process: its threads, every library's
        threads = threads or default_threads(1)
        apply_threads(threads)
    run_walkforward(config_from_flags(base_args), wf, launcher=launcher, threads=threads)
    return 0
