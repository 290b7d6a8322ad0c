"""`ensemble experiment` with a ``walkforward:`` section: each cell is a walk-forward, the leaderboard ranks on
out-of-fold metrics with per-fold std beside them; a re-run skips finished cells; a bad key is one line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ensemble.cli import main

CONFIGS = str(Path(__file__).parents[1] / "configs")


def _experiment(tmp_path: Path, splits: Path, walkforward: dict) -> list[str]:
    spec = {"name": "wf", "models": ["lightgbm"], "horizons": [5], "data_root": str(splits), "configs_dir": CONFIGS,
            "out": str(tmp_path / "exp"), "blends": [], "walkforward": walkforward,
            "fit_args": ["--trainer.max_epochs", "2", "--model.init_args.min_data_in_leaf", "5",
                         "--trainer.enable_model_summary", "false"]}  # fmt: skip
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(spec))
    return ["experiment", "--config", str(tmp_path / "exp.yaml")]


def test_walkforward_cells_rank_on_out_of_fold_metrics(tmp_path, splits, capsys):
    assert main(_experiment(tmp_path, splits, {"folds": 3, "val_bars": 3})) == 0
    said = capsys.readouterr().out
    out = said.splitlines()  # it ends with its leaderboard, as a plain experiment does
    header = next(line.split() for line in out if line.startswith("model "))
    assert header[:5] == ["model", "horizon", "kind", "status", "folds"] and "champion" in header, header
    assert any(line.split()[:3] == ["lightgbm", "5", "walkforward"] for line in out)
    # a line for the cell with its out-of-fold key metric; the cell's log holds its folds' whole training output
    assert re.search(r"\[1/1\] lightgbm_h5: done in \d+s, oof/log_loss \d\.\d{4} \(", said)
    log = (tmp_path / "exp" / "runs" / "lightgbm_h5" / "cell.log").read_text()
    assert "[3/3] fold_3: done in" in log and re.search(r"lightgbm epoch 1: \d+ rounds, val/", log), log
    assert re.search(r"^metric +val +test$", log, re.M) and "final model on test" in log
    board = pd.read_csv(tmp_path / "exp" / "leaderboard.csv")
    assert board[board.kind != "baseline"][["model", "horizon", "kind", "status", "folds"]].values.tolist() == [
        ["lightgbm", 5, "walkforward", "done", 3]]
    # one candidate: it is the champion and the oracle (its final model's test predictions), no PBO, said so
    champion = json.loads((tmp_path / "exp" / "champion_h5.json").read_text())
    assert champion["champion"]["name"] == "lightgbm" and champion["n_trials"] == 1
    assert champion["oracle"]["name"] == "lightgbm" and champion["difference"] == 0.0
    assert champion["interval"] == [0.0, 0.0] and "1 candidate" in champion["pbo_note"]
    assert sorted(board[board.kind == "baseline"].model) == ["class_prior", "random_prior", "uniform"]
    assert (tmp_path / "exp" / "leaderboard.png").is_file()
    assert board[board.model == "lightgbm"].champion.tolist() == [True]
    assert {"oof_log_loss", "log_loss_fold_std", "oof_f1_macro", "f1_macro_fold_std"} <= set(board.columns)
    cell = board[board.model == "lightgbm"].iloc[0]  # baselines may rank above a cell of tiny, noisy data
    assert not Path(cell.run_dir).is_absolute()  # relative to the experiment folder, which may move
    folder = tmp_path / "exp" / cell.run_dir
    csv = pd.read_csv(tmp_path / "exp" / "leaderboard.csv", dtype=str, keep_default_na=False)
    # counts as integers (folds 3, not 3.0), empty where there are none (the baselines')
    assert set(csv.folds) == {"3", ""} and set(csv.n_trials) == {"1", ""}
    metrics = json.loads((folder / "metrics.json").read_text())
    assert cell.oof_log_loss == pytest.approx(metrics["oof/log_loss"], rel=1e-12)
    assert cell.oof_log_loss_shared == pytest.approx(metrics["oof/log_loss"], rel=1e-6)  # one candidate: its rows
    assert cell.log_loss_fold_std == pytest.approx(metrics["folds/log_loss/std"], rel=1e-12)
    # the final model's test Sharpe, gross and net, reported beside (never used to choose)
    sharpes = (metrics["test/sharpe"], metrics["test/sharpe_net"])
    assert (cell.test_sharpe, cell.test_sharpe_net) == pytest.approx(sharpes)
    assert len(pd.read_csv(folder / "folds.csv")) == 3 and (folder / "oof.parquet").is_file()
    assert "oof_log_loss" in (tmp_path / "exp" / "leaderboard.md").read_text()
    capsys.readouterr()
    assert main(_experiment(tmp_path, splits, {"folds": 3, "val_bars": 3})) == 0
    assert re.search(r"lightgbm_h5: skipped \(finished earlier\), oof/\w+ \d\.\d{4}", capsys.readouterr().out)


def test_bad_walkforward_key_is_one_line(tmp_path, splits, capsys):
    assert main(_experiment(tmp_path, splits, {"fold": 3})) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ensemble: error: walkforward.fold: unknown walk-forward key (did you mean 'folds'?); "
                          "known: ") and "\n" not in err  # fmt: skip
    assert main(_experiment(tmp_path, splits, {"folds": 1})) == 2
    assert "wf.folds must be >= 2, got 1" in capsys.readouterr().err


@pytest.mark.parametrize(("key", "value", "message"), [
    ("walkforwrd", {"folds": 2}, "walkforwrd: unknown experiment key (did you mean 'walkforward'?); known: name,"),
    ("walkforwrd", 3, "walkforwrd: unknown experiment key (did you mean 'walkforward'?)"),
    ("horizon", [5], "horizon: unknown experiment key (did you mean 'horizons'?)"),
    ("launcher", {"kindd": "local"}, "launcher.kindd: unknown launcher key (did you mean 'kind'?); known: kind,"),
    ("trading", {"cost_bp": 1}, "trading.cost_bp: unknown key (did you mean 'cost_bps'?); known: cost_bps,"),
    ("blend_options", {"caruana": {"sizee": 5}}, "blend_options.caruana.sizee: unknown caruana option (did you mean "
                                                 "'size'?)"),
])  # fmt: skip
def test_an_unknown_experiment_key_is_one_line_with_its_close_match(tmp_path, splits, capsys, key, value, message):
    """Every unknown key of an experiment YAML, top-level or in a section, is one line naming it and the closest
    known key, before any cell runs."""
    argv = _experiment(tmp_path, splits, {"folds": 2})
    spec = yaml.safe_load((tmp_path / "exp.yaml").read_text())
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump({**spec, key: value}))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "exp" / "runs").exists()


def test_walkforward_cells_go_through_the_launcher(tmp_path, splits):
    """``launcher: {kind: local, workers: 2}`` runs the walk-forward cells two at a time, each process on its own
    share of the cores (its cell.log says so), with the same leaderboard layout as one by one."""
    args = _experiment(tmp_path, splits, {"folds": 2, "val_bars": 3})
    spec = yaml.safe_load((tmp_path / "exp.yaml").read_text())
    spec.update(models=["lightgbm", "xgboost"], launcher={"kind": "local", "workers": 2},
                fit_args=spec["fit_args"][:2], model_args={"lightgbm": spec["fit_args"][2:4]})
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(spec))
    assert main(args) == 0
    board = pd.read_csv(tmp_path / "exp" / "leaderboard.csv")
    cells = board[board.kind != "baseline"]
    assert sorted(cells.model) == ["lightgbm", "xgboost"] and set(board.status) == {"done"}
    for cell in ("lightgbm_h5", "xgboost_h5"):
        log = (tmp_path / "exp" / "runs" / cell / "cell.log").read_text()
        assert "threads 1 (torch 1" in log  # 2 cores / 2 workers
        assert (tmp_path / "exp" / "walkforward" / cell).is_dir()


def test_walkforward_experiment_blends_out_of_fold(tmp_path, splits, capsys, monkeypatch):
    """Two walk-forward cells, then each configured blend fitted on their out-of-fold rows: a leaderboard row each
    (kind blend, fit_on oof), every fit earlier than what it scores; ``ensemble blend --runs`` on the same folders
    gives the same blend."""
    from ensemble.ensembling.oof import fit_last_before_scored

    args = _experiment(tmp_path, splits, {"folds": 2, "val_bars": 3})
    spec = yaml.safe_load((tmp_path / "exp.yaml").read_text())
    spec.update(models=["lightgbm", "xgboost"], blends=["weighted", "caruana", "stacked"],
                blend_options={"caruana": {"size": 5}}, fit_args=spec["fit_args"][:2],
                model_args={"lightgbm": spec["fit_args"][2:4]}, horizons=[5])  # fmt: skip
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(spec))
    assert main(args) == 0
    board = pd.read_csv(tmp_path / "exp" / "leaderboard.csv", keep_default_na=False)
    blends = board[board.kind == "blend"]
    assert sorted(blends.model) == ["ensemble_caruana", "ensemble_stacked", "ensemble_weighted"]
    assert set(blends.fit_on) == {"oof"} and set(blends.status) == {"done"} and (blends.folds == "1").all()
    exp = tmp_path / "exp"
    for run in blends.run_dir:
        record = json.loads((exp / run / "blend.json").read_text())
        assert fit_last_before_scored(record) == [] and "test" in record["provenance"]
        assert "test/log_loss" in json.loads((exp / run / "metrics.json").read_text())
        # members named relative to the blend's folder: the experiment folder moves as one
        assert all(m.startswith("../../../walkforward/") for m in record["members"]), record["members"]
    caruana = json.loads((exp / blends[blends.model == "ensemble_caruana"].run_dir.iloc[0] / "blend.json").read_text())
    assert caruana["options"] == {"size": 5}
    members = [str(exp / r) for r in board[board.kind == "walkforward"].run_dir]
    capsys.readouterr()
    assert main(["blend", "--runs", *members, "--method", "weighted", "--out", str(tmp_path / "cli")]) == 0
    (run,) = (tmp_path / "cli" / "ensemble_weighted_h5").iterdir()
    weighted = exp / blends[blends.model == "ensemble_weighted"].run_dir.iloc[0]
    pd.testing.assert_frame_equal(pd.read_parquet(run / "oof.parquet"), pd.read_parquet(weighted / "oof.parquet"))
    # a re-run reuses what finished: the cells and the blends (a blend.json with the same method, members,
    # horizon and options); a changed option refits that blend alone, into a new version
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count(": skipped (finished earlier)") == 2 + 3, out
    assert json.loads((tmp_path / "exp" / "champion_h5.json").read_text())["n_trials"] == 2 + 3
    for method in ("weighted", "caruana", "stacked"):
        assert [p.name for p in (tmp_path / "exp/blends" / f"ensemble_{method}_h5").iterdir()] == ["version_0"]
    spec["blend_options"] = {"caruana": {"size": 6}}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(spec))
    assert main(args) == 0
    assert "blend ensemble_caruana_h5: fitted on out-of-fold rows" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "exp/blends/ensemble_caruana_h5").iterdir()) == ["version_0", "version_1"]
    assert [p.name for p in (tmp_path / "exp/blends/ensemble_stacked_h5").iterdir()] == ["version_0"]
    # the DSR counts the earlier caruana (version_0) too: it was tried, and the edit chose against it
    assert json.loads((tmp_path / "exp" / "champion_h5.json").read_text())["n_trials"] == 2 + 3 + 1

    # the experiment folder moved, and read from another working directory: its records name their folders
    # relative to themselves, so the champion registers and every blend exports and predicts as it did
    moved = tmp_path / "elsewhere" / "wfexp"
    moved.parent.mkdir()
    shutil.move(tmp_path / "exp", moved)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("ENSEMBLE_CACHE", str(tmp_path / "cache"))
    record = json.loads((moved / "champion_h5.json").read_text())
    assert not any(Path(c["run_dir"]).is_absolute() for c in [record["champion"], *record["candidates"]])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["register", "--experiment", "wfexp", "--experiments_dir", str(moved.parent), "--horizon", "5",
                 "--mlflow_uri", uri, "--allow_worse_than_baseline"]) == 0  # fmt: skip
    data = str(splits / "test_scaled.parquet")
    for name, export in [(record["champion"]["run_dir"], "models:/wfexp_h5@production"),
                         *[(r, str(moved / r / "export")) for r in blends.run_dir]]:  # fmt: skip
        if not export.startswith("models:/"):
            assert main(["export", "--run", str(moved / name), "--out", export]) == 0
        out = tmp_path / "pred.parquet"
        assert main(["predict", "--from", export, "--input", data, "--out", str(out), "--mlflow_uri", uri]) == 0
        want = pd.read_parquet(moved / name / "predictions" / "test.parquet")
        merged = want.merge(pd.read_parquet(out), on=["datetime", "symbol"], suffixes=("", "_new"))
        assert len(merged) == len(want), name
        for col in ("prob_short", "prob_flat", "prob_long"):
            assert (merged[col] - merged[f"{col}_new"]).abs().max() < 1e-6, (name, col)
