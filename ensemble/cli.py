"""The ``ensemble`` command: train, evaluate, tune, blend and export trading classifiers (trees and nets).

User errors print one clear line and exit 2; ``--debug`` shows the traceback; ``--quiet`` (anywhere on the line)
prints the result table and errors only.

Start-up stays light: a subcommand imports what it runs, so ``ensemble --help`` and ``ensemble models`` load
neither Lightning nor a tree library.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ensemble import console
from ensemble.cli_errors import one_line, user_error
from ensemble.commands.parsing import OneLineParser
from ensemble.errors import Preempted

# subcommand -> (module under ensemble.commands, function, help line)
COMMANDS = {
    "fit": ("train", "run", "train a model, then evaluate its best checkpoint (see ensemble fit --help)"),
    "validate": ("train", "run", "evaluate a checkpoint on val"),
    "test": ("train", "run", "evaluate a checkpoint on test"),
    "predict": ("train", "run", "write predictions of a checkpoint (or of an export: --from, --input, --out)"),
    "walkforward": ("walkforward", "run", "walk-forward folds with purge and embargo, out-of-fold metrics (--help)"),
    "tune": ("tune", "run", "Optuna study over a config (see ensemble tune --help)"),
    "experiment": ("experiment", "run", "models x horizons, leaderboard and blends (see ensemble experiment --help)"),
    "blend": ("blend", "run", "blend finished runs into an ensemble run (see ensemble blend --help)"),
    "export": ("export", "run_export", "export a run, a walk-forward's final model or a blend as a folder"),
    "register": ("export", "run_register", "register a run, a blend or an experiment's champion in MLflow"),
    "data": ("data", "run", "make demo data or summarise splits (ensemble data demo|summary --help)"),
    "models": ("models", "run", "list the registered models: short name, family, class and bundled config"),
}


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="ensemble", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.add_argument("--quiet", action="store_true",
                        help="print the result table (or leaderboard) and errors only: no progress, notes or warnings")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, _, text) in COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        _parser().parse_args(argv)  # prints usage or help and exits
        return 2
    command, rest = argv[0], argv[1:]
    if command == "predict" and any(a.split("=")[0] == "--from" for a in rest):
        from ensemble.commands import export

        return export.run_predict(rest)
    module, function, _ = COMMANDS[command]
    run = getattr(importlib.import_module(f"ensemble.commands.{module}"), function)
    return run(command, rest) if module == "train" else run(rest)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    level = console.QUIET if "--quiet" in argv else console.NORMAL
    try:
        with console.at_level(level):
            return _dispatch([a for a in argv if a not in ("--debug", "--quiet")])
    except Preempted as stop:
        print(f"ensemble: stopped: {stop.message}", file=sys.stderr)
        return stop.EXIT_CODE
    except KeyboardInterrupt:  # Ctrl-C outside a launcher's cells (they stop theirs as Preempted, above)
        print("ensemble: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    except Exception as err:
        found = user_error(err)
        if debug or found is None:
            raise
        print(f"ensemble: error: {one_line(found)}", file=sys.stderr)
        return 2
    finally:
        _close_process_group()


def _close_process_group() -> None:
    """Destroy a DDP process group before the interpreter exits.

    Lightning leaves it open; gloo's worker threads then meet interpreter shutdown and can abort the
    process ("terminate called without an active exception", exit -6) after the work is done
    (pytorch/pytorch#179291). ``sys.modules`` is read rather than importing torch, so ``--help`` stays fast.
    """
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
