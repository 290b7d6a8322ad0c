"""``ensemble blend --runs RUN RUN ... --method stacked``: an ensemble of chosen finished runs.

Walk-forward folders (``ensemble walkforward`` output) are blended on their out-of-fold predictions
(``fit_on: oof``): the blend's own out-of-fold score is forward-only, the final blend is fitted on all
out-of-fold rows and judged on test. Plain ``fit`` runs are blended on val (``fit_on: val``), the split that also
early-stopped them. Either way the result is an ordinary run folder (predictions, metrics.json, plots)."""

from __future__ import annotations

import json
from pathlib import Path

from ensemble import console
from ensemble.commands.parsing import OneLineParser
from ensemble.ensembling.blend import VAL_NOTE, BlendError, blend, check_members, members_trading, run_config
from ensemble.ensembling.methods import METHODS
from ensemble.ensembling.oof import is_walkforward, oof_blend, walkforward_config
from ensemble.errors import ConfigError, unknown_key
from ensemble.metrics.config import TradingConfig
from ensemble.training.results import print_results
from ensemble.training.runs import check_name
from ensemble.training.trading import check_trading_flags

# --<method>.<option> flags: every option of ensembling.methods.OPTIONS, with its type and help
METHOD_FLAGS = {
    "caruana": {"size": (int, "selections made (default 50)"), "init": (int, "best members selected first (default 1)"),
                "bags": (int, "bagged selections averaged (default: no bagging)"),
                "bag_fraction": (float, "share of the members in each bag, at least 2 of them (default 0.5)"),
                "seed": (int, "seed of the bags' draws (default 0)")},
    "stacked": {"C": (float, "inverse L2 strength of the logistic regression (default: chosen by forward "
                             "validation on out-of-fold rows; 1.0 for a blend of plain runs on val)")},
}  # fmt: skip


def check_dotted_flags(argv: list[str]) -> None:
    """Raise ConfigError for a ``--<method>.<option>`` or ``--trading.<key>`` flag whose option is unknown: one line
    naming the flag, the closest known option and all of them (argparse would only say "unrecognized arguments").

    Raises:
        ConfigError: an unknown option of a blend method or of the trading section.
    """
    check_trading_flags(argv)  # the trading keys, as fit checks them
    for arg in argv:
        if not arg.startswith("--") or "." not in arg:
            continue
        section, _, key = arg[2:].split("=", 1)[0].partition(".")
        known = METHOD_FLAGS.get(section, {})
        if section in METHODS and key not in known:
            raise ConfigError(f"ensemble blend: {unknown_key(f'--{section}.{key}', known, f'{section} option')}")


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
    p.add_argument("--runs", nargs="+", required=True,
                   help="finished run folders (lightning_logs/<name>/version_N), or walk-forward folders")
    p.add_argument("--method", choices=sorted(METHODS), default="stacked",
                   help="how the members are combined: mean, weighted (convex log-loss weights), stacked (a logistic "
                        "regression on their log-probabilities), caruana (greedy selection), best (the best member "
                        "alone) (default: %(default)s)")  # fmt: skip
    p.add_argument("--out", default="lightning_logs", help="where the blend's run folder goes (default: %(default)s)")
    p.add_argument("--name", default=None,
                   help="run name (default: ensemble_<method>_h<horizon>, e.g. ensemble_weighted_h5)")
    for method, flags in METHOD_FLAGS.items():
        for key, (kind, text) in flags.items():
            p.add_argument(f"--{method}.{key}", dest=f"{method}_{key}", type=kind, default=None,
                           help=f"{method}: {text}")  # fmt: skip
    trading_flags = add_trading_flags(p)
    check_dotted_flags(argv)
    args = p.parse_args(argv)
    if args.name is not None:
        check_name(args.name, "--name")  # it names <out>/<name>/version_N
    runs = [Path(r) for r in args.runs]
    check_members(runs)  # a folder that is not there is named as such, before the kinds of the others are judged
    kinds = [is_walkforward(r) for r in runs]
    if len(set(kinds)) > 1:
        wf, plain = runs[kinds.index(True)], runs[kinds.index(False)]
        raise BlendError(f"--runs mixes walk-forward folders ({wf}) and plain runs ({plain}); blend one kind")
    on_oof = kinds[0]
    options = {}
    for method, flags in METHOD_FLAGS.items():
        given = {key: getattr(args, f"{method}_{key}") for key in flags if getattr(args, f"{method}_{key}") is not None}
        if given and args.method != method:
            raise BlendError(f"--{method}.* apply to --method {method}, not {args.method}; drop "
                             f"{', '.join(f'--{method}.{k}' for k in given)}")  # fmt: skip
        if given:
            options[method] = given
    options = options or None
    given = {key: getattr(args, dest) for key, dest in trading_flags.items() if getattr(args, dest) is not None}
    trading = None
    if given:  # flags win, key by key
        trading = members_trading(runs, [walkforward_config(r) if on_oof else run_config(r) for r in runs], given)
    if on_oof:
        run_dir = oof_blend(runs, args.method, Path(args.out), args.name, trading, options)
        title, splits = f"{args.method} of {len(runs)} walk-forwards, fitted on out-of-fold rows", ("oof", "test")
    else:
        run_dir = blend(runs, args.method, Path(args.out), args.name, trading, options)
        console.say(VAL_NOTE)  # once the blend is fitted: a refused input prints its error alone
        title, splits = f"{args.method} of {len(runs)} runs, fitted on val", ("val", "test")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    print_results(metrics, run_dir, title, splits, "blend")
    return 0
