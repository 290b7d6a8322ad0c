"""``ensemble export|register`` a finished run, a walk-forward's final model, a blend or an experiment's champion,
and ``ensemble predict --from`` an export or a registered model (a blend's included)."""

from __future__ import annotations

from pathlib import Path

from ensemble.commands.parsing import OneLineParser
from ensemble.errors import ConfigError
from ensemble.export import predict_file, register, unpredicted_path, unpredicted_summary
from ensemble.export_blend import champion_folder, export_model, predict_any


def run_export(argv: list[str]) -> int:
    p = OneLineParser(prog="ensemble export",
                      description="Export a finished run, a walk-forward's final model or a blend as a self-contained "
                                  "folder")  # fmt: skip
    p.add_argument("--run", required=True,
                   help="run folder (lightning_logs/lstm_h5/version_0), walk-forward folder (exports its final "
                        "model) or blend run folder (exports its members and the fitted blend)")  # fmt: skip
    p.add_argument("--out", required=True, help="export folder to write")
    args = p.parse_args(argv)
    print(f"exported to {export_model(Path(args.run), Path(args.out))}")
    return 0


def run_register(argv: list[str]) -> int:
    p = OneLineParser(prog="ensemble register",
                      description="Export a run, or an experiment's champion for one horizon, and register it in the "
                                  "MLflow Model Registry under an alias")  # fmt: skip
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", help="run, walk-forward or blend folder, e.g. experiments/baseline/runs/lstm_h5/"
                                     "version_0")  # fmt: skip
    which.add_argument("--experiment", help="experiment name: registers its champion_h<H>.json's champion")
    p.add_argument("--horizon", type=int, default=None, help="with --experiment: whose champion to register, e.g. 5")
    p.add_argument("--experiments_dir", default="experiments",
                   help="folder the experiment's folder is in (default: %(default)s; an experiment run with --out "
                        "DIR is --experiments_dir of DIR's parent)")  # fmt: skip
    p.add_argument("--name", default=None, help="registered model name (default with --experiment: <experiment>_h<H>)")
    p.add_argument("--alias", default="production", help="alias to point at the new version (default: %(default)s)")
    p.add_argument("--export", default=None,
                   help="export folder (default: <run>/export, or <experiment folder>/export_h<H>)")
    p.add_argument("--mlflow_uri", default="sqlite:///mlflow.db",
                   help="MLflow tracking and registry store (default: %(default)s)")
    p.add_argument("--mlflow_experiment", default="ensemble",
                   help="MLflow experiment the registering run is logged in (default: %(default)s)")
    p.add_argument("--allow_worse_than_baseline", action="store_true",
                   help="with --experiment: register a champion even when it does not beat the best baseline")
    args = p.parse_args(argv)
    if args.experiment is None:
        if args.name is None or args.horizon is not None:
            raise ConfigError("ensemble register: --run needs --name (and takes no --horizon)")
        folder, name, export_dir = Path(args.run), args.name, Path(args.export or Path(args.run) / "export")
        what = str(folder)
    else:
        if args.horizon is None:
            raise ConfigError("ensemble register: --experiment needs --horizon H (the champion of which horizon)")
        experiment = Path(args.experiments_dir) / args.experiment
        folder, record = champion_folder(experiment, args.horizon)
        name = args.name or f"{args.experiment}_h{args.horizon}"
        export_dir = Path(args.export or experiment / f"export_h{args.horizon}")
        champion = record["champion"]
        if record.get("beats_baselines") is False and not args.allow_worse_than_baseline:
            base = record.get("best_baseline") or {}
            raise ConfigError(f"ensemble register: the champion of {args.experiment} h{args.horizon} "
                              f"({champion.get('name')}) does not beat the best baseline ({base.get('name', '?')}) "
                              f"out of fold; it would put a guess in production. Add --allow_worse_than_baseline "
                              "to register it anyway")  # fmt: skip
        what = f"champion of {args.experiment} h{args.horizon}: {champion.get('name', folder)} ({champion.get('kind')})"
    export = export_model(folder, export_dir)
    version = register(export, name, args.alias, args.mlflow_uri, args.mlflow_experiment)
    print(f"registered models:/{name}@{args.alias} (version {version}); {what}; export: {export}")
    return 0


def predict_from_parser() -> OneLineParser:
    """The parser of ``ensemble predict --from``; ``ensemble predict --help`` shows its options first."""
    p = OneLineParser(prog="ensemble predict",
                      description="Predict a parquet file with an export folder or models:/name@alias")
    p.add_argument("--from", dest="source", required=True, help="export folder or models:/<name>@<alias>")
    p.add_argument("--input", required=True, help="parquet file with the model's feature columns")
    p.add_argument("--out", required=True,
                   help="predictions parquet to write; OUT.unpredicted.csv beside it lists rows without a prediction")
    p.add_argument("--mlflow_uri", default="sqlite:///mlflow.db", help="MLflow store of a models:/ source")
    return p


def run_predict(argv: list[str]) -> int:
    args = predict_from_parser().parse_args(argv)
    df = predict_file(args.source, Path(args.input), Path(args.out), args.mlflow_uri, rows=predict_any)
    print(unpredicted_summary(df.attrs["unpredicted"], len(df), unpredicted_path(Path(args.out))))
    print(f"{len(df)} predictions -> {args.out}")
    return 0
