"""``ensemble export|register`` a finished run, and ``ensemble predict --from`` an export or a registered model."""

from __future__ import annotations

from pathlib import Path

from ensemble.commands.parsing import OneLineParser
from ensemble.export import export_run, predict_file, register, unpredicted_path, unpredicted_summary


def run_export(argv: list[str]) -> int:
    p = OneLineParser(prog="ensemble export", description="Export a finished run as a self-contained folder")
    p.add_argument("--run", required=True, help="run folder, e.g. lightning_logs/lstm_h5/version_0")
    p.add_argument("--out", required=True, help="export folder to write")
    args = p.parse_args(argv)
    print(f"exported to {export_run(Path(args.run), Path(args.out))}")
    return 0


def run_register(argv: list[str]) -> int:
    p = OneLineParser(prog="ensemble register",
                                description="Export a run and register it in the MLflow Model Registry under an alias")
    p.add_argument("--run", required=True, help="run folder, e.g. experiments/baseline/runs/lstm_h5/version_0")
    p.add_argument("--name", required=True, help="registered model name")
    p.add_argument("--alias", default="production", help="alias to point at the new version (default: %(default)s)")
    p.add_argument("--export", default=None, help="export folder (default: <run>/export)")
    p.add_argument("--mlflow_uri", default="sqlite:///mlflow.db")
    p.add_argument("--experiment", default="ensemble")
    args = p.parse_args(argv)
    export = export_run(Path(args.run), Path(args.export or Path(args.run) / "export"))
    version = register(export, args.name, args.alias, args.mlflow_uri, args.experiment)
    print(f"registered models:/{args.name}@{args.alias} (version {version}); export: {export}")
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
    df = predict_file(args.source, Path(args.input), Path(args.out), args.mlflow_uri)
    print(unpredicted_summary(df.attrs["unpredicted"], len(df), unpredicted_path(Path(args.out))))
    print(f"{len(df)} predictions -> {args.out}")
    return 0
