"""The tree family: a ``TreeModel`` adapter boosted by ``TreeTrainer``, configured like a net.

The config has the nets' sections and flags (``data``, ``trainer``, ``model``, ``tracking``, ``checkpoint``,
``ckpt_path``) and runs into the same run layout. Nothing here needs Lightning's Trainer.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from ensemble import console
from ensemble.data.split_data import SplitData
from ensemble.errors import ConfigError, EnsembleError, Preempted, resume_advice
from ensemble.io import atomic_write
from ensemble.metrics.calibration import calibrate_probs
from ensemble.models.trees import TreeModel
from ensemble.training.calibration import CALIBRATE_HELP, note_temperature
from ensemble.training.config import check_one_monitor
from ensemble.training.family import TEST_HELP, ExportError, Family, Job, Predictor, Windows, check_split, on_sigterm
from ensemble.training.runs import (
    CKPT_PATH_HELP,
    RunKey,
    claim_run_dir,
    commit_eval_dir,
    default_run_name,
    discard_if_unused,
    eval_split,
    run_base,
    run_name_of,
    stage_eval_dir,
)
from ensemble.training.seed import seed_everything
from ensemble.training.tracking import Tracking, run_loggers
from ensemble.training.trading import add_trading_arguments, announce_bars_per_year, check_trading
from ensemble.training.trees.callbacks import ArtifactWriter, ModelCheckpoint
from ensemble.training.trees.checkpoint import (
    CALIBRATION,
    STAGED_NAME,
    TREE_CHECKPOINTS,
    meta_path,
    model_file,
    native_file,
    read_checkpoint,
    read_sidecar,
    sidecar_of,
    sidecar_temperature,
    write_temperature,
)
from ensemble.training.trees.trainer import TreeTrainer

LINKED_FROM_DATA = ("horizon", "bars_per_year", "feature_names", "seq_len")


def tree_parser(subcommand: str = "fit") -> ArgumentParser:
    """The jsonargparse parser of a tree config (the CLI parses argv with it, the layer dicts)."""
    parser = ArgumentParser(
        prog=f"ensemble {subcommand}",
        description=f"{subcommand} a tree model (XGBoost, LightGBM, CatBoost) with TreeTrainer",
        exit_on_error=False,  # the CLI prints one clear line instead
    )
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="YAML config file(s)")
    parser.add_argument("--seed_everything", type=bool | int, default=0, help="seed; True draws one, False skips")
    parser.add_class_arguments(TreeTrainer, "trainer", skip={"default_root_dir"}, instantiate=False)
    parser.add_subclass_arguments(TreeModel, "model", required=True)
    parser.add_class_arguments(SplitData, "data")
    parser.add_class_arguments(Tracking, "tracking")
    add_trading_arguments(parser, "model.init_args.trading")
    parser.add_class_arguments(ModelCheckpoint, "checkpoint")
    parser.add_argument("--ckpt_path", type=str | None, default=None, help=CKPT_PATH_HELP)
    parser.add_argument("--test", type=bool, default=True, help=TEST_HELP)
    parser.add_argument("--calibrate", type=bool, default=True, help=CALIBRATE_HELP)
    for name in LINKED_FROM_DATA:
        parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")
    return parser


class TreeJob(Job):
    """A parsed tree config, instantiated: ``model``, ``datamodule`` and ``trainer`` from one parse.

    The run folder is claimed when a run starts (``start``), so a config can be checked without leaving any.
    """

    def __init__(self, parser: ArgumentParser, config: Namespace, subcommand: str = "fit") -> None:
        self.subcommand, self.parser, self.namespace = subcommand, parser, config
        self.config = config.as_dict()
        check_trading(config)
        check_one_monitor(self.config.get("checkpoint") or {}, (self.config.get("trainer") or {}).get("callbacks"))
        self.evaluate_test = bool(config.test)
        self.calibrate = bool(config.calibrate)
        if config.seed_everything is not False:
            seed_everything(None if config.seed_everything is True else config.seed_everything)
        self.tracking = Tracking(**vars(config.tracking))
        self.tracking.name = self.tracking.name or default_run_name(self.config)
        self.ckpt, self._run_dir = None, None
        base = run_base(self.tracking.save_dir, self.tracking.name)  # a name that is a path: refused here
        if config.ckpt_path is None and subcommand != "fit":
            raise ConfigError(f"'ensemble {subcommand}' needs --ckpt_path (last, best or a checkpoint file)")
        init = parser.instantiate_classes(config)
        self.model, self.datamodule = init.model, init.data
        announce_bars_per_year(self.model.trading_config, self.datamodule.bars_per_year, self.datamodule.path("train"),
                               symbols=self.datamodule.train_symbols)
        if config.ckpt_path is not None:
            fit = subcommand == "fit"
            tag = config.ckpt_path in TREE_CHECKPOINTS
            wanted = RunKey.of(self.config, self.datamodule.feature_names) if tag else None
            meta, self._run_dir = TreeFamily().find_checkpoint(config.ckpt_path, base, fit, wanted, own=fit)
            self.ckpt = model_file(meta)
            if not fit:  # an evaluation applies the checkpoint's temperature: say when it has none
                note_temperature(CALIBRATION in read_sidecar(sidecar_of(meta)), 1.0, meta)
        kwargs: dict[str, Any] = dict(vars(init.trainer))
        self._logger = kwargs.pop("logger")
        callbacks = [*(kwargs.pop("callbacks") or []), ArtifactWriter()]
        if kwargs["enable_checkpointing"]:
            callbacks.append(init.checkpoint)
        self.trainer = TreeTrainer(**kwargs, callbacks=callbacks, logger=self._logger or [])

    @property
    def run_dir(self) -> Path | None:
        return self._run_dir

    @property
    def best_score(self) -> float | None:
        callback = self.trainer.checkpoint_callback
        return None if callback is None or callback.best_model_score is None else float(callback.best_model_score)

    def add_callback(self, callback: Any) -> None:
        self.trainer.callbacks.append(callback)

    def remove_callback(self, callback: Any) -> None:
        self.trainer.callbacks.remove(callback)

    def start(self) -> None:
        """Claim the run folder (or reuse the resumed one), attach the loggers, and write config.yaml once: it is
        the fit's record, never rewritten by an evaluation or a resume."""
        self._run_dir = self._run_dir or claim_run_dir(run_base(self.tracking.save_dir, self.tracking.name))
        self._attach(self._run_dir, self._run_dir.name)

    def _attach(self, folder: Path, version: str | None, eval_of: Path | None = None) -> None:
        """Point the trainer and its loggers at ``folder`` (a run, or an evaluation's folder ``eval_of``
        holds) and write the config there unless a config.yaml is there already."""
        self.trainer.default_root_dir = folder
        if self._logger in (None, True):
            name = None if eval_of is None else f"{run_name_of(eval_of)}/{eval_of.name}/{folder.relative_to(eval_of)}"
            where = None if eval_of is None else folder
            self.trainer.loggers = run_loggers(self.tracking, version, lightning=False, folder=where, run_name=name)
        if not (folder / "config.yaml").exists():
            text = self.parser.dump(self.namespace, skip_none=False)
            atomic_write(folder / "config.yaml", lambda p: p.write_text(text))

    def _close_loggers(self) -> None:
        """Finalize the trainer's loggers as failed, so their writer threads (TensorBoard's) stop before a failed
        run's folder is removed: a file they write under ``rmtree`` would make it fail."""
        for logger in self.trainer.loggers:
            logger.finalize("failed")

    def train(self) -> None:
        fresh = self._run_dir is None
        self.start()
        stopped: list[bool] = []

        def stop() -> None:  # finish the chunk of rounds and its checkpoint, then stop
            stopped.append(True)
            self.trainer.should_stop = True

        with on_sigterm(stop):
            try:
                self.trainer.fit(self.model, self.datamodule, self.ckpt)
            except EnsembleError:
                if fresh:
                    self._close_loggers()
                    discard_if_unused(self._run_dir)
                raise
        if stopped:
            last = meta_path(self._run_dir / "checkpoints", "last")
            where = resume_advice(str(last) if last.is_file() else None)
            raise Preempted(f"SIGTERM received: stopped after round {self.model.num_rounds}; {where}")

    def evaluate(self, split: str, ckpt: str | None) -> dict[str, float]:
        run = {"val": self.trainer.validate, "test": self.trainer.test}[check_split(split)]
        if self._run_dir is None:  # the artifacts need a run folder: an evaluation without a fit claims one
            self.start()
        return run(self.model, self.datamodule, ckpt)

    def predict(self, ckpt: str | None = None) -> Any:
        self.start()
        return self.trainer.predict(self.model, self.datamodule, ckpt)

    def best_checkpoint(self) -> str | None:
        found = [p for p in (meta_path(self._run_dir / "checkpoints", t) for t in ("best", "last")) if p.is_file()]
        return str(model_file(found[0])) if found else None  # as nets: the best model, else the last weights

    def is_global_zero(self) -> bool:
        return True  # tree libraries train in one process

    def store_temperature(self, ckpt: str, temperature: float | None) -> None:
        write_temperature(ckpt, temperature)

    def run(self) -> None:
        """Run the parsed subcommand, as ``ensemble fit|validate|test|predict`` does."""
        from ensemble.training.results import print_predictions, print_results

        if self.subcommand == "fit":
            self.fit()
            return
        claimed = self._run_dir is None  # a checkpoint outside any run: its evaluation gets a run of its own
        run = self._run_dir = self._run_dir or claim_run_dir(run_base(self.tracking.save_dir, self.tracking.name))
        split = eval_split(self.subcommand, self.datamodule.predict_split)
        out = stage_eval_dir(run, split, self.ckpt)  # beside the fit's artifacts
        try:
            self._attach(out, None, eval_of=run)
            if self.subcommand == "predict":
                self.trainer.predict(self.model, self.datamodule, self.ckpt)
            else:
                results = getattr(self.trainer, self.subcommand)(self.model, self.datamodule, self.ckpt)
        except EnsembleError:
            self._close_loggers()
            shutil.rmtree(out, ignore_errors=True)  # a failed evaluation leaves no folder behind
            if claimed:
                discard_if_unused(run)
            raise
        out = commit_eval_dir(out)
        if self.subcommand == "predict":
            print_predictions(out, str(self.ckpt))
        else:
            print_results(results, out, str(self.ckpt))
        console.say(f"evaluation of {self.ckpt}: {out}")  # as nets print it


class TreeFamily(Family):
    """Trees: each library's native model file plus a JSON sidecar per checkpoint (never pickle)."""

    name = "tree"
    checkpoint_patterns: ClassVar[dict[str, str]] = TREE_CHECKPOINTS
    checkpoint_marker = staticmethod(sidecar_of)

    def build(self, config: Mapping[str, Any], windows: Windows | None = None) -> TreeJob:
        parser = tree_parser("fit")
        job = TreeJob(parser, parser.parse_object(dict(config)))
        if windows is not None:
            job.datamodule.use_windows(*windows)
        return job

    def run_command(self, subcommand: str, argv: list[str]) -> None:
        parser = tree_parser(subcommand)
        TreeJob(parser, parser.parse_args(argv), subcommand).run()

    def pruning_callback(self, trial: Any, monitor: str) -> Any:
        from ensemble.training.trees.pruning import TreePruningCallback

        return TreePruningCallback(trial, monitor=monitor)

    def checkpoint_features(self, path: Path) -> list[str]:
        return list(read_sidecar(sidecar_of(path))["feature_names"])

    def export_files(self, run_dir: Path) -> dict[str, Path]:
        ckpts = run_dir / "checkpoints"
        if meta_path(ckpts, "best").is_file():
            model_file(meta_path(ckpts, "best"))  # finishes a commit a killed writer left half-moved
        files = [p for p in ckpts.glob("best.*") if p.is_file() and not STAGED_NAME.match(p.name)]
        if not files:
            raise ExportError(f"{run_dir}: no checkpoint to export in {ckpts}")
        return {f.name: f for f in files}

    def export_metadata(self, model_dir: Path) -> dict[str, Any]:
        meta = read_sidecar(meta_path(model_dir, "best"))  # the sidecar holds what the data linked in
        return {"feature_names": list(meta["feature_names"]), "horizon": int(meta["horizon"]),
                "normalizer": (meta.get("datamodule") or {}).get("normalizer"),
                "temperature": sidecar_temperature(meta, meta_path(model_dir, "best"))}

    def predictor(self, export_dir: Path, config: Mapping[str, Any], metadata: Mapping[str, Any]) -> Predictor:
        spec = {"class_path": config["model"]["class_path"], "init_args": {
            **(config["model"].get("init_args") or {}), "feature_names": metadata["feature_names"],
            "horizon": metadata["horizon"], "seq_len": metadata["seq_len"]}}  # fmt: skip
        parser = ArgumentParser(exit_on_error=False)
        parser.add_subclass_arguments(TreeModel, "model")
        model = parser.instantiate_classes(parser.parse_object({"model": spec})).model
        (native,) = [p for p in (export_dir / "model").iterdir() if not p.name.endswith(".meta.json")]
        native_model, state = read_checkpoint(native, model)  # checks class, features and windowing first
        with native_file(native_model):
            model.load(native_model)
        temperature = note_temperature(CALIBRATION in state, sidecar_temperature(state, native), native)
        return lambda panel, ends: calibrate_probs(model.predict_proba(model.split(panel, ends).X), temperature)
