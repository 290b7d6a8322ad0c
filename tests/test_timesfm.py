"""TimesFM backbone: shapes, frozen vs fine-tuned training, checkpoints, clear errors, the CLI and an
experiment cell; all on a tiny random TimesFM 3 saved like the published weights (no network)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timesfm3.torch  # noqa: F401  (a declared dev dependency: a failed install must fail here, not skip ~20 tests)
import torch
from roundtrip import assert_predicts_as_written
from timesfm_tiny import NET, write_tiny_timesfm

from ensemble.cli import main
from ensemble.models import Classifier
from ensemble.models.backbones.timesfm import ContextFeatureError, TimesFMNet
from ensemble.models.backbones.timesfm_weights import (
    TimesFMCheckpointError,
    TimesFMWeightsNotFoundError,
    load_timesfm,
)

NAMES = ["f0", "f1", "f2", "f3"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_timesfm(tmp_path_factory.mktemp("timesfm") / "tiny")


def make_net(checkpoint: Path, **kwargs) -> TimesFMNet:
    torch.manual_seed(0)
    args = {"context_features": ["f1", "f3"], "feature_names": NAMES, "hidden_size": 8, **kwargs}
    return TimesFMNet(len(NAMES), 3, 5, checkpoint=str(checkpoint), **args)


def test_import_ensemble_models_leaves_timesfm_unimported():
    code = "import sys, ensemble.models; print([m for m in ('timesfm', 'timesfm3') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_without_the_package_the_error_says_what_to_install(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "timesfm3.torch", None)  # as if timesfm were not installed
    with pytest.raises(ImportError, match=r"TimesFM needs `pip install ensemble\[timesfm\]`"):
        make_net(tiny)


def test_loads_a_local_directory_without_touching_the_network(tiny, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("TimesFM tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    model = load_timesfm(tiny)
    assert model.input_patch_len == 4 and model.transformer_config.num_layers == 2


@pytest.mark.parametrize(
    ("use", "include_features", "seq_len"),
    [("embedding", True, 5), ("embedding", False, 8), ("forecast", True, 3), ("forecast", False, 1)],
)
def test_shapes_and_finite_logits(tiny, use, include_features, seq_len):
    net = TimesFMNet(4, 3, seq_len, checkpoint=str(tiny), context_features=["f2", "f0"], feature_names=NAMES,
                     use=use, forecast_len=6, include_features=include_features, hidden_size=8)
    rep = net.representation(torch.randn(6, seq_len, 4))
    assert rep.shape == (6, 2 * (16 if use == "embedding" else 6))  # V * model_dims or V * forecast_len
    logits = net(torch.randn(6, seq_len, 4))
    assert logits.shape == (6, 3) and torch.isfinite(logits).all()


def test_only_the_context_features_reach_timesfm(tiny):
    net = make_net(tiny, include_features=False).eval()
    x = torch.randn(3, 5, 4)
    other = x.clone()
    other[:, :, [0, 2]] = torch.randn(3, 5, 2)  # change the columns that are not context features
    torch.testing.assert_close(net(x), net(other), rtol=0, atol=0)
    other[:, 0, 1] += 1.0  # the oldest bar of a context feature does count
    assert not torch.equal(net(x), net(other))


def _train_steps(net: TimesFMNet, steps: int = 3) -> None:
    model = Classifier(net, horizon=5).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    x, y = torch.randn(16, 5, 4), torch.arange(16) % 3
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def test_frozen_timesfm_stays_bitwise_unchanged_while_the_head_learns(tiny):
    net = make_net(tiny)
    before = {k: v.clone() for k, v in net.timesfm.state_dict().items()}
    head_before = [p.clone() for p in net.head.parameters()]
    _train_steps(net)
    assert not net.timesfm.training and net.training  # Classifier.train() leaves the frozen model in eval
    assert all(p.grad is None and not p.requires_grad for p in net.timesfm.parameters())
    assert all(torch.equal(v, before[k]) for k, v in net.timesfm.state_dict().items())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.head.parameters())
    assert all(not torch.equal(p, b) for p, b in zip(net.head.parameters(), head_before, strict=True))


def test_fine_tuning_sends_gradients_into_timesfm(tiny):
    net = make_net(tiny, freeze=False)
    before = {k: v.clone() for k, v in net.timesfm.state_dict().items()}
    _train_steps(net, steps=1)
    assert net.timesfm.training
    grads = {n: p.grad for n, p in net.timesfm.named_parameters()}
    assert grads["pre_transformer_resblock.hidden_layer.weight"].abs().sum() > 0
    assert grads["transformer_stack.layers.1.ff1.weight"].abs().sum() > 0
    assert not torch.equal(net.timesfm.state_dict()["transformer_stack.layers.0.ff0.weight"],
                           before["transformer_stack.layers.0.ff0.weight"])


# -- clear errors ------------------------------------------------------------------------------


def test_context_the_checkpoint_cannot_take_is_refused(tiny):
    with pytest.raises(TimesFMCheckpointError, match=r"forecast_len must be in \[1, 16\]"):
        make_net(tiny, use="forecast", forecast_len=17)
    with pytest.raises(ContextFeatureError, match="at most 32 context_features"):
        make_net(tiny, context_features=["f0"] * 33)


def _cli_error(capsys, args: list[str]) -> str:
    capsys.readouterr()
    assert main(["fit", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("ensemble: error: ")
    return err[-1]


def test_missing_checkpoint_dir_is_one_line_that_says_how_to_get_the_weights(fit_args, tmp_path, capsys):
    missing = tmp_path / "nowhere" / "timesfm-3.0-pytorch"
    line = _cli_error(capsys, fit_args("configs/timesfm.yaml", **{f"{NET}checkpoint": str(missing)}))
    assert f"TimesFM checkpoint directory {missing} not found" in line
    assert "hf download google/timesfm-3.0-pytorch" in line and "config.json and model.safetensors" in line


def test_unknown_context_feature_is_named(fit_args, tiny, capsys):
    args = fit_args("configs/timesfm.yaml", **{f"{NET}checkpoint": str(tiny), f"{NET}context_features": "[f1, ret_x]"})
    line = _cli_error(capsys, args)
    assert "context feature 'ret_x' is not a feature column of the data" in line
    with pytest.raises(ContextFeatureError, match="'nope'"):
        Classifier(make_net(tiny, context_features=["nope"], feature_names=None), feature_names=NAMES)


def _mixed_checkpoint(tmp_path: Path, weights_from: Path, config_from: Path) -> Path:
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "config.json").write_text((config_from / "config.json").read_text())
    (mixed / "model.safetensors").write_bytes((weights_from / "model.safetensors").read_bytes())
    return mixed


def test_mismatched_checkpoint_names_the_directory_and_the_first_key(tiny, tmp_path):
    wide = write_tiny_timesfm(tmp_path / "wide", model_dims=32)
    mixed = _mixed_checkpoint(tmp_path, weights_from=wide, config_from=tiny)
    with pytest.raises(TimesFMCheckpointError) as err:
        load_timesfm(mixed)
    assert str(mixed) in str(err.value)
    assert "key 'pre_transformer_resblock.hidden_layer.weight' has shape (32, 40)" in str(err.value)

    (mixed / "model.safetensors").write_bytes((tiny / "model.safetensors").read_bytes())
    config = json.loads((tiny / "config.json").read_text())
    config["transformer_config"]["num_layers"] = 3  # the weights hold 2 layers
    (mixed / "config.json").write_text(json.dumps(config))
    with pytest.raises(TimesFMCheckpointError, match=r"key 'transformer_stack\.layers\.2\..*' is missing"):
        load_timesfm(mixed)
    config["transformer_config"]["transformer"]["no_such_option"] = 1
    (mixed / "config.json").write_text(json.dumps(config))
    with pytest.raises(TimesFMCheckpointError, match=r"config\.json does not build a model: .*no_such_option"):
        load_timesfm(mixed)
    (mixed / "model.safetensors").unlink()
    with pytest.raises(TimesFMWeightsNotFoundError, match=r"lacks model\.safetensors"):
        load_timesfm(mixed)


# -- through the CLI: fit, artifacts, checkpoint round trip, an experiment cell ----------------


@pytest.fixture(scope="module", params=[True, False], ids=["frozen", "fine-tuned"])
def cli_run(request, tmp_path_factory, tiny):
    from panels import write_splits

    root = tmp_path_factory.mktemp(f"fit-{request.param}")
    data = write_splits(root / "splits")
    argv = ["fit", "--config", "configs/timesfm.yaml", "--data.root", str(data), "--data.seq_len", "5",
            "--data.batch_size", "64", "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--tracking.save_dir", str(root / "runs"), f"--{NET}checkpoint", str(tiny),
            f"--{NET}context_features", "[f0, f2]", f"--{NET}hidden_size", "8", f"--{NET}freeze", str(request.param)]
    assert main(argv) == 0
    (run_dir,) = (root / "runs" / "timesfm_h5").iterdir()
    return request.param, data, run_dir


def test_fit_through_the_cli_writes_metrics(cli_run):
    _, _, run_dir = cli_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"val/f1_macro", "test/f1_macro", "test/sharpe"} <= metrics.keys()
    assert (run_dir / "predictions" / "test.parquet").is_file()


def test_checkpoint_round_trip_predicts_what_the_run_wrote(cli_run, tiny):
    frozen, data, run_dir = cli_run
    (best,) = (run_dir / "checkpoints").glob("best-*.ckpt")
    model = Classifier.load_from_checkpoint(best, map_location="cpu").eval()
    assert isinstance(model.net, TimesFMNet) and model.net.freeze is frozen
    published = load_timesfm(tiny).state_dict()
    same = all(torch.equal(v, published[k]) for k, v in model.net.timesfm.state_dict().items())
    assert same is frozen  # fine-tuned weights come back from the Lightning checkpoint, not the directory

    assert_predicts_as_written(model, data, 5, run_dir)


def test_frozen_weights_stay_out_of_the_run_checkpoint(cli_run):
    frozen, _, run_dir = cli_run
    (best,) = (run_dir / "checkpoints").glob("best-*.ckpt")
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    has_timesfm = any(k.startswith("net.timesfm.") for k in state)
    assert has_timesfm is not frozen  # frozen: the directory's weights, named by their fingerprint only
    assert "net.weights_fingerprint" in state and any(k.startswith("net.head.") for k in state)


def test_reloading_a_frozen_net_on_other_weights_is_refused(tiny, tmp_path):
    trained = make_net(tiny).state_dict()
    other = write_tiny_timesfm(tmp_path / "other", seed=1)  # same architecture, other weights
    with pytest.raises(TimesFMCheckpointError, match=f"TimesFM weights in {other} differ"):
        make_net(other).load_state_dict(trained)
    fresh = make_net(tiny)
    fresh.load_state_dict(trained)  # the same weights: accepted, head restored
    assert all(torch.equal(v, trained[k]) for k, v in fresh.state_dict().items())


def test_experiment_with_a_timesfm_cell(splits, tiny, tmp_path):
    out = tmp_path / "exp"
    cell_args = f'{{timesfm: [--{NET}checkpoint, "{tiny}", --{NET}context_features, "[f0]"]}}'
    argv = ["experiment", "--name", "tiny", "--models", "[timesfm]", "--horizons", "[5]", "--data_root", str(splits),
            "--configs_dir", str(Path(__file__).parents[1] / "configs"), "--out", str(out), "--blends", "[]",
            "--fit_args", '[--trainer.max_epochs, "1", --data.seq_len, "5", --data.batch_size, "64"]',
            "--model_args", cell_args]
    assert main(argv) == 0
    board = pd.read_csv(out / "leaderboard.csv")
    (cell,) = board[board.kind == "member"].itertuples()  # beside the uniform and class_prior baselines
    assert cell.model == "timesfm" and cell.status == "done" and not np.isnan(cell.test_f1_macro)
