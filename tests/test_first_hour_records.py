"""Issue 14, what a quant hits in the first hour: run records, where evaluations write, checkpoints found by
config, test left out on request, and tuning studies that keep their definition (items 1, 2, 3, 4, 12, 19).

- 1: a run's config.yaml stays byte-identical after evaluations of its checkpoint, failed ones included, and
  an export of it keeps the fit's seq_len.
- 2: an evaluation writes into ``<its checkpoint's run>/eval/<split>-<checkpoint>/``, never over the fit's
  artifacts and never into another run.
- 3: default run folders carry the horizon; ``--ckpt_path best|last`` takes the newest run whose model,
  horizon, seq_len and features match, and says which runs exist when none does.
- 4: ``fit --test false`` and tuning trials leave test alone; blends and leaderboards cope.
- 12: a resumed study with another search space, metric or model is refused before its first trial.
- 19: in tuning, early stopping follows ``--tune.metric``; best.yaml has no trial-only switches.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest
import yaml
from panels import make_frames, write_frames

from ensemble.cli import main
from ensemble.tuning.study import open_storage

SPACE = {"model.init_args.net.init_args.hidden_size": {"type": "int", "low": 4, "high": 8}}


# a net and a tree; LightGBM's config stops at once on tiny data without a small leaf size
RUNS = {"lstm": {}, "lightgbm": {"model__init_args__min_data_in_leaf": "5"}}


def _args(fit_args, name: str, **extra: str) -> list[str]:
    return fit_args(config=f"configs/{name}.yaml", epochs=1, **RUNS[name], **extra)


def _best(run: Path) -> Path:
    (best,) = [p for p in (run / "checkpoints").glob("best*") if not p.name.endswith(".meta.json")]
    return best


def _files(run: Path) -> dict[Path, bytes]:
    """Every file of a run but its evaluations and TensorBoard event files, with its bytes."""
    return {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and "eval" not in p.relative_to(run).parts
            and not p.name.startswith("events.")}  # fmt: skip


def _error_lines(capsys) -> list[str]:
    """The CLI's error lines on stderr (Lightning's own log lines, which may share stderr in a test session, aside)."""
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("ensemble: error:")]


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def _tune(tmp_path: Path, fit_args, spec: dict, *extra: str, trials: int = 1, base: list[str] | None = None):
    space = tmp_path / f"space{len(list(tmp_path.glob('space*.yaml')))}.yaml"
    space.write_text(yaml.safe_dump(spec))
    args = [*(base if base is not None else fit_args(epochs=1)), "--tune.n_trials", str(trials),
            "--tune.search_space", str(space), "--tune.storage", f"sqlite:///{tmp_path / 'optuna.db'}",
            "--tune.study_name", "s", "--tune.out", str(tmp_path / "out"), "--tune.seed", "0", *extra]  # fmt: skip
    return main(["tune", *args])


def _study(tmp_path: Path) -> optuna.Study:
    return optuna.load_study(study_name="s", storage=open_storage(f"sqlite:///{tmp_path / 'optuna.db'}"))


# -- item 1: the run's record never changes after the fit
@pytest.mark.parametrize("name", list(RUNS))
def test_config_yaml_survives_evaluations_and_failures_and_export_keeps_the_fits_seq_len(tmp_path, fit_args, name,
                                                                                         capsys):  # fmt: skip
    args = _args(fit_args, name)  # seq_len 5
    assert main(["fit", *args]) == 0
    run = tmp_path / "runs" / f"{name}_h5" / "version_0"
    record, best = (run / "config.yaml").read_bytes(), str(_best(run))
    for command in ("validate", "test", "predict"):
        assert main([command, *args, "--ckpt_path", best, "--data.batch_size", "16"]) == 0, command
    assert main(["test", *args, "--data.horizon", "20", "--ckpt_path", best]) == 2  # horizon mismatch
    assert "horizon" in capsys.readouterr().err
    assert main(["test", *args, "--data.seq_len", "3", "--ckpt_path", best]) == 2  # another window
    changed = (["--model.init_args.net.init_args.hidden_size", "16"] if name == "lstm"
               else ["--data.seq_len", "3"])  # fmt: skip
    assert main(["fit", *args, "--ckpt_path", "last", *changed]) == 2  # a resume that is refused
    assert (run / "config.yaml").read_bytes() == record
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "export")]) == 0
    assert json.loads((tmp_path / "export" / "metadata.json").read_text())["seq_len"] == 5


# -- item 2: an evaluation writes into its checkpoint's own run, beside the fit's artifacts
@pytest.mark.parametrize("name", list(RUNS))
def test_evaluation_lands_in_the_checkpoints_own_run_without_touching_the_fit(tmp_path, fit_args, name, capsys):
    assert main(["fit", *_args(fit_args, name, tracking__name="mine")]) == 0
    run = tmp_path / "runs" / "mine" / "version_0"
    fit_files, best = _files(run), str(_best(run))
    args = _args(fit_args, name)  # the config's default run name, not the checkpoint's
    assert main(["test", *args, "--ckpt_path", best]) == 0
    evaluation = run / "eval" / f"test-{Path(best).stem}"
    assert f"evaluation of {best}: {evaluation}" in capsys.readouterr().out
    metrics = _metrics(evaluation)
    assert metrics["checkpoint/test"] == str(Path(best).resolve()) and "test/f1_macro" in metrics
    fitted = _metrics(run)
    assert metrics["test/f1_macro"] == pytest.approx(fitted["test/f1_macro"], abs=1e-6)  # the same model, again
    assert (evaluation / "predictions" / "test.parquet").is_file() and (evaluation / "config.yaml").is_file()
    assert list((evaluation / "plots").glob("test_*.png"))
    assert _files(run) == fit_files  # the fit's artifacts, byte for byte
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["mine"]  # no other run folder

    (evaluation / "marker").write_text("an earlier evaluation")
    assert main(["test", *args, "--data.horizon", "20", "--ckpt_path", best]) == 2  # fails: the earlier one stays
    assert (evaluation / "marker").is_file() and not list((run / "eval").glob(".*"))
    assert main(["test", *args, "--ckpt_path", best]) == 0  # succeeds: replaces it whole
    assert not (evaluation / "marker").exists() and (evaluation / "metrics.json").is_file()
    assert main(["predict", *args, "--ckpt_path", best]) == 0  # predict: the same place
    assert (run / "eval" / f"predict-test-{Path(best).stem}" / "predictions" / "predict.parquet").is_file()
    predicted = f"predict-test-{Path(best).stem}"
    assert sorted(p.name for p in (run / "eval").iterdir()) == sorted([evaluation.name, predicted])
    capsys.readouterr()
    assert main(["test", *args]) == 2  # an evaluation of no checkpoint: nothing to write where
    assert "needs --ckpt_path" in _error_lines(capsys)[0]


# -- item 3: best|last finds the run of this config
@pytest.mark.parametrize("name", list(RUNS))
def test_best_is_the_newest_run_of_this_horizon_and_window(tmp_path, fit_args, name, capsys):
    assert main(["fit", *_args(fit_args, name, data__horizon="20")]) == 0
    assert (tmp_path / "runs" / f"{name}_h20" / "version_0" / "config.yaml").is_file()  # the horizon in the name
    capsys.readouterr()
    assert main(["test", *_args(fit_args, name), "--ckpt_path", "best"]) == 2  # h5 asked, only h20 exists
    err = _error_lines(capsys)
    assert len(err) == 1, err
    listed = f"{name}_h20/version_0 ({name}, horizon 20, seq_len 5, 4 features f0, f1, f2, f3)"
    assert listed in err[0] and "--ckpt_path <its checkpoint file>" in err[0], err[0]

    # one run name for every horizon and window: best|last still picks the run trained like this config
    mine = {"tracking__name": "mine"}
    assert main(["fit", *_args(fit_args, name, data__horizon="20", **mine)]) == 0  # version_0: h20
    assert main(["fit", *_args(fit_args, name, **mine)]) == 0  # version_1: h5
    assert main(["fit", *_args(fit_args, name, data__seq_len="3", **mine)]) == 0  # version_2: h5, seq_len 3
    capsys.readouterr()
    for horizon, seq_len, version in ((20, 5, 0), (5, 5, 1), (5, 3, 2)):
        assert main(["test", *_args(fit_args, name, data__horizon=str(horizon), data__seq_len=str(seq_len), **mine),
                     "--ckpt_path", "best"]) == 0  # fmt: skip
        (evaluation,) = (tmp_path / "runs" / "mine").glob("version_*/eval/test-best*")
        assert evaluation.parent.parent.name == f"version_{version}", (horizon, seq_len)
        shutil.rmtree(evaluation)
    assert main(["fit", *_args(fit_args, name, data__seq_len="4", **mine), "--ckpt_path", "last"]) == 2
    assert "seq_len 4" in capsys.readouterr().err


def test_best_skips_a_run_of_other_features(tmp_path, fit_args, capsys):
    """Same model, horizon and window, other feature columns: not the run asked for."""
    frames = {k: v.rename(columns={"f1": "f1_other"}) for k, v in make_frames().items()}
    other = write_frames(tmp_path / "other", frames)
    assert main(["fit", *_args(fit_args, "lstm"), "--data.root", str(other)]) == 0  # newest has other features
    capsys.readouterr()
    assert main(["test", *_args(fit_args, "lstm"), "--ckpt_path", "best"]) == 2
    assert "its features" in capsys.readouterr().err
    assert main(["fit", *_args(fit_args, "lstm")]) == 0
    assert main(["fit", *_args(fit_args, "lstm"), "--data.root", str(other)]) == 0
    assert main(["test", *_args(fit_args, "lstm"), "--ckpt_path", "best"]) == 0
    assert (tmp_path / "runs" / "lstm_h5" / "version_1" / "eval").is_dir()  # not version_2, the newest


# -- item 4: test only when asked
def test_fit_test_false_leaves_test_alone_and_a_blend_copes(tmp_path, fit_args):
    runs = []
    for name, extra in (("lstm", {}), ("lightgbm", {"model__init_args__min_data_in_leaf": "5"})):
        assert main(["fit", *fit_args(config=f"configs/{name}.yaml", epochs=1, test="false", **extra)]) == 0
        run = tmp_path / "runs" / f"{name}_h5" / "version_0"
        metrics = _metrics(run)
        assert "val/f1_macro" in metrics and not any(k.startswith("test/") for k in metrics), name
        assert not (run / "predictions" / "test.parquet").exists() and (run / "predictions" / "val.parquet").is_file()
        runs.append(str(run))
        from ensemble.experiments.cells import finished_runs

        assert [r for r, _ in finished_runs(run.parent)] == [run]  # an experiment cell skips it on a re-run
    assert main(["blend", "--runs", *runs, "--method", "mean", "--out", str(tmp_path / "blends")]) == 0
    (blend,) = (tmp_path / "blends").glob("*/version_0")
    assert "val/log_loss" in _metrics(blend) and "test/log_loss" not in _metrics(blend)

    from ensemble.experiments.leaderboard import row, write_leaderboard

    rows = [row(Path(r).parent.name, 5, "member", Path(r), "done") for r in runs]
    board = write_leaderboard([*rows, row("ensemble_mean", 5, "blend", blend, "done")], tmp_path / "board")
    assert board["val_log_loss_shared"].notna().all() and board["test_log_loss_shared"].isna().all()


def test_tune_trials_evaluate_test_only_when_asked(tmp_path, fit_args):
    assert _tune(tmp_path, fit_args, SPACE) == 0
    assert _tune(tmp_path, fit_args, SPACE, "--tune.test", "true") == 0
    first, second = (_metrics(Path(t.user_attrs["run_dir"])) for t in _study(tmp_path).trials)
    assert "val/f1_macro" in first and not any(k.startswith("test/") for k in first)
    assert "test/f1_macro" in second
    best = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    assert "test" not in best  # a refit of the best config evaluates test, as any fit does


# -- item 12: a study keeps its definition
def test_resume_with_another_search_space_is_refused_before_a_trial(tmp_path, fit_args, capsys):
    assert _tune(tmp_path, fit_args, SPACE) == 0
    changed = {"model.init_args.net.init_args.hidden_size": {"type": "categorical", "choices": [4, 8]}}
    capsys.readouterr()
    assert _tune(tmp_path, fit_args, changed) == 2
    err = _error_lines(capsys)
    assert len(err) == 1 and "study 's'" in err[0] and "hidden_size" in err[0] and "CategoricalDistribution" in err[0]
    assert _tune(tmp_path, fit_args, SPACE, "--tune.metric", "val/f1_macro") == 2  # its direction: maximize
    err = capsys.readouterr().err
    assert "metric was 'val/log_loss', now 'val/f1_macro'" in err and "direction was 'minimize'" in err
    assert len(_study(tmp_path).trials) == 1  # nothing ran
    assert _tune(tmp_path, fit_args, SPACE) == 0  # the same definition resumes
    assert len(_study(tmp_path).trials) == 2


def test_study_made_before_definitions_is_checked_against_its_trials(tmp_path, fit_args, capsys):
    assert _tune(tmp_path, fit_args, SPACE) == 0
    study = _study(tmp_path)
    study._storage.set_study_user_attr(study._study_id, "definition", None)  # as an older ensemble left it
    changed = {"model.init_args.net.init_args.hidden_size": {"type": "int", "low": 4, "high": 16}}
    capsys.readouterr()
    assert _tune(tmp_path, fit_args, changed) == 2
    assert "hidden_size' was IntDistribution(high=8" in capsys.readouterr().err


def test_tune_exits_non_zero_when_every_trial_fails(tmp_path, fit_args, capsys):
    spec = {"model.init_args.optimizer.init_args.lr": {"type": "categorical", "choices": [1e30]}}  # diverges
    assert _tune(tmp_path, fit_args, spec, trials=2) == 1
    out = capsys.readouterr()
    assert "all 2 trials of this run failed" in out.err and "trial 1 failed: " in out.out


# -- item 19: early stopping follows the tuned metric; best.yaml is a plain fit config
def test_tune_early_stopping_follows_the_metric_and_best_yaml_is_clean(tmp_path, splits):
    base = ["--config", "configs/lstm.yaml", "--data.root", str(splits), "--data.seq_len", "5",
            "--data.batch_size", "64", "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu",
            "--tracking.save_dir", str(tmp_path / "runs")]  # fmt: skip
    assert _tune(tmp_path, None, SPACE, "--tune.metric", "val/loss", "--tune.direction", "minimize", base=base) == 0
    (trial,) = _study(tmp_path).trials
    record = yaml.safe_load((Path(trial.user_attrs["run_dir"]) / "config.yaml").read_text())
    (stopper,) = [c for c in record["trainer"]["callbacks"] if c["class_path"].endswith("EarlyStopping")]
    assert (stopper["init_args"]["monitor"], stopper["init_args"]["mode"]) == ("val/loss", "min")
    assert record["trainer"]["enable_progress_bar"] is False  # the trial itself ran quiet
    best = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    assert "enable_progress_bar" not in best["trainer"] and "enable_model_summary" not in best["trainer"]
    assert "test" not in best and best["tracking"]["name"] == "s/best"
    (stopper,) = [c for c in best["trainer"]["callbacks"] if c["class_path"].endswith("EarlyStopping")]
    assert stopper["init_args"]["monitor"] == "val/loss"  # a refit stops as the trial did
