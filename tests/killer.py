"""Callbacks for crash tests: at one (epoch, batch) a net's run, or at one epoch a tree's run, drops a
marker file and stalls, so the test can SIGKILL (or SIGTERM) the process mid-training. They change nothing
in the training itself. A stall ends early once the trainer has seen a SIGTERM, as real work would."""

import os
import signal
import time
from pathlib import Path

from lightning.pytorch import Callback

from ensemble.training.trees.callbacks import TreeCallback


class StallAt(Callback):
    def __init__(self, marker: str, epoch: int = 1, batch: int = 2) -> None:
        self.marker, self.epoch, self.batch = Path(marker), epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            self.marker.write_text("stalled")
            _stall(lambda: trainer.received_sigterm)


class TreeStallAt(TreeCallback):
    """``StallAt`` for ``TreeTrainer``, at one ``epoch``. By default at the epoch's end, after its trees were
    boosted and before they are checkpointed (``ModelCheckpoint`` runs last). With ``during`` ``last`` or
    ``best``: inside that checkpoint's commit, its sidecar written and its files not yet moved into place."""

    def __init__(self, marker: str, epoch: int = 2, during: str | None = None) -> None:
        self.marker, self.epoch, self.during = Path(marker), epoch, during

    def on_fit_start(self, trainer, model) -> None:
        if self.during is None:
            return
        from ensemble.training.trees import checkpoint

        settle = checkpoint._settle

        def stalling(meta: Path) -> None:
            if trainer.current_epoch == self.epoch and meta.name == f"{self.during}.meta.json":
                self.stall()
            settle(meta)

        checkpoint._settle = stalling

    def on_epoch_end(self, trainer, model) -> None:
        if self.during is None and trainer.current_epoch == self.epoch:
            self.stall(trainer)

    def stall(self, trainer=None) -> None:
        self.marker.write_text("stalled")
        _stall(lambda: trainer is not None and trainer.should_stop)


def _stall(stopped, seconds: float = 600) -> None:
    """Sleep up to ``seconds``, in short naps so a SIGTERM handler's flag (``stopped()``) ends it."""
    end = time.time() + seconds
    while time.time() < end and not stopped():
        time.sleep(0.05)


class TreeStallOnce(TreeCallback):
    """At the end of ``epoch`` (its trees boosted, not yet checkpointed), the first fit to get there writes its
    pid to ``marker`` and stalls, so a test can SIGKILL exactly that process; every later fit, the retried
    one included, finds the marker and trains on untouched."""

    def __init__(self, marker: str, epoch: int = 2) -> None:
        self.marker, self.epoch = Path(marker), epoch

    def on_epoch_end(self, trainer, model) -> None:
        if trainer.current_epoch == self.epoch and not self.marker.exists():
            import os

            self.marker.write_text(str(os.getpid()))
            _stall(lambda: trainer.should_stop)


class TreeStallInFold(TreeStallAt):
    """``TreeStallAt`` only in the run of walk-forward fold ``fold``, and only while ``marker`` does not exist:
    the re-run of the same command (same config, so the same fingerprint) trains straight through."""

    def __init__(self, marker: str, fold: int = 3, epoch: int = 1) -> None:
        super().__init__(marker, epoch)
        self.fold = fold

    def on_epoch_end(self, trainer, model) -> None:
        in_fold = Path(trainer.default_root_dir).parent.name == f"fold_{self.fold}"
        if in_fold and not self.marker.exists() and trainer.current_epoch == self.epoch:
            self.stall(trainer)


class TreeFailInFold(TreeCallback):
    """Fails the run of walk-forward fold ``fold`` as it starts (a planted bug), so a test sees how a failed fold
    is reported; every other fold trains untouched."""

    def __init__(self, fold: int = 2) -> None:
        self.fold = fold

    def on_fit_start(self, trainer, model) -> None:
        if Path(trainer.default_root_dir).parent.name == f"fold_{self.fold}":
            raise RuntimeError(f"planted failure in fold {self.fold}")


class TreeStallOncePerCell(TreeStallAt):
    """``TreeStallAt`` once in each cell or fold (the parent of the run folder, e.g. ``lightgbm_h5``): the first fit
    of it stalls at the end of ``epoch`` and writes ``<marker>.<cell>`` (its pid); a re-run of the same command
    (same config, so the same fingerprint) finds the file and trains straight through."""

    def on_epoch_end(self, trainer, model) -> None:
        import os

        mine = self.marker.with_name(f"{self.marker.name}.{Path(trainer.default_root_dir).parent.name}")
        if trainer.current_epoch == self.epoch and not mine.exists():
            mine.write_text(str(os.getpid()))
            _stall(lambda: trainer.should_stop)


class StallInFold(StallAt):
    """``StallAt`` only in the run of walk-forward fold ``fold`` (the run folder's parent is ``fold_<fold>``), and
    only while ``marker`` does not exist: a re-run of the same command (same config, so the same record) trains
    straight through. Two of them, with their own markers, stall two runs of one walk-forward in turn."""

    def __init__(self, marker: str, fold: int = 2, epoch: int = 1, batch: int = 0) -> None:
        super().__init__(marker, epoch, batch)
        self.fold = fold

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        in_fold = trainer.log_dir is not None and Path(trainer.log_dir).parent.name == f"fold_{self.fold}"
        if in_fold and not self.marker.exists():
            super().on_train_batch_start(trainer, pl_module, batch, batch_idx)


class SigtermOnTestInFold(Callback):
    """Sends this process a SIGTERM as walk-forward fold ``fold``'s run starts (``when="start"``) or has finished
    (``when="end"``) evaluating its test block, after its fit, once: ``marker`` is written first, and a re-run with
    the marker present evaluates straight through."""

    def __init__(self, marker: str, fold: int = 1, when: str = "start") -> None:
        self.marker, self.fold, self.when = Path(marker), fold, when

    def _signal(self, trainer, when: str) -> None:
        in_fold = trainer.log_dir is not None and Path(trainer.log_dir).parent.name == f"fold_{self.fold}"
        if when == self.when and in_fold and not self.marker.exists():
            self.marker.write_text("signalled")
            os.kill(os.getpid(), signal.SIGTERM)

    def on_test_start(self, trainer, pl_module) -> None:
        self._signal(trainer, "start")

    def on_test_end(self, trainer, pl_module) -> None:
        self._signal(trainer, "end")
