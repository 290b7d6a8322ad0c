"""A finished walk-forward is judged again at another trading cost without refitting: trading settings train
nothing, so a re-run with other ``--trading.*`` keeps every fold and the final model and books their stored
predictions again. The result equals a walk-forward trained at that cost from the start. metrics.json records the
book it used in ``trading/oof`` (and ``trading/test``), as a plain fit records ``trading/val``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_walkforward_runs import walkforward


def _mtimes(out: Path) -> dict[str, int]:
    """mtime (ns) of every file of every fold and final run: a refit or re-evaluation rewrites them."""
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted((out / "runs").rglob("*")) if p.is_file()}


def test_rerun_at_another_cost_rebooks_without_refitting(tmp_path, splits, capsys):
    out, fresh = tmp_path / "wf", tmp_path / "fresh"
    wf = ["--wf.folds", "2", "--wf.val_bars", "4"]
    assert walkforward(out, splits, *wf) == 0
    cheap = json.loads((out / "metrics.json").read_text())
    assert cheap["trading/oof"]["cost_bps"] == 5.0 and cheap["trading/test"]["cost_bps"] == 5.0
    runs = _mtimes(out)
    capsys.readouterr()

    assert walkforward(out, splits, *wf, "--trading.cost_bps", "40") == 0
    text = capsys.readouterr().out
    assert "trading.cost_bps changed since its folds ran" in text and "no refit" in text
    assert text.count("skipped (finished earlier)") == 2 and "final model: finished earlier, skipped" in text
    assert _mtimes(out) == runs  # no fold and no final model was trained or evaluated again
    dear = json.loads((out / "metrics.json").read_text())
    assert dear["trading/oof"]["cost_bps"] == 40.0 and dear["trading/test"]["cost_bps"] == 40.0
    for key in ("oof/log_loss", "oof/f1_macro", "oof/sharpe", "oof/turnover", "test/log_loss", "test/sharpe",
                "folds/sharpe/mean", "folds/f1_macro/mean"):  # fmt: skip  (costs move none of these)
        assert dear[key] == pytest.approx(cheap[key], rel=1e-12, abs=1e-12), key
    for key in ("oof/sharpe_net", "test/sharpe_net", "folds/sharpe_net/mean"):
        assert dear[key] < cheap[key], key  # 40 bps cost more than 5 on a book that trades
    # the summary the re-run prints shows the re-booked net Sharpe, not only the unchanged gross one
    assert "Sharpe net" in text and f"{dear['oof/sharpe_net']:.4f}" in text
    assert f"{cheap['oof/sharpe_net']:.4f}" not in text

    # the same walk-forward trained at 40 bps from the start: the same numbers, to float noise
    assert walkforward(fresh, splits, *wf, "--trading.cost_bps", "40") == 0
    trained = json.loads((fresh / "metrics.json").read_text())
    assert set(trained) == set(dear)
    for key, value in trained.items():
        if isinstance(value, float):
            assert dear[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
        elif key != "wf":
            assert dear[key] == value, key


def test_trading_counts_as_training_only_when_a_monitor_watches_a_trading_metric(tmp_path):
    """The record check alone (no training): another cost is re-judged, unless the checkpoint or an early-stopping
    monitor watches a trading metric, where the costs chose the model and a change is refused like any other."""
    from ensemble.errors import ConfigError
    from ensemble.walkforward.config import WalkForward
    from ensemble.walkforward.record import check_record, make_record, write_record

    wf, files = WalkForward(folds=2), {"train": [1, 2], "val": [3, 4]}
    early = {"class_path": "lightning.pytorch.callbacks.EarlyStopping", "init_args": {"monitor": "val/sharpe_net"}}
    for name, extra, trains in (("loss", {}, False),
                                ("ckpt", {"checkpoint": {"monitor": "val/sharpe_net", "mode": "max"}}, True),
                                ("early", {"trainer": {"callbacks": [early]}}, True)):  # fmt: skip
        out = tmp_path / name
        out.mkdir()
        base = {"model": {"class_path": "x"}, "trading": {"cost_bps": 5}, **extra}
        write_record(out, make_record(base, wf, files))
        dearer = make_record({**base, "trading": {"cost_bps": 40}}, wf, files)
        if trains:
            with pytest.raises(ConfigError, match=r"other settings \(trading\.cost_bps changed\)"):
                check_record(out, dearer)
        else:
            assert check_record(out, dearer) == ["trading.cost_bps"]
        with pytest.raises(ConfigError, match=r"wf\.folds changed"):  # what trains the folds is always kept
            check_record(out, make_record(base, WalkForward(folds=3), files))
