"""Issue 14, what a quant hits in the first hour: noise, help and plots (items 13 to 18).

- 13: piped output has no bars and none of Lightning's notes a user cannot act on; ``--quiet`` prints the table
  and errors only; a tuning study prints its seed once and a line per trial, no table per trial.
- 14: one result table (integer counts as integers) for fit, test, blend and experiment's leaderboard.
- 15: ``predict --help`` shows the export form; every ``--tracking.*``/``--tune.*`` option is described;
  ``--ckpt_path`` says how best/last resolve; ``models`` says what it lists; one optimizer place, one monitor.
- 16: a val split evaluated in part is flagged in metrics.json and in the table.
- 17: figures name model, horizon and split, with units on every axis; the leaderboard chart and tuning history.
- 18: uniform and class-prior baselines on the leaderboard, hand-checked.
"""

import json
import logging
import math
import subprocess
import sys
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from ensemble import console
from ensemble.cli import main
from ensemble.experiments.leaderboard import CHANCE_F1, UNIFORM_LOG_LOSS, chart, row, write_leaderboard
from ensemble.training.results import format_cell, metrics_table

ROOT = Path(__file__).parents[1]
LGB_TINY = ["--model.init_args.min_data_in_leaf", "5"]  # LightGBM stops at once on tiny data without it


def _cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ensemble.cli", *argv], capture_output=True, text=True, timeout=600)


def _piped(fit_args, config: str = "configs/lstm.yaml", **extra: str) -> list[str]:
    """fit_args without its progress-bar flag: the CLI decides from whether stderr is a terminal (it is not)."""
    args = fit_args(config=config, **extra)
    i = args.index("--trainer.enable_progress_bar")
    return args[:i] + args[i + 2 :]


def _is_table(lines: list[str], splits: tuple[str, ...] = ("val", "test")) -> bool:
    """run:, checkpoint:, a header naming the splits, then one row per metric with a cell per split."""
    return (lines[0].startswith("run: ") and lines[1].startswith(("checkpoint: ", "blend: "))
            and lines[2].split() == ["metric", *splits]
            and all(len(line.split()) == 1 + len(splits) for line in lines[3:]) and len(lines) > 20)  # fmt: skip


# -- 13: logs
def test_piped_fit_and_resume_show_no_note_the_user_cannot_act_on(fit_args, tmp_path):
    first = _cli("fit", *_piped(fit_args, epochs=1))
    assert first.returncode == 0, first.stderr
    resumed = _cli("fit", *_piped(fit_args, epochs=2), "--ckpt_path", "last")  # into the same run folder
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(p.name for p in (tmp_path / "runs" / "lstm_h5").iterdir()) == ["version_0"]
    for out in (first, resumed):
        text = out.stdout + out.stderr
        assert "LeafSpec" not in text and "litlogger" not in text and "exists and is not empty" not in text
        assert "it/s" not in text  # no bar drawn into a pipe
    epochs = [ln for ln in resumed.stdout.splitlines() if ln.startswith("epoch ")]
    assert len(epochs) == 1 and epochs[0].startswith("epoch 1:")  # the resumed epoch, once


def test_unactionable_notes_are_dropped_by_message_only():
    """The filters are precise: other warnings and log lines of the same libraries still show."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    handler, propagate = Keep(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            console.silence_unactionable()
            console.resuming_quietly()
            warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1)
            warnings.warn("Checkpoint directory /x/checkpoints exists and is not empty.", UserWarning, stacklevel=1)
            warnings.warn("`something else` is deprecated", FutureWarning, stacklevel=1)
            warnings.warn("Checkpoint directory is missing", UserWarning, stacklevel=1)
            warnings.warn("The dirpath has changed from '/r/checkpoints' to '/r/eval/.test-best.partial-1/checkpoints',"
                          " therefore `best_model_score` ... won't be reloaded.", UserWarning, stacklevel=1)
        logger.setLevel(logging.INFO)
        logger.info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]")
        logger.info("GPU available: False, used: False")
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    assert [str(w.message) for w in caught] == ["`something else` is deprecated", "Checkpoint directory is missing"]
    assert records == ["GPU available: False, used: False"]


@pytest.mark.parametrize("config", ["configs/lstm.yaml", "configs/lightgbm.yaml"])
def test_quiet_fit_prints_the_table_and_nothing_else(fit_args, tmp_path, config):
    tiny = LGB_TINY if "lightgbm" in config else []
    out = _cli("--quiet", "fit", *_piped(fit_args, config=config), *tiny)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    lines = out.stdout.splitlines()
    assert _is_table(lines), out.stdout
    rows = {ln.split()[0]: ln.split()[1:] for ln in lines[3:]}
    assert rows["n_trades"][0].isdigit() and rows["ic_skipped"][1].isdigit()  # 14: counts as integers
    assert rows["bars_per_year"][0].isdigit() and "." in rows["f1_macro"][0]


def test_quiet_holds_for_test_blend_and_errors(fit_args, tmp_path, capsys):
    runs = []
    for seed in (0, 1):  # two LightGBM runs to blend
        args = [*fit_args(config="configs/lightgbm.yaml"), *LGB_TINY, "--seed_everything", str(seed)]
        assert main(["--quiet", "fit", *args]) == 0
        runs.append(tmp_path / "runs" / "lightgbm_h5" / f"version_{seed}")
    capsys.readouterr()
    assert main(["--quiet", "test", *fit_args(config="configs/lightgbm.yaml"), *LGB_TINY, "--ckpt_path", "best"]) == 0
    out = capsys.readouterr()
    assert out.err == "" and _is_table(out.out.splitlines(), ("test",)), out.out
    assert main(["--quiet", "blend", "--runs", *map(str, runs), "--method", "mean", "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr()
    assert out.err == "" and _is_table(out.out.splitlines()), out.out
    assert main(["--quiet", "blend", "--runs", str(runs[0]), "--out", str(tmp_path / "b")]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.startswith("ensemble: error: ")  # errors still show


def _tune(fit_args, tmp_path, config: str, *quiet: str) -> subprocess.CompletedProcess:
    space = tmp_path / "space.yaml"
    key = "model.init_args.net.init_args.hidden_size" if "lstm" in config else "model.init_args.num_leaves"
    space.write_text(yaml.safe_dump({key: {"type": "int", "low": 4, "high": 8}}))
    extra = LGB_TINY if "lightgbm" in config else []
    return _cli(*quiet, "tune", *_piped(fit_args, config=config), *extra, "--tune.n_trials", "2",
                "--tune.search_space", str(space), "--tune.storage", f"sqlite:///{tmp_path / 'optuna.db'}",
                "--tune.study_name", "s", "--tune.out", str(tmp_path / "out"), "--tune.pruner", "none")  # fmt: skip


def test_tune_prints_the_seed_once_and_a_line_per_trial(fit_args, tmp_path):
    out = _tune(fit_args, tmp_path, "configs/lstm.yaml")
    assert out.returncode == 0, out.stderr
    text = out.stdout + out.stderr
    assert text.count("Seed set to") == 1 and "Seed set to 0 for every trial" in out.stdout
    # a line per trial in --tune.workers' format (Optuna's own INFO lines are off)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("[")]
    assert [ln.split(":")[0] for ln in lines] == ["[1/2] trial 0", "[2/2] trial 1"], out.stdout
    assert all(": complete in " in ln and "val/log_loss" in ln and "(" not in ln for ln in lines), lines  # no worker
    assert "finished with value" not in text and "A new study created" not in text
    assert "metric " not in text and "f1_macro  " not in text  # no result table per trial
    assert "epoch 0:" not in text and "GPU available" not in text and "Restoring states" not in text
    assert "experimental" not in text and "RetryFailedTrialCallback" not in text


def test_quiet_tune_prints_only_the_study_result(fit_args, tmp_path):
    out = _tune(fit_args, tmp_path, "configs/lightgbm.yaml", "--quiet")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and lines[0] == "study 's': 2 trials, 2 finished" and lines[1].startswith("best trial")


# -- 14: one table
def test_the_table_format():
    assert format_cell("val/n_trades", 34.0) == "34" and format_cell("ic_skipped", 0.0) == "0"
    assert format_cell("bars_per_year", 8760.0) == "8760" and format_cell("bars_per_year", 8765.81) == "8765.8100"
    assert format_cell("f1_macro", 1.0) == "1.0000" and format_cell("sharpe", float("nan")) == "-"
    table = metrics_table({"test/f1_macro": 0.5, "val/f1_macro": 0.25, "val/n_trades": 12.0, "fit/train_time_s": 3.0})
    assert table.splitlines() == ["metric       val    test", "f1_macro  0.2500  0.5000", "n_trades      12       -"]


def test_experiment_ends_with_its_leaderboard_and_keeps_each_cells_log(tmp_path, splits, capsys):
    argv = ["--quiet", "experiment", "--name", "tiny", "--models", "[lightgbm]", "--horizons", "[5]",
            "--data_root", str(splits), "--configs_dir", str(ROOT / "configs"), "--out", str(tmp_path / "exp"),
            "--fit_args", '[--trainer.max_epochs, "1", --model.init_args.min_data_in_leaf, "5"]', "--blends", "[]"]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert out.err == ""
    lines = out.out.strip().splitlines()
    assert lines[0].startswith("leaderboard: ") and lines[1].split()[:4] == ["model", "horizon", "kind", "status"]
    assert sorted(ln.split()[0] for ln in lines[2:]) == ["class_prior", "lightgbm", "random_prior", "uniform"]
    log = (tmp_path / "exp" / "runs" / "lightgbm_h5" / "cell.log").read_text()
    assert "lightgbm epoch 0" in log and "n_trades" in log  # the cell's own progress and table, in its folder


# -- 15: help
def test_predict_help_shows_the_export_form_and_how_best_and_last_resolve(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--config", str(ROOT / "configs/lstm.yaml"), "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--from SOURCE", "--input INPUT", "--out OUT", "--ckpt_path CKPT_PATH"):
        assert option in text
    assert ("newest run under <tracking.save_dir>/<tracking.name> whose model and its hyper-parameters (not the "
            "optimizer), horizon, seq_len and features match this config") in text


@pytest.mark.parametrize(("argv", "prefix"), [
    (["fit", "--config", str(ROOT / "configs/lstm.yaml"), "--help"], "--tracking."),
    (["fit", "--config", str(ROOT / "configs/xgboost.yaml"), "--help"], "--tracking."),
    (["tune", "--help"], "--tune."),
])  # fmt: skip
def test_every_tracking_and_tune_option_is_described(argv, prefix, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    lines = capsys.readouterr().out.splitlines()
    options = [i for i, ln in enumerate(lines) if ln.strip().startswith(prefix) and not ln.strip().startswith(
        f"{prefix[:-1]} CONFIG")]  # fmt: skip
    assert len(options) >= 6
    for i in options:
        words = lines[i].split()[2:] + lines[i + 1].split()  # the description, on the option's line or the next
        assert words and not words[0].startswith(("--", "(type")), lines[i : i + 2]
    if "--tracking." in prefix:
        assert "best" in " ".join(lines).split("--ckpt_path CKPT_PATH")[-1][:400]


def test_models_says_what_it_lists(capsys):
    assert main(["models"]) == 0
    first = capsys.readouterr().out.split("\n\n")[0]
    assert first.startswith("The models this installation can train") and "ensemble fit --config" in first


def test_print_config_has_one_optimizer_place_and_one_monitor(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(ROOT / "configs/lstm.yaml"), "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    assert "optimizer" not in config and "lr_scheduler" not in config  # LightningCLI's own, unused
    assert "optimizer" in config["model"]["init_args"] and "monitor" not in config["model"]["init_args"]
    assert config["checkpoint"]["monitor"] == "val/log_loss"  # the bundled configs' default (docs/benchmarks.md)


def test_the_plateau_scheduler_watches_the_checkpoint_monitor(fit_args, splits, capsys):
    from ensemble.training.family import build

    job = build(ROOT / "configs/lstm.yaml", {"checkpoint.monitor": "val/log_loss", "checkpoint.mode": "min",
                                            "data.root": str(splits), "trainer.logger": False})  # fmt: skip
    assert job.model.hparams["monitor"] == "val/log_loss"
    plateau = '{class_path: torch.optim.lr_scheduler.ReduceLROnPlateau, init_args: {patience: 1}}'
    f1 = ["--checkpoint.monitor", "val/f1_macro", "--checkpoint.mode", "max"]  # the bundled configs watch log loss
    assert main(["fit", *fit_args(), *f1, "--model.init_args.scheduler", plateau]) == 2  # torch's min, checkpoint max
    assert "ReduceLROnPlateau has mode 'min' but watches checkpoint.monitor in mode 'max'" in capsys.readouterr().err


def test_a_monitor_in_the_wrong_mode_is_refused_before_training(fit_args, splits, tmp_path, capsys):
    """The code's defaults watch val/log_loss in mode min (as the configs do); switching the monitor to a
    higher-is-better metric without its mode would keep the worst epoch, for nets and trees alike."""
    from test_trees_cli import cli

    from ensemble.metrics.suite import metric_mode
    from ensemble.training.trees.callbacks import EarlyStopping, ModelCheckpoint
    from ensemble.tuning.study import TuneConfig

    assert [metric_mode(m) for m in ("val/log_loss", "oof/brier", "loss", "val/f1_macro", "sharpe")] == [
        "min", "min", "min", "max", "max"]  # fmt: skip
    assert (EarlyStopping().monitor, EarlyStopping().mode) == ("val/log_loss", "min")
    assert (ModelCheckpoint().monitor, ModelCheckpoint().mode) == ("val/log_loss", "min")
    assert (TuneConfig().metric, TuneConfig().direction) == ("val/log_loss", None)  # None: the metric's own
    assert main(["fit", *fit_args(), "--checkpoint.monitor", "val/f1_macro"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ensemble: error: checkpoint watches val/f1_macro, where higher is better, in mode 'min'; "
                   "set its mode: max"]  # fmt: skip
    early = '[{class_path: lightning.pytorch.callbacks.EarlyStopping, init_args: {monitor: val/sharpe}}]'
    assert main(["fit", *fit_args(), "--trainer.callbacks", early]) == 2
    assert "EarlyStopping watches val/sharpe, where higher is better, in mode 'min'" in capsys.readouterr().err
    tree = cli("xgboost", splits, tmp_path / "t", "--checkpoint.monitor", "val/f1_macro", "--trainer.callbacks", "[]")
    assert main(tree) == 2
    assert "ModelCheckpoint watches val/f1_macro, where higher is better, in mode 'min'" in capsys.readouterr().err
    assert not list((tmp_path / "t").rglob("version_*"))  # refused before round 1 and before any log: no folder
    own = '[{class_path: lightning.pytorch.callbacks.EarlyStopping, init_args: {monitor: val/log_loss, mode: min}}]'
    assert main(["fit", *fit_args(epochs=1), "--trainer.callbacks", own]) == 0  # the right modes train


# -- 16: partial validation
def test_partial_validation_is_flagged_in_metrics_json_and_the_table(fit_args, tmp_path, capsys):
    args = fit_args(epochs=1, data__batch_size=16, trainer__limit_val_batches=0.5)
    assert main(["fit", *args]) == 0
    metrics = json.loads((tmp_path / "runs" / "lstm_h5" / "version_0" / "metrics.json").read_text())
    assert metrics["val/partial"] is True and metrics["test/partial"] is False
    out = capsys.readouterr().out
    header = next(ln for ln in out.splitlines() if ln.startswith("metric"))
    assert header.split() == ["metric", "val", "(partial)", "test"] and "evaluated on part of the val split" in out
    assert "< 1" not in out and "a fraction under 1.0, or fewer batches than it has" in out  # an int limit too
    assert main(["validate", *fit_args(data__batch_size=16, trainer__limit_val_batches=2), "--ckpt_path", "best"]) == 0
    out = capsys.readouterr().out  # an integer limit: two batches of several
    assert "(partial)" in out and "< 1" not in out, out
    assert main(["validate", *fit_args(), "--ckpt_path", "best"]) == 0  # the whole split: not partial
    out = capsys.readouterr().out
    assert next(ln for ln in out.splitlines() if ln.startswith("metric")).split() == ["metric", "val"]
    assert "evaluated on part" not in out


# -- 17: plots
def _spy_figures(monkeypatch, module) -> list[tuple[str, list]]:
    """Every figure ``module`` writes: (file name, its axes), read back before it is closed."""
    seen: list[tuple[str, list]] = []
    real = module.write_figure

    def spy(path, fig):
        seen.append((Path(path).name, [(a.get_title(), a.get_xlabel(), a.get_ylabel()) for a in fig.axes]))
        return real(path, fig)

    monkeypatch.setattr(module, "write_figure", spy)
    return seen


def test_run_figures_name_model_horizon_split_and_units(fit_args, monkeypatch):
    import ensemble.training.artifacts as artifacts

    seen = _spy_figures(monkeypatch, artifacts)
    assert main(["fit", *fit_args(config="configs/lightgbm.yaml"), *LGB_TINY]) == 0
    assert {name for name, _ in seen} >= {"val_confusion_matrix.png", "test_equity_curve.png", "test_ic.png",
                                          "feature_importance.png"}  # fmt: skip
    names = [name for name, _ in seen]  # each drawn once: val at T = 1 is re-evaluated once calibrated, drawn then
    assert len(names) == len(set(names)), sorted(names)
    for name, axes in seen:
        split = "train" if name == "feature_importance.png" else name.split("_")[0]
        title = next(t for t, _, _ in axes if t)
        assert "lightgbm" in title and "h=5" in title and split in title, (name, title)
        labels = [label for _, x, y in axes for label in (x, y) if label]
        assert all("(" in label or label in ("true class", "feature", "search-space key") for label in labels), labels
    (importance,) = [axes for name, axes in seen if name == "feature_importance.png"]
    assert "by gain" in importance[0][0] and importance[0][1].startswith("gain (share of the total")


def test_importance_figure_leaves_out_zero_bars():
    from ensemble.training.plots import feature_importance_figure

    fig = feature_importance_figure(pd.Series([0.6, 0.0, 0.4, 0.0], index=["a", "b", "c", "d"]), "m h=5, train",
                                    "gain (share of the total)")  # fmt: skip
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["c", "a"]
    assert "(2 features at 0 not shown)" in ax.get_title()
    plt.close(fig)


def test_leaderboard_chart_starts_near_the_data_draws_chance_and_sets_kinds_apart():
    df = pd.DataFrame([
        {"model": "lightgbm", "kind": "member", "val_f1_macro": 0.41, "test_f1_macro": 0.40},
        {"model": "lstm", "kind": "member", "val_f1_macro": 0.39, "test_f1_macro": 0.38},
        {"model": "ensemble_mean", "kind": "blend", "val_f1_macro": 0.42, "test_f1_macro": 0.40},
        {"model": "uniform", "kind": "baseline", "val_f1_macro": 0.17, "test_f1_macro": 0.16},
    ]).assign(horizon=5, status="done", val_log_loss_shared=[1.05, 1.07, 1.04, 1.0986],
              test_log_loss_shared=[1.06, 1.08, 1.05, 1.0986],
              val_ic=[0.03, 0.01, 0.035, np.nan], test_ic=[0.02, -0.01, 0.025, np.nan])  # fmt: skip
    fig = chart(df)
    f1_ax, loss_ax, ic_ax = fig.axes
    assert f1_ax.get_ylim()[0] > 0.1 and "macro-F1" in f1_ax.get_ylabel() and "h=5" in f1_ax.get_title()
    assert any(np.allclose(line.get_ydata(), CHANCE_F1) for line in f1_ax.lines)
    assert any(np.allclose(line.get_ydata(), UNIFORM_LOG_LOSS) for line in loss_ax.lines)
    assert loss_ax.get_ylim()[0] > 1.0 and "nats" in loss_ax.get_ylabel()
    hatches = [bar.get_hatch() or "" for bar in f1_ax.patches]
    assert hatches == ["", "", "//", "..", "", "", "//", ".."]  # val bars then test bars, in row order
    legend = [t.get_text() for t in f1_ax.get_legend().get_texts()]
    assert {"val", "test", "blend", "baseline (a guess)"} <= set(legend) and any("chance" in t for t in legend)
    # the IC by horizon (issue 17): a no-skill line at 0, the baselines' undefined IC not drawn
    assert "IC of p_long - p_short" in ic_ax.get_title() and "h=5" in ic_ax.get_title()
    assert any(np.allclose(line.get_ydata(), 0.0) for line in ic_ax.lines) and "IC" in ic_ax.get_ylabel()
    assert sorted(round(bar.get_height(), 3) for bar in ic_ax.patches) == [-0.01, 0.01, 0.02, 0.025, 0.03, 0.035]
    plt.close(fig)


def test_tuning_history_names_the_metric_and_its_direction(tmp_path, monkeypatch):
    import ensemble.tuning.report as report

    seen = _spy_figures(monkeypatch, report)
    study = optuna.create_study(direction="minimize", study_name="s")
    study.optimize(lambda t: (t.suggest_float("lr", 0.0, 1.0) - 0.3) ** 2 + t.suggest_int("n", 1, 3), n_trials=6)
    report.write_report(study, tmp_path, "val/log_loss", "lstm h=20")
    figures = dict(seen)
    history = figures["history.png"][0]
    assert "lstm h=20" in history[0] and "val/log_loss" in history[0] and "minimize: lower is better" in history[0]
    assert history[1] == "trial number" and history[2].startswith("val/log_loss")
    importance = figures["param_importances.png"][0]
    assert "PED-ANOVA" in importance[1] and "val/log_loss" in importance[0]


# -- 18: baselines
TRAIN_LABELS = [-1, -1, 0, 0, 0, 0, 1, 1]  # train shares short/flat/long: 1/4, 1/2, 1/4
LABELS = [-1, 0, 1, 1, 0, 1]  # the val and test rows every run predicted
TIMES = pd.date_range("2023-01-02", periods=6, freq="D")


def _run(root: Path, name: str, p_true: float, members: list[Path] | None = None) -> Path:
    """A finished run giving probability ``p_true`` to each row's true class (the rest split evenly)."""
    run = root / name / "version_0"
    (run / "predictions").mkdir(parents=True)
    probs = np.full((len(LABELS), 3), (1 - p_true) / 2)
    probs[np.arange(len(LABELS)), np.asarray(LABELS) + 1] = p_true
    for split in ("val", "test"):
        pd.DataFrame({"datetime": TIMES, "symbol": "X", "label": LABELS, "prob_short": probs[:, 0],
                      "prob_flat": probs[:, 1], "prob_long": probs[:, 2], "prediction": np.asarray(LABELS),
                      "fwd_return": np.linspace(-0.02, 0.02, 6)}).to_parquet(run / "predictions" / f"{split}.parquet")
    loss = -math.log(p_true)
    (run / "metrics.json").write_text(json.dumps({"val/log_loss": loss, "test/log_loss": loss}))
    data = {"horizon": 5, "bars_per_year": 252}
    if members is None:
        data["root"] = str(root / "data")
    else:
        (run / "blend.json").write_text(json.dumps({"members": [str(m) for m in members]}))
    (run / "config.yaml").write_text(yaml.safe_dump({"data": data}))
    return run


def test_baselines_are_scored_on_the_same_rows_and_never_chosen(tmp_path):
    (tmp_path / "data").mkdir()
    pd.DataFrame({"datetime": pd.date_range("2022-01-03", periods=8, freq="D"), "symbol": "X", "f0": 0.5,
                  "label_h5": TRAIN_LABELS, "fwd_return_h5": 0.01},
                 ).to_parquet(tmp_path / "data" / "train_scaled.parquet")  # fmt: skip
    good, guess = _run(tmp_path, "good", 0.6), _run(tmp_path, "worse_than_a_guess", 0.3)  # -ln 0.3 = 1.204 > ln 3
    mean = _run(tmp_path, "mean", 0.5, members=[good, guess])
    rows = [row("good", 5, "member", good, "done"), row("worse_than_a_guess", 5, "member", guess, "done"),
            row("ensemble_mean", 5, "blend", mean, "done")]  # fmt: skip
    board = write_leaderboard(rows, tmp_path / "out").set_index("model")
    for split in ("val", "test"):
        assert board.at["uniform", f"{split}_log_loss_shared"] == pytest.approx(math.log(3), abs=1e-6)
        # class prior q = (1/4, 1/2, 1/4) on rows of classes short, flat, long, long, flat, long:
        # -(ln 1/4 + ln 1/2 + ln 1/4 + ln 1/4 + ln 1/2 + ln 1/4) / 6 = (4 ln 4 + 2 ln 2) / 6
        hand = (4 * math.log(4) + 2 * math.log(2)) / 6
        assert board.at["class_prior", f"{split}_log_loss"] == pytest.approx(hand, abs=1e-6)
    # val log loss: good 0.511 < mean 0.693 < uniform 1.0986 < class_prior 1.155 = random_prior (the prior's log
    # loss) < the worse run 1.204
    assert list(board.index[:3]) == ["good", "ensemble_mean", "uniform"] and board.index[5] == "worse_than_a_guess"
    assert set(board.index[3:5]) == {"class_prior", "random_prior"}
    # random in proportion: f = (1/6, 2/6, 3/6), q = (1/4, 1/2, 1/4): F1_c = 2 f q / (f + q) = 0.2, 0.4, 1/3
    assert board.at["random_prior", "val_f1_macro"] == pytest.approx((0.2 + 0.4 + 1 / 3) / 3)
    assert (board.loc[["uniform", "class_prior"], "kind"] == "baseline").all()
    assert board.at["ensemble_mean", "best_member"] == "good"  # chosen among the blend's members only
    assert not board.loc[["uniform", "class_prior"], "beats_best_member"].any()
    assert board.loc[["uniform", "class_prior"], "test_f1_macro"].notna().all()  # the whole suite, not log loss only
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "| uniform | 5 | baseline |" in md and "worse than a guess" in md


def test_a_failed_trial_is_our_line_not_optunas_traceback(fit_args, tmp_path):
    """One-process tune: a trial that raises is reported on stdout in one line; Optuna's WARNING with the
    traceback stays off stderr (as with --tune.workers, where it goes to the worker's log)."""
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"model.init_args.num_leaves": {"type": "categorical", "choices": [1]}}))
    out = _cli("tune", *_piped(fit_args, config="configs/lightgbm.yaml"), *LGB_TINY, "--tune.n_trials", "1",
               "--tune.search_space", str(space), "--tune.storage", f"sqlite:///{tmp_path / 'optuna.db'}",
               "--tune.study_name", "s", "--tune.out", str(tmp_path / "out"))  # fmt: skip
    assert out.returncode == 1
    assert "[1/1] trial 0: failed" in out.stdout and "study 's': 1 trial, 0 finished" in out.stdout, out.stdout
    assert "Traceback" not in out.stderr and "Trial 0 failed" not in out.stderr, out.stderr
