"""A callback for crash tests: at one (epoch, batch) it drops a marker file and stalls, so the
test can SIGKILL the process mid-epoch. It changes nothing in the training itself."""

import time
from pathlib import Path

from lightning.pytorch import Callback


class StallAt(Callback):
    def __init__(self, marker: str, epoch: int = 1, batch: int = 2) -> None:
        self.marker, self.epoch, self.batch = Path(marker), epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            self.marker.write_text("stalled")
            time.sleep(600)
