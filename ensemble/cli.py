"""The ``ensemble`` command. Contract errors print one clear line; ``--debug`` shows the traceback."""

from __future__ import annotations

import argparse
import sys

from ensemble.cli_errors import one_line
from ensemble.data import DataContractError
from ensemble.ensembling.blend import BlendError
from ensemble.export import ExportError
from ensemble.models.checks import CheckpointMismatchError
from ensemble.tuning.space import SearchSpaceError
from ensemble.tuning.study import StorageError

USER_ERRORS = (DataContractError, FileNotFoundError, CheckpointMismatchError, argparse.ArgumentError, KeyError,
               FloatingPointError, SearchSpaceError, StorageError, BlendError,
               ExportError)


def wrapped_user_error(err: BaseException) -> BaseException | None:
    """One of our own user errors that ``err`` wraps: jsonargparse re-raises what a model's or data
    module's ``__init__`` raised as a ValueError caused by it (only ``ensemble``'s types are unwrapped,
    so a library's internal error keeps its traceback)."""
    cause = err.__cause__
    while cause is not None:
        if isinstance(cause, USER_ERRORS) and type(cause).__module__.startswith("ensemble."):
            return cause
        cause = cause.__cause__
    return None


def _parser() -> argparse.ArgumentParser:
    from ensemble.commands import data, models

    parser = argparse.ArgumentParser(prog="ensemble", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    data.add_parser(sub)
    models.add_parser(sub)
    sub.add_parser("fit", help="train a model (LightningCLI; see ensemble fit --help)")
    sub.add_parser("validate", help="evaluate a checkpoint on val")
    sub.add_parser("test", help="evaluate a checkpoint on test")
    sub.add_parser("predict", help="write predictions of a checkpoint")
    sub.add_parser("tune", help="Optuna study over a config (see ensemble tune --help)")
    sub.add_parser("experiment", help="models x horizons, leaderboard and blends (see ensemble experiment --help)")
    sub.add_parser("blend", help="blend finished runs into an ensemble run (see ensemble blend --help)")
    sub.add_parser("export", help="export a finished run as a self-contained folder")
    sub.add_parser("register", help="export a run and register it in the MLflow Model Registry")
    return parser


LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        rest = [a for a in argv[1:] if a != "--debug"]
        if argv and argv[0] in ("tune", "experiment", "blend", "export", "register"):
            from ensemble.commands import blend, experiment, registry, tune

            command = {"tune": tune.run, "experiment": experiment.run, "blend": blend.run,
                       "export": registry.run_export, "register": registry.run_register}[argv[0]]
            return command(rest)
        if argv and argv[0] == "predict" and any(a.split("=")[0] == "--from" for a in rest):
            from ensemble.commands import registry

            return registry.run_predict(rest)
        if argv and argv[0] in LIGHTNING_COMMANDS:
            from ensemble.commands.lightning import run_lightning

            run_lightning([a for a in argv if a != "--debug"])
            return 0
        args = _parser().parse_args(argv)
        from ensemble.commands import data, models

        return {"data": data.run, "models": models.run}[args.command](args)
    except USER_ERRORS as err:
        if debug:
            raise
        print(f"ensemble: error: {one_line(err)}", file=sys.stderr)
        return 2
    except ValueError as err:
        user_error = wrapped_user_error(err)
        if debug or user_error is None:
            raise
        print(f"ensemble: error: {one_line(user_error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
