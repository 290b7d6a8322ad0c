"""A blend's trading section: the same bars_per_year sanity check as fit, and every refusal in one line."""

import json

import pytest
import yaml

from ensemble.ensembling.blend import BlendError, members_trading


def _run(root, name, trading, recorded=8760.0):
    run = root / name / "version_0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"horizon": 5}, "trading": trading}))
    (run / "metrics.json").write_text(json.dumps({"val/bars_per_year": recorded}))
    return run


def _trading(runs, given=None):
    return members_trading(runs, [yaml.safe_load((r / "config.yaml").read_text()) for r in runs], given)


def test_given_bars_per_year_far_from_the_members_data_is_refused(tmp_path):
    runs = [_run(tmp_path, n, {"bars_per_year": None}) for n in ("a", "b")]  # hourly 24/7 members
    assert _trading(runs, {"bars_per_year": 365 * 24 * 1.5}).bars_per_year == 13140  # within 2x: the user's call
    with pytest.raises(BlendError, match=r"^trading.bars_per_year is 252, but the metrics of .*a/version_0 give "
                                         r"8760 bars a year \(x0.029\)") as err:
        _trading(runs, {"bars_per_year": 252})
    assert "booked alike" not in str(err.value)  # the members agree: no hint about members that differ


def test_all_refusals_come_at_once_and_keys_the_book_does_not_read_may_differ(tmp_path):
    a = _run(tmp_path, "a", {"cost_bps": 5, "benchmark": "none", "k": 3, "threshold": 0.9})
    b = _run(tmp_path, "b", {"cost_bps": 10, "benchmark": "equal_weight", "k": 1, "threshold": 0.4})
    with pytest.raises(BlendError) as err:
        _trading([a, b])
    text = str(err.value)
    assert "\n" not in text and "trading.cost_bps is 10" in text and "trading.benchmark is equal_weight" in text
    assert "trading.k" not in text and "trading.threshold" not in text  # arg-max per-symbol: neither applies
    assert _trading([a, b], {"cost_bps": 5, "benchmark": "none"}).cost_bps == 5
    with pytest.raises(BlendError) as err:
        _trading([a, b], {"cost_bps": -1, "sizing": "threshold", "threshold": 2.0, "bars_per_year": 1})
    text = str(err.value)
    assert "\n" not in text and text.count("trading.bars_per_year is 1,") == 1  # once per distinct data clock
    assert "trading.cost_bps must be >= 0, got -1" in text and "trading.threshold must lie in (1/3, 1)" in text
