"""The family layer: one object per model family behind one small interface.

Nets train under Lightning's Trainer, trees under ``TreeTrainer``; this module and the two families
(``nets.py``, ``trees/family.py``) are the only code that knows the families differ. Everything above
(tuning, experiments, walk-forward, blending, export) asks for a family by config and speaks to it with
Python objects::

    job = build("configs/lightgbm.yaml", {"data.horizon": 20, "tracking.save_dir": "runs"})
    metrics = job.fit()          # train, then evaluate the best checkpoint on val and test
    job.run_dir                  # runs/lightgbm/version_0
"""

from __future__ import annotations

import argparse
import importlib
import resource
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ensemble.errors import ConfigError, EnsembleError, Preempted, one_line
from ensemble.training.config import ConfigSource, family_name, resolve_config

if TYPE_CHECKING:
    from ensemble.training.runs import RunKey

# family name (as the registry records it) -> the class that trains it, imported on first use
_FAMILIES = {"neural": "ensemble.training.nets:NetFamily", "tree": "ensemble.training.trees.family:TreeFamily"}


class ExportError(EnsembleError):
    """A run that cannot be exported, or an export that cannot be used."""


TEST_HELP = "fit: evaluate the best checkpoint on test after training (false: val only, as tuning trials do)"
Predictor = Callable[[Any, Any], np.ndarray]  # (SplitPanel, ends) -> (N, 3) class probabilities
Windows = tuple[Any, Mapping[str, Any]]  # (SplitPanel, {split: (M,) int64 window end rows}) for SplitData.use_windows


@contextmanager
def on_sigterm(handler: Callable[[], None]) -> Iterator[None]:
    """Call ``handler`` (it should ask the loop to stop at its next safe point) when SIGTERM arrives, for
    the duration of the block; the previous handler comes back afterwards. Main thread only, as Python's
    signal handlers are."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: handler())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class StopRequest:
    """A SIGTERM remembered until the next safe point of a loop of jobs (walk-forward folds, tuning trials).

    Lightning stops a fit on SIGTERM only inside its training loop: one that lands while a job evaluates,
    predicts or writes its artifacts only sets that finished Trainer's flag, and the loop would go on to the next
    job. Inside ``with StopRequest() as stop:``, ``stop.check(advice)`` raises ``Preempted`` (exit 143) at the
    loop's next safe point. Lightning calls an existing SIGTERM handler besides its own, so a signal during a fit
    is seen here too; a tree fit's own ``on_sigterm`` stops that fit itself.
    """

    def __init__(self) -> None:
        self.seen = False
        self._block: Any = None

    def __enter__(self) -> StopRequest:
        self._block = on_sigterm(self._set)
        self._block.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._block.__exit__(*exc)

    def _set(self) -> None:
        self.seen = True

    def check(self, advice: str) -> None:
        """Raise ``Preempted("SIGTERM received: <advice>")`` when a SIGTERM arrived since the block began."""
        if self.seen:
            raise Preempted(f"SIGTERM received: {advice}")


def fit_cost(started: float) -> dict[str, float]:
    """What a fit cost since ``started`` (``time.perf_counter()``): wall seconds and peak RSS in MiB."""
    return {"fit/train_time_s": time.perf_counter() - started,
            "fit/peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


class Job(ABC):
    """A parsed, instantiated run: ``model``, ``datamodule``, ``trainer`` and its full ``config``.

    A tree job claims its run folder when training starts; a net job when its Trainer is built, unless
    ``trainer.logger`` is false (how a config is checked without leaving a folder behind).
    """

    model: Any
    datamodule: Any
    trainer: Any
    config: dict[str, Any]
    evaluate_test: bool = True  # the config's top-level ``test``: evaluate test after fit (tuning trials: off)
    calibrate: bool = True  # the config's top-level ``calibrate``: temperature-scale the chosen checkpoint
    # a temperature fitted elsewhere (``calibration.Temperature``; a walk-forward's final model: on its folds'
    # out-of-fold rows) that calibration stores instead of fitting one on val; None: fit on val
    given_temperature: Any = None

    @property
    @abstractmethod
    def run_dir(self) -> Path | None:
        """The run's folder, once claimed (or the resumed checkpoint's run)."""

    @property
    @abstractmethod
    def best_score(self) -> float | None:
        """The checkpoint monitor's best value after ``fit``; None when nothing was monitored."""

    @abstractmethod
    def add_callback(self, callback: Any) -> None:
        """Attach a callback of this family's trainer (e.g. an Optuna pruning callback)."""

    @abstractmethod
    def remove_callback(self, callback: Any) -> None:
        """Detach a callback added with ``add_callback``."""

    @abstractmethod
    def train(self) -> None:
        """Train (or resume) without the final evaluation."""

    @abstractmethod
    def evaluate(self, split: str, ckpt: str | None) -> dict[str, float]:
        """Metrics of ``ckpt`` (None: the current weights) on ``split`` (val or test); writes its artifacts.

        Raises:
            ConfigError: ``split`` is not val or test.
        """

    def validate(self, ckpt: str | None = None) -> dict[str, float]:
        """``val/*`` metrics of ``ckpt`` (None: the current weights), with the val artifacts."""
        return self.evaluate("val", ckpt)

    def test(self, ckpt: str | None = None) -> dict[str, float]:
        """``test/*`` metrics of ``ckpt`` (None: the current weights), with the test artifacts."""
        return self.evaluate("test", ckpt)

    @abstractmethod
    def predict(self, ckpt: str | None = None) -> np.ndarray:
        """(N, 3) class probabilities on ``data.predict_split``; also written to ``predictions/predict.parquet``."""

    @abstractmethod
    def best_checkpoint(self) -> str | None:
        """The file the final evaluation loads: the best checkpoint, else the last, else None."""

    @abstractmethod
    def is_global_zero(self) -> bool:
        """Whether this process writes the run's shared files (rank 0 under DDP)."""

    @abstractmethod
    def store_temperature(self, ckpt: str, temperature: float | None) -> None:
        """Write the calibration temperature into the checkpoint file ``ckpt`` (None: remove it, T = 1)."""

    def barrier(self) -> None:
        """Wait for every process of the run (DDP); one process has nothing to wait for."""
        return

    def fit(self, train_callbacks: list[Any] = ()) -> dict[str, float]:
        """Train, then evaluate the best checkpoint on val and (unless the config says ``test: false``) test:
        artifacts, metrics.json and a summary.

        Args:
            train_callbacks: callbacks attached while training only (an Optuna pruning callback: the
                final evaluation is not a pruning step).

        Returns:
            ``val/*`` and ``test/*`` (when evaluated) metrics of the best checkpoint, plus ``fit/train_time_s`` (s) and
            ``fit/peak_rss_mib`` (MiB, this process's peak resident memory).
        """
        started = time.perf_counter()
        for callback in train_callbacks:
            self.add_callback(callback)
        try:
            self.train()
        finally:
            for callback in train_callbacks:
                self.remove_callback(callback)
        cost = fit_cost(started)
        return {**self.finish(cost), **cost}

    def finish(self, cost: Mapping[str, float], ckpt: str | None = None) -> dict[str, float]:
        """The after-fit evaluation of the best checkpoint (or of ``ckpt``, another run's model, as a walk-forward
        fold that reuses the last fold's model does), shared by both families and by the CLI.

        The run's own checkpoint is calibrated first when ``calibrate`` is on (``calibrate_checkpoint``: T fitted
        on val at T = 1, stored in it); another run's model keeps the temperature it carries."""
        from ensemble.training.artifacts import stage_figures_skipped, update_metrics_json
        from ensemble.training.calibration import calibrate_checkpoint
        from ensemble.training.results import print_results

        best = ckpt or self.best_checkpoint()
        own = ckpt is None and best is not None
        if own:  # a refit (a resume, --calibrate false) starts from the model's own probabilities
            if self.is_global_zero():
                self.store_temperature(best, None)
            self.barrier()
        redone = own and self.calibrate  # val is evaluated again once calibrated: draw its figures then only
        with stage_figures_skipped() if redone else nullcontext():
            results = self.evaluate("val", best)
        if redone:
            results = calibrate_checkpoint(self, best, results)
        if self.evaluate_test:
            results.update(self.evaluate("test", best))
        run_dir = self.run_dir  # a collective under DDP: every rank asks
        if self.is_global_zero():
            update_metrics_json(run_dir, dict(cost))  # the leaderboard's cost columns
            print_results(results, run_dir, best)
        return results


class Family(ABC):
    """What a model family can do, given a resolved config (see ``ensemble.training.config``)."""

    name: ClassVar[str]
    checkpoint_patterns: ClassVar[dict[str, str]]  # ``last``/``best`` -> glob in a run's ``checkpoints/``

    @staticmethod
    def checkpoint_marker(path: Path) -> Path:
        """The file that marks a given checkpoint path complete (a tree's sidecar); the path itself for nets."""
        return path

    def find_checkpoint(
        self, ckpt: str, base: Path, resuming: bool = False, wanted: RunKey | None = None, own: bool = True
    ) -> tuple[Path, Path | None]:
        """(checkpoint file, its run folder) for ``last``/``best`` (the newest run under ``base`` holding one, by
        this family's ``checkpoint_patterns``, whose config matches ``wanted``: model, horizon, seq_len and
        features) or for a path. ``own``: the run only when it is one of ``base``'s (a fit continues only its
        own run), else wherever the checkpoint lies (an evaluation writes into it); ``resuming`` cleans what a
        killed writer left in that run.

        Raises:
            RunNotFoundError: no such checkpoint, or none of a run that matches, with the runs that exist.
        """
        from ensemble.training.runs import checkpoint_to_resume

        return checkpoint_to_resume(ckpt, base, resuming, self.checkpoint_patterns, self.checkpoint_marker, wanted,
                                    self.checkpoint_features, own)  # fmt: skip

    @abstractmethod
    def checkpoint_features(self, path: Path) -> list[str]:
        """The feature names a checkpoint file (as ``find_checkpoint`` returns it) was trained on.

        Raises:
            CheckpointError: the file is damaged or not this family's.
        """

    @abstractmethod
    def build(self, config: Mapping[str, Any], windows: Windows | None = None) -> Job:
        """Parse and instantiate a ``fit`` of ``config``; ``windows`` (a panel and the window ends of each split)
        replaces what the ``data`` section would load (``SplitData.use_windows``).

        Raises:
            ConfigError (or another ``EnsembleError``): a key or value the family cannot use.
        """

    @abstractmethod
    def pruning_callback(self, trial: Any, monitor: str) -> Any:
        """A callback that reports ``monitor`` to an Optuna ``trial`` every epoch and prunes it."""

    @abstractmethod
    def export_files(self, run_dir: Path) -> dict[str, Path]:
        """The files of a run's best (else last) model, keyed by the name they take in an export's ``model/``.

        Raises:
            ExportError: the run has no checkpoint.
        """

    @abstractmethod
    def export_metadata(self, model_dir: Path) -> dict[str, Any]:
        """``feature_names`` (list), ``horizon`` (int) and ``normalizer`` (the data's fitted normalisation,
        ``Normalizer.state_dict()``, None for a model trained before it was stored) kept with an exported model."""

    @abstractmethod
    def run_command(self, subcommand: str, argv: list[str]) -> None:
        """``ensemble fit|validate|test|predict`` with this family's parser; ``argv`` comes untouched from
        the CLI (the one place that reads argv)."""

    @abstractmethod
    def predictor(self, export_dir: Path, config: Mapping[str, Any], metadata: Mapping[str, Any]) -> Predictor:
        """Load an export's model; the result maps (panel, window ends) to (N, 3) probabilities. The panel's
        features must already be normalised with ``metadata["normalizer"]`` (``export.predict_file`` does it)."""


def family_for(config: Mapping[str, Any]) -> Family:
    """The family that trains ``config``'s model, as the model registry records it.

    Raises:
        ConfigError: a key that moved to another section (``data.bars_per_year``), naming its new place.
    """
    from ensemble.training.trading import check_moved_keys

    check_moved_keys(config)
    return family_named(family_name(config))


def family_named(name: str) -> Family:
    """The family registered under ``name`` (``neural``, ``tree``).

    Raises:
        ConfigError: an unknown name (e.g. from a damaged export's metadata.json).
    """
    if name not in _FAMILIES:
        raise ConfigError(f"unknown model family '{name}'; known: {', '.join(_FAMILIES)}")
    module, _, cls = _FAMILIES[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


def build(source: ConfigSource, overrides: Mapping[str, Any] | None = None, windows: Windows | None = None) -> Job:
    """A ``fit`` job of any model: ``source`` is a YAML path or a dict, ``overrides`` dotted keys.

    ``windows``: (panel, ``{split: window ends}``) served instead of the files the ``data`` section names, e.g.
    a walk-forward fold cut from one loaded span; the ``data`` section still gives horizon, seq_len, batch sizes.

    Raises:
        ConfigError (or another ``EnsembleError``): a key, value or class the config cannot have, in one line.
    """
    config = resolve_config(source, overrides)
    family = family_for(config)
    try:
        return family.build(config, windows)
    except argparse.ArgumentError as err:  # jsonargparse's verdict on the config, as the CLI would print it
        raise ConfigError(one_line(err)) from err


def check_split(split: str) -> str:
    """``split`` if it is one a job evaluates, else ``ConfigError``."""
    if split not in ("val", "test"):
        raise ConfigError(f"a job evaluates split 'val' or 'test', got '{split}'")
    return split
