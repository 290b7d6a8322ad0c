"""``ensemble blend --runs RUN RUN ... --method stacked``: an ensemble run over chosen finished runs.

The blend is fitted on the runs' val predictions only and judged on test; the result is an
ordinary run folder (predictions, metrics.json, plots)."""

from __future__ import annotations

import json
from pathlib import Path

from ensemble.commands.parsing import OneLineParser
from ensemble.ensembling.blend import blend
from ensemble.ensembling.methods import METHODS
from ensemble.training.results import print_results
from ensemble.training.runs import check_name


def run(argv: list[str]) -> int:
    p = OneLineParser(prog="ensemble blend", description=__doc__)
    p.add_argument("--runs", nargs="+", required=True, help="finished run folders (lightning_logs/<name>/version_N)")
    p.add_argument("--method", choices=sorted(METHODS), default="stacked")
    p.add_argument("--out", default="lightning_logs", help="where the blend's run folder goes (default: %(default)s)")
    p.add_argument("--name", default=None, help="run name (default: ensemble_<method>)")
    args = p.parse_args(argv)
    if args.name is not None:
        check_name(args.name, "--name")  # it names <out>/<name>/version_N
    run_dir = blend([Path(r) for r in args.runs], args.method, Path(args.out), args.name)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    print_results(metrics, run_dir, f"{args.method} of {len(args.runs)} runs, fitted on val", ("val", "test"), "blend")
    return 0
