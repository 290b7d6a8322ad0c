"""Every split (test included) is checked at load, before epoch 1: a bad value in test is one line naming file,
column, symbol and row, and the failed start leaves no run folder that ``--ckpt_path best|last`` could pick."""

import numpy as np
import pytest
from panels import make_frames, write_frames
from test_bad_input_catalogue import _cli_error


@pytest.mark.parametrize(
    ("column", "value", "config", "said"),
    [("f2", np.nan, "configs/lstm.yaml", "null in feature column 'f2'"),
     ("f2", np.inf, "configs/lstm.yaml", "non-finite value inf"),
     ("f2", 1e300, "configs/lstm.yaml", "does not fit float32"),
     ("f2", 1e300, "configs/lightgbm.yaml", "does not fit float32"),
     ("fwd_return_h5", -np.inf, "configs/lstm.yaml", "non-finite value -inf"),
     ("sample_weight_h5", np.nan, "configs/lightgbm.yaml", "sample_weight_h5")],
)  # fmt: skip
def test_bad_test_value_fails_before_training(tmp_path, fit_args, capsys, column, value, config, said):
    frames = make_frames()
    test = frames["test"]
    test[column] = test[column].astype("float64")
    test.loc[4, column] = value  # row 4 is labelled (the last 5 bars of a symbol are not)
    symbol = test.loc[4, "symbol"]
    root = write_frames(tmp_path / "bad_test", frames)
    args = fit_args(config=config, epochs=50)  # a run that trained first would take far longer than the check
    line = _cli_error(capsys, ["fit", *args, "--data.root", str(root)])
    for fragment in ("test_scaled.parquet", said, "row 4", f"symbol '{symbol}'"):
        assert fragment in line, line
    runs = tmp_path / "runs"
    assert not list(runs.rglob("*")) if runs.exists() else True  # no half run, nor its emptied <name>_h5 folder
    line = _cli_error(capsys, ["test", *fit_args(config=config), "--ckpt_path", "last"])
    assert "no run" in line and "train one first" in line, line


def test_a_refused_start_removes_the_folders_its_claim_made(tmp_path, fit_args, capsys):
    """A new tracking.save_dir and a nested tracking.name: every folder the refused fit created goes with it, and a
    folder that was there before stays."""
    frames = make_frames()
    frames["test"].loc[4, "f2"] = np.nan
    root = write_frames(tmp_path / "bad_test", frames)
    kept = tmp_path / "kept"
    kept.mkdir()
    args = [*fit_args(config="configs/lightgbm.yaml"), "--data.root", str(root),
            "--tracking.save_dir", str(kept / "new_logs"), "--tracking.name", "grp/sub/run1"]  # fmt: skip
    assert "null in feature column 'f2'" in _cli_error(capsys, ["fit", *args])
    assert kept.is_dir() and not list(kept.iterdir())
