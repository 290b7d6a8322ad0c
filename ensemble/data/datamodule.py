"""``WindowDataModule``: the upstream splits as symbol-isolated, past-only windows, for Lightning."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from ensemble.data.split_data import SplitData
from ensemble.data.windows import WindowLoader


class WindowDataModule(SplitData, pl.LightningDataModule):
    """``SplitData`` served as (B, L, F) window batches ending at labelled rows: seeded per-epoch shuffles,
    disjoint DDP shards, and (``data_on_device``) splits kept on the trainer's device. Arguments: ``SplitData``.
    """

    def _record_hyperparameters(self, frame: Any) -> None:
        self.save_hyperparameters(frame=frame)

    def _device(self) -> torch.device | None:
        if not self.data_on_device or self.trainer is None:
            return None
        return self.trainer.strategy.root_device

    # -- loaders
    def _loader(self, split: str, shuffle: bool) -> WindowLoader:
        panel = self.panel(split)
        trainer = self.trainer
        return WindowLoader(
            panel,
            self.ends[split],
            self.seq_len,
            self.batch_size if shuffle else self.eval_batch_size,
            shuffle=shuffle,
            seed=self.seed,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
            epoch=(lambda: trainer.current_epoch) if trainer is not None else None,
        )

    def train_dataloader(self) -> WindowLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> WindowLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> WindowLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> WindowLoader:
        return self._loader(self.predict_split, shuffle=False)
