"""`ensemble experiment`: a tiny grid end to end, the leaderboard, resume, and a failing cell."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ensemble.cli import main

CONFIGS = str(Path(__file__).parents[1] / "configs")
TINY = (
    '[--trainer.max_epochs, "1", --data.seq_len, "5", --data.batch_size, "64", '
    '--model.init_args.net.init_args.hidden_size, "8"]'
)


def _experiment(splits, out, models, horizons="[5, 20]", extra=()):
    return [
        "experiment",
        "--name",
        "tiny",
        "--models",
        models,
        "--horizons",
        horizons,
        "--data_root",
        str(splits),
        "--configs_dir",
        CONFIGS,
        "--out",
        str(out),
        "--fit_args",
        TINY,
        "--blends",
        "[mean, stacked]",
        *extra,
    ]


def test_tiny_experiment_runs_writes_leaderboard_and_resumes(tmp_path, splits, capsys):
    out = tmp_path / "exp"
    assert main(_experiment(splits, out, "[lstm, gru]")) == 0
    board = pd.read_csv(out / "leaderboard.csv")
    members = board[board.kind == "member"]
    assert len(members) == 4 and (members.status == "done").all()
    assert set(board[board.kind == "blend"].model) == {"ensemble_mean", "ensemble_stacked"}
    assert len(board[board.kind == "blend"]) == 4  # 2 methods x 2 horizons
    for col in (
        "val_f1_macro",
        "test_f1_macro",
        "test_log_loss",
        "test_sharpe",
        "test_max_drawdown",
        "train_time_s",
        "peak_rss_mib",
    ):
        assert members[col].notna().all(), col
    assert (out / "leaderboard.md").read_text().startswith("| model |")
    assert (out / "leaderboard.png").is_file()
    assert (board[board.kind == "blend"].fit_on == "val").all()  # blends of plain cells are fitted on val...
    said = capsys.readouterr()
    assert (said.out + said.err).count("fitted on val, which also early-stopped the members") == 1  # ...and say so
    for run in members.run_dir:  # relative to the experiment folder, which may move
        assert (out / run / "predictions" / "test.parquet").is_file()  # each cell is an ordinary run
    blends = board[board.kind == "blend"]
    assert blends.best_member.notna().all()  # found through blend.json's members, named relative to the blend
    for run in blends.run_dir:
        members_of = json.loads((out / run / "blend.json").read_text())["members"]
        assert all(m.startswith("../../") and (out / run / m).is_dir() for m in members_of), members_of

    capsys.readouterr()
    assert main(_experiment(splits, out, "[lstm, gru]")) == 0
    said = capsys.readouterr().out
    assert said.count(": skipped (finished earlier), val/") == 4 and said.count(": skipped (finished earlier) (") == 4
    assert sorted(p.name for p in (out / "runs" / "lstm_h5").glob("version_*")) == ["version_0"]  # not re-run
    assert sorted(p.name for p in (out / "runs" / "ensemble_mean_h5").glob("version_*")) == ["version_0"]  # reused
    assert "f1_macro" in (out / "runs" / "lstm_h5" / "cell.log").read_text()  # the cell's output is kept

    # a stop that lands after a cell finished training but before its cell.json: its started.json (same config)
    # shows it finished, so the re-run records and skips it, never "config changed" and a retrain
    (out / "runs" / "lstm_h5" / "version_0" / "cell.json").unlink()
    assert main(_experiment(splits, out, "[lstm, gru]")) == 0
    said = capsys.readouterr().out
    assert "config changed" not in said and said.count(": skipped (finished earlier), val/") == 4
    assert (out / "runs" / "lstm_h5" / "version_0" / "cell.json").is_file()
    assert sorted(p.name for p in (out / "runs" / "lstm_h5").glob("version_*")) == ["version_0"]


def test_failed_cell_is_reported_and_others_go_on(tmp_path, splits, capsys):
    out = tmp_path / "exp"
    bad = ["--model_args", '{gru: [--model.init_args.net.init_args.no_such_arg, "1"]}']
    assert main(_experiment(splits, out, "[lstm, gru]", horizons="[5]", extra=bad)) == 1  # a failed cell fails the run
    board = pd.read_csv(out / "leaderboard.csv")
    gru = board[board.model == "gru"].iloc[0]
    assert gru.status == "failed" and "no_such_arg" in gru.error
    assert board[board.model == "lstm"].iloc[0].status == "done"
    out_err = capsys.readouterr()
    assert re.search(r"\] gru_h5: failed in \d+s \(.*no_such_arg.*; see .*gru_h5/cell\.log\)", out_err.out)
    assert out_err.err.strip().splitlines()[-1] == "ensemble: 1 cell(s) failed: gru_h5 (see their cell.log)"


def test_unknown_model_fails_before_any_cell(tmp_path, splits, capsys):
    assert main(_experiment(splits, tmp_path / "exp", "[lstm, nosuch]")) == 2
    assert "unknown model 'nosuch'" in capsys.readouterr().err
    assert not (tmp_path / "exp" / "runs").exists()


def test_a_missing_model_config_fails_before_any_cell(tmp_path, splits, capsys):
    import shutil

    configs = tmp_path / "configs"
    configs.mkdir()
    shutil.copy(Path(CONFIGS) / "lightgbm.yaml", configs)  # xgboost.yaml is missing: the second model's config
    argv = _experiment(splits, tmp_path / "exp", "[lightgbm, xgboost]")
    argv[argv.index("--configs_dir") + 1] = str(configs)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(configs / "xgboost.yaml") in err[0], err
    assert not (tmp_path / "exp" / "runs").exists()  # lightgbm, listed first, never started


def test_default_grid_leaves_out_models_without_their_weights(capsys):
    from ensemble.experiments.runner import Experiment, default_models
    from ensemble.models.registry import list_models

    everything = {e.name for e in list_models()}
    needs = {e.name for e in list_models() if e.needs_weights}
    assert needs == {"timesfm"}
    assert set(default_models(Experiment())) == everything - needs
    assert "timesfm: not in the default grid, it needs pretrained weights" in capsys.readouterr().out
    given = Experiment(model_args={"timesfm": ["--model.init_args.net.init_args.checkpoint", "w"]})
    assert set(default_models(given)) == everything


def test_configs_dir_in_the_yaml_is_relative_to_the_yaml(tmp_path, splits, monkeypatch):
    import os

    import yaml

    folder = tmp_path / "exps"
    folder.mkdir()
    spec = {"name": "rel", "models": ["lightgbm"], "horizons": [5], "data_root": str(splits),
            "configs_dir": os.path.relpath(CONFIGS, folder), "out": str(tmp_path / "out"), "blends": [],
            "fit_args": ["--trainer.max_epochs", "1", "--model.init_args.min_data_in_leaf", "5"]}  # fmt: skip
    (folder / "exp.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.chdir(tmp_path)  # neither the repository nor the yaml's folder
    assert main(["experiment", "--config", str(folder / "exp.yaml")]) == 0
    assert (tmp_path / "out" / "runs" / "lightgbm_h5" / "version_0" / "metrics.json").is_file()


def test_an_unguarded_calling_script_is_named_as_the_cause(tmp_path, splits):
    """Cells start in spawned processes that import the calling script: one without a ``__main__`` guard dies
    before the cell's log exists, and the row says how to fix it instead of "no output"."""
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text(
        "from ensemble.experiments.runner import Experiment, run_experiment\n"
        f"rows = run_experiment(Experiment(name='tiny', models=['xgboost'], horizons=[5], data_root={str(splits)!r},\n"
        f"    configs_dir={CONFIGS!r}, out={str(tmp_path / 'exp')!r}, blends=[],\n"
        "    fit_args=['--trainer.max_epochs', '1']))\n"
        "print('ROW-ERROR', rows[0]['error'])\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("ROW-ERROR")]
    assert "exited with code 1 before it started" in line and 'if __name__ == "__main__":' in line


@pytest.mark.parametrize(("key", "value"), [("blends", ["mean", "mean"]), ("models", ["lstm", "gru", "lstm"]),
                                            ("horizons", [5, 5])])  # fmt: skip
def test_a_repeated_model_horizon_or_blend_is_one_line(tmp_path, splits, capsys, key, value):
    """A repeat would be a second leaderboard row of the same candidate, counted as one more trial by the DSR."""
    spec = {"name": "dup", "models": ["lstm", "gru"], "horizons": [5], "data_root": str(splits),
            "out": str(tmp_path / "exp"), key: value}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(spec))
    assert main(["experiment", "--config", str(tmp_path / "exp.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{key}: {value[0]} listed more than once" in err[0], err
    assert not (tmp_path / "exp").exists()  # refused before any cell


def test_an_impossible_topk_fails_against_the_data_before_any_cell(tmp_path, splits, capsys):
    argv = _experiment(splits, tmp_path / "exp", "[lstm, lightgbm]", extra=["--trading", "{book: topk, k: 50}"])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trading.k must be <= half the symbols" in err[0] and "train" in err[0], err
    assert not (tmp_path / "exp").exists()  # the write check's probe folder is gone too: no empty experiment left
