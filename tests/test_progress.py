"""The one progress format for cells, folds and tuning trials (``ensemble.launchers.progress``): a line per finished
cell with its state, wall time and key metric; a bar over the cells only when stderr is a terminal."""

from __future__ import annotations

import io
import json
import re
import sys

import optuna
import pytest

from ensemble import console
from ensemble.launchers import CellResult, CellSpec, Outcome, Progress, key_metric
from ensemble.launchers.progress import cell_line
from ensemble.tuning.trial_lines import TrialLines, trial_outcome


def test_a_cell_line_names_state_wall_time_metric_and_run():
    done = Outcome("done", "val/log_loss", 1.09314, "runs/xgboost_h5/version_0")
    assert cell_line(2, 4, "xgboost_h5", done, 12.4) == \
        "[2/4] xgboost_h5: done in 12s, val/log_loss 1.0931 (runs/xgboost_h5/version_0)"  # fmt: skip
    skipped = Outcome("skipped", "oof/log_loss", 1.1, "wf/lightgbm_h5/abc")
    assert cell_line(1, 4, "lightgbm_h5", skipped, 0.2) == \
        "[1/4] lightgbm_h5: skipped (finished earlier), oof/log_loss 1.1000 (wf/lightgbm_h5/abc)"  # fmt: skip
    failed = Outcome("failed", note="RuntimeError: boom; see runs/gru_h5/cell.log")
    assert cell_line(3, 4, "gru_h5", failed, 3.0) == \
        "[3/4] gru_h5: failed in 3s (RuntimeError: boom; see runs/gru_h5/cell.log)"  # fmt: skip
    no_value = Outcome("done", "oof/f1_macro", None)
    assert cell_line(4, 4, "fold_2", no_value, 1) == "[4/4] fold_2: done in 1s, oof/f1_macro -"


def test_the_key_metric_is_the_checkpoint_monitor_at_the_cells_stage(tmp_path):
    metrics = tmp_path / "metrics.json"
    recorded = {"val/log_loss": 1.25, "test/log_loss": 1.5, "oof/log_loss": 1.75, "val/f1_macro": 0.5}
    metrics.write_text(json.dumps(recorded))
    config = {"checkpoint": {"monitor": "val/f1_macro"}}
    assert key_metric(config, metrics) == ("val/f1_macro", 0.5)  # a plain cell
    config = {"checkpoint": {"monitor": "val/log_loss"}}
    assert key_metric(config, metrics) == ("val/log_loss", 1.25)
    assert key_metric(config, metrics, "test", "oof") == ("oof/log_loss", 1.5)  # a fold: its test block
    assert key_metric(config, metrics, "oof") == ("oof/log_loss", 1.75)  # a walk-forward: its stitched rows
    assert key_metric({}, metrics) == ("val/log_loss", 1.25)  # the families' default monitor
    assert key_metric(config, tmp_path / "missing.json") == ("val/log_loss", None)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run_two_cells(progress: Progress) -> None:
    progress.finish("a_h5", Outcome("skipped", "val/log_loss", 1.0, "runs/a_h5/version_0"))
    spec = CellSpec("b_h5", "runs/b_h5", {})
    progress.start(spec)
    progress.done(spec, CellResult("b_h5", 1, "boom", 2.0))
    progress.close()


def test_no_bar_without_a_terminal_only_the_lines(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    progress = Progress(2, lambda spec, result: Outcome("failed", note=result.message))
    assert progress.bar is None
    _run_two_cells(progress)
    assert capsys.readouterr().out.splitlines() == [
        "[1/2] a_h5: skipped (finished earlier), val/log_loss 1.0000 (runs/a_h5/version_0)",
        "[2/2] b_h5: failed in 2s (boom)",
    ]
    assert sys.stderr.getvalue() == ""  # no bar, no carriage returns in a log file


def test_one_bar_over_the_cells_on_a_terminal(monkeypatch, capsys):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    progress = Progress(2, lambda spec, result: Outcome("failed", note=result.message))
    assert progress.bar is not None
    _run_two_cells(progress)
    bar = terminal.getvalue()
    assert "cells:" in bar and "2/2" in bar and "running 1, failed 0" in bar and "running 0, failed 1" in bar
    lines = capsys.readouterr().out.splitlines()  # the lines still print, above the bar
    assert lines == ["[1/2] a_h5: skipped (finished earlier), val/log_loss 1.0000 (runs/a_h5/version_0)",
                     "[2/2] b_h5: failed in 2s (boom)"]  # fmt: skip
    with console.at_level(console.QUIET):  # --quiet: no bar either
        assert Progress(2).bar is None


def test_tuning_workers_trials_are_one_line_each_once(capsys):
    study = optuna.create_study(direction="minimize")
    lines = TrialLines(study, "val/log_loss", Progress(3, label="trials", bar=False))
    states = optuna.trial.TrialState
    study.add_trial(optuna.trial.create_trial(state=states.COMPLETE, value=1.0931, user_attrs={"worker": 1},
                                              params={}, distributions={}))  # fmt: skip
    study.add_trial(optuna.trial.create_trial(state=states.PRUNED, intermediate_values={0: 1.2, 1: 1.15},
                                              user_attrs={"worker": 0}))  # fmt: skip
    lines.poll()
    study.add_trial(optuna.trial.create_trial(state=states.FAIL, user_attrs={"worker": 0, "error": "ValueError: x"}))
    lines.poll()
    lines.poll()  # nothing new: nothing printed twice
    out = [re.sub(r" in \d+s", "", line) for line in capsys.readouterr().out.splitlines()]  # wall times differ
    assert out == ["[1/3] trial 0: complete, val/log_loss 1.0931 (worker 1)",
                   "[2/3] trial 1: pruned, val/log_loss 1.1500 (worker 0, at step 1)",
                   "[3/3] trial 2: failed (worker 0: ValueError: x)"]  # fmt: skip
    assert trial_outcome(study.trials[0], "val/log_loss").value == pytest.approx(1.0931)
    # one-process tune: this process ran every trial, so no worker is named
    assert [trial_outcome(t, "val/log_loss", here=True).note for t in study.trials] == ["", "at step 1",
                                                                                      "ValueError: x"]


def _read_until_quiet(fd: int, quiet_s: float = 1.0) -> str:
    """Everything written to a pty so far: a pty hands its buffer over in chunks (one ``read`` saw only half the
    bar on a loaded CI machine), so read until nothing more arrives for ``quiet_s``; nothing drawn fails the test
    rather than hanging it."""
    import os
    import select

    chunks = []
    while select.select([fd], [], [], quiet_s)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def test_the_bar_shows_on_a_terminal_that_reports_no_size(monkeypatch, capsys):
    """A fresh pty reports 0 rows and 0 columns (``script -qc``, ``docker exec -t``, CI): tqdm would hide the bar
    there as "more hidden"; it is drawn 80 columns wide instead."""
    import os
    import pty

    master, slave = pty.openpty()
    with open(slave, "w", closefd=True) as terminal:
        assert os.get_terminal_size(terminal.fileno()).lines == 0
        monkeypatch.setattr(sys, "stderr", terminal)
        progress = Progress(2, lambda spec, result: Outcome("failed", note=result.message), label="folds")
        _run_two_cells(progress)
        terminal.flush()
        drawn = _read_until_quiet(master)
    os.close(master)
    assert "folds: 100%" in drawn and "2/2" in drawn and "more hidden" not in drawn, drawn
    assert len(capsys.readouterr().out.splitlines()) == 2  # the lines still print
