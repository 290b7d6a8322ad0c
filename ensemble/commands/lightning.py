"""``ensemble fit|validate|test|predict``: LightningCLI with the data linked into the model,
a run directory per run (reused on resume), and the best checkpoint evaluated after ``fit``."""

from __future__ import annotations

import os
import resource
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger

from ensemble.callbacks import ArtifactWriter
from ensemble.callbacks.artifacts import update_metrics_json
from ensemble.callbacks.importance import FeatureImportance
from ensemble.data import WindowDataModule
from ensemble.io import remove_partial_writes
from ensemble.models.registry import list_models
from ensemble.runs import claim_run_dir, find_run_checkpoint, print_metrics


@dataclass
class Tracking:
    """Where runs land. ``name`` defaults to the model's short name (``lstm``, ``xgboost``, ...)."""

    save_dir: str = "lightning_logs"
    name: str | None = None
    mlflow: bool = False
    mlflow_uri: str = "sqlite:///mlflow.db"
    experiment: str = "ensemble"
    parent_run_id: str | None = None  # nests this run under a study's or experiment's MLflow run


def model_short_name(model_cfg: Any) -> str:
    """Registry name of the configured backbone (or model), for run folders and MLflow."""
    init = getattr(model_cfg, "init_args", None) or {}
    net = init.get("net") if hasattr(init, "get") else None
    class_path = getattr(net, "class_path", None) or getattr(model_cfg, "class_path", "") or "model"
    for entry in list_models():
        if class_path.rsplit(".", 1)[-1] == entry.cls.__name__:
            return entry.name
    return class_path.rsplit(".", 1)[-1].lower()


def run_loggers(tracking: Tracking, version: str | None) -> list[Any]:
    """TensorBoard first (Lightning takes the run folder from it), then MLflow when asked for;
    shared by nets and trees so both log alike."""
    loggers: list[Any] = [TensorBoardLogger(save_dir=tracking.save_dir, name=tracking.name, version=version)]
    if tracking.mlflow:
        loggers.append(
            MLFlowLogger(
                experiment_name=tracking.experiment,
                run_name=f"{tracking.name}/{version}",
                tracking_uri=tracking.mlflow_uri,
                log_model=False,
                tags={"mlflow.parentRunId": tracking.parent_run_id} if tracking.parent_run_id else None,
            )
        )
    return loggers


class EnsembleCLI(LightningCLI):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})  # resume rewrites the same run's config
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("parser_kwargs", {"exit_on_error": False})  # the CLI prints one clear line instead
        super().__init__(LightningModule, WindowDataModule, *args, subclass_mode_model=True, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_class_arguments(Tracking, "tracking")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/f1_macro",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-{epoch:02d}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(ArtifactWriter, "artifacts")
        parser.add_lightning_class_args(FeatureImportance, "importance")
        for name in ("num_features", "num_classes", "seq_len"):
            parser.link_arguments(f"data.{name}", f"model.init_args.net.init_args.{name}", apply_on="instantiate")
        for name in ("horizon", "bars_per_year", "feature_names"):
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")

    def _subcommand_config(self) -> Any:
        return self.config[self.subcommand] if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        cfg = self._subcommand_config()
        tracking = cfg.tracking
        tracking.name = tracking.name or model_short_name(cfg.model)
        self._run_dir: Path | None = None
        ckpt = cfg.get("ckpt_path")
        if ckpt is not None:
            ckpt_file, run_dir = find_run_checkpoint(ckpt, Path(tracking.save_dir) / tracking.name)
            cfg.ckpt_path, self._run_dir = str(ckpt_file), run_dir
            if self.subcommand == "fit" and run_dir is not None and _is_rank_zero():
                remove_partial_writes(run_dir)  # a resumed run: what its killed predecessor half-wrote

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Trainer:
        if config.get("logger") in (None, True):
            config["logger"] = self._default_loggers(self._subcommand_config().tracking)
        return super()._instantiate_trainer(config, callbacks)

    def _default_loggers(self, tracking: Tracking) -> list[Any]:
        run_dir = self._run_dir
        if run_dir is None and _is_rank_zero():
            run_dir = claim_run_dir(Path(tracking.save_dir) / tracking.name)
        return run_loggers(tracking, run_dir.name if run_dir is not None else None)

    def before_fit(self) -> None:
        self._fit_started = time.perf_counter()

    def after_fit(self) -> None:
        """Evaluate the best checkpoint on val and test: artifacts, metrics.json and a printed summary."""
        trainer = self.trainer
        if trainer.interrupted:
            return
        cost = {"fit/train_time_s": time.perf_counter() - getattr(self, "_fit_started", time.perf_counter()),
                "fit/peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        ckpt = best or None
        results = {}
        for run in (trainer.validate, trainer.test):
            for out in run(self.model, datamodule=self.datamodule, ckpt_path=ckpt, verbose=False):
                results.update(out)
        run_dir = Path(trainer.log_dir)  # a collective under DDP: every rank asks
        if trainer.is_global_zero:
            update_metrics_json(run_dir, cost)  # the leaderboard's cost columns
            print_metrics(results, run_dir, best)


def _is_rank_zero() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


def run_lightning(argv: list[str]) -> None:
    """Nets run under Lightning's Trainer; tree models (registry family "tree") under TreeTrainer."""
    from ensemble.commands.configs import configured_model_family

    if configured_model_family(argv) == "tree":
        from ensemble.commands.trees import run_trees

        run_trees(argv)
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
            EnsembleCLI(args=argv)
