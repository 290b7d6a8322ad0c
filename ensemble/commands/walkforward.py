"""``ensemble walkforward``: walk-forward evaluation of any ``ensemble fit`` config, with purge and embargo.

    ensemble walkforward --config configs/lightgbm.yaml --wf.folds 6 [--wf.mode rolling --wf.train_bars 2000]
                         [--wf.embargo 5] [--wf.refit_every 2] [--wf.span all] [fit flags]

Every flag that is not ``--wf.*`` is a ``fit`` flag, applied to each fold's run (data root, horizon, ...).
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from ensemble.commands.parsing import OneLineParser
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
    return p


def run(argv: list[str]) -> int:
    from ensemble.walkforward.runner import run_walkforward

    known, base_args = parser().parse_known_args(argv)
    unknown = [a.split("=", 1)[0] for a in base_args if a.startswith("--wf.")]
    if unknown:  # not a run flag either: say so, rather than hand it to every fold's fit
        raise ConfigError(f"ensemble walkforward: unknown option {unknown[0]}; see ensemble walkforward --help")
    wf = WalkForward(**vars(known))
    run_walkforward(config_from_flags(base_args), wf)
    return 0
