"""``ensemble fit|validate|test|predict`` with a tree config: the nets' run layout, resume, clear errors."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ensemble.cli import main
from ensemble.metrics import MetricSuite
from ensemble.models.trees import CatBoostModel, LightGBMModel, XGBoostModel
from ensemble.training.artifacts import PROB_COLUMNS
from ensemble.training.config import config_from_flags, resolve_config
from ensemble.training.family import family_for
from ensemble.training.trees.family import tree_parser

CONFIGS = Path(__file__).parents[1] / "configs"
TREES = {"xgboost": ".json", "lightgbm": ".txt", "catboost": ".cbm"}
MODELS = {"xgboost": XGBoostModel, "lightgbm": LightGBMModel, "catboost": CatBoostModel}
PREDICTION_COLUMNS = ["datetime", "symbol", "label", *PROB_COLUMNS, "prediction", "fwd_return"]
TINY = {"lightgbm": ["--model.init_args.min_data_in_leaf", "5"]}  # the config's 200 would stop at once here


def net_metric_keys() -> set[str]:
    """Every key a net's run writes: the suite's metrics plus the loss, for val and test, the checkpoint each
    split was evaluated from and whether only part of it was (``{split}/partial``), and its calibration."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # computing an empty suite only to read its names
        names = {k for stage in ("val", "test") for k in MetricSuite(stage, 5).compute()}
    return names | {"val/loss", "test/loss", "fit/train_time_s", "fit/peak_rss_mib"} | {
        "checkpoint/val", "checkpoint/test", "val/partial", "test/partial", "trading/val", "trading/test",
        "calibration/temperature", "calibration/fitted_on", "calibration/fit_rows", "calibration/val_log_loss_before",
        "calibration/val_log_loss_after"}  # fmt: skip


def cli(name: str, splits: Path, save_dir: Path, *extra: str, command: str = "fit", epochs: int = 2) -> list[str]:
    return [
        command, "--config", str(CONFIGS / f"{name}.yaml"), "--data.root", str(splits),
        "--tracking.save_dir", str(save_dir), "--trainer.max_epochs", str(epochs), "--trainer.rounds_per_epoch", "3",
        "--trainer.enable_progress_bar", "false", "--model.init_args.n_jobs", "1", *TINY.get(name, []), *extra,
    ]  # fmt: skip


def test_tree_configs_route_to_the_tree_trainer_and_parse(splits):
    for name in TREES:
        config = str(CONFIGS / f"{name}.yaml")
        assert family_for(resolve_config(config)).name == "tree"
        parser = tree_parser("fit")
        init = parser.instantiate(parser.parse_args(["--config", config, "--data.root", str(splits)]))
        assert type(init.model).__name__.lower().startswith(name[:3])
        assert init.model.feature_names == init.data.feature_names  # linked, not typed
        assert init.trainer.callbacks and init.checkpoint.monitor == "val/log_loss"


@pytest.mark.parametrize("name", TREES)
def test_fit_writes_the_nets_run_layout(name, splits, tmp_path):
    assert main(cli(name, splits, tmp_path)) == 0
    run = tmp_path / f"{name}_h5" / "version_0"
    suffix = TREES[name]
    for path in (
        "config.yaml",
        f"checkpoints/best{suffix}",
        f"checkpoints/last{suffix}",
        "checkpoints/best.meta.json",
        "metrics.json",
        "plots/feature_importance.csv",
        "plots/feature_importance.png",
        *(f"plots/{s}_{p}.png" for s in ("val", "test") for p in ("confusion_matrix", "equity_curve", "reliability")),
    ):
        assert (run / path).is_file(), path
    assert set(json.loads((run / "metrics.json").read_text())) == net_metric_keys()
    for split in ("val", "test"):
        df = pd.read_parquet(run / "predictions" / f"{split}.parquet")
        assert list(df.columns) == PREDICTION_COLUMNS and len(df) > 0
        np.testing.assert_allclose(df[list(PROB_COLUMNS)].sum(axis=1), 1.0, atol=1e-5)
    meta = json.loads((run / "checkpoints" / "last.meta.json").read_text())
    assert meta["feature_names"] == ["f0", "f1", "f2", "f3"] and meta["horizon"] == 5 and meta["global_step"] == 6
    importance = pd.read_csv(run / "plots" / "feature_importance.csv")
    assert sorted(importance["feature"]) == ["f0", "f1", "f2", "f3"]
    assert "model:" in (run / "config.yaml").read_text()


def test_validate_test_predict_from_checkpoints(splits, tmp_path):
    assert main(cli("xgboost", splits, tmp_path)) == 0
    run = tmp_path / "xgboost_h5" / "version_0"
    fitted = quality(run)
    fit_metrics = (run / "metrics.json").read_bytes()
    assert main(cli("xgboost", splits, tmp_path, "--ckpt_path", "best", command="validate")) == 0
    assert (
        main(cli("xgboost", splits, tmp_path, "--ckpt_path", str(run / "checkpoints/best.json"), command="test")) == 0
    )
    again = {**json.loads((run / "eval/val-best/metrics.json").read_text()),
             **json.loads((run / "eval/test-best/metrics.json").read_text())}  # fmt: skip
    assert quality_of(again) == pytest.approx(fitted)  # the best model, evaluated again from its native file
    assert trading_of(again) == trading_of(json.loads(fit_metrics))
    assert again["calibration/temperature"] == json.loads(fit_metrics)["calibration/temperature"]  # applied again
    assert main(cli("xgboost", splits, tmp_path, "--ckpt_path", "last", command="predict")) == 0
    predicted = run / "eval" / "predict-test-last" / "predictions" / "predict.parquet"
    assert list(pd.read_parquet(predicted).columns) == PREDICTION_COLUMNS
    assert (run / "metrics.json").read_bytes() == fit_metrics  # the fit's own record is left alone
    assert not (tmp_path / "xgboost_h5" / "version_1").exists()  # evaluations land in the checkpoint's run


# XGBoost and LightGBM keep no RNG state in their model files: resume is bit-exact without row/column
# subsampling (here), statistically equivalent with it. CatBoost continues exactly either way.
EXACT_RESUME = {
    "xgboost": ["--model.init_args.subsample", "1.0", "--model.init_args.colsample_bytree", "1.0"],
    "lightgbm": ["--model.init_args.bagging_freq", "0", "--model.init_args.feature_fraction", "1.0"],
    "catboost": [],
}


@pytest.mark.parametrize("name", TREES)
def test_resume_matches_an_uninterrupted_run(name, splits, tmp_path):
    no_stop = ["--trainer.callbacks", "[]", *EXACT_RESUME[name]]
    assert main(cli(name, splits, tmp_path / "a", *no_stop, epochs=2)) == 0
    assert main(cli(name, splits, tmp_path / "a", *no_stop, "--ckpt_path", "last", epochs=4)) == 0
    assert main(cli(name, splits, tmp_path / "b", *no_stop, epochs=4)) == 0
    resumed, straight = tmp_path / "a" / f"{name}_h5" / "version_0", tmp_path / "b" / f"{name}_h5" / "version_0"
    assert not (tmp_path / "a" / f"{name}_h5" / "version_1").exists()
    for run in (resumed, straight):
        assert json.loads((run / "checkpoints" / "last.meta.json").read_text())["global_step"] == 12
    X = np.random.default_rng(0).standard_normal((200, 4)).astype(np.float32)
    models = [MODELS[name]() for _ in range(2)]
    for model, run in zip(models, (resumed, straight), strict=True):
        model.load(run / f"checkpoints/last{TREES[name]}")
    np.testing.assert_array_equal(models[0].predict_proba(X), models[1].predict_proba(X))
    assert quality(resumed) == quality(straight)
    calibration = [{k: v for k, v in json.loads((r / "metrics.json").read_text()).items()
                    if k.startswith("calibration/")} for r in (resumed, straight)]  # fmt: skip
    assert calibration[0] == calibration[1]  # the resumed run's T is refitted on its final model, as the straight one


def quality_of(metrics: dict) -> dict[str, float]:
    """Metrics without the cost columns (time, memory), which differ run to run, the checkpoint names, the
    trading settings each split was judged under (dicts, compared by ``trading_of``) and the calibration record
    (the fit's alone holds how T was fitted; its T is compared where it matters)."""
    return {k: v for k, v in metrics.items() if not k.startswith(("fit/", "checkpoint/", "trading/", "calibration/"))}


def trading_of(metrics: dict) -> dict[str, dict]:
    """The trading settings recorded per split (``trading/<split>``)."""
    return {k: v for k, v in metrics.items() if k.startswith("trading/")}


def quality(run: Path) -> dict[str, float]:
    """A run's metrics.json, as ``quality_of``."""
    return quality_of(json.loads((run / "metrics.json").read_text()))


def error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--trainer.strategy", "ddp"], "one device"),
        (["--trainer.devices", "2"], "one device"),
        (["--ckpt_path", "last"], "has a 'last' checkpoint"),
        (["--ckpt_path", "nowhere/best.json"], "checkpoint not found"),
        (["--model.init_args.params", "{n_estimators: 10}"], "trainer owns rounds"),
    ],
)
def test_bad_input_gives_one_clear_error(extra, message, splits, tmp_path, capsys):
    assert main(cli("xgboost", splits, tmp_path, *extra)) == 2
    assert message in error_line(capsys)


def test_checkpoint_must_fit_the_config(splits, tmp_path, capsys):
    assert main(cli("xgboost", splits, tmp_path)) == 0
    capsys.readouterr()
    best = str(tmp_path / "xgboost_h5" / "version_0" / "checkpoints" / "best.json")
    assert main(cli("lightgbm", splits, tmp_path, "--ckpt_path", best, command="validate")) == 2
    assert "holds a 'xgboost' model" in error_line(capsys)
    assert main(cli("xgboost", splits, tmp_path, "--ckpt_path", best, "--data.horizon", "20", command="test")) == 2
    assert "horizon 5" in error_line(capsys)
    assert main(cli("xgboost", splits, tmp_path, command="validate")) == 2
    assert "needs --ckpt_path" in error_line(capsys)


def test_catboost_continues_only_from_last(splits, tmp_path, capsys):
    """Only ``last`` keeps CatBoost's training snapshot; ``best`` is for evaluating (and exporting)."""
    assert main(cli("catboost", splits, tmp_path)) == 0
    ckpts = tmp_path / "catboost_h5" / "version_0" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == [
        "best.cbm", "best.meta.json", "last.cbm", "last.cbsnapshot", "last.meta.json"
    ]  # fmt: skip
    capsys.readouterr()
    assert main(cli("catboost", splits, tmp_path, "--ckpt_path", "best", epochs=3)) == 2
    assert "resume with --ckpt_path last" in error_line(capsys)


def test_print_config(splits, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(CONFIGS / "xgboost.yaml"), "--print_config"])
    out = capsys.readouterr().out
    assert "class_path: ensemble.models.trees.XGBoostModel" in out and "rounds_per_epoch" in out


def test_accelerator_cuda_reaches_each_library(splits):
    """``device: cuda`` becomes each library's own GPU setting (checked on the params, no GPU needed); without
    a visible CUDA device, asking for one is refused up front rather than failing deep in a library."""
    from ensemble.errors import ConfigError
    from ensemble.training.trees.devices import single_device

    if torch.cuda.is_available():
        device = single_device("cuda", [1], "auto") if torch.cuda.device_count() > 1 else "cuda:1"
    else:
        with pytest.raises(ConfigError, match="no visible CUDA device"):
            single_device("cuda", [1], "auto")
        device = "cuda:1"  # what single_device gives for devices=[1] on a GPU machine
    models = [cls() for cls in (XGBoostModel, LightGBMModel, CatBoostModel)]
    for model in models:
        model.device = device
    params = [m.library_params() for m in models]
    assert params[0]["device"] == "cuda:1"
    assert (params[1]["device_type"], params[1]["gpu_device_id"]) == ("gpu", 1)
    assert (params[2]["task_type"], params[2]["devices"]) == ("GPU", "1")
    assert single_device("auto", 1, None) == ("cuda:0" if torch.cuda.is_available() else "cpu")


def test_windows_become_named_summary_columns(splits, tmp_path):
    extra = ["--data.seq_len", "4", "--model.init_args.window_features", "summary"]
    assert main(cli("xgboost", splits, tmp_path, *extra)) == 0
    run = tmp_path / "xgboost_h5" / "version_0"
    features = set(pd.read_csv(run / "plots" / "feature_importance.csv")["feature"])
    assert features == {f"f{j}_{s}" for j in range(4) for s in ("last", "mean", "std", "min", "max")}
    meta = json.loads((run / "checkpoints" / "best.meta.json").read_text())
    assert (meta["seq_len"], meta["window_features"], meta["feature_names"]) == (4, "summary", ["f0", "f1", "f2", "f3"])


def test_mlflow_run_has_params_metrics_and_artifacts(splits, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    extra = ["--tracking.mlflow", "true", "--tracking.mlflow_uri", uri, "--tracking.experiment", "unit"]
    assert main(cli("lightgbm", splits, tmp_path / "runs", *extra)) == 0
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("unit").experiment_id])
    assert run.info.run_name == "lightgbm_h5/version_0"
    assert run.data.params["horizon"] == "5" and run.data.params["num_leaves"] == "7"  # configs/lightgbm.yaml
    local = json.loads((tmp_path / "runs/lightgbm_h5/version_0/metrics.json").read_text())
    for key in ("val/f1_macro", "test/f1_macro", "test/sharpe", "test/log_loss"):
        assert abs(run.data.metrics[key] - local[key]) < 1e-6, key
    assert {"plots", "predictions", "metrics.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/feature_importance.png", "plots/feature_importance.csv", "plots/test_confusion_matrix.png"} <= plots


def test_tune_runs_tree_trials_with_pruning(splits, tmp_path):
    """``ensemble tune`` drives TreeCLI: trials are ordinary tree runs, pruned on the monitored val metric."""
    import optuna
    import yaml

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"model.init_args.max_depth": {"type": "int", "low": 2, "high": 4}}))
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    tune = ["--tune.n_trials", "2", "--tune.search_space", str(space), "--tune.storage", storage,
            "--tune.study_name", "s", "--tune.out", str(tmp_path / "out"), "--tune.seed", "0"]  # fmt: skip
    assert main(["tune", *cli("xgboost", splits, tmp_path / "runs")[1:], *tune]) == 0
    study = optuna.load_study(study_name="s", storage=storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert all(len(t.intermediate_values) == 2 for t in study.trials)  # one report per epoch
    assert (tmp_path / "out" / "best.yaml").is_file()

    # three earlier trials that reached val/f1_macro 0.99 at every epoch: the median pruner (3 start-up
    # trials, 1 warm-up step) must stop the next real trial at epoch 1, well below them
    dist = optuna.distributions.IntDistribution(2, 4)
    for _ in range(3):
        study.add_trial(optuna.trial.create_trial(params={"model.init_args.max_depth": 3},
                                                  distributions={"model.init_args.max_depth": dist}, value=0.99,
                                                  intermediate_values={0: 0.99, 1: 0.99, 2: 0.99}))  # fmt: skip
    tune[1] = "1"
    assert main(["tune", *cli("xgboost", splits, tmp_path / "runs", epochs=3)[1:], *tune, "--tune.pruner",
                 "median"]) == 0  # fmt: skip
    last = optuna.load_study(study_name="s", storage=storage).trials[-1]
    assert last.state == optuna.trial.TrialState.PRUNED
    assert sorted(last.intermediate_values) == [0, 1]  # stopped after the epoch the pruner judged


def test_pruning_callback_stops_a_trial(splits, tmp_path):
    import optuna

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(upper=-1.0))
    trial = study.ask()
    config = config_from_flags(cli("xgboost", splits, tmp_path)[1:])
    family = family_for(config)
    job = family.build(config)
    with pytest.raises(optuna.TrialPruned, match="epoch 0"):
        job.fit(train_callbacks=[family.pruning_callback(trial, "val/f1_macro")])


def test_a_booster_that_can_add_no_tree_says_so_in_a_line_not_a_python_warning(splits, tmp_path, capsys):
    argv = ["fit", "--config", str(CONFIGS / "lightgbm.yaml"), "--data.root", str(splits),
            "--tracking.save_dir", str(tmp_path), "--model.init_args.min_data_in_leaf", "100000"]  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(argv) == 0
    assert not [w for w in caught if "no tree" in str(w.message)]  # a Python warning prints its source path
    out = capsys.readouterr()
    line = [ln for ln in (out.out + out.err).splitlines() if "added no tree" in ln]
    assert line == ["lightgbm added no tree in epoch 1 (no split passes its limits, e.g. min_data_in_leaf): "
                    "training stops at 1 round"], line
