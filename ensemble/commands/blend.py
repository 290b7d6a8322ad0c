"""``ensemble blend --runs RUN RUN ... --method stacked``: an ensemble run over chosen finished runs.

The blend is fitted on the runs' val predictions only and judged on test; the result is an
ordinary run folder (predictions, metrics.json, plots)."""

from __future__ import annotations

import json
from pathlib import Path

from ensemble.commands.parsing import OneLineParser
from ensemble.ensembling.blend import blend, members_trading, run_config
from ensemble.ensembling.methods import METHODS
from ensemble.metrics.config import TradingConfig
from ensemble.training.results import print_results
from ensemble.training.runs import check_name


def add_trading_flags(parser: OneLineParser) -> dict[str, str]:
    """``--trading.<key>`` for every ``TradingConfig`` key (default: the members' value). Returns key -> dest."""
    dests = {}
    for key in TradingConfig.__dataclass_fields__:
        kind = {"k": int, "sizing": str, "book": str, "benchmark": str}.get(key, float)
        parser.add_argument(f"--trading.{key}", dest=f"trading_{key}", type=kind, default=None,
                            help=f"trading.{key} for the blend's book (default: the members' value)")
        dests[key] = f"trading_{key}"
    return dests


def run(argv: list[str]) -> int:
    p = OneLineParser(prog="ensemble blend", description=__doc__)
    p.add_argument("--runs", nargs="+", required=True, help="finished run folders (lightning_logs/<name>/version_N)")
    p.add_argument("--method", choices=sorted(METHODS), default="stacked")
    p.add_argument("--out", default="lightning_logs", help="where the blend's run folder goes (default: %(default)s)")
    p.add_argument("--name", default=None, help="run name (default: ensemble_<method>)")
    trading_flags = add_trading_flags(p)
    args = p.parse_args(argv)
    if args.name is not None:
        check_name(args.name, "--name")  # it names <out>/<name>/version_N
    runs = [Path(r) for r in args.runs]
    given = {key: getattr(args, dest) for key, dest in trading_flags.items() if getattr(args, dest) is not None}
    trading = members_trading(runs, [run_config(r) for r in runs], given) if given else None  # flags win, key by key
    run_dir = blend(runs, args.method, Path(args.out), args.name, trading)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    print_results(metrics, run_dir, f"{args.method} of {len(args.runs)} runs, fitted on val", ("val", "test"), "blend")
    return 0
