"""`ensemble tune --tune.pruner hyperband|none` through the CLI: the named Optuna pruner is the one consulted."""

import optuna
import pytest
import yaml

from ensemble.cli import main

SPACE = {"model.init_args.learning_rate": {"type": "float", "low": 0.05, "high": 0.3, "log": True}}
PRUNERS = {"median": optuna.pruners.MedianPruner, "hyperband": optuna.pruners.HyperbandPruner,
           "none": optuna.pruners.NopPruner}


@pytest.fixture
def consulted(monkeypatch):
    """Records, per pruner class, the trial numbers whose reports it judged."""
    calls: dict[str, list[int]] = {name: [] for name in PRUNERS}
    for name, cls in PRUNERS.items():
        def spy(self, study, trial, _name=name, _orig=cls.prune):
            calls[_name].append(trial.number)
            return _orig(self, study, trial)

        monkeypatch.setattr(cls, "prune", spy)
    return calls


def _tune(tmp_path, fit_args, pruner: str, trials: int = 3) -> list[str]:
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    # min_data_in_leaf 5: the tiny splits would give the bundled 200 no tree, and one report per trial
    return ["tune", *fit_args("configs/lightgbm.yaml", epochs=3), "--data.seq_len", "1",
            "--model.init_args.min_data_in_leaf", "5",
            "--tune.n_trials", str(trials), "--tune.search_space", str(space), "--tune.pruner", pruner,
            "--tune.storage", f"sqlite:///{tmp_path / 'optuna.db'}", "--tune.study_name", "p",
            "--tune.out", str(tmp_path / "out"), "--tune.seed", "0"]


def test_hyperband_pruner_judges_every_trial(tmp_path, fit_args, consulted):
    assert main(_tune(tmp_path, fit_args, "hyperband")) == 0
    study = optuna.load_study(study_name="p", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert len(study.trials) == 3
    finished = {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    assert {t.state for t in study.trials} <= finished
    assert all(len(t.intermediate_values) >= 2 for t in study.trials)  # reports every epoch, not only once
    assert set(consulted["hyperband"]) == {0, 1, 2}
    assert not consulted["median"] and not consulted["none"]


def test_none_pruner_is_consulted_and_never_prunes(tmp_path, fit_args, consulted):
    assert main(_tune(tmp_path, fit_args, "none", trials=2)) == 0
    study = optuna.load_study(study_name="p", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert set(consulted["none"]) == {0, 1} and not consulted["hyperband"] and not consulted["median"]


def test_unknown_pruner_is_one_clear_line(tmp_path, fit_args, capsys):
    assert main(_tune(tmp_path, fit_args, "asha")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--tune.pruner must be one of median, hyperband, none, got 'asha'" in err[0], err
