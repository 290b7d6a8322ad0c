"""The ``trading:`` section end to end: parsed in every config, handed to the model, stored, and re-judged.

The metric arithmetic itself is tested on hand panels in test_trading_metrics.py; here: that the section the
user writes is the one the metrics use, for trees, nets, blends and experiments, and that bad values are one
line naming the key.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from ensemble.cli import main
from ensemble.ensembling.blend import BlendError, blend
from ensemble.errors import ConfigError
from ensemble.experiments.runner import Experiment, cell_config
from ensemble.training.family import build

CONFIGS = Path(__file__).parents[1] / "configs"
TREE = ["--trainer.max_epochs", "2", "--trainer.rounds_per_epoch", "3", "--model.init_args.n_jobs", "1",
        "--trainer.enable_progress_bar", "false"]  # fmt: skip


def _run(save_dir: Path) -> Path:
    (run,) = sorted(save_dir.glob("*/version_*"))
    return run


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def _tree_overrides(splits: Path, save_dir: Path, **trading) -> dict:
    return {"data.root": str(splits), "tracking.save_dir": str(save_dir), "trainer.max_epochs": 2,
            "trainer.rounds_per_epoch": 3, "model.init_args.n_jobs": 1, "trainer.enable_progress_bar": False,
            **{f"trading.{k}": v for k, v in trading.items()}}  # fmt: skip


def test_tree_costs_change_net_not_gross_and_the_section_is_the_runs_record(splits, tmp_path):
    free = build(CONFIGS / "xgboost.yaml", _tree_overrides(splits, tmp_path / "a", cost_bps=0)).fit()
    dear = build(CONFIGS / "xgboost.yaml", _tree_overrides(splits, tmp_path / "b", cost_bps=50, slippage_bps=10)).fit()
    assert free["test/sharpe_net"] == pytest.approx(free["test/sharpe"], abs=1e-9)  # no cost: net is gross
    assert dear["test/sharpe"] == pytest.approx(free["test/sharpe"], abs=1e-9)  # same model, same book
    assert dear["test/turnover"] > 0 and dear["test/sharpe_net"] < dear["test/sharpe"]
    # cost_drag = c * turnover * bars_per_year / h, with c = 60 bps (docs/trading.md)
    expected = 60e-4 * dear["test/turnover"] * dear["test/bars_per_year"] / 5
    assert dear["test/cost_drag"] == pytest.approx(expected, rel=1e-9)
    record = yaml.safe_load((_run(tmp_path / "b") / "config.yaml").read_text())
    assert record["trading"]["cost_bps"] == 50 and record["trading"]["slippage_bps"] == 10
    booked = _metrics(_run(tmp_path / "b"))  # metrics.json says which book each split was charged with
    assert booked["trading/test"]["cost_bps"] == 50 and booked["trading/val"]["slippage_bps"] == 10
    assert "bars_per_year" not in record["data"]


def test_bars_per_year_null_is_inferred_printed_once_and_stored(splits, tmp_path, capsys):
    overrides = _tree_overrides(splits, tmp_path, bars_per_year=None)
    build(CONFIGS / "xgboost.yaml", overrides).fit()
    build(CONFIGS / "xgboost.yaml", overrides)  # a second job of the same data (a tuning trial): not again
    err = capsys.readouterr().err
    assert err.count("trading.bars_per_year not set: 252 bars a year, inferred from the timestamps of") == 1
    metrics = _metrics(sorted((tmp_path).glob("*/version_0"))[0])
    assert metrics["val/bars_per_year"] == metrics["test/bars_per_year"] == 252  # the test panels are weekdays


def test_given_bars_per_year_wins_and_scales_sharpe_by_its_square_root(splits, tmp_path):
    # the test panels are daily on weekdays (252 inferred); a given value within 2x of it is the user's convention
    slow = build(CONFIGS / "xgboost.yaml", _tree_overrides(splits, tmp_path / "a", bars_per_year=126)).fit()
    fast = build(CONFIGS / "xgboost.yaml", _tree_overrides(splits, tmp_path / "b", bars_per_year=504)).fit()
    assert slow["test/bars_per_year"] == 126
    assert fast["test/sharpe"] == pytest.approx(2 * slow["test/sharpe"], rel=1e-9)


@pytest.mark.parametrize("config", ["xgboost", "lstm"])
def test_bars_per_year_contradicting_the_data_is_refused(config, splits, tmp_path, capsys):
    """An hourly 24/7 config's 8760 copied onto daily bars would inflate every Sharpe ~5.9x: refused in one line."""
    argv = ["fit", "--config", str(CONFIGS / f"{config}.yaml"), "--data.root", str(splits),
            "--tracking.save_dir", str(tmp_path), "--trading.bars_per_year", "8760"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trading.bars_per_year is 8760, but the timestamps of" in err[0]
    assert "give 252 bars a year" in err[0] and "trading.bars_per_year: null" in err[0]
    assert not list(tmp_path.glob("*/version_*"))


def test_old_data_bars_per_year_names_its_new_place(splits, tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"^data.bars_per_year moved to trading.bars_per_year"):
        build(CONFIGS / "xgboost.yaml", {**_tree_overrides(splits, tmp_path), "data.bars_per_year": 252})
    config = tmp_path / "old.yaml"
    old = yaml.safe_load((CONFIGS / "lstm.yaml").read_text())
    old["data"]["bars_per_year"] = 252
    config.write_text(yaml.safe_dump(old))
    assert main(["fit", "--config", str(config), "--data.root", str(splits)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "data.bars_per_year moved to trading.bars_per_year; move the key in your config (null infers it from the data)")
    assert main(["fit", "--config", str(CONFIGS / "xgboost.yaml"), "--data.bars_per_year", "252"]) == 2
    assert capsys.readouterr().err.strip() == (
        "ensemble: error: --data.bars_per_year moved to --trading.bars_per_year (null infers it from the data)")


@pytest.mark.parametrize("config", ["xgboost", "lstm"])
@pytest.mark.parametrize(("flag", "value", "message"), [
    ("cost_bps", "-1", "trading.cost_bps must be >= 0, got -1"),
    ("threshold", "0.2", "trading.threshold must lie in (1/3, 1), got 0.2"),
    ("k", "0", "trading.k must be an integer >= 1, got 0"),
    ("sizing", "kelly", "trading.sizing: must be one of argmax, prob_diff, threshold, got 'kelly'"),
    ("cost_bps", "nan", "trading.cost_bps: expected a finite float, got 'nan'"),
    ("cots_bps", "3", "--trading.cots_bps: unknown trading key (did you mean 'cost_bps'?); known: cost_bps, "),
])  # fmt: skip
def test_bad_trading_values_are_one_line_naming_the_key(config, flag, value, message, splits, tmp_path, capsys):
    applies = {"threshold": ["--trading.sizing", "threshold"], "k": ["--trading.book", "topk"]}.get(flag, [])
    argv = ["fit", "--config", str(CONFIGS / f"{config}.yaml"), "--data.root", str(splits),
            "--tracking.save_dir", str(tmp_path), *applies, f"--trading.{flag}", value]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not list(tmp_path.glob("*/version_*"))  # refused before any run folder


def test_net_checkpoint_is_rejudged_at_another_cost(fit_args, tmp_path, capsys):
    assert main(["fit", *fit_args("configs/lstm.yaml", epochs=1), "--trading.cost_bps", "0"]) == 0
    run = _run(tmp_path / "runs")
    ckpt = next((run / "checkpoints").glob("best*.ckpt"))
    hparams = torch.load(ckpt, weights_only=True)["hyper_parameters"]
    assert hparams["trading"]["cost_bps"] == 0  # the section travels with the weights
    fit = _metrics(run)
    assert fit["test/sharpe_net"] == pytest.approx(fit["test/sharpe"], abs=1e-6)
    argv = ["test", *fit_args("configs/lstm.yaml"), "--ckpt_path", str(ckpt), "--trading.cost_bps", "40"]
    assert main(argv) == 0
    again = {k: v for k, v in _metrics_after_test(tmp_path / "runs").items() if k.startswith("test/")}
    assert again["test/sharpe"] == pytest.approx(fit["test/sharpe"], abs=1e-6)
    assert again["test/sharpe_net"] < fit["test/sharpe_net"]


def _metrics_after_test(save_dir: Path) -> dict:
    """The newest metrics.json under ``save_dir`` (an evaluation writes into the checkpoint's run or beside it)."""
    newest = max(save_dir.rglob("metrics.json"), key=lambda p: p.stat().st_mtime_ns)
    return json.loads(newest.read_text())


def _member(root: Path, name: str, trading: dict, rng: np.random.Generator) -> Path:
    run = root / name / "version_0"
    (run / "predictions").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"horizon": 1}, "trading": trading}))
    times = pd.date_range("2022-01-03", periods=40, freq="D").repeat(3)
    for seed, split in enumerate(("val", "test")):
        truth = np.random.default_rng(seed)  # one data set: every member sees the same labels and returns
        y, ret = truth.integers(0, 3, len(times)), truth.normal(0, 0.01, len(times))
        probs = rng.dirichlet(np.ones(3), len(times)).astype(np.float32)
        pd.DataFrame({"datetime": times, "symbol": ["A", "B", "C"] * 40, "label": (y - 1).astype(np.int8),
                      "prob_short": probs[:, 0], "prob_flat": probs[:, 1], "prob_long": probs[:, 2],
                      "prediction": (probs.argmax(1) - 1).astype(np.int8),
                      "fwd_return": ret.astype(np.float32)},
                     ).to_parquet(run / "predictions" / f"{split}.parquet")  # fmt: skip
    return run


def test_blend_books_as_its_members_and_flags_override(tmp_path, capsys):
    rng = np.random.default_rng(0)
    section = {"cost_bps": 0, "bars_per_year": 252}
    runs = [_member(tmp_path, f"m{i}", section, rng) for i in range(2)]
    free = _metrics(blend(runs, "mean", tmp_path / "blends"))
    assert free["test/sharpe_net"] == pytest.approx(free["test/sharpe"]) and free["test/bars_per_year"] == 252
    argv = ["blend", "--runs", *map(str, runs), "--method", "mean", "--out", str(tmp_path / "b2"),
            "--trading.cost_bps", "25"]  # fmt: skip
    assert main(argv) == 0
    dear = _metrics(_run(tmp_path / "b2"))
    assert dear["test/sharpe"] == pytest.approx(free["test/sharpe"])
    assert dear["test/sharpe_net"] < free["test/sharpe_net"]
    assert yaml.safe_load((_run(tmp_path / "b2") / "config.yaml").read_text())["trading"]["cost_bps"] == 25
    other = _member(tmp_path, "m9", {"cost_bps": 10, "bars_per_year": 252}, rng)
    with pytest.raises(BlendError, match=r"trading.cost_bps is 10, but .* has 0; blend runs booked alike"):
        blend([runs[0], other], "mean", tmp_path / "blends")


def test_experiment_trading_section_reaches_every_cell_and_fit_args_win(tmp_path):
    exp = Experiment(configs_dir=str(CONFIGS), trading={"cost_bps": 12, "book": "topk", "k": 1},
                     fit_args=["--trading.k", "2"])  # fmt: skip
    for model in ("lstm", "lightgbm"):
        config = cell_config(exp, model, 5, tmp_path, None)
        assert config["trading"]["cost_bps"] == 12 and config["trading"]["book"] == "topk"
        assert config["trading"]["k"] == 2 and config["trading"]["bars_per_year"] == 252  # the config's own


@pytest.mark.parametrize("config", ["xgboost", "lstm"])
def test_a_topk_book_too_big_for_the_universe_is_refused_before_training(config, splits, tmp_path, capsys):
    """``trading.k`` needs the symbol count: checked once the train split is read, not after the whole fit."""
    symbols = pd.read_parquet(splits / "train_scaled.parquet", columns=["symbol"])["symbol"].nunique()
    argv = ["fit", "--config", str(CONFIGS / f"{config}.yaml"), "--data.root", str(splits),
            "--tracking.save_dir", str(tmp_path), "--trading.book", "topk", "--trading.k", str(symbols)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"trading.k must be <= half the symbols ({symbols // 2} of {symbols}), got {symbols}" in err[0]
    assert "train_scaled.parquet" in err[0]
    assert not list(tmp_path.glob("*/version_*"))  # refused before any run folder
    # Both checks against the data come in one line: fixing k does not reveal a bad bars_per_year next.
    assert main([*argv, "--trading.bars_per_year", "8760"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trading.k must be <= half the symbols" in err[0], err
    assert "; trading.bars_per_year is 8760, but the timestamps of" in err[0]
