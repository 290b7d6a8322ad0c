"""tools/study_monitor.py's pieces against hand-worked examples, and the bundled configs' one monitor.

Every bundled config stops early and keeps its checkpoint on the same metric in the same direction: the
default the study chose (docs/benchmarks.md, "Checkpoint monitor")."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss

from ensemble.training.config import resolve_config

ROOT = Path(__file__).parents[1]
spec = importlib.util.spec_from_file_location("study_monitor_tool", ROOT / "tools" / "study_monitor.py")
tool = sys.modules["study_monitor_tool"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_each_bundled_config_stops_and_checkpoints_on_val_log_loss(path):
    config = resolve_config(path)
    stops = [c["init_args"] for c in config["trainer"]["callbacks"] if c["class_path"].endswith("EarlyStopping")]
    assert len(stops) == 1
    assert (stops[0]["monitor"], stops[0]["mode"]) == ("val/log_loss", "min")
    assert (config["checkpoint"]["monitor"], config["checkpoint"]["mode"]) == ("val/log_loss", "min")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_monitored_sets_early_stopping_and_the_checkpoint_alike(path):
    config = tool.monitored(resolve_config(path), "val/f1_macro", "max")
    stop = next(c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("EarlyStopping"))
    assert (stop["init_args"]["monitor"], stop["init_args"]["mode"]) == ("val/f1_macro", "max")
    assert stop["init_args"]["patience"] == resolve_config(path)["trainer"]["callbacks"][0]["init_args"]["patience"]
    assert (config["checkpoint"]["monitor"], config["checkpoint"]["mode"]) == ("val/f1_macro", "max")


def test_collapse_counts_the_folds_one_class_took_over():
    # fold 1: 20 rows, 20 flat (100% > 95%); fold 2: 20 rows, 19 flat (95%, not over); fold 3: 10 short, 10 long
    flat, short, long_ = [0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.1, 0.8]
    probs = [flat] * 20 + [flat] * 19 + [long_] + [short] * 10 + [long_] * 10
    folds = [1] * 20 + [2] * 20 + [3] * 20
    oof = pd.DataFrame(probs, columns=["prob_short", "prob_flat", "prob_long"]).assign(fold=folds)
    top, collapsed = tool.collapse(oof)
    assert top == pytest.approx(39 / 60) and collapsed == 1


def test_prior_log_loss_is_the_constant_frequency_forecasts_log_loss():
    labels = pd.Series([-1, 0, 0, 1, 0, 0, 1, 0])  # frequencies 1/8, 5/8, 2/8
    expected = -(1 / 8 * math.log(1 / 8) + 5 / 8 * math.log(5 / 8) + 2 / 8 * math.log(2 / 8))
    assert tool.prior_log_loss(labels) == pytest.approx(expected, rel=1e-12)
    constant = np.tile([1 / 8, 5 / 8, 2 / 8], (len(labels), 1))
    assert tool.prior_log_loss(labels) == pytest.approx(log_loss(labels, constant, labels=[-1, 0, 1]), rel=1e-12)


def test_verdict_names_each_models_winner_and_counts_them():
    rows = pd.DataFrame({
        "model": ["a", "a", "b", "b"], "monitor": ["val/log_loss", "val/f1_macro"] * 2,
        "oof_log_loss": [1.10, 1.12, 1.09, 1.08], "oof_f1_macro": [0.30, 0.33, 0.34, 0.31],
    })  # fmt: skip
    text = tool.verdict(rows)
    assert "wins on oof log_loss: val/log_loss 1, val/f1_macro 1" in text
    assert "wins on oof f1_macro: val/log_loss 1, val/f1_macro 1" in text
    assert "a            lower oof log loss: val/log_loss  (log_loss - f1 monitor: -0.0200)" in text
