"""Blends as exports and registered models (issue 18): ``ensemble export`` of a blend run holds its members'
exports and the fitted blend; ``predict --from`` it runs the members and combines them as the blend run did;
``ensemble register --experiment NAME --horizon H`` registers an experiment's champion; a walk-forward folder
exports its final model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from panels import SPLIT_FILES, write_splits

from ensemble.cli import main
from ensemble.export_blend import exportable_run
from ensemble.training.family import ExportError

CONFIGS = Path(__file__).parents[1] / "configs"
PROBS = ["prob_short", "prob_flat", "prob_long"]


@pytest.fixture(scope="module")
def blended(tmp_path_factory):
    """Two 2-epoch LightGBM runs, one on single rows and one on 3-row windows (it predicts 2 fewer rows per
    symbol), and a stacked and a Caruana blend of them; read-only here."""
    root = tmp_path_factory.mktemp("blended")
    splits = write_splits(root / "splits")
    runs = []
    for seq_len in (1, 3):
        argv = ["fit", "--config", str(CONFIGS / "lightgbm.yaml"), "--data.root", str(splits), "--data.seq_len",
                str(seq_len), "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
                "--model.init_args.min_data_in_leaf", "10",
                "--tracking.save_dir", str(root / "runs"), "--tracking.name", f"lgb_seq{seq_len}"]  # fmt: skip
        assert main(argv) == 0
        runs.append(root / "runs" / f"lgb_seq{seq_len}" / "version_0")
    blends = {}
    for method in ("stacked", "caruana"):
        assert main(["blend", "--runs", *map(str, runs), "--method", method, "--out", str(root / "runs")]) == 0
        blends[method] = root / "runs" / f"ensemble_{method}" / "version_0"
    return splits, runs, blends


def _same_predictions(got: pd.DataFrame, run: Path) -> None:
    """``got`` predicts every row of ``run``'s test predictions, to 1e-6, with the same arg-max; the rows it
    predicts beyond those are the unlabelled ones (a run scores labelled rows only)."""
    want = pd.read_parquet(run / "predictions" / "test.parquet")
    merged = want.merge(got, on=["datetime", "symbol"], suffixes=("", "_new"), validate="one_to_one")
    assert len(merged) == len(want) == got["label"].notna().sum()
    for col in PROBS:
        assert (merged[col] - merged[f"{col}_new"]).abs().max() < 1e-6, col
    assert (merged.prediction == merged.prediction_new).all()


@pytest.mark.parametrize("method", ["stacked", "caruana"])
def test_predict_from_a_blend_export_equals_the_blend_runs_test_predictions(blended, tmp_path, method, capsys):
    splits, runs, blends = blended
    export = tmp_path / "export"
    assert main(["export", "--run", str(blends[method]), "--out", str(export)]) == 0
    meta = json.loads((export / "metadata.json").read_text())
    assert meta["family"] == "blend" and meta["method"] == method and meta["seq_len"] == 3
    assert meta["members"] == ["tree", "tree"] and meta["horizon"] == 5
    record = json.loads((export / "blend.json").read_text())
    assert record["state"] == json.loads((blends[method] / "blend.json").read_text())["state"]
    for i, run in enumerate(runs):  # each member's own export, in blend.json's order
        assert json.loads((export / "members" / str(i) / "metadata.json").read_text())["source_run"] == str(run)
    out = tmp_path / "pred.parquet"
    capsys.readouterr()
    data = str(splits / SPLIT_FILES["test"])
    assert main(["predict", "--from", str(export), "--input", data, "--out", str(out)]) == 0
    _same_predictions(pd.read_parquet(out), blends[method])
    # the rows the 3-row windows leave out are reported as every unpredicted row is: per symbol, and why
    skipped = pd.read_csv(tmp_path / "pred.unpredicted.csv")
    assert set(skipped.reason) == {"warm-up (first 2)"} and (skipped.unpredicted == 2).all()
    assert "warm-up (first 2)" in capsys.readouterr().out


def test_exportable_run_is_the_run_itself_or_a_walk_forwards_newest_finished_final_model(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    assert exportable_run(plain) == plain
    wf = tmp_path / "wf"
    (wf / "runs" / "final").mkdir(parents=True)
    (wf / "walkforward.json").write_text("{}")
    with pytest.raises(ExportError, match="without a finished final model"):
        exportable_run(wf)
    for version, metrics in ((2, {"test/f1_macro": 0.4}), (10, {"test/f1_macro": 0.5}), (11, {"val/f1_macro": 0.5})):
        run = wf / "runs" / "final" / f"version_{version}"
        run.mkdir()
        (run / "metrics.json").write_text(json.dumps(metrics))
    (wf / "runs" / "fold_3" / "version_20").mkdir(parents=True)  # a fold's run is never the final model
    # version_11 never reached test (killed); version_10 is newer than version_2 by number, not by name
    assert exportable_run(wf) == wf / "runs" / "final" / "version_10"


def _walkforward_folder(root: Path, run: Path) -> Path:
    """A walk-forward folder whose final model is a copy of ``run``."""
    wf = root / "walkforward_lgb"
    shutil.copytree(run, wf / "runs" / "final" / "version_0")
    (wf / "walkforward.json").write_text(json.dumps({"fingerprint": "test"}))
    return wf


def _champion(experiment: Path, horizon: int, run_dir: str, kind: str) -> None:
    experiment.mkdir(parents=True, exist_ok=True)
    (experiment / f"champion_h{horizon}.json").write_text(json.dumps({
        "horizon": horizon, "metric": "oof/log_loss", "champion": {"name": "champ", "kind": kind, "run_dir": run_dir},
    }))  # fmt: skip


def test_register_an_experiments_champion_blend_then_predict_it_from_the_registry(blended, tmp_path, monkeypatch,
                                                                                    capsys):  # fmt: skip
    splits, runs, blends = blended
    monkeypatch.setenv("ENSEMBLE_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # experiments/ in the working directory, as ensemble experiment writes it
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _champion(tmp_path / "experiments" / "demo", 5, str(blends["stacked"]), "blend")
    capsys.readouterr()
    assert main(["register", "--experiment", "demo", "--horizon", "5", "--mlflow_uri", uri]) == 0
    said = capsys.readouterr().out
    assert "models:/demo_h5@production (version 1)" in said and "champion of demo h5: champ (blend)" in said
    assert (tmp_path / "experiments" / "demo" / "export_h5" / "members" / "1" / "model").is_dir()
    out = tmp_path / "pred.parquet"
    assert main(["predict", "--from", "models:/demo_h5@production", "--input", str(splits / SPLIT_FILES["test"]),
                 "--out", str(out), "--mlflow_uri", uri]) == 0  # fmt: skip
    _same_predictions(pd.read_parquet(out), blends["stacked"])
    assert "Downloading artifacts" not in capsys.readouterr().err  # no MLflow bar off a terminal

    # a member champion that is a walk-forward folder registers its final model, under a name of the user's
    _champion(tmp_path / "elsewhere" / "wfexp", 5, "walkforward_lgb", "member")  # relative to its experiment
    _walkforward_folder(tmp_path / "elsewhere" / "wfexp", runs[0])
    assert main(["register", "--experiment", "wfexp", "--horizon", "5", "--experiments_dir", "elsewhere",
                 "--name", "lgb", "--mlflow_uri", uri]) == 0  # fmt: skip
    exported = tmp_path / "elsewhere" / "wfexp" / "export_h5" / "metadata.json"
    assert json.loads(exported.read_text())["source_run"].endswith("walkforward_lgb/runs/final/version_0")
    assert main(["predict", "--from", "models:/lgb@production", "--input", str(splits / SPLIT_FILES["test"]),
                 "--out", str(out), "--mlflow_uri", uri]) == 0  # fmt: skip
    _same_predictions(pd.read_parquet(out), runs[0])

    # a champion that does not beat the best baseline is a guess: refused, unless asked for
    record = json.loads((tmp_path / "elsewhere/wfexp/champion_h5.json").read_text())
    record.update(beats_baselines=False, best_baseline={"name": "uniform", "oof_log_loss": 1.0986})
    (tmp_path / "elsewhere/wfexp/champion_h5.json").write_text(json.dumps(record))
    capsys.readouterr()
    argv = ["register", "--experiment", "wfexp", "--horizon", "5", "--experiments_dir", "elsewhere", "--name",
            "guess", "--mlflow_uri", uri]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not beat the best baseline (uniform)" in err[0] and "--allow_worse" in err[0]
    assert main([*argv, "--allow_worse_than_baseline"]) == 0


@pytest.mark.parametrize(("argv", "message"), [
    (["--experiment", "nosuch", "--horizon", "5"], "no experiment at experiments/nosuch"),
    (["--experiment", "demo", "--horizon", "10"], "no champion record for horizon 10 (champion_h10.json); it has "
                                                  "one for horizon(s) 1, 5"),
    (["--experiment", "demo", "--horizon", "1"], "the champion champ's folder gone/version_0 is missing"),
    (["--experiment", "empty", "--horizon", "5"], "it has none: ensemble experiment chooses champions only for "
                                                  "walk-forward experiments (ones with a walkforward: section)"),
    (["--experiment", "demo"], "--experiment needs --horizon"),
    (["--run", "somewhere"], "--run needs --name"),
])  # fmt: skip
def test_register_experiment_errors_are_one_line(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    _champion(tmp_path / "experiments" / "demo", 1, "gone/version_0", "member")
    _champion(tmp_path / "experiments" / "demo", 5, "gone/version_1", "member")
    (tmp_path / "experiments" / "empty").mkdir()
    assert main(["register", *argv, "--mlflow_uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "mlflow.db").exists()  # nothing was registered
