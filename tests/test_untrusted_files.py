"""Untrusted files (issue 15, items 11-13): a checkpoint or export that picks modules to import, hostile YAML
and pickle payloads, and names that are paths. Each refusal is one line, exit 2, and leaves no trace."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml
from panels import SPLIT_FILES, write_splits

from ensemble.cli import main
from ensemble.training.runs import RunNameError, check_name

CONFIGS = Path(__file__).parents[1] / "configs"
EVIL = "plantedmod"  # a module whose import leaves a marker file


def _args(splits: Path, save_dir: Path, config: str = "lstm") -> list[str]:
    return ["--config", str(CONFIGS / f"{config}.yaml"), "--data.root", str(splits), "--data.seq_len", "5",
            "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--tracking.save_dir", str(save_dir)]  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished LSTM run and LightGBM run with an export of each, read-only here."""
    root = tmp_path_factory.mktemp("finished")
    splits = write_splits(root / "splits")
    for config in ("lstm", "lightgbm"):
        assert main(["fit", *_args(splits, root / "runs", config)]) == 0
        run = root / "runs" / f"{config}_h5" / "version_0"
        assert main(["export", "--run", str(run), "--out", str(root / config)]) == 0
    return splits, root


@pytest.fixture
def marker(tmp_path, monkeypatch):
    """The marker file that importing ``plantedmod`` would create; the module is importable throughout."""
    folder = tmp_path / "site"
    folder.mkdir()
    marker = tmp_path / "imported"
    (folder / f"{EVIL}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\nclass Thing:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    yield marker
    sys.modules.pop(EVIL, None)


def _one_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("ensemble: error: "), err  # one line, no traceback
    return err[0]


def _planted_checkpoints(src: Path, folder: Path) -> dict[str, Path]:
    """Copies of a net checkpoint with one importable path pointed at the planted module."""
    folder.mkdir()
    plants = {
        "net": lambda c: c["hyper_parameters"]["net"].update(class_path=f"{EVIL}.Thing"),
        "optimizer": lambda c: c["hyper_parameters"]["optimizer"].update(class_path=f"{EVIL}.Thing"),
        "model": lambda c: c["hyper_parameters"].update(_class_path=f"{EVIL}.Thing"),
        "instantiator": lambda c: c["hyper_parameters"].update(_instantiator=f"{EVIL}.Thing"),
        "look-alike": lambda c: c["hyper_parameters"]["net"].update(class_path=f"{EVIL}.LSTMNet"),
    }
    made = {}
    for name, plant in plants.items():
        ckpt = torch.load(src, weights_only=True)
        plant(ckpt)
        made[name] = folder / f"{name}.ckpt"
        torch.save(ckpt, made[name])
    return made


def test_checkpoints_and_exports_cannot_choose_what_is_imported(finished, tmp_path, marker, capsys):
    splits, root = finished
    src = root / "runs/lstm_h5/version_0/checkpoints/last.ckpt"
    for name, ckpt in _planted_checkpoints(src, tmp_path / "planted").items():
        assert main(["test", *_args(splits, tmp_path / "runs"), "--ckpt_path", str(ckpt)]) == 2, name
        line = _one_line(capsys)
        assert str(ckpt) in line and f"'{EVIL}." in line and "refusing to import" in line, (name, line)
    assert not marker.exists() and EVIL not in sys.modules

    # a tree checkpoint's sidecar, and an export's config.yaml and metadata.json
    run = tmp_path / "lightgbm_h5"
    shutil.copytree(root / "runs/lightgbm_h5", run)
    sidecar = run / "version_0/checkpoints/last.meta.json"
    real = "ensemble.models.trees.lightgbm_model.LightGBMModel"
    sidecar.write_text(sidecar.read_text().replace(real, f"{EVIL}.Thing"))
    assert main(["test", *_args(splits, tmp_path, "lightgbm"), "--ckpt_path", "last"]) == 2
    assert str(sidecar) in _one_line(capsys)
    data = str(splits / SPLIT_FILES["test"])
    for model, file, edit in [
        ("lightgbm", "config.yaml", lambda t: t.replace("ensemble.models.trees.LightGBMModel", f"{EVIL}.Thing")),
        ("lstm", "config.yaml", lambda t: t.replace("torch.optim.AdamW", f"{EVIL}.Thing")),
        ("lstm", "metadata.json", lambda t: t.replace("ensemble.models.Classifier", f"{EVIL}.Thing")),
    ]:
        export = tmp_path / f"export-{model}-{file}"
        shutil.copytree(root / model, export)
        (export / file).write_text(edit((export / file).read_text()))
        out = tmp_path / "preds.parquet"
        assert main(["predict", "--from", str(export), "--input", data, "--out", str(out)]) == 2
        assert str(export / file) in _one_line(capsys) and not out.exists()
    # an export's model.ckpt itself
    export = tmp_path / "export-lstm-ckpt"
    shutil.copytree(root / "lstm", export)
    shutil.copy(tmp_path / "planted/net.ckpt", export / "model/model.ckpt")
    assert main(["predict", "--from", str(export), "--input", data, "--out", str(tmp_path / "p.parquet")]) == 2
    assert "model.ckpt" in _one_line(capsys)
    assert not marker.exists() and EVIL not in sys.modules  # nothing planted was ever imported


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled"))


def test_hostile_yaml_and_pickle_are_one_line(finished, tmp_path, capsys):
    splits, root = finished
    marker = tmp_path / "ran"
    tag = f"!!python/object/apply:pathlib.Path.write_text [!!python/object/apply:pathlib.Path ['{marker}'], 'ran']"
    hostile = tmp_path / "hostile.yaml"
    hostile.write_text(f"model:\n  init_args: {tag}\n")
    space = tmp_path / "space.yaml"
    space.write_text(f"model.init_args.net.init_args.hidden_size: {tag}\n")
    for argv in (
        ["fit", *_args(splits, tmp_path / "runs"), "--config", str(hostile)],
        ["fit", *_args(splits, tmp_path / "runs", "lightgbm"), "--config", str(hostile)],
        ["tune", *_args(splits, tmp_path / "runs"), "--config", str(hostile)],
        ["tune", *_args(splits, tmp_path / "runs"), "--tune.search_space", str(space),
         "--tune.storage", f"journal:{tmp_path / 'j.log'}", "--tune.out", str(tmp_path / "tune")],
        ["experiment", "--config", str(hostile)],
    ):  # fmt: skip
        assert main(argv) == 2, argv
        line = _one_line(capsys)
        assert "not a loadable YAML config" in line and ("hostile.yaml" in line or "space.yaml" in line), line
    payload = tmp_path / "payload.ckpt"
    ckpt = torch.load(root / "runs/lstm_h5/version_0/checkpoints/last.ckpt", weights_only=True)
    torch.save({**ckpt, "extra": _Payload(marker)}, payload)
    for command in ("fit", "test", "predict"):
        assert main([command, *_args(splits, tmp_path / "runs"), "--ckpt_path", str(payload)]) == 2
        line = _one_line(capsys)
        assert str(payload) in line and "pickled Python objects" in line, line
    assert not marker.exists() and not (tmp_path / "runs").exists() and not (tmp_path / "tune").exists()


def test_names_cannot_leave_their_folder(finished, tmp_path, capsys):
    splits, _ = finished
    save_dir = tmp_path / "deep" / "runs"
    for config in ("lstm", "lightgbm"):
        for name in ("../../somewhere", str(tmp_path / "absolute"), "a/../../b", "a\\..\\b", "a//b", "."):
            assert main(["fit", *_args(splits, save_dir, config), "--tracking.name", name]) == 2, name
            assert f"tracking.name '{name}'" in _one_line(capsys)
    assert main(["tune", *_args(splits, save_dir), "--tune.study_name", "../escape"]) == 2
    assert "tune.study_name '../escape'" in _one_line(capsys)
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({"name": "../../escape", "models": ["lstm"], "horizons": [5]}))
    assert main(["experiment", "--config", str(exp)]) == 2
    assert "name '../../escape'" in _one_line(capsys)
    assert main(["blend", "--runs", str(tmp_path / "r"), "--out", str(save_dir), "--name", "../../up"]) == 2
    assert "--name '../../up'" in _one_line(capsys)
    assert [p.name for p in tmp_path.rglob("*")] == ["exp.yaml"]  # no run folder anywhere, inside or out
    # the layer's own nested names stay allowed
    assert check_name("study/trial_3") == "study/trial_3" and check_name("lstm_h5") == "lstm_h5"
    with pytest.raises(RunNameError):
        check_name("")
