"""`ensemble tune`: search spaces, failures, resume, parallel workers, best.yaml, pruning wiring."""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from ensemble.cli import main
from ensemble.tuning.study import open_storage

SPACE = {
    "model.init_args.net.init_args.hidden_size": {"type": "int", "low": 4, "high": 12},
    "model.init_args.optimizer.init_args.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
}


def _space(tmp_path, spec=None) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(spec or SPACE))
    return path


def _tune_args(tmp_path, fit_args, trials=2, storage=None, space=None, **tune):
    args = [*fit_args(epochs=2), "--tune.n_trials", str(trials), "--tune.search_space", str(space or _space(tmp_path)),
            "--tune.storage", storage or f"sqlite:///{tmp_path / 'optuna.db'}", "--tune.study_name", "s",
            "--tune.out", str(tmp_path / "out"), "--tune.seed", "0"]
    for key, value in tune.items():
        args += [f"--tune.{key}", str(value)]
    return args


def _study(url: str) -> optuna.Study:
    return optuna.load_study(study_name="s", storage=open_storage(url))


def test_study_runs_resumes_and_writes_best_config(tmp_path, fit_args, capsys):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert main(["tune", *_tune_args(tmp_path, fit_args)]) == 0
    assert main(["tune", *_tune_args(tmp_path, fit_args, trials=1)]) == 0  # same name: resumes
    study = _study(url)
    assert len(study.trials) == 3
    for trial in study.trials:  # the pruning callback reported every epoch
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert len(trial.intermediate_values) == 2
            assert (Path(trial.user_attrs["run_dir"]) / "metrics.json").is_file()  # the usual run layout
    out = tmp_path / "out"
    for name in ("best.yaml", "trials.csv", "history.png", "param_importances.png"):
        assert (out / name).is_file(), name

    # best.yaml is a runnable config that reproduces the best trial's val metric
    assert main(["fit", "--config", str(out / "best.yaml")]) == 0
    best = yaml.safe_load((out / "best.yaml").read_text())
    run = Path(best["tracking"]["save_dir"]) / best["tracking"]["name"] / "version_0"
    metrics = json.loads((run / "metrics.json").read_text())
    # the default --tune.metric, val/log_loss, as the trial reported it: before the run's temperature, which
    # is fitted on val after training (the record keeps both)
    assert metrics["calibration/val_log_loss_before"] == pytest.approx(study.best_value, abs=1e-6)
    assert metrics["val/log_loss"] <= metrics["calibration/val_log_loss_before"]


def test_failing_trial_is_recorded_and_study_goes_on(tmp_path, fit_args):
    spec = {**SPACE, "model.init_args.net.init_args.num_layers": {"type": "categorical", "choices": [1, -1]}}
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = _tune_args(tmp_path, fit_args, trials=4, space=_space(tmp_path, spec))
    assert main(["tune", *args]) == 0
    states = [t.state for t in _study(url).trials]
    assert optuna.trial.TrialState.FAIL in states and optuna.trial.TrialState.COMPLETE in states
    failed = next(t for t in _study(url).trials if t.state == optuna.trial.TrialState.FAIL)
    assert "num_layers must be greater than zero" in failed.user_attrs["error"]


def test_non_finite_metric_is_never_best(tmp_path, fit_args):
    spec = {"model.init_args.optimizer.init_args.lr": {"type": "categorical", "choices": [1e-3, 1e30]}}
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert main(["tune", *_tune_args(tmp_path, fit_args, trials=4, space=_space(tmp_path, spec))]) == 0
    study = _study(url)
    assert study.best_params["model.init_args.optimizer.init_args.lr"] == 1e-3
    exploded = [t for t in study.trials if t.params["model.init_args.optimizer.init_args.lr"] == 1e30]
    assert exploded and all(t.state != optuna.trial.TrialState.COMPLETE for t in exploded)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"model.init_args.net.init_args.hiden_size": {"type": "int", "low": 2, "high": 4}}, "hiden_size"),
        ({"model.init_args.net.init_args.hidden_size": {"type": "normal", "low": 2}}, "unknown distribution 'normal'"),
    ],
)
def test_bad_search_space_fails_before_trial_one(tmp_path, fit_args, capsys, spec, message):
    assert main(["tune", *_tune_args(tmp_path, fit_args, space=_space(tmp_path, spec))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "runs").exists()  # no trial ran


def test_unreachable_storage_is_one_clear_line(tmp_path, fit_args, capsys):
    url = "postgresql://nobody@127.0.0.1:9/none"
    assert main(["tune", *_tune_args(tmp_path, fit_args, storage=url)]) == 2
    err = capsys.readouterr().err
    assert "storage 'postgresql://nobody@127.0.0.1:9/none' cannot be opened" in err


def run_workers(tmp_path, fit_args, url: str, workers: int = 2, trials: int = 2) -> optuna.Study:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-m", "ensemble.cli", "tune",
                          *_tune_args(tmp_path, fit_args, trials=trials, storage=url, seed=i),
                          "--tune.pruner", "none"],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for i in range(workers)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-3000:]
    return _study(url)


def test_parallel_workers_share_one_study(tmp_path, fit_args):
    study = run_workers(tmp_path, fit_args, f"journal:{tmp_path / 'journal.log'}")
    numbers = sorted(t.number for t in study.trials)
    assert numbers == [0, 1, 2, 3]  # N processes x k trials, none lost, none duplicated
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    run_dirs = {t.user_attrs["run_dir"] for t in study.trials}
    assert len(run_dirs) == 4


def test_trials_are_mlflow_children_of_the_study_run(tmp_path, fit_args):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [*_tune_args(tmp_path, fit_args, trials=2), "--tracking.mlflow", "true", "--tracking.mlflow_uri", uri]
    assert main(["tune", *args]) == 0
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("ensemble").experiment_id])
    (parent,) = [r for r in runs if r.info.run_name == "tune:s"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 and all("val/f1_macro" in r.data.metrics for r in children)
