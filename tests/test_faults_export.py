"""Exports and predicting with them under faults (issue 15, items 10, 14, 15): an export target that already
holds files, registered models downloaded on every call, and rows that silently got no prediction."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import mlflow.tracking._model_registry.utils as mlflow_registry
import pandas as pd
import pytest
from panels import SPLIT_FILES, write_splits

from ensemble.cli import main

CONFIGS = Path(__file__).parents[1] / "configs"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished LSTM run and a finished LightGBM run (1 epoch each), read-only here."""
    root = tmp_path_factory.mktemp("finished")
    splits = write_splits(root / "splits")
    for config in ("lstm", "lightgbm"):
        args = ["--config", str(CONFIGS / f"{config}.yaml"), "--data.root", str(splits), "--data.seq_len", "5",
                "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar",
                "false", "--trainer.enable_model_summary", "false", "--tracking.save_dir", str(root / "runs")]
        assert main(["fit", *args]) == 0
    return splits, root / "runs"


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def test_export_replaces_an_export_whole_and_refuses_other_folders(finished, tmp_path, capsys):
    splits, runs = finished
    out, fresh = tmp_path / "export", tmp_path / "fresh"
    assert main(["export", "--run", str(runs / "lightgbm_h5/version_0"), "--out", str(out)]) == 0
    assert main(["export", "--run", str(runs / "lstm_h5/version_0"), "--out", str(out)]) == 0  # over the tree's
    assert main(["export", "--run", str(runs / "lstm_h5/version_0"), "--out", str(fresh)]) == 0
    assert sorted(p.name for p in (out / "model").iterdir()) == ["model.ckpt"]  # nothing of the tree is left
    assert _digest(out).keys() == _digest(fresh).keys()
    assert _digest(out / "model") == _digest(fresh / "model")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    data = splits / SPLIT_FILES["test"]
    for source in (out, fresh):
        out_file = str(tmp_path / f"{source.name}.pq")
        assert main(["predict", "--from", str(source), "--input", str(data), "--out", out_file]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "export.pq"), pd.read_parquet(tmp_path / "fresh.pq"))

    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "todo.txt").write_text("a user's file")
    capsys.readouterr()
    assert main(["export", "--run", str(runs / "lstm_h5/version_0"), "--out", str(mine)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not empty and not an export" in err[0] and str(mine) in err[0]
    assert [p.name for p in mine.iterdir()] == ["todo.txt"] and (mine / "todo.txt").read_text() == "a user's file"


def test_registered_model_is_downloaded_once_per_version(finished, tmp_path, monkeypatch, capsys):
    splits, runs = finished
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("ENSEMBLE_CACHE", str(tmp_path / "cache"))
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where a download used to be left on every call
    # a process-wide registry elsewhere (another library, or an earlier call that set it) is not used: register
    # once landed there while predict read --mlflow_uri, and the model was "not found"
    monkeypatch.setattr(mlflow_registry, "_registry_uri", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    assert main(["register", "--run", str(runs / "lstm_h5/version_0"), "--name", "demo", "--mlflow_uri", uri,
                 "--export", str(tmp_path / "export")]) == 0  # fmt: skip
    data = str(splits / SPLIT_FILES["test"])
    outs = [tmp_path / f"pred{i}.parquet" for i in range(2)]
    for out in outs:
        assert main(["predict", "--from", "models:/demo@production", "--input", data, "--out", str(out),
                     "--mlflow_uri", uri]) == 0  # fmt: skip
    (copy,) = (tmp_path / "cache/models").iterdir()  # one copy, reused by the second call
    assert _digest(copy / "model") == _digest(tmp_path / "export/model")
    assert not list(temp.rglob("model.ckpt"))  # and no model copy left in the temp folder
    pd.testing.assert_frame_equal(pd.read_parquet(outs[0]), pd.read_parquet(outs[1]))

    assert main(["register", "--run", str(runs / "lightgbm_h5/version_0"), "--name", "demo", "--mlflow_uri", uri,
                 "--export", str(tmp_path / "export2")]) == 0  # the alias moves to version 2  # fmt: skip
    assert main(["predict", "--from", "models:/demo@production", "--input", data, "--out", str(outs[0]),
                 "--mlflow_uri", uri]) == 0  # fmt: skip
    assert len(list((tmp_path / "cache/models").iterdir())) == 2  # a new version is a new cache entry
    assert "best.txt" in {p.name for p in (tmp_path / "cache/models").rglob("*")}
    assert not (tmp_path / "elsewhere.db").exists()
    capsys.readouterr()
    assert main(["predict", "--from", "models:/demo@nosuch", "--input", data, "--out", str(outs[0]),
                 "--mlflow_uri", uri]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "models:/demo@nosuch" in err[0], err


def test_rows_without_a_prediction_are_reported_per_symbol(finished, tmp_path, capsys):
    splits, runs = finished
    export = tmp_path / "export"
    assert main(["export", "--run", str(runs / "lstm_h5/version_0"), "--out", str(export)]) == 0
    frame = pd.read_parquet(splits / SPLIT_FILES["test"])
    short = frame[frame.symbol == "S2"].head(3)  # S2 keeps 3 rows: fewer than seq_len 5
    data = tmp_path / "new.parquet"
    pd.concat([frame[frame.symbol != "S2"], short]).to_parquet(data, index=False)
    capsys.readouterr()
    out = tmp_path / "preds.parquet"
    assert main(["predict", "--from", str(export), "--input", str(data), "--out", str(out)]) == 0
    preds = pd.read_parquet(out)
    assert "S2" not in set(preds.symbol) and len(preds) == 2 * (30 - 4)
    side = pd.read_csv(tmp_path / "preds.unpredicted.csv").set_index("symbol")
    assert side.loc[["S0", "S1", "S2"], "unpredicted"].tolist() == [4, 4, 3]
    assert side.loc["S0", "reason"].startswith("warm-up") and side.loc["S2", "reason"].startswith("too short")
    for symbol, n in (("S0", 4), ("S2", 3)):  # the reported rows are exactly the ones missing from preds
        rows = frame[frame.symbol == symbol].head(n).datetime
        assert pd.Timestamp(side.loc[symbol, "first_datetime"]) == rows.min()
        assert pd.Timestamp(side.loc[symbol, "last_datetime"]) == rows.max()
    line = [ln for ln in capsys.readouterr().out.splitlines() if "rows without one" in ln]
    assert len(line) == 1 and "S2 3 too short (3 rows < seq_len 5)" in line[0] and "S0 4 warm-up" in line[0]
