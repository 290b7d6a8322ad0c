"""The neural family: ``Classifier`` + backbone under Lightning's Trainer, configured by ``EnsembleCLI``.

``EnsembleCLI`` is LightningCLI with the data linked into the model, the ``tracking`` and ``checkpoint``
sections, a run folder per run (reused on resume) and the best checkpoint evaluated after ``fit``.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from ensemble import console
from ensemble.data import WindowDataModule
from ensemble.data.split_data import SplitData
from ensemble.data.windows import WindowLoader
from ensemble.errors import ConfigError, EnsembleError
from ensemble.models.classifier import checkpoint_temperature
from ensemble.training.calibration import CALIBRATE_HELP, note_temperature
from ensemble.training.callbacks import (
    ArtifactWriter,
    EpochLine,
    FeatureImportance,
    LatestCheckpoint,
    PreemptionCheckpoint,
)
from ensemble.training.config import check_modes
from ensemble.training.family import TEST_HELP, ExportError, Family, Job, Predictor, Windows, check_split, fit_cost
from ensemble.training.net_checkpoints import (
    check_same_model,
    check_same_weights,
    preempted_as_exit,
    read_net_checkpoint,
    with_atomic_checkpoints,
    write_net_temperature,
)
from ensemble.training.results import print_predictions, print_results
from ensemble.training.runs import (
    CKPT_PATH_HELP,
    EVAL_SPLITS,
    NET_CHECKPOINTS,
    RunKey,
    claim_run_dir,
    commit_eval_dir,
    default_run_name,
    discard_if_unused,
    eval_dir,
    eval_split,
    run_base,
    run_name_of,
    stage_eval_dir,
)
from ensemble.training.tracking import Tracking, run_loggers
from ensemble.training.trading import add_trading_arguments, announce_bars_per_year, check_trading


class RunConfigOnce(SaveConfigCallback):
    """``config.yaml`` is the fit's record of a run: written when the run is made, never rewritten by an
    evaluation (``validate``/``test``/``predict`` with its checkpoint) or a resume, failed or not."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        log_dir = trainer.log_dir  # a collective under DDP: every rank asks
        if log_dir is not None and (Path(log_dir) / self.config_filename).exists():
            self.already_saved = True
        super().setup(trainer, pl_module, stage)


class EnsembleCLI(LightningCLI):
    """LightningCLI for every net: ``EnsembleCLI(args=argv)`` runs a subcommand, ``args=dict, run=False``
    only builds (what ``NetFamily.build`` does)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_callback", RunConfigOnce)
        # per-batch bars only on a terminal and at the normal level; elsewhere EpochLine prints a line per epoch
        bars = sys.stderr.isatty() and console.level() >= console.NORMAL
        kwargs.setdefault("trainer_defaults", {"enable_progress_bar": bars})
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("parser_kwargs", {"exit_on_error": False, "prog": "ensemble"})  # one-line errors
        # the model configures its own optimizer and scheduler (model.init_args.optimizer): one place for them
        kwargs.setdefault("auto_configure_optimizers", False)
        console.quiet_libraries()  # Lightning is imported now, with its loggers at INFO
        super().__init__(LightningModule, WindowDataModule, *args, subclass_mode_model=True, **kwargs)

    def setup_parser(self, add_subcommands: bool, main_kwargs: dict[str, Any],
                     subparser_kwargs: dict[str, Any]) -> None:  # fmt: skip
        """Lightning's parsers; a job built from Python (``run=False``, no subcommand) also takes ``ckpt_path``, as
        ``fit`` does, so ``build(config, {"ckpt_path": ...}).fit()`` resumes a run (a walk-forward fold, an
        experiment cell) as a tree job does. ``NetJob.train`` hands it to ``Trainer.fit``."""
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
        if not add_subcommands:
            self.parser.add_argument("--ckpt_path", type=str | None, default=None, help=CKPT_PATH_HELP)

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        """Lightning's subcommand parser with this tool's ``--ckpt_path`` help, and no Lightning results table
        after ``validate``/``test`` (``verbose``): every command prints the one result table instead."""
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        for action in parser._actions:
            if action.dest == "ckpt_path":
                action.help = CKPT_PATH_HELP
        if "verbose" in self._subcommand_method_arguments[subcommand]:
            parser.set_defaults(verbose=False)
        return parser

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_class_arguments(Tracking, "tracking")
        add_trading_arguments(parser, "model.init_args.trading")
        parser.add_lightning_class_args(LatestCheckpoint, "checkpoint")
        # one monitor: a plateau scheduler watches what the checkpoint watches (``check_plateau_mode``)
        parser.link_arguments("checkpoint.monitor", "model.init_args.monitor", apply_on="parse")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/log_loss",  # the configs' (docs/benchmarks.md "Checkpoint monitor")
                "checkpoint.mode": "min",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-{epoch:02d}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_argument("--test", type=bool, default=True, help=TEST_HELP)
        parser.add_argument("--calibrate", type=bool, default=True, help=CALIBRATE_HELP)
        parser.add_lightning_class_args(ArtifactWriter, "artifacts")
        parser.add_lightning_class_args(FeatureImportance, "importance")
        for name in ("num_features", "num_classes", "seq_len"):
            parser.link_arguments(f"data.{name}", f"model.init_args.net.init_args.{name}", apply_on="instantiate")
        for name in ("horizon", "bars_per_year", "feature_names"):
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then check the ``trading:`` section at once: a bad value is one line before the seed is set
        or anything is built."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        check_trading(self.config[subcommand] if subcommand else self.config)

    def _subcommand_config(self) -> Any:
        return self.config[self.subcommand] if self.subcommand else self.config

    def _parse_ckpt_path(self) -> None:
        """Never let a checkpoint's hyperparameters replace the config (LightningCLI's default): that imported
        whatever its ``class_path`` named and trained the checkpoint's model instead of the configured one.
        The config decides the model; ``before_instantiate_classes`` refuses a checkpoint that differs."""

    def before_instantiate_classes(self) -> None:
        """Resolve ``ckpt_path`` (``last``, ``best`` or a file), then read and check the checkpoint before any
        class is built: readable, only allowed ``class_path``s, and the configured model.

        Raises:
            RunNameError, RunNotFoundError, CheckpointError, UntrustedFileError: one line each.
        """
        cfg = self._subcommand_config()
        tracking = cfg.tracking
        config = {"model": cfg.model.as_dict(), "data": cfg.data.as_dict()}
        tracking.name = tracking.name or default_run_name(config)
        base = run_base(tracking.save_dir, tracking.name)
        self._run_dir: Path | None = None
        self._eval_dir: Path | None = None
        self._claimed: Path | None = None
        self._checkpoint: dict[str, Any] | None = None
        check_modes(cfg.model.as_dict(), cfg.checkpoint.as_dict(), cfg.trainer.get("callbacks"))
        ckpt = cfg.get("ckpt_path")
        if ckpt is None and self.subcommand in EVAL_SPLITS:
            raise ConfigError(f"'ensemble {self.subcommand}' needs --ckpt_path (last, best or a checkpoint file)")
        if ckpt is not None:
            fit = self.subcommand not in EVAL_SPLITS  # ``fit``, or a job built from Python (``NetFamily.build``)
            wanted = RunKey.of(config, SplitData(**config["data"]).feature_names) if ckpt in NET_CHECKPOINTS else None
            resuming = fit and _is_rank_zero()
            ckpt_file, self._run_dir = NetFamily().find_checkpoint(ckpt, base, resuming, wanted, own=fit)
            if fit and self._run_dir is not None:
                console.resuming_quietly()
            cfg.ckpt_path = str(ckpt_file)
            self._checkpoint = read_net_checkpoint(ckpt_file)
            if not fit:  # an evaluation applies the checkpoint's temperature: say when it has none
                note_temperature("calibration" in self._checkpoint, 1.0, ckpt_file)
            check_same_model(self._checkpoint, cfg.model.as_dict(), cfg.data.get("seq_len"), str(ckpt_file))

    def after_instantiate_classes(self) -> None:
        """Refuse checkpoint weights that do not fit the built model (a hand-built checkpoint has no config
        to compare), before Lightning's ``load_state_dict`` fails with a traceback."""
        super().after_instantiate_classes()
        trading = getattr(self.model, "trading_config", None)
        if trading is not None:  # every rank checks (a refusal on rank 0 alone would hang the others)
            try:
                announce_bars_per_year(trading, self.datamodule.bars_per_year, self.datamodule.path("train"),
                                       show=_is_rank_zero(), symbols=self.datamodule.train_symbols)
            except EnsembleError:
                discard_if_unused(self._claimed)  # the trainer claimed a fresh run folder; nothing ran in it
                raise
        if self._checkpoint is not None:
            check_same_weights(self._checkpoint, self.model, self._subcommand_config().ckpt_path)
            # the checkpoint's normalisation, before setup would fit one (Lightning restores it only after setup)
            self.datamodule.load_state_dict(self._checkpoint.get(type(self.datamodule).__qualname__) or {},
                                            self._subcommand_config().ckpt_path)
            self._checkpoint = None  # Lightning loads the file again; do not hold two copies

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Trainer:
        callbacks = [*callbacks, PreemptionCheckpoint(), EpochLine()]
        if config.get("logger") in (None, True):
            sub = self._subcommand_config()
            run_dir = self._run_dir
            if run_dir is None and _is_rank_zero():
                run_dir = self._claimed = claim_run_dir(run_base(sub.tracking.save_dir, sub.tracking.name))
            if self.subcommand in EVAL_SPLITS and run_dir is not None:  # into the checkpoint's run, beside the fit
                make = stage_eval_dir if _is_rank_zero() else eval_dir  # rank 0's folder is broadcast as log_dir
                split = eval_split(self.subcommand, sub.data.predict_split)
                self._eval_dir = make(run_dir, split, sub.ckpt_path)
                final = self._eval_final = eval_dir(run_dir, split, sub.ckpt_path)
                name = f"{run_name_of(run_dir)}/{run_dir.name}/{final.relative_to(run_dir)}"
                config["logger"] = run_loggers(sub.tracking, None, folder=self._eval_dir, run_name=name)
            else:
                config["logger"] = run_loggers(sub.tracking, run_dir.name if run_dir is not None else None)
        config["plugins"] = with_atomic_checkpoints(config.get("plugins"))
        return super()._instantiate_trainer(config, callbacks)

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except EnsembleError:
            if _is_rank_zero():
                if self._eval_dir is not None:  # a failed evaluation leaves no folder behind
                    shutil.rmtree(self._eval_dir, ignore_errors=True)
                if subcommand != "fit":  # a run claimed for a checkpoint outside any run
                    discard_if_unused(self._claimed)
                elif self._run_dir is None:  # a fresh run that never started
                    discard_if_unused(Path(self.trainer.log_dir) if self.trainer.logger is not None else None)
            raise
        if self._eval_dir is not None and _is_rank_zero():
            final = commit_eval_dir(self._eval_dir)
            console.say(f"evaluation of {self._subcommand_config().ckpt_path}: {final}")

    def before_fit(self) -> None:
        self._fit_started = time.perf_counter()

    def after_fit(self) -> None:
        """Evaluate the best checkpoint on val and test, as every family does after ``fit``."""
        if not self.trainer.interrupted:
            NetJob(self).finish(fit_cost(self._fit_started))

    def _shown_dir(self) -> Any:
        """Where the printed results live: an evaluation's final folder (it is staged until it succeeds)."""
        run_dir = self.trainer.log_dir  # a collective under DDP: every rank asks
        return getattr(self, "_eval_final", None) if self._eval_dir is not None else run_dir

    def _print_split(self, split: str) -> None:
        run_dir = self._shown_dir()
        if self.trainer.is_global_zero:
            results = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith(f"{split}/")}
            print_results({**results, **NetJob(self).partial(split)}, run_dir, self.trainer.ckpt_path)

    def after_validate(self) -> None:
        self._print_split("val")

    def after_test(self) -> None:
        self._print_split("test")

    def after_predict(self) -> None:
        run_dir = self._shown_dir()
        if self.trainer.is_global_zero:
            print_predictions(run_dir, self.trainer.ckpt_path)


def _is_rank_zero() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


class NetJob(Job):
    """A built ``EnsembleCLI`` seen through the family interface."""

    def __init__(self, cli: EnsembleCLI) -> None:
        self.cli = cli
        self.model, self.datamodule, self.trainer = cli.model, cli.datamodule, cli.trainer
        self.config = cli.config.as_dict()
        self.evaluate_test = bool(cli._subcommand_config().get("test", True))
        self.calibrate = bool(cli._subcommand_config().get("calibrate", True))

    @property
    def run_dir(self) -> Path | None:
        if self.trainer.logger is not None:
            return Path(self.trainer.log_dir)
        return self.cli._run_dir

    @property
    def best_score(self) -> float | None:
        callback = self.trainer.checkpoint_callback
        score = callback.best_model_score if callback is not None else None
        return None if score is None else float(score)

    def add_callback(self, callback: Any) -> None:
        self.trainer.callbacks.append(callback)

    def remove_callback(self, callback: Any) -> None:
        self.trainer.callbacks.remove(callback)

    def train(self) -> None:
        with preempted_as_exit():  # ckpt_path: resolved to a file by ``before_instantiate_classes``
            self.trainer.fit(self.model, datamodule=self.datamodule, ckpt_path=self.cli.config.get("ckpt_path"))

    def evaluate(self, split: str, ckpt: str | None) -> dict[str, float]:
        run = {"val": self.trainer.validate, "test": self.trainer.test}[check_split(split)]
        results: dict[str, float] = {}
        with preempted_as_exit():  # Lightning's evaluation loop stops on SIGTERM too (exit 143, not 0)
            for out in run(self.model, datamodule=self.datamodule, ckpt_path=ckpt, verbose=False):
                results.update(out)
        return {**results, **self.partial(split)}

    def partial(self, split: str) -> dict[str, bool]:
        """``{split}/partial``: True when the last evaluation of ``split`` saw only part of its batches."""
        writer = next((c for c in self.trainer.callbacks if isinstance(c, ArtifactWriter)), None)
        return {f"{split}/partial": bool(writer.partial.get(split))} if writer is not None else {}

    def predict(self, ckpt: str | None = None) -> Any:
        with preempted_as_exit():
            outputs = self.trainer.predict(self.model, datamodule=self.datamodule, ckpt_path=ckpt)
        return torch.cat([out["probs"] for out in outputs]).numpy()

    def best_checkpoint(self) -> str | None:
        callback = self.trainer.checkpoint_callback
        return (callback.best_model_path or None) if callback is not None else None

    def is_global_zero(self) -> bool:
        return self.trainer.is_global_zero

    def store_temperature(self, ckpt: str, temperature: float | None) -> None:
        write_net_temperature(ckpt, temperature)

    def barrier(self) -> None:
        self.trainer.strategy.barrier()


class NetFamily(Family):
    """Nets: a weights-only Lightning checkpoint per model (``best-EE.ckpt``, ``last.ckpt``)."""

    name = "neural"
    checkpoint_patterns: ClassVar[dict[str, str]] = NET_CHECKPOINTS

    def build(self, config: Mapping[str, Any], windows: Windows | None = None) -> NetJob:
        job = NetJob(EnsembleCLI(args=dict(config), run=False))
        if windows is not None:
            job.datamodule.use_windows(*windows)
        return job

    def run_command(self, subcommand: str, argv: list[str]) -> None:
        with preempted_as_exit():
            EnsembleCLI(args=[subcommand, *argv])

    def pruning_callback(self, trial: Any, monitor: str) -> Any:
        from optuna_integration import PyTorchLightningPruningCallback

        return PyTorchLightningPruningCallback(trial, monitor=monitor)

    def checkpoint_features(self, path: Path) -> list[str]:
        return list(read_net_checkpoint(path)["hyper_parameters"].get("feature_names") or [])

    def export_files(self, run_dir: Path) -> dict[str, Path]:
        ckpts = run_dir / "checkpoints"
        best = sorted(ckpts.glob("best*.ckpt"), key=lambda p: p.stat().st_mtime)
        files = best[-1:] or [p for p in [ckpts / "last.ckpt"] if p.is_file()]
        if not files:
            raise ExportError(f"{run_dir}: no checkpoint to export in {ckpts}")
        return {"model.ckpt": files[0]}

    def export_metadata(self, model_dir: Path) -> dict[str, Any]:
        ckpt = read_net_checkpoint(model_dir / "model.ckpt")
        hparams, data_state = ckpt["hyper_parameters"], ckpt.get(WindowDataModule.__qualname__) or {}
        return {"feature_names": list(hparams["feature_names"]), "horizon": int(hparams["horizon"]),
                "normalizer": data_state.get("normalizer"), "temperature": checkpoint_temperature(ckpt)}

    def predictor(self, export_dir: Path, config: Mapping[str, Any], metadata: Mapping[str, Any]) -> Predictor:
        from ensemble.models import Classifier

        path = export_dir / "model" / "model.ckpt"
        ckpt = read_net_checkpoint(path)  # damaged or untrusted: refused before any import
        model = Classifier.load_from_checkpoint(path, weights_only=True, map_location="cpu").eval()
        note_temperature("calibration" in ckpt, model.temperature, path)  # its on_load_checkpoint read it
        seq_len = int(metadata["seq_len"])

        def predict(panel: Any, ends: torch.Tensor) -> Any:
            with torch.no_grad():  # at the checkpoint's temperature, as validate/test/predict --ckpt_path
                parts = [model.probabilities(model(b["x"])) for b in WindowLoader(panel, ends, seq_len, 2048)]
            return torch.cat(parts).numpy()

        return predict

