"""``ensemble data demo|summary``: make the demo splits, or summarise any splits as windows."""

from __future__ import annotations

import argparse

from ensemble.commands.parsing import OneLineParser
from ensemble.data.constants import DEFAULT_DEMO_ROOT


def _positive(text: str) -> float:
    """``--size``: a finite number > 0 (argparse prints the line naming the flag)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def _seed(text: str) -> int:
    """``--seed``: an integer >= 0 (NumPy's seeds are)."""
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return int(text)


def add_parser(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="make demo data or summarise splits")
    cmds = data.add_subparsers(dest="data_command", required=True)
    demo = cmds.add_parser("demo", help="write deterministic demo splits in the production shape")
    demo.add_argument("--out", default=DEFAULT_DEMO_ROOT, help="output folder (default: %(default)s)")
    demo.add_argument("--seed", type=_seed, default=0)
    demo.add_argument("--size", type=_positive, default=1.0,
                      help="multiplies the number of symbols, 50 by default (10: 500 symbols, ~2.2M rows)")
    strength = demo.add_mutually_exclusive_group()  # --signal strong --no-signal contradict each other: refused
    strength.add_argument("--signal", choices=("default", "strong", "none"), default=None,  # None: "default"
                          help="default: realistic (a test Sharpe of 1-3); strong: for tests that must learn fast")
    strength.add_argument("--no-signal", action="store_true", help="pure noise (the same as --signal none)")
    summary = cmds.add_parser("summary", help="validate splits and print rows, symbols and windows per split")
    summary.add_argument("--root", default=DEFAULT_DEMO_ROOT)
    summary.add_argument("--horizon", type=int, default=5)
    summary.add_argument("--seq_len", type=int, default=60)
    summary.add_argument("--context_from_previous_split", action="store_true")
    summary.add_argument("--purge_labels", action="store_true",
                         help="null labels whose window reaches the next split instead of refusing the splits")


def run(argv: list[str]) -> int:
    """``ensemble data demo|summary ...``; returns the exit status."""
    parser = OneLineParser(prog="ensemble")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return _run(parser.parse_args(["data", *argv]))


def _run(args: argparse.Namespace) -> int:
    if args.data_command == "demo":
        from ensemble.data.demo import make_demo_splits

        signal = "none" if args.no_signal else args.signal or "default"
        paths = make_demo_splits(args.out, seed=args.seed, size=args.size, signal=signal)
        for split, path in paths.items():
            print(f"{split:<6} {path}")
        return 0
    from ensemble.data.split_data import SplitData

    dm = SplitData(
        root=args.root,
        horizon=args.horizon,
        seq_len=args.seq_len,
        context_from_previous_split=args.context_from_previous_split,
        purge_labels=args.purge_labels,
    )
    for stage in ("fit", "test"):
        dm.setup(stage)
    print(dm.describe())
    return 0
