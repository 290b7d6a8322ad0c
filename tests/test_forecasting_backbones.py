"""TFT, N-HiTS and PatchTST backbones: shapes, gradients, checkpoints, learning, the vectorised
variable selection against pytorch-forecasting's, the feature-importance artifacts, lazy imports."""

from __future__ import annotations

import math
import subprocess
import sys

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch
from panels import make_frames, write_frames, write_splits
from roundtrip import assert_predicts_as_written

from ensemble.cli import main
from ensemble.data import WindowDataModule
from ensemble.models import Classifier
from ensemble.models.backbones import NHiTSNet, PatchTSTNet, TFTNet
from ensemble.models.backbones.tft_blocks import (
    LibraryVariableSelection,
    VectorisedVariableSelection,
    copy_library_weights,
)

BACKBONES = {"tft": TFTNet, "nhits": NHiTSNet, "patchtst": PatchTSTNet}
SMALL = {
    "tft": {"hidden_size": 8, "hidden_continuous_size": 4, "attention_heads": 2},
    "nhits": {"embed_size": 4, "mlp_units": 16},
    "patchtst": {"patch_len": 4, "stride": 2, "hidden_size": 8, "n_heads": 2, "linear_hidden_size": 16},
}


def small_net(name: str, num_features: int, seq_len: int, **overrides) -> torch.nn.Module:
    return BACKBONES[name](num_features, 3, seq_len, **{**SMALL[name], **overrides})


def test_import_ensemble_models_leaves_the_forecasting_libraries_unimported():
    code = (
        "import sys, ensemble.models; "
        "print([m for m in ('neuralforecast', 'pytorch_forecasting', 'ray', 'pytorch_lightning') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize(("batch", "seq_len", "features"), [(4, 12, 5), (2, 1, 3), (3, 7, 1), (5, 20, 9)])
def test_shapes_finite_and_gradient_to_every_parameter(name, batch, seq_len, features):
    torch.manual_seed(0)
    net = small_net(name, features, seq_len)
    logits = net(torch.randn(batch, seq_len, features))  # (B, L, F) -> (B, 3)
    assert logits.shape == (batch, 3) and torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.arange(batch) % 3).backward()
    trainable = [(n, p) for n, p in net.named_parameters() if p.requires_grad]  # PatchTST freezes its scale
    missing = [n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no finite gradient for {missing}"
    # every block learns: some gradient reaches each top-level group
    # (F = 1 has no selection to learn; a one-patch window gives attention a single key)
    for group, module in net.named_children():
        grads = [p.grad.abs().sum() for p in module.parameters() if p.requires_grad]
        if grads and not (features == 1 and group == "variable_selection"):
            assert sum(grads) > 0, f"{name}.{group} gets no gradient"


def test_tft_exposes_per_sample_variable_weights():
    net = small_net("tft", 6, 10).eval()
    net(torch.randn(4, 10, 6))
    w = net.variable_weights
    assert w.shape == (4, 6) and not w.requires_grad
    torch.testing.assert_close(w.sum(dim=1), torch.ones(4))


# -- the vectorised variable selection is the library's, faster --------------------------------


@pytest.mark.parametrize(("features", "input_size", "hidden"), [(7, 4, 16), (5, 8, 8), (1, 4, 8), (12, 3, 10)])
def test_vectorised_variable_selection_matches_the_library_with_the_same_weights(features, input_size, hidden):
    torch.manual_seed(0)
    lib = LibraryVariableSelection(features, input_size, hidden, dropout=0.1).eval()
    with torch.no_grad():  # move norms, gates and biases off their zero/one init so every path counts
        for p in lib.parameters():
            p.add_(0.2 * torch.randn_like(p))
    ours = VectorisedVariableSelection(features, input_size, hidden, dropout=0.1).eval()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in lib.parameters())
    copy_library_weights(ours, lib)

    x = torch.randn(6, 9, features, requires_grad=True)
    out_lib, w_lib = lib(x)
    (grad_lib,) = torch.autograd.grad(out_lib.square().sum(), x)
    out, w = ours(x)
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    assert out.shape == (6, 9, hidden) and w.shape == (6, 9, features)
    torch.testing.assert_close(out, out_lib, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, w_lib, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad, grad_lib, atol=1e-4, rtol=1e-4)
    ours.chunk_rows = 5  # CPU chunking of the rows changes nothing
    torch.testing.assert_close(ours(x)[0], out, atol=1e-6, rtol=1e-6)


def test_tft_runs_with_the_library_variable_selection_too():
    net = small_net("tft", 4, 6, variable_selection="library")
    assert net(torch.randn(2, 6, 4)).shape == (2, 3)
    with pytest.raises(ValueError, match="variable_selection must be one of"):
        small_net("tft", 4, 6, variable_selection="loop")


# -- through the CLI: checkpoint round trip and artifacts ------------------------------------


CLI_SMALL = {
    name: [a for k, v in args.items() for a in (f"--model.init_args.net.init_args.{k}", str(v))]
    for name, args in SMALL.items()
}


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("forecasting")
    data = write_splits(root / "splits", n_symbols=3, rows=(200, 80, 80), n_features=6)
    runs = {}
    for name in BACKBONES:
        argv = [
            "fit",
            "--config",
            f"configs/{name}.yaml",
            "--data.root",
            str(data),
            "--trainer.max_epochs",
            "1",
            "--tracking.save_dir",
            str(root / "runs"),
            "--data.seq_len",
            "8",
            "--data.batch_size",
            "32",
            "--data.eval_batch_size",
            "64",
            "--trainer.limit_train_batches",
            "4",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.enable_model_summary",
            "false",
            *CLI_SMALL[name],
        ]
        assert main(argv) == 0
        (run_dir,) = (root / "runs" / f"{name}_h5").iterdir()
        runs[name] = run_dir
    return data, runs


@pytest.mark.parametrize("name", BACKBONES)
def test_checkpoint_round_trip_gives_the_written_predictions(cli_runs, name):
    data, runs = cli_runs
    (best,) = (runs[name] / "checkpoints").glob("best-*.ckpt")
    model = Classifier.load_from_checkpoint(best, map_location="cpu").eval()
    assert isinstance(model.net, BACKBONES[name])

    assert_predicts_as_written(model, data, 8, runs[name])


def test_feature_importance_is_written_for_tft_runs_only(cli_runs):
    _, runs = cli_runs
    plots = runs["tft"] / "plots"
    table = pd.read_csv(plots / "feature_importance.csv", index_col="feature")
    assert sorted(table.index) == [f"f{i}" for i in range(6)]
    assert list(table.columns) == ["val", "test"]  # validate, then test, after fit
    np.testing.assert_allclose(table.sum(), 1.0, atol=1e-5)  # mean of per-sample softmax weights
    assert (table["test"].diff().dropna() <= 0).all()  # sorted, most important first
    assert (plots / "feature_importance.png").stat().st_size > 0
    for other in ("nhits", "patchtst"):
        assert not (runs[other] / "plots" / "feature_importance.csv").exists()


# -- learning: a clean signal beats the majority class, no signal stays at chance ------------


LEARNING = {"tft": {"hidden_continuous_size": 8, "dropout": 0.0}, "nhits": {}, "patchtst": {"dropout": 0.0}}


def _lagged_signal_splits(root, signal: bool):
    """Label h5 = tercile of feature f0 two bars earlier (needs the window); or kept random."""
    frames = make_frames(n_symbols=3, rows=(400, 150, 150), n_features=4, seed=1)
    if signal:
        for df in frames.values():
            lagged = df.groupby("symbol")["f0"].shift(2).fillna(0.0)
            label = np.digitize(lagged, [-0.43, 0.43]) - 1.0  # normal terciles
            df["label_h5"] = np.where(df["label_h5"].isna(), np.nan, label)
    return write_frames(root, frames)


def _val_accuracy(name: str, root, epochs: int) -> tuple[float, float, int]:
    pl.seed_everything(0, verbose=False)
    dm = WindowDataModule(root=str(root), horizon=5, seq_len=6, batch_size=32)
    net = small_net(name, dm.num_features, 6, **LEARNING[name])
    model = Classifier(net, horizon=5, feature_names=dm.feature_names, optimizer=lambda p: torch.optim.Adam(p, lr=1e-2))
    trainer = pl.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(model, datamodule=dm)
    (result,) = trainer.validate(model, datamodule=dm, verbose=False)
    labels = dm.panel("val").label[dm.ends["val"]]
    majority = torch.bincount(labels, minlength=3).max().item() / len(labels)
    return result["val/accuracy"], majority, len(labels)


@pytest.mark.parametrize("name", BACKBONES)
def test_learns_a_clean_signal_and_stays_at_chance_without_one(tmp_path, name):
    acc, majority, _ = _val_accuracy(name, _lagged_signal_splits(tmp_path / "signal", True), epochs=8)
    assert acc > majority + 0.25, f"{name}: accuracy {acc:.3f} vs majority class {majority:.3f}"

    acc, majority, n = _val_accuracy(name, _lagged_signal_splits(tmp_path / "noise", False), epochs=3)
    chance = max(majority, 1 / 3)
    assert acc < chance + 3.5 * math.sqrt(chance * (1 - chance) / n), f"{name}: {acc:.3f} on random labels"
