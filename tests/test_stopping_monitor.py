"""One monitor: an EarlyStopping callback watching another metric (or mode) than the checkpoint is refused in one
line before anything is built or any run folder claimed, for nets and trees; the same metric trains."""

import pytest
from test_bad_input_catalogue import _cli_error

from ensemble.cli import main

F1_STOP = "[{class_path: %s, init_args: {monitor: val/f1_macro, mode: max, patience: 2}}]"
NET_STOP, TREE_STOP = "lightning.pytorch.callbacks.EarlyStopping", "ensemble.training.trees.EarlyStopping"


@pytest.mark.parametrize(("config", "stop"), [("configs/lstm.yaml", NET_STOP), ("configs/lightgbm.yaml", TREE_STOP)])
def test_early_stopping_on_another_metric_than_the_checkpoint_is_refused(tmp_path, fit_args, capsys, config, stop):
    line = _cli_error(capsys, ["fit", *fit_args(config), "--trainer.callbacks", F1_STOP % stop])
    assert ("EarlyStopping watches val/f1_macro (mode max) but the checkpoint keeps the best val/log_loss "
            "(mode min)") in line and "--checkpoint.monitor val/f1_macro --checkpoint.mode max" in line, line
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("version_*"))
    # the bundled configs' stopping on val/log_loss, with the checkpoint moved to F1: refused the same way
    line = _cli_error(capsys, ["fit", *fit_args(config), "--checkpoint.monitor", "val/f1_macro",
                               "--checkpoint.mode", "max"])  # fmt: skip
    assert "EarlyStopping watches val/log_loss (mode min) but the checkpoint keeps the best val/f1_macro" in line


@pytest.mark.parametrize(("config", "stop"), [("configs/lstm.yaml", NET_STOP), ("configs/lightgbm.yaml", TREE_STOP)])
def test_one_monitor_for_both_trains(tmp_path, fit_args, capsys, config, stop):
    args = [*fit_args(config, epochs=1), "--trainer.callbacks", F1_STOP % stop, "--checkpoint.monitor",
            "val/f1_macro", "--checkpoint.mode", "max"]  # fmt: skip
    assert main(["fit", *args]) == 0
