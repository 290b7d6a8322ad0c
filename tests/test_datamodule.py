"""WindowDataModule: lazy schema, batch contents, device placement, summary."""

import lightning.pytorch as pl
import pytest
import torch

from ensemble.data import WindowDataModule


def test_schema_is_known_right_after_init(splits):
    dm = WindowDataModule(root=str(splits), horizon=20)
    assert dm.num_features == 4 and dm.feature_names == ["f0", "f1", "f2", "f3"]
    assert dm.num_classes == 3 and dm.horizon == 20
    assert not dm.panels  # nothing loaded yet


def test_unknown_horizon_names_the_column(splits):
    with pytest.raises(ValueError, match="label_h7"):
        _ = WindowDataModule(root=str(splits), horizon=7).num_features


def test_batch_contents(splits):
    dm = WindowDataModule(root=str(splits), seq_len=4, batch_size=8, horizon=5)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (8, 4, 4) and batch["x"].dtype == torch.float32
    assert set(batch) == {"x", "y", "fwd_return", "weight", "symbol", "time", "row"}
    assert batch["y"].dtype == torch.int64 and set(batch["y"].tolist()) <= {0, 1, 2}
    p = dm.panel("train")
    assert torch.equal(batch["x"][:, -1], p.features[batch["row"]])
    assert torch.equal(batch["time"], p.time[batch["row"]])
    assert torch.isfinite(batch["fwd_return"]).all()  # labelled rows carry a realised return
    assert len(dm.val_dataloader()) == -(-len(dm.ends["val"]) // 8)


def test_missing_label_rows_are_context_not_targets(splits):
    dm = WindowDataModule(root=str(splits), seq_len=3, horizon=20)
    dm.setup("fit")
    p = dm.panel("train")
    unlabelled = set(torch.nonzero(p.label < 0).squeeze(1).tolist())
    assert unlabelled and not unlabelled & set(dm.ends["train"].tolist())


def test_labels_map_to_class_ids(splits):
    import pandas as pd

    dm = WindowDataModule(root=str(splits), horizon=5)
    dm.setup("fit")
    p = dm.panel("train")
    df = pd.read_parquet(splits / "train_scaled.parquet").sort_values(["symbol", "datetime"], kind="stable")
    raw = df["label_h5"].fillna(-2).to_numpy() + 1  # -1/0/1 -> 0/1/2, missing -> -1
    assert p.label.tolist() == raw.astype(int).tolist()


def test_data_on_device_gathers_on_the_trainer_device(splits):
    dm = WindowDataModule(root=str(splits), seq_len=2, data_on_device=True)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    dm.trainer = trainer
    dm.setup("fit")
    assert dm.panel("train").features.device == trainer.strategy.root_device
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].device == trainer.strategy.root_device


def test_describe_summarises_every_split(splits):
    dm = WindowDataModule(root=str(splits), seq_len=5)
    text = dm.describe() if dm.setup("fit") is None and dm.setup("test") is None else ""
    for split in ("train", "val", "test"):
        assert split in text
    assert "features=4" in text
