"""The default demo is believable: the shipped LightGBM config, trained by the package's own job layer
(``build(...).fit()``, what ``ensemble fit --config configs/lightgbm.yaml`` runs), reaches trading numbers a
quant would accept.

Why the checks have the shape they have (numbers in docs/benchmarks.md, "The demo's trading numbers"):

- Well fitted: early stopping on val/log_loss must find an optimum after the first epoch. With the old
  learning rate 0.1 the val log loss rose from round 10 on, the CLI kept a 10-round model, and its test
  Sharpe said nothing about the signal.
- The test split is 35% of the demo: 1,512 daily bars (6 years) of 50 symbols. The sampling error of an
  annualised Sharpe over T bars is about sqrt(bars_per_year / T) (Lo 2002, "The statistics of Sharpe
  ratios", eq. 9, at small per-period Sharpe; the h-bar non-overlap rule leaves it unchanged): 0.41 here, so
  one split can be held to the issue's band [0.5, 4]. (The earlier hourly demo's 15% test split was 0.21
  years, a standard error of 2.2: no model could be held to the band on it.)
- The rank IC is a cross-sectional average over every timestamp, asserted on test: [0.01, 0.1].
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ensemble.data.demo import BARS_PER_YEAR, make_demo_splits
from ensemble.training.family import build

CONFIG = Path(__file__).parents[1] / "configs" / "lightgbm.yaml"
BAND = (0.5, 4.0)


def sharpe_standard_error(bars_per_year: float, bars: int) -> float:
    """Standard error of an annualised Sharpe measured over ``bars`` bars, at small Sharpe (Lo 2002)."""
    return math.sqrt(bars_per_year / bars)


def test_sharpe_standard_error_closed_form():
    assert sharpe_standard_error(8760, 1861) == pytest.approx(2.1696, abs=1e-4)  # the old hourly demo
    assert sharpe_standard_error(252, 1507) == pytest.approx(0.4089, abs=1e-4)  # this one: 1,512 days less 5
    assert sharpe_standard_error(252, 252) == 1.0  # one year of daily bars: the textbook +-1


@pytest.mark.slow
def test_shipped_lightgbm_config_on_the_default_demo_has_a_believable_sharpe(tmp_path):
    pytest.importorskip("lightgbm")
    make_demo_splits(tmp_path / "demo")  # the default: seed 0, 50 symbols, realistic signal
    job = build(str(CONFIG), {"data.root": str(tmp_path / "demo"), "tracking.save_dir": str(tmp_path / "runs"),
                              "trainer.enable_progress_bar": False})
    out = job.fit()
    meta = json.loads((job.run_dir / "checkpoints" / "best.meta.json").read_text())
    rounds_per_epoch = job.config["trainer"]["rounds_per_epoch"]
    print({k: round(v, 4) for k, v in out.items() if k.endswith(("sharpe", "sharpe_net", "rank_ic", "turnover"))})
    assert meta["callbacks"]["ModelCheckpoint"]["best_round"] > rounds_per_epoch  # an optimum, not epoch 0
    assert out["test/bars_per_year"] == BARS_PER_YEAR == 252
    assert 0.01 <= out["test/rank_ic"] <= 0.1, out["test/rank_ic"]
    assert out["test/sharpe_net"] < out["test/sharpe"]
    assert BAND[0] <= out["test/sharpe"] <= BAND[1], out["test/sharpe"]  # the band, on one split
