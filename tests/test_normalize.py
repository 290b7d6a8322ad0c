"""Normalisation fitted on the training windows' rows only (``--data.normalize``), stored and reapplied."""

import re

import numpy as np
import pandas as pd
import pytest
import torch
from panels import SPLIT_FILES, make_frames, write_frames
from sklearn.preprocessing import RobustScaler, StandardScaler

from ensemble.data.contract import DataContractError
from ensemble.data.normalize import POOLED, Normalizer, window_rows
from ensemble.data.panel import SplitPanel
from ensemble.data.split_data import SplitData

FEATURES = ["f0", "f1", "f2", "f3"]


def _panel(values, symbols=(0, 0, 0, 0)) -> SplitPanel:
    x = torch.tensor(values, dtype=torch.float32).reshape(len(symbols), -1)
    n = len(symbols)
    return SplitPanel(path="hand", features=x, label=torch.zeros(n, dtype=torch.int64),
                      fwd_return=torch.zeros(n), weight=torch.ones(n), symbol=torch.tensor(symbols),
                      time=torch.arange(n), symbols=["A", "B"], is_context=torch.zeros(n, dtype=torch.bool))


def test_zscore_and_robust_by_hand():
    # column [1, 2, 3, 10]: mean 4, population std sqrt(((-3)^2 + (-2)^2 + (-1)^2 + 6^2) / 4) = sqrt(12.5)
    # median 2.5, q25 1.75, q75 4.75 (linear interpolation): IQR 3, scale 3 / 1.3489795
    panel = _panel([1.0, 2.0, 3.0, 10.0])
    z = Normalizer.fit(panel, torch.arange(4), "zscore", ["f"])
    assert z.center[POOLED] == [4.0] and z.scale[POOLED] == pytest.approx([np.sqrt(12.5)], rel=1e-15)
    r = Normalizer.fit(panel, torch.arange(4), "robust", ["f"])
    assert r.center[POOLED] == [2.5] and r.scale[POOLED] == pytest.approx([3 / 1.3489795003921634], rel=1e-15)
    only_first = Normalizer.fit(panel, torch.tensor([0, 1]), "zscore", ["f"])  # rows not chosen never count
    assert only_first.center[POOLED] == [1.5] and only_first.scale[POOLED] == [0.5]
    z.apply(panel, ["f"])
    expected = (np.array([1, 2, 3, 10]) - 4) / np.sqrt(12.5)
    np.testing.assert_allclose(panel.features[:, 0].numpy(), expected, atol=1e-7)


def test_zero_spread_only_centres_and_per_symbol_falls_back_to_pooled():
    panel = _panel([5.0, 5.0, 5.0, 1.0, 3.0, 5.0], symbols=(0, 0, 0, 1, 1, 1))  # 3 rows of A, 3 of B
    norm = Normalizer.fit(panel, torch.arange(3), "zscore", ["f"], per_symbol=True)  # only A's rows train
    assert norm.center == {POOLED: [5.0], "A": [5.0]} and norm.scale == {POOLED: [1.0], "A": [1.0]}
    norm.apply(panel, ["f"])  # B has no training row: the pooled statistics
    assert panel.features[:, 0].tolist() == [0.0, 0.0, 0.0, -4.0, -2.0, 0.0]


def test_matches_scikit_learn_on_the_training_windows_rows(tmp_path):
    root = write_frames(tmp_path, make_frames(n_symbols=3, rows=(60, 30, 30)))
    for method, scaler in (("zscore", StandardScaler()), ("robust", RobustScaler(unit_variance=True))):
        raw = SplitData(root=str(root), seq_len=4)
        raw.setup("fit")
        rows = window_rows(raw.ends["train"], 4)
        expected = scaler.fit_transform(raw.panel("train").features[rows].double().numpy())
        data = SplitData(root=str(root), seq_len=4, normalize=method)
        data.setup("fit")
        got = data.panel("train").features[rows].double().numpy()
        np.testing.assert_allclose(got, expected, atol=2e-6)
        if method == "zscore":  # mean 0 and std 1 on exactly those rows
            np.testing.assert_allclose(got.mean(axis=0), 0, atol=1e-6)
            np.testing.assert_allclose(got.std(axis=0), 1, atol=1e-6)


def _scaled_test(tmp_path, factor: float) -> str:
    frames = make_frames(n_symbols=3, rows=(60, 30, 30))
    frames["test"][FEATURES] = frames["test"][FEATURES] * factor
    return str(write_frames(tmp_path / f"x{factor:g}", frames))


@pytest.mark.parametrize("method", ["zscore", "robust"])
def test_test_split_scaled_by_1e6_leaves_training_rows_bit_identical(tmp_path, method):
    got = []
    for factor in (1.0, 1e6):
        data = SplitData(root=_scaled_test(tmp_path, factor), seq_len=5, normalize=method,
                         normalize_per_symbol=True, context_from_previous_split=True)
        data.setup("fit")
        data.setup("test")  # loaded after the fit: normalised with the train statistics, its context too
        got.append({split: data.panel(split).features.clone() for split in ("train", "val", "test")})
    assert torch.equal(got[0]["train"], got[1]["train"]) and torch.equal(got[0]["val"], got[1]["val"])
    assert not torch.equal(got[0]["test"], got[1]["test"])


def test_one_panel_for_train_val_test_is_normalised_once_and_fits_on_train_ends_only(tmp_path):
    """A walk-forward fold's layout: one panel object, ends per part; the test block's rows never count."""
    results = []
    for factor in (1.0, 1e6):
        data = SplitData(root=str(write_frames(tmp_path / f"f{factor:g}", make_frames(rows=(60, 30, 30)))),
                         seq_len=3, normalize="zscore")
        panel = data.panel("train")  # loaded before any statistics: raw
        raw = panel.features.clone()
        ends = data.ends["train"]
        train_ends, test_ends = ends[ends % 60 < 30], ends[ends % 60 >= 40]  # per symbol: rows 0..29 train
        panel.features[test_ends] *= factor
        data.panels = {"train": panel, "val": panel, "test": panel}
        data.ends = {"train": train_ends, "val": ends[(ends % 60 >= 30) & (ends % 60 < 40)], "test": test_ends}
        data.normalize_panels()
        rows = window_rows(train_ends, 3)
        center, scale = raw[rows].double().mean(0), raw[rows].double().std(0, unbiased=False)
        once = (raw - center.float()) / scale.float()
        assert torch.allclose(panel.features[rows], once[rows], atol=1e-6)  # applied exactly once
        results.append(panel.features[rows].clone())
    assert torch.equal(results[0], results[1])


def test_folds_sharing_one_span_tensor_each_fit_their_own_statistics(tmp_path):
    """Walk-forward folds are shallow copies of one span panel (``dataclasses.replace``) sharing its feature
    tensor: normalising one fold must neither touch the span nor the next fold's rows."""
    from dataclasses import replace

    root = write_frames(tmp_path / "s", make_frames(rows=(60, 30, 30)))
    span = SplitData(root=str(root), seq_len=1).load_span(("train", "val"))
    raw = span.features.clone()
    ends = torch.arange(len(span))
    fitted = []
    for train_rows in (ends[:40], ends[:70]):  # two folds: an early and a later training window
        fold = SplitData(root=str(root), seq_len=1, normalize="zscore")
        fold.use_windows(replace(span), {"train": train_rows, "val": ends[-10:], "test": ends[-5:]})
        fold.setup("fit")
        x = fold.panels["train"].features
        assert torch.allclose(x[train_rows].double().mean(0), torch.zeros(x.shape[1], dtype=torch.float64),
                              atol=1e-5)  # fmt: skip
        fitted.append(fold.normalizer.state_dict())
        assert torch.equal(span.features, raw)  # the shared span stays raw for the next fold
    assert fitted[0] != fitted[1]


def test_bad_method_is_one_line_naming_the_key(tmp_path, splits, capsys):
    from ensemble.cli import main

    assert main(["fit", "--config", "configs/lightgbm.yaml", "--data.root", str(splits),
                 "--data.normalize", "foo", "--tracking.save_dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data.normalize" in err[0] and "foo" in err[0]
    message = re.escape("data.normalize must be one of none|zscore|robust, got 'foo'")
    with pytest.raises(DataContractError, match=message):
        SplitData(root=str(splits), normalize="foo")


def _refit_would_differ(splits):
    """Scale the train split's features: statistics refitted on it would differ from the stored ones."""
    path = splits / SPLIT_FILES["train"]
    df = pd.read_parquet(path)
    df[FEATURES] = df[FEATURES] * 1e3 + 7
    df.to_parquet(path, index=False)


def _check_export_and_checkpoint(tmp_path, splits, run, argv_eval):
    """``predict --from`` the export reproduces the run's test predictions, and a checkpoint evaluation on a
    train split that would refit differently still gives the run's test metrics (the stored statistics)."""
    import json

    from ensemble.cli import main

    assert main(["export", "--run", str(run), "--out", str(tmp_path / "export")]) == 0
    meta = json.loads((tmp_path / "export" / "metadata.json").read_text())
    assert meta["normalizer"]["method"] != "none" and len(meta["normalizer"]["center"]["*"]) == 4
    out = tmp_path / "pred.parquet"
    assert main(["predict", "--from", str(tmp_path / "export"), "--input", str(splits / "test_scaled.parquet"),
                 "--out", str(out)]) == 0
    ours = pd.read_parquet(run / "predictions" / "test.parquet")
    merged = ours.merge(pd.read_parquet(out), on=["datetime", "symbol"], suffixes=("", "_new"))
    assert len(merged) == len(ours)
    for column in ("prob_short", "prob_flat", "prob_long"):
        assert (merged[column] - merged[f"{column}_new"]).abs().max() < 1e-6
    fitted = json.loads((run / "metrics.json").read_text())
    assert fitted["test/f1_macro"] > 0.5  # a model that uses the features, so other statistics would show
    _refit_would_differ(splits)
    assert main(argv_eval) == 0
    again = json.loads((run / "metrics.json").read_text())
    for key in ("test/log_loss", "test/f1_macro"):
        assert again[key] == pytest.approx(fitted[key], abs=1e-6)


def _learnable_splits(tmp_path):
    """Splits whose f0 tells the label: a fitted model uses the features, so other statistics would show."""
    frames = make_frames(n_symbols=3, rows=(120, 60, 60))
    rng = np.random.default_rng(1)
    for df in frames.values():
        df["f0"] = (df["label_h5"].fillna(0) + rng.normal(0, 0.3, len(df))).astype("float32")
    return write_frames(tmp_path / "learnable", frames)


def test_tree_checkpoint_and_export_carry_the_statistics(tmp_path):
    from ensemble.cli import main

    splits = _learnable_splits(tmp_path)

    common = ["--config", "configs/lightgbm.yaml", "--data.root", str(splits), "--tracking.save_dir",
              str(tmp_path / "runs"), "--trainer.enable_progress_bar", "false",
              "--model.init_args.min_data_in_leaf", "5"]
    assert main(["fit", *common, "--trainer.max_epochs", "2", "--data.normalize", "zscore"]) == 0
    run = tmp_path / "runs" / "lightgbm_h5" / "version_0"
    _check_export_and_checkpoint(tmp_path, splits, run, ["test", *common, "--ckpt_path", "best"])


def test_net_checkpoint_and_export_carry_the_statistics(tmp_path, fit_args):
    from ensemble.cli import main

    splits = _learnable_splits(tmp_path)
    lr = {"model__init_args__optimizer__init_args__lr": 0.01}
    assert main(["fit", *fit_args(epochs=3, data__root=splits, data__normalize="robust",
                                  data__normalize_per_symbol="true", **lr)]) == 0
    run = tmp_path / "runs" / "lstm_h5" / "version_0"
    best = sorted((run / "checkpoints").glob("best*.ckpt"))[0]
    stored = torch.load(best, weights_only=True)["WindowDataModule"]["normalizer"]
    assert stored["method"] == "robust" and set(stored["center"]) == {"*", "S0", "S1", "S2"}
    # evaluating without the flag: the checkpoint's statistics decide, not the command line
    evaluate = ["test", *fit_args(data__root=splits), "--ckpt_path", str(best)]
    _check_export_and_checkpoint(tmp_path, splits, run, evaluate)
