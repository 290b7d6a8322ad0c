"""No-signal and planted-leak checks for the tree models, as for the nets.

Labels in these splits are random. A feature holding the label of the PREVIOUS row of the same symbol
(the future label planted one row later) must give a past-only model nothing; the control plants the
label in the SAME row, a leak the pipeline passes through faithfully, and the model must find it.
"""

from __future__ import annotations

import pytest
from panels import make_frames, write_frames

from ensemble.data import WindowDataModule
from ensemble.models.trees import CatBoostModel, LightGBMModel, XGBoostModel
from ensemble.training.trees import TreeTrainer

MODELS = {  # one thread: on tiny data OpenMP threads only contend for the test machine's cores
    "xgboost": lambda: XGBoostModel(learning_rate=0.3, max_depth=4, n_jobs=1),
    "lightgbm": lambda: LightGBMModel(learning_rate=0.3, num_leaves=15, n_jobs=1),
    "catboost": lambda: CatBoostModel(learning_rate=0.3, depth=4, n_jobs=1),
}
CHANCE = 0.40  # 3 balanced classes, ~1000 rows per split: chance macro-F1 is ~0.33 +- 0.02


def splits(root, shift: int | None):
    frames = make_frames(n_symbols=4, rows=(600, 260, 260), n_features=4, horizons=(5,), seed=11)
    if shift is not None:
        for df in frames.values():
            label = df.groupby("symbol")["label_h5"].shift(shift)
            df["leak"] = label.fillna(0.0).astype("float32")
    return write_frames(root, frames)


def scores(name: str, root, seq_len: int = 1) -> list[float]:
    dm = WindowDataModule(root=str(root), horizon=5, seq_len=seq_len)
    trainer = TreeTrainer(
        max_epochs=3,
        rounds_per_epoch=10,
        enable_progress_bar=False,
        enable_checkpointing=False,
        default_root_dir=root.parent / "run",
    )
    model = MODELS[name]()
    trainer.fit(model, dm)
    val, test = (
        model.score(*_probs(model, dm, "val"), "val"),
        model.score(*_probs(model, dm, "test"), "test"),
    )
    return [val["val/f1_macro"], test["test/f1_macro"]]


def _probs(model, dm, split):
    data = model.split(dm.panel(split), dm.ends[split])
    return model.predict_proba(data.X), data


@pytest.mark.parametrize("name", MODELS)
def test_no_signal_stays_at_chance(name, tmp_path):
    assert max(scores(name, splits(tmp_path / "splits", shift=None))) < CHANCE


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("seq_len", [1, 3])
def test_label_planted_in_the_next_row_gives_nothing(name, seq_len, tmp_path):
    assert max(scores(name, splits(tmp_path / "splits", shift=1), seq_len)) < CHANCE


@pytest.mark.parametrize("name", MODELS)
def test_label_planted_in_the_same_row_is_found(name, tmp_path):
    """The control: the test above has teeth, since a leak in reach is learned at once."""
    assert min(scores(name, splits(tmp_path / "splits", shift=0))) > 0.95
