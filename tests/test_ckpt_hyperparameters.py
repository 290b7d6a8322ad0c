"""``--ckpt_path best|last`` picks the newest run whose model hyper-parameters match the config (not only model,
horizon, seq_len and features); when none does, one line lists every run with its horizon, seq_len, features
and the hyper-parameters that differ, and says how to choose one."""

import json
from pathlib import Path

from test_bad_input_catalogue import _cli_error

from ensemble.cli import main


def test_best_skips_a_newer_run_of_another_architecture(tmp_path, fit_args, capsys):
    assert main(["fit", *fit_args(epochs=1), "--model.init_args.net.init_args.hidden_size", "8"]) == 0
    assert main(["fit", *fit_args(epochs=1), "--model.init_args.net.init_args.hidden_size", "12"]) == 0
    capsys.readouterr()
    # the newest run (version_1) has hidden_size 12; a config of 8 evaluates version_0's checkpoint
    assert main(["test", *fit_args(), "--model.init_args.net.init_args.hidden_size", "8", "--ckpt_path", "best"]) == 0
    runs = tmp_path / "runs" / "lstm_h5"
    assert list((runs / "version_0" / "eval").iterdir()) and not (runs / "version_1" / "eval").exists()
    # the optimizer is how a model was trained, not which model it is: another lr still finds the run
    assert main(["test", *fit_args(), "--model.init_args.net.init_args.hidden_size", "12",
                 "--model.init_args.optimizer.init_args.lr", "0.05", "--ckpt_path", "best"]) == 0  # fmt: skip
    assert (runs / "version_1" / "eval").exists()


def test_no_matching_architecture_lists_the_runs(tmp_path, fit_args, capsys):
    assert main(["fit", *fit_args(epochs=1), "--model.init_args.net.init_args.hidden_size", "8"]) == 0
    capsys.readouterr()
    line = _cli_error(capsys, ["test", *fit_args(), "--model.init_args.net.init_args.hidden_size", "16",
                               "--ckpt_path", "best"])  # fmt: skip
    for fragment in ("no run under", "lstm_h5/version_0 (lstm, horizon 5, seq_len 5, 4 features f0, f1, f2, f3",
                     "net.hidden_size 8 (this config: 16)", "--ckpt_path <its checkpoint file>"):
        assert fragment in line, line


def test_no_matching_horizon_lists_runs_with_their_features(tmp_path, fit_args, capsys):
    assert main(["fit", *fit_args("configs/lightgbm.yaml", epochs=1)]) == 0
    capsys.readouterr()
    line = _cli_error(capsys, ["test", *fit_args("configs/lightgbm.yaml"), "--data.horizon", "20",
                               "--tracking.name", "lightgbm_h5", "--ckpt_path", "last"])  # fmt: skip
    assert "lightgbm_h5/version_0 (lightgbm, horizon 5, seq_len 5, 4 features f0, f1, f2, f3)" in line, line
    assert json.loads((tmp_path / "runs" / "lightgbm_h5" / "version_0" / "metrics.json").read_text())
    assert not (Path(tmp_path) / "runs" / "lightgbm_h5" / "version_0" / "eval").exists()
