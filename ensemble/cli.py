"""The ``ensemble`` command. Contract errors print one clear line; ``--debug`` shows the traceback."""

from __future__ import annotations

import argparse
import sys

from ensemble.data import DataContractError
from ensemble.models.checks import CheckpointMismatchError

USER_ERRORS = (DataContractError, FileNotFoundError, CheckpointMismatchError, argparse.ArgumentError, KeyError,
               FloatingPointError)


def _parser() -> argparse.ArgumentParser:
    from ensemble.commands import data, models

    parser = argparse.ArgumentParser(prog="ensemble", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    data.add_parser(sub)
    models.add_parser(sub)
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
        from ensemble.commands import data, models

        return {"data": data.run, "models": models.run}[args.command](args)
    except USER_ERRORS as err:
        if debug:
            raise
        print(f"ensemble: error: {one_line(err)}", file=sys.stderr)
        return 2


def one_line(err: BaseException) -> str:
    """jsonargparse explains a bad config as a nested tree; keep the path and the innermost reason."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) == 1:
        return lines[0].strip()
    noise = ("Does not validate", "Subtypes:", "Errors:", "Expected a <class", "Given value")
    useful = [ln for ln in lines if not ln.strip(" -").startswith(noise)]
    depth = [len(ln) - len(ln.lstrip(" -")) for ln in useful]
    deepest = max(range(len(useful)), key=lambda i: (depth[i], i))
    reason = useful[deepest].strip(" -")
    where = [ln.strip(" -").rstrip(":") for ln in useful[:deepest]]
    return f"{reason} ({' > '.join(where)})" if where else reason


if __name__ == "__main__":
    sys.exit(main())
