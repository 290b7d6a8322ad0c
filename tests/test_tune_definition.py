"""A study's definition holds the data its trials read (root, horizon, seq_len, features): a resume that changes
them is refused in one line before trial 1 (and before the seed line); the default study name carries the
horizon; best.yaml is the config a user refits (not the trials' thread settings) and labels its value."""

import json
import shutil
from pathlib import Path

import optuna
import pytest
import yaml

from ensemble.cli import main
from ensemble.tuning.record import read_tune_record
from ensemble.tuning.study import open_storage

LSTM_SPACE = {"model.init_args.net.init_args.hidden_size": {"type": "int", "low": 4, "high": 8}}
TREE_SPACE = {"model.init_args.num_leaves": {"type": "int", "low": 4, "high": 8}}


def _args(tmp_path, fit_args, *extra, config="configs/lstm.yaml", space=LSTM_SPACE, name="s"):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    named = ["--tune.study_name", name] if name else []
    return [*fit_args(config, epochs=1), "--tune.n_trials", "1", "--tune.search_space", str(path),
            "--tune.storage", f"sqlite:///{tmp_path / 'optuna.db'}", "--tune.out", str(tmp_path / "out"),
            "--tune.seed", "0", *named, *extra]  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--data.horizon", "20"], "horizon was '5', now '20'"),
        (["--data.seq_len", "3"], "seq_len was '5', now '3'"),
        (["--data.exclude", "[f3]"], "features changed (['f3'] removed)"),
        (["--data.root", "MOVED"], "data_root was '"),
    ],
)
def test_resume_with_other_data_is_refused_before_trial_one(tmp_path, fit_args, capsys, flags, said):
    assert main(["tune", *_args(tmp_path, fit_args)]) == 0
    capsys.readouterr()
    if "MOVED" in flags:  # the same files in another folder: another data set as far as the study knows
        moved = tmp_path / "moved"
        shutil.copytree(Path(fit_args()[fit_args().index("--data.root") + 1]), moved)
        flags = ["--data.root", str(moved)]
    assert main(["tune", *_args(tmp_path, fit_args, *flags)]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "study 's' was made with another definition" in lines[0] and said in lines[0]
    assert "Seed set to" not in out + err  # the study never started
    study = optuna.load_study(study_name="s", storage=open_storage(f"sqlite:///{tmp_path / 'optuna.db'}"))
    assert len(study.trials) == 1  # no trial of the other data joined it


def test_default_study_name_carries_the_horizon(tmp_path, fit_args, capsys):
    assert main(["tune", *_args(tmp_path, fit_args, name=None)]) == 0
    assert main(["tune", *_args(tmp_path, fit_args, "--data.horizon", "20", name=None)]) == 0
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(open_storage(url)))
    assert names == ["space_h20", "space_h5"]  # two studies, neither joined the other
    definition = optuna.load_study(study_name="space_h20", storage=open_storage(url)).user_attrs["definition"]
    assert (definition["horizon"], definition["seq_len"], definition["features"]) == (20, 5, ["f0", "f1", "f2", "f3"])


def test_best_config_drops_trial_threads_and_labels_its_value(tmp_path, fit_args, capsys):
    args = _args(tmp_path, fit_args, "--threads", "2", config="configs/lightgbm.yaml", space=TREE_SPACE)
    assert main(["tune", *args]) == 0
    out = capsys.readouterr().out
    assert "best trial 0: val/log_loss before calibration " in out
    study = optuna.load_study(study_name="s", storage=open_storage(f"sqlite:///{tmp_path / 'optuna.db'}"))
    trial_cfg = yaml.safe_load((Path(study.trials[0].user_attrs["run_dir"]) / "config.yaml").read_text())
    assert trial_cfg["model"]["init_args"]["n_jobs"] == 2  # the trial ran with the study's thread share
    best_path = tmp_path / "out" / "best.yaml"
    best = yaml.safe_load(best_path.read_text())
    assert "n_jobs" not in best["model"]["init_args"]  # a refit uses the library's default, as the user's config
    assert best["model"]["init_args"]["num_leaves"] == study.best_params["model.init_args.num_leaves"]
    record = read_tune_record(best_path)
    assert record["val/log_loss before calibration"] == pytest.approx(study.best_value)
    assert f"val/log_loss before calibration {study.best_value}" in best_path.read_text().splitlines()[0]
    metrics = json.loads((Path(study.trials[0].user_attrs["run_dir"]) / "metrics.json").read_text())
    assert metrics["calibration/val_log_loss_before"] == pytest.approx(study.best_value, abs=1e-6)


def test_user_n_jobs_is_kept_in_best_config(tmp_path, fit_args, capsys):
    args = _args(tmp_path, fit_args, "--threads", "2", "--model.init_args.n_jobs", "1",
                 config="configs/lightgbm.yaml", space=TREE_SPACE)  # fmt: skip
    assert main(["tune", *args]) == 0
    assert yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())["model"]["init_args"]["n_jobs"] == 1


@pytest.mark.parametrize("stored", ["without data keys", "none"])
def test_older_study_is_checked_against_its_trials_runs(tmp_path, fit_args, capsys, stored):
    """A study stored before its definition held the data (or any definition): its trials' run records tell the
    horizon it was tuned at, so a resume at another horizon is still refused."""
    assert main(["tune", *_args(tmp_path, fit_args)]) == 0
    study = optuna.load_study(study_name="s", storage=open_storage(f"sqlite:///{tmp_path / 'optuna.db'}"))
    definition = study.user_attrs["definition"]
    old = {k: definition[k] for k in ("model", "metric", "direction", "search_space")}
    study.set_user_attr("definition", old if stored != "none" else None)  # None: as before definitions existed
    capsys.readouterr()
    assert main(["tune", *_args(tmp_path, fit_args, "--data.horizon", "20")]) == 2
    assert "horizon was '5', now '20'" in capsys.readouterr().err
