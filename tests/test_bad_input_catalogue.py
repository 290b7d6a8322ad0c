"""The bad-input catalogue through the CLI: one clear line on stderr, exit status 2, no traceback."""

import pandas as pd
import pytest
from panels import SPLIT_FILES, make_frames, write_frames
from test_data_contract import CASES

from ensemble.cli import main


def _cli_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, no traceback
    assert err[0].startswith("ensemble: error: ")
    return err[0]


@pytest.mark.parametrize("case", list(CASES))
def test_data_case(tmp_path, fit_args, capsys, case):
    mutate, fragments = CASES[case]
    frames = make_frames()
    mutate(frames)
    root = write_frames(tmp_path / "bad", frames)
    line = _cli_error(capsys, ["fit", *fit_args(), "--data.root", str(root)])
    for fragment in fragments:
        assert fragment in line, (case, line)


def _frames_with(mutate):
    frames = make_frames()
    mutate(frames)
    return frames


MORE_DATA_CASES = {
    "duplicate rows": (lambda f: f.update(train=pd.concat([f["train"], f["train"].iloc[[4]]])), "duplicate"),
    "out of time order": (lambda f: f.update(val=f["val"].iloc[::-1]), "out of time order"),
    "features differ": (lambda f: f.update(test=f["test"].drop(columns="f2")), "missing ['f2']"),
    "overlap in time": (lambda f: f.update(val=pd.concat([f["train"].tail(3), f["val"]])), "leakage"),
    "empty split": (lambda f: f.update(test=f["test"].iloc[:0]), "empty split"),
    "datetime as text": (lambda f: f.update(train=f["train"].assign(datetime=f["train"]["datetime"].astype(str))),
                         "must be a timestamp"),
}


@pytest.mark.parametrize("case", list(MORE_DATA_CASES))
def test_more_data_cases(tmp_path, fit_args, capsys, case):
    mutate, fragment = MORE_DATA_CASES[case]
    root = write_frames(tmp_path / "bad", _frames_with(mutate))
    assert fragment in _cli_error(capsys, ["fit", *fit_args(), "--data.root", str(root)])


def test_unreadable_parquet(tmp_path, fit_args, capsys, splits):
    (splits / SPLIT_FILES["test"]).write_text("garbage")
    assert "unreadable parquet" in _cli_error(capsys, ["fit", *fit_args()])


def test_missing_data_folder(tmp_path, fit_args, capsys):
    line = _cli_error(capsys, ["fit", *fit_args(), "--data.root", str(tmp_path / "nowhere")])
    assert "file not found" in line and "nowhere" in line


def test_symbol_shorter_than_window(tmp_path, fit_args, capsys):
    line = _cli_error(capsys, ["fit", *fit_args(), "--data.seq_len", "40"])
    assert "fewer than seq_len=40" in line


CONFIG_CASES = {
    "unknown model": (["--model.init_args.net.class_path", "NoSuchNet"], "NoSuchNet"),
    "wrong config key": (["--data.rooot", "x"], "rooot"),
    "wrong value type": (["--data.seq_len", "abc"], "seq_len"),
    "non-positive seq_len": (["--data.seq_len", "0"], "seq_len must be >= 1"),
    "missing checkpoint": (["--ckpt_path", "no/such.ckpt"], "checkpoint not found"),
    "nothing to resume": (["--ckpt_path", "last"], "no run under"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_config_case(fit_args, capsys, case):
    extra, fragment = CONFIG_CASES[case]
    assert fragment in _cli_error(capsys, ["fit", *fit_args(), *extra])


def test_checkpoint_for_another_horizon(tmp_path, fit_args, capsys):
    assert main(["fit", *fit_args(epochs=1)]) == 0
    capsys.readouterr()
    ckpt = next((tmp_path / "runs/lstm_h5/version_0/checkpoints").glob("best-*"))
    line = _cli_error(capsys, ["test", *fit_args(), "--data.horizon", "20", "--ckpt_path", str(ckpt)])
    assert "horizon 5" in line and "horizon 20" in line
