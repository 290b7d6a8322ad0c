"""Checkpoints and resume under faults (issue 15, items 5-9): the wrong model, another run's folder, mixed
metrics, a full disk and damaged files. Each asserts the files and metrics afterwards, not only the exit code."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from panels import write_splits

from ensemble.cli import main

CONFIGS = Path(__file__).parents[1] / "configs"


def _args(splits: Path, save_dir: Path, config: str = "lstm", epochs: int = 2) -> list[str]:
    return ["--config", str(CONFIGS / f"{config}.yaml"), "--data.root", str(splits), "--data.seq_len", "5",
            "--data.batch_size", "64", "--trainer.max_epochs", str(epochs), "--trainer.accelerator", "cpu",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--tracking.save_dir", str(save_dir)]  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished LSTM run (2 epochs) and one LightGBM run, shared read-only by the tests here."""
    root = tmp_path_factory.mktemp("finished")
    splits = write_splits(root / "splits")
    for config in ("lstm", "lightgbm"):
        assert main(["fit", *_args(splits, root / "A", config)]) == 0
    return splits, root / "A"


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def _one_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("ensemble: error: "), err  # one line, no traceback
    return err[0]


def test_checkpoint_of_another_model_or_architecture_is_refused(finished, tmp_path, capsys):
    splits, runs = finished
    lstm_last = runs / "lstm_h5/version_0/checkpoints/last.ckpt"
    before = _digest(runs)
    assert main(["fit", *_args(splits, tmp_path, "gru"), "--ckpt_path", str(lstm_last)]) == 2
    line = _one_line(capsys)
    assert str(lstm_last) in line and "LSTMNet" in line and "GRUNet" in line
    wider = ["--model.init_args.net.init_args.hidden_size", "32"]
    assert main(["test", *_args(splits, tmp_path), *wider, "--ckpt_path", str(lstm_last)]) == 2
    assert "hidden_size=64 (config: 32)" in _one_line(capsys)
    assert main(["test", *_args(splits, tmp_path), "--data.seq_len", "7", "--ckpt_path", str(lstm_last)]) == 2
    assert "seq_len=5" in _one_line(capsys)
    assert not list(tmp_path.rglob("version_*"))  # refused before any run folder
    assert _digest(runs) == before  # and the LSTM's run is untouched


def test_resume_from_another_save_dir_claims_a_fresh_version(finished, tmp_path):
    splits, runs = finished
    a_run = tmp_path / "A"
    shutil.copytree(runs, a_run)
    b = tmp_path / "B"
    assert main(["fit", *_args(splits, b, epochs=1)]) == 0  # an unrelated finished run B/lstm_h5/version_0
    a_before, b_before = _digest(a_run), _digest(b / "lstm_h5/version_0")
    ckpt = a_run / "lstm_h5/version_0/checkpoints/last.ckpt"
    assert main(["fit", *_args(splits, b, epochs=3), "--ckpt_path", str(ckpt)]) == 0
    assert _digest(b / "lstm_h5/version_0") == b_before  # the unrelated run: byte for byte as it was
    assert _digest(a_run) == a_before  # the checkpoint's own run is only read
    resumed = b / "lstm_h5/version_1"
    assert torch.load(resumed / "checkpoints/last.ckpt", weights_only=True)["epoch"] == 2  # continued to epoch 3
    assert {"val/f1_macro", "test/f1_macro"} <= set(json.loads((resumed / "metrics.json").read_text()))


def test_evaluating_another_checkpoint_records_which_one(finished, tmp_path, capsys):
    splits, runs = finished
    shutil.copytree(runs / "lstm_h5", tmp_path / "lstm_h5")
    run = tmp_path / "lstm_h5/version_0"
    fit_record = (run / "metrics.json").read_bytes()
    fit_metrics = json.loads(fit_record)
    (best,) = (p.relative_to(run) for p in (run / "checkpoints").glob("best-*.ckpt"))
    assert fit_metrics["checkpoint/val"] == fit_metrics["checkpoint/test"] == str(best)
    assert main(["test", *_args(splits, tmp_path), "--ckpt_path", "last"]) == 0
    assert (run / "metrics.json").read_bytes() == fit_record  # the fit's metrics stay the best checkpoint's
    metrics = json.loads((run / "eval/test-last/metrics.json").read_text())
    assert metrics["checkpoint/test"] == str((run / "checkpoints/last.ckpt").resolve())
    assert not any(k.startswith("val/") for k in metrics)
    # the test metrics are last.ckpt's: its predictions agree with them
    import pandas as pd

    test = pd.read_parquet(run / "eval/test-last/predictions/test.parquet")
    assert metrics["test/accuracy"] == pytest.approx((test.label == test.prediction).mean(), abs=1e-6)


def _full_filesystem(where: Path, size: str) -> bool:
    where.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    return done.returncode == 0


def test_full_disk_keeps_the_previous_checkpoints(finished, tmp_path, monkeypatch, capsys):
    splits, runs = finished
    mount = tmp_path / "small"
    if _full_filesystem(mount, "4m"):  # a real full filesystem where root may mount one
        try:
            shutil.copytree(runs / "lstm_h5", mount / "lstm_h5")
            run = mount / "lstm_h5/version_0"
            (mount / "filler").write_bytes(b"")
            with (mount / "filler").open("ab") as f:  # fill it, leaving less room than one checkpoint
                room = shutil.disk_usage(mount).free - 40_000
                f.write(b"\0" * max(room, 0))
            _check_full_disk_run(splits, mount, run, capsys)
        finally:
            subprocess.run(["umount", "-l", str(mount)], check=False)
    else:  # otherwise the OS's answer, simulated: half a file written, then ENOSPC
        shutil.copytree(runs / "lstm_h5", tmp_path / "lstm_h5")
        real_save = torch.save

        def full_disk(obj, f, *args, **kwargs):
            if isinstance(obj, dict) and "state_dict" in obj:
                f.write(b"PK\x03\x04 half a checkpoint")
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_save(obj, f, *args, **kwargs)

        monkeypatch.setattr(torch, "save", full_disk)
        _check_full_disk_run(splits, tmp_path, tmp_path / "lstm_h5/version_0", capsys)


def _check_full_disk_run(splits: Path, save_dir: Path, run: Path, capsys) -> None:
    ckpts = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    assert main(["fit", *_args(splits, save_dir, epochs=4), "--ckpt_path", "last"]) == 2
    assert "No space left on device" in _one_line(capsys)
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()} == ckpts  # nothing half-written
    for name in ckpts:  # and every checkpoint still loads
        assert torch.load(run / "checkpoints" / name, weights_only=True)["state_dict"]


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _drop_key(path: Path, key: str) -> None:
    meta = json.loads(path.read_text())
    del meta[key]
    path.write_text(json.dumps(meta))


DAMAGE = {  # what is damaged -> (model, how, checkpoint given, words the one line must hold)
    "truncated net checkpoint": ("lstm", lambda r: _truncate(r / "checkpoints/last.ckpt"), "last", "truncated"),
    "empty net checkpoint": ("lstm", lambda r: (r / "checkpoints/last.ckpt").write_bytes(b""), "last", "damaged"),
    "truncated sidecar": ("lightgbm", lambda r: _truncate(r / "checkpoints/last.meta.json"), "last", "not readable"),
    "sidecar without model_file": ("lightgbm", lambda r: _drop_key(r / "checkpoints/last.meta.json", "model_file"),
                                   "last", "missing 'model_file'"),
    "sidecar naming a path": ("lightgbm", lambda r: (r / "checkpoints/last.meta.json").write_text(
        (r / "checkpoints/last.meta.json").read_text().replace('"last.txt"', '"../../config.yaml"')), "last",
        "not a file name"),
    "truncated native model": ("lightgbm", lambda r: _truncate(r / "checkpoints/last.txt", 0.3), "last",
                               "damaged tree model file"),
    "a net checkpoint given to a tree config": ("lightgbm", lambda r: None, "NET", "not a checkpoint of this"),
    "a tree checkpoint given to a net config": ("lstm", lambda r: None, "TREE", "a tree checkpoint, not a net's"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_checkpoint_is_one_line_naming_the_file(finished, tmp_path, capsys, case):
    splits, runs = finished
    model, damage, ckpt, words = DAMAGE[case]
    shutil.copytree(runs / f"{model}_h5", tmp_path / f"{model}_h5")
    run = tmp_path / f"{model}_h5" / "version_0"
    damage(run)
    given = {"NET": runs / "lstm_h5/version_0/checkpoints/last.ckpt",
             "TREE": runs / "lightgbm_h5/version_0/checkpoints/last.meta.json"}  # fmt: skip
    ckpt = str(given.get(ckpt, ckpt))
    for command in ("fit", "test"):
        assert main([command, *_args(splits, tmp_path, model), "--ckpt_path", ckpt]) == 2
        line = _one_line(capsys)
        assert words in line and ("checkpoints" in line or "ckpt" in line), (case, line)
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]  # no run claimed for a bad checkpoint
