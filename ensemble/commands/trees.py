"""``ensemble fit|validate|test|predict`` for tree models: the nets' config sections and flags
(``data``, ``trainer``, ``model``, ``tracking``, ``checkpoint``, ``--ckpt_path``), run by ``TreeTrainer``
into the same run layout."""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser
from lightning.fabric.utilities.seed import seed_everything

import ensemble.trees  # noqa: F401  (registers the tree models)
from ensemble.callbacks.artifacts import update_metrics_json
from ensemble.commands.lightning import Tracking, model_short_name, run_loggers
from ensemble.data import WindowDataModule
from ensemble.io import atomic_write, remove_partial_writes
from ensemble.runs import claim_run_dir, print_metrics
from ensemble.trees import ArtifactWriter, ModelCheckpoint, TreeModel, TreeTrainer
from ensemble.trees.checkpoint import find_checkpoint, meta_path, model_file
from ensemble.trees.devices import single_device

LINKED_FROM_DATA = ("horizon", "bars_per_year", "feature_names", "seq_len")


def tree_parser(subcommand: str) -> ArgumentParser:
    parser = ArgumentParser(
        prog=f"ensemble {subcommand}",
        description=f"{subcommand} a tree model (XGBoost, LightGBM, CatBoost) with TreeTrainer",
        exit_on_error=False,  # the CLI prints one clear line instead
    )
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="YAML config file(s)")
    parser.add_argument("--seed_everything", type=bool | int, default=0, help="seed; True draws one, False skips")
    parser.add_class_arguments(TreeTrainer, "trainer", skip={"default_root_dir"}, instantiate=False)
    parser.add_subclass_arguments(TreeModel, "model", required=True)
    parser.add_class_arguments(WindowDataModule, "data")
    parser.add_class_arguments(Tracking, "tracking")
    parser.add_class_arguments(ModelCheckpoint, "checkpoint")
    parser.add_argument("--ckpt_path", type=str | None, default=None, help="last, best, or a checkpoint file")
    for name in LINKED_FROM_DATA:
        parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")
    return parser


class TreeCLI:
    """The tree counterpart of ``EnsembleCLI(run=False)``: ``config``, ``model``, ``datamodule`` and
    ``trainer`` from one parse; ``before_fit`` claims the run folder, ``after_fit`` evaluates the best model.
    No run folder exists until a run needs one, so a config can be checked without leaving any."""

    def __init__(self, args: list[str], subcommand: str = "fit") -> None:
        self.subcommand, self.parser = subcommand, tree_parser(subcommand)
        self.config = cfg = self.parser.parse_args(args)
        try:
            single_device(cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.strategy)
        except ValueError as err:
            self.parser.error(str(err))
        if cfg.seed_everything is not False:
            seed_everything(None if cfg.seed_everything is True else cfg.seed_everything)
        self.tracking = Tracking(**vars(cfg.tracking))
        self.tracking.name = self.tracking.name or model_short_name(cfg.model)
        self.ckpt, self.run_dir = None, None
        if cfg.ckpt_path is not None:
            meta, self.run_dir = find_checkpoint(cfg.ckpt_path, Path(self.tracking.save_dir) / self.tracking.name)
            self.ckpt = model_file(meta)
            if subcommand == "fit" and self.run_dir is not None:
                remove_partial_writes(self.run_dir)  # a resumed run: what its killed predecessor half-wrote
        elif subcommand != "fit":
            self.parser.error(f"'ensemble {subcommand}' of a tree model needs --ckpt_path (last, best or a file)")
        try:
            init = self.parser.instantiate(cfg)
        except ValueError as err:  # a bad model setting: one clear line, like a parse error
            self.parser.error(str(err))
        self.model, self.datamodule = init.model, init.data
        kwargs: dict[str, Any] = dict(vars(init.trainer))
        self._logger = kwargs.pop("logger")
        callbacks = [*(kwargs.pop("callbacks") or []), ArtifactWriter()]
        if kwargs["enable_checkpointing"]:
            callbacks.append(init.checkpoint)
        self.trainer = TreeTrainer(**kwargs, callbacks=callbacks, logger=self._logger or [])

    def before_fit(self) -> None:
        """Claim the run folder (or reuse the resumed one), attach the loggers, write config.yaml."""
        self.run_dir = self.run_dir or claim_run_dir(Path(self.tracking.save_dir) / self.tracking.name)
        self.trainer.default_root_dir = self.run_dir
        if self._logger in (None, True):
            self.trainer.loggers = run_loggers(self.tracking, self.run_dir.name)
        if self.subcommand == "fit" or not (self.run_dir / "config.yaml").exists():  # evaluations keep fit's
            text = self.parser.dump(self.config, skip_none=False)
            atomic_write(self.run_dir / "config.yaml", lambda p: p.write_text(text))
        self._fit_started = time.perf_counter()

    def after_fit(self) -> dict[str, float]:
        """Evaluate the best checkpoint on val and test (artifacts, metrics.json) and print the results."""
        cost = {"fit/train_time_s": time.perf_counter() - self._fit_started,
                "fit/peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip
        found = [p for p in (meta_path(self.run_dir / "checkpoints", t) for t in ("best", "last")) if p.is_file()]
        best = model_file(found[0]) if found else None  # as nets: the best model, else the last weights
        results = {**self.trainer.validate(self.model, self.datamodule, best)}
        results.update(self.trainer.test(self.model, self.datamodule, best))
        update_metrics_json(self.run_dir, cost)  # the leaderboard's cost columns
        print_metrics(results, self.run_dir, str(best or ""))
        return results

    def run(self) -> None:
        self.before_fit()
        if self.subcommand == "fit":
            self.trainer.fit(self.model, self.datamodule, self.ckpt)
            self.after_fit()
        elif self.subcommand == "predict":
            self.trainer.predict(self.model, self.datamodule, self.ckpt)
            print(f"\nrun: {self.run_dir}\npredictions: {self.run_dir / 'predictions' / 'predict.parquet'}")
        else:
            results = getattr(self.trainer, self.subcommand)(self.model, self.datamodule, self.ckpt)
            print_metrics(results, self.run_dir, str(self.ckpt))


def build_tree_cli(args: list[str]) -> TreeCLI:
    """A parsed ``fit`` of a tree config, not run (what ``ensemble tune`` drives trial by trial)."""
    return TreeCLI(args, "fit")


def run_trees(argv: list[str]) -> None:
    """``argv[0]`` is the subcommand; the rest is parsed as LightningCLI would parse a net's."""
    TreeCLI(argv[1:], argv[0]).run()
