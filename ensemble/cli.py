"""The ``ensemble`` command. Contract errors print one clear line; ``--debug`` shows the traceback."""

from __future__ import annotations

import argparse
import sys

from ensemble.data import DataContractError
from ensemble.models.checks import CheckpointMismatchError

USER_ERRORS = (DataContractError, FileNotFoundError, CheckpointMismatchError)


def _parser() -> argparse.ArgumentParser:
    from ensemble.commands import data

    parser = argparse.ArgumentParser(prog="ensemble", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    data.add_parser(sub)
    return parser


LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        if argv and argv[0] in LIGHTNING_COMMANDS:
            from ensemble.commands.lightning import run_lightning

            run_lightning([a for a in argv if a != "--debug"])
            return 0
        args = _parser().parse_args(argv)
        from ensemble.commands import data

        return {"data": data.run}[args.command](args)
    except USER_ERRORS as err:
        if debug:
            raise
        print(f"ensemble: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
