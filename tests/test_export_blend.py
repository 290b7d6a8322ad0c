"""Blends as exports and registered models (issue 18): ``ensemble export`` of a blend run holds its members'
exports and the fitted blend; ``predict --from`` it runs the members and combines them as the blend run did;
``ensemble register --experiment NAME --horizon H`` registers an experiment's champion; a walk-forward folder
exports its final model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from panels import SPLIT_FILES, write_splits

from ensemble.cli import main
from ensemble.ensembling.methods import BestMember, CaruanaBlend, MeanBlend, StackedBlend, from_state
from ensemble.ensembling.used import restrict, used_members
from ensemble.errors import ConfigError
from ensemble.export_blend import export_model, exportable_run
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
        blends[method] = root / "runs" / f"ensemble_{method}_h5" / "version_0"
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
    state = json.loads((blends[method] / "blend.json").read_text())["state"]
    used = used_members(state, 2)  # stacked reads both members; Caruana may never select one (weight 0)
    meta = json.loads((export / "metadata.json").read_text())
    windows = [(1, 3)[i] for i in used]
    assert meta["family"] == "blend" and meta["method"] == method and meta["seq_len"] == max(windows)
    assert meta["members"] == ["tree"] * len(used) and meta["horizon"] == 5
    record = json.loads((export / "blend.json").read_text())
    assert record["state"] == restrict(state, used)
    for i, original in enumerate(used):  # each used member's own export, in blend.json's order
        source = json.loads((export / "members" / str(i) / "metadata.json").read_text())["source_run"]
        assert source == str(runs[original].resolve())
    out = tmp_path / "pred.parquet"
    capsys.readouterr()
    data = str(splits / SPLIT_FILES["test"])
    assert main(["predict", "--from", str(export), "--input", data, "--out", str(out)]) == 0
    got = pd.read_parquet(out)
    if used == [0, 1]:
        _same_predictions(got, blends[method])
        # the rows the 3-row windows leave out are reported as every unpredicted row is: per symbol, and why
        skipped = pd.read_csv(tmp_path / "pred.unpredicted.csv")
        assert set(skipped.reason) == {"warm-up (first 2)"} and (skipped.unpredicted == 2).all()
        assert "warm-up (first 2)" in capsys.readouterr().out
    else:  # the rows the blend run scored are predicted alike; a dropped window predicts more rows
        want = pd.read_parquet(blends[method] / "predictions" / "test.parquet")
        merged = want.merge(got, on=["datetime", "symbol"], suffixes=("", "_new"), validate="one_to_one")
        assert len(merged) == len(want) <= got["label"].notna().sum()
        for col in PROBS:
            assert (merged[col] - merged[f"{col}_new"]).abs().max() < 1e-6, col


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


def test_used_members_and_their_restricted_state_predict_as_the_whole_blend():
    """Each method's state names the members it reads; restricted to them, it predicts on their probabilities
    what the whole state predicts on all members' (a zero weight adds exactly nothing)."""
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=(4, 50))  # (M=4, N=50, 3)
    labels = rng.integers(0, 3, 50)
    probs[2] = np.eye(3)[(labels + 1) % 3] * 0.98 + 0.01  # confidently wrong: no method that weighs gives it weight
    states = {
        "weighted": {"method": "weighted", "weights": [0.5, 0.0, 0.0, 0.5]},
        "caruana": CaruanaBlend(size=10).fit(probs, labels).state(),
        "best": BestMember().fit(probs, labels).state(),
        "mean": MeanBlend().fit(probs, labels).state(),
        "stacked": StackedBlend().fit(probs, labels).state(),
    }
    assert 2 not in used_members(states["caruana"], 4) and len(used_members(states["best"], 4)) == 1
    assert used_members(states["weighted"], 4) == [0, 3]
    assert used_members(states["mean"], 4) == used_members(states["stacked"], 4) == [0, 1, 2, 3]
    for method, state in states.items():
        used = used_members(state, 4)
        whole = from_state(state).predict_proba(probs)
        part = from_state(restrict(state, used)).predict_proba(probs[used])
        assert np.abs(whole - part).max() < 1e-12, method
    with pytest.raises(ConfigError, match="every weight is 0"):
        used_members({"method": "weighted", "weights": [0.0, 0.0]}, 2)
    with pytest.raises(ConfigError, match="one weight per member"):
        used_members({"method": "best", "weights": [1.0]}, 2)


def _wrong_member(run: Path, out: Path) -> Path:
    """A copy of ``run`` whose val predictions put 0.98 on a wrong class: no blend fitted on val gives it weight."""
    shutil.copytree(run, out)
    path = out / "predictions" / "val.parquet"
    df = pd.read_parquet(path)
    wrong = np.eye(3)[(df["label"].to_numpy() + 2) % 3] * 0.97 + 0.01  # label -1/0/1 -> class +1 mod 3
    df[PROBS] = wrong.astype(np.float32)
    df.to_parquet(path, index=False)
    return out


@pytest.mark.parametrize("method", ["best", "caruana"])
def test_a_zero_weight_member_is_neither_exported_nor_run(blended, tmp_path, method, capsys):
    """A blend of a single-row LightGBM and a 3-row-window one that the fit gives no weight: the export holds the
    first alone, so it predicts the 2 rows per symbol the window's warm-up would drop, and on the rows the blend
    run scored it predicts what the run did."""
    splits, runs, _ = blended
    unused = _wrong_member(runs[1], tmp_path / "wrong")
    assert main(["blend", "--runs", str(runs[0]), str(unused), "--method", method, "--out", str(tmp_path)]) == 0
    (run,) = (tmp_path / f"ensemble_{method}_h5").iterdir()
    state = json.loads((run / "blend.json").read_text())["state"]
    assert state["weights"][1] == 0 and state["weights"][0] == 1.0
    export = tmp_path / "export"
    assert main(["export", "--run", str(run), "--out", str(export)]) == 0
    assert sorted(p.name for p in (export / "members").iterdir()) == ["0"]
    record = json.loads((export / "blend.json").read_text())
    assert record["state"]["weights"] == [1.0] and record["members"] == [str(runs[0].resolve())]
    assert record["unused_members"] == [{"index": 1, "run_dir": str(unused)}]
    assert json.loads((export / "metadata.json").read_text())["seq_len"] == 1  # not the unused member's 3
    out = tmp_path / "pred.parquet"
    data = splits / SPLIT_FILES["test"]
    assert main(["predict", "--from", str(export), "--input", str(data), "--out", str(out)]) == 0
    got, want = pd.read_parquet(out), pd.read_parquet(run / "predictions" / "test.parquet")
    symbols = want["symbol"].nunique()
    assert got["label"].notna().sum() == len(want) + 2 * symbols  # the window's warm-up rows are predicted too
    merged = want.merge(got, on=["datetime", "symbol"], suffixes=("", "_new"), validate="one_to_one")
    assert len(merged) == len(want)
    for col in PROBS:
        assert (merged[col] - merged[f"{col}_new"]).abs().max() < 1e-6, col
    # an export written before unused members were left out (it holds both): predicting still runs member 0 alone
    old = tmp_path / "old_export"
    shutil.copytree(export, old)
    export_model(unused, old / "members" / "1")
    shutil.rmtree(unused)  # nothing of the member is left to run but its export
    (old / "members" / "1" / "model").rename(old / "members" / "1" / "gone")  # running it would fail
    (old / "blend.json").write_text(json.dumps({**record, "members": ["a", "b"], "state": state}))
    assert main(["predict", "--from", str(old), "--input", str(data), "--out", str(tmp_path / "old.parquet")]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "old.parquet"), got)
