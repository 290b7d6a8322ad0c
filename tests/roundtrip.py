"""A reloaded net must predict exactly what its run wrote: one check for every backbone's tests."""

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ensemble.data import WindowDataModule
from ensemble.training.artifacts import PROB_COLUMNS, predictions_frame


def assert_predicts_as_written(model: torch.nn.Module, data: Path, seq_len: int, run_dir: Path) -> None:
    """Predict the val split of ``data`` with ``model`` and compare with ``run_dir``'s predictions/val.parquet."""
    dm = WindowDataModule(root=str(data), horizon=5, seq_len=seq_len, batch_size=64)
    dm.setup("validate")
    parts = []
    with torch.no_grad():
        for batch in dm.val_dataloader():
            keep = {k: batch[k].numpy() for k in ("y", "time", "symbol", "fwd_return")}
            # at the checkpoint's calibration temperature, as the run wrote them (Classifier.probabilities)
            parts.append({**keep, "probs": model.probabilities(model(batch["x"])).numpy()})
    ours = predictions_frame({k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, dm.panel("val").symbols)
    written = pd.read_parquet(run_dir / "predictions" / "val.parquet")
    pd.testing.assert_frame_equal(ours.drop(columns=list(PROB_COLUMNS)), written.drop(columns=list(PROB_COLUMNS)))
    np.testing.assert_allclose(ours[list(PROB_COLUMNS)], written[list(PROB_COLUMNS)], atol=1e-6)
