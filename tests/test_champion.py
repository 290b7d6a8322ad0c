"""The champion per horizon on synthetic candidate folders (S5_INTERFACES A): chosen on the rows every candidate
shares, judged against the test oracle with a block-bootstrap interval, with DSR, PBO and the baselines; the
trial count from tuned configs; the closed-form baselines against hand-worked numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from panels import write_splits

from ensemble.ensembling.blend import split_metrics
from ensemble.errors import ConfigError
from ensemble.experiments.baselines import guesses, random_in_proportion
from ensemble.experiments.candidates import CandidateError, align_files, candidates_of, net_returns
from ensemble.experiments.champion import choose_champions
from ensemble.experiments.leaderboard import write_walkforward_leaderboard
from ensemble.experiments.selection_bias import (
    cell_trials,
    config_files,
    deflated_sharpe,
    earlier_trials,
    overfitting_probability,
    trials_tried,
    usable_partitions,
)
from ensemble.metrics.config import TradingConfig
from ensemble.tuning.record import read_tune_record
from ensemble.tuning.study import write_best_config

SYMBOLS, H = 4, 5
TRADING = {"cost_bps": 5.0, "bars_per_year": 2016.0}


def _frame(times: pd.DatetimeIndex, rng: np.random.Generator) -> pd.DataFrame:
    df = pd.DataFrame({"datetime": np.repeat(times, SYMBOLS), "symbol": np.tile([f"S{i}" for i in range(SYMBOLS)],
                                                                              len(times))})  # fmt: skip
    df["label"] = rng.integers(-1, 2, len(df)).astype(np.int8)
    df["fwd_return"] = (0.004 * df["label"] + rng.normal(0, 0.01, len(df))).astype(np.float32)
    return df


def _probs(label: np.ndarray, skill: np.ndarray) -> np.ndarray:
    """(N, 3): a mix of the one-hot truth (weight ``skill`` per row) and uniform thirds."""
    onehot = np.eye(3)[label + 1]
    return skill[:, None] * onehot + (1 - skill[:, None]) / 3


def _candidate(folder: Path, oof: pd.DataFrame, oof_skill: np.ndarray, test: pd.DataFrame, test_skill: float,
               splits: Path, fold_from: int = 1) -> Path:  # fmt: skip
    folder.mkdir(parents=True)
    (folder / "predictions").mkdir()
    for df, skill, path in ((oof, oof_skill, folder / "oof.parquet"),
                            (test, np.full(len(test), test_skill), folder / "predictions" / "test.parquet")):
        probs = _probs(df["label"].to_numpy(), skill)
        out = df.assign(prob_short=probs[:, 0], prob_flat=probs[:, 1], prob_long=probs[:, 2],
                        prediction=(probs.argmax(1) - 1).astype(np.int8))
        if path.name == "oof.parquet":
            out = out.assign(fold=np.int16(fold_from))
            out = out[out["datetime"] >= out["datetime"].iloc[0]]
        out.to_parquet(path, index=False)
    (folder / "config.yaml").write_text(yaml.safe_dump({"data": {"root": str(splits), "horizon": H},
                                                        "trading": TRADING}))  # fmt: skip
    (folder / "metrics.json").write_text(json.dumps({"test/f1_macro": 0.4}))
    return folder


@pytest.fixture
def experiment(tmp_path):
    """Three candidates over 400 out-of-fold timestamps: member ``early`` is sharp on the first 100 and weak
    after, member ``steady`` is fair throughout, and the blend predicts only from timestamp 100 (fold 2 on)."""
    rng = np.random.default_rng(0)
    splits = write_splits(tmp_path / "splits")
    oof = _frame(pd.date_range("2021-01-01", periods=400, freq="h"), rng)
    test = _frame(pd.date_range("2021-03-01", periods=200, freq="h"), rng)
    early = np.where(oof["datetime"] < oof["datetime"].iloc[100 * SYMBOLS], 0.99, 0.12)
    runs = tmp_path / "exp" / "walkforward"
    members = {"early": _candidate(runs / "early", oof, early, test, 0.30, splits),
               "steady": _candidate(runs / "steady", oof, np.full(len(oof), 0.2), test, 0.25, splits)}
    late = oof[oof["datetime"] >= oof["datetime"].iloc[100 * SYMBOLS]].reset_index(drop=True)
    blend = _candidate(tmp_path / "exp" / "blends" / "caruana", late, np.full(len(late), 0.22), test, 0.28, splits, 2)
    rows = [{"model": name, "horizon": H, "kind": "walkforward", "status": "done", "run_dir": str(path),
             "oof_log_loss": 0.0, "oof_f1_macro": 0.5} for name, path in members.items()]
    rows.append({"model": "ensemble_caruana", "horizon": H, "kind": "blend", "status": "done", "run_dir": str(blend),
                 "oof_log_loss": 0.0, "oof_f1_macro": 0.5})  # fmt: skip
    rows.append({"model": "gru", "horizon": H, "kind": "walkforward", "status": "failed", "run_dir": "",
                 "oof_log_loss": None, "oof_f1_macro": None})  # fmt: skip
    return tmp_path / "exp", rows, oof, test


def test_the_champion_is_chosen_on_shared_rows_and_judged_against_the_oracle(experiment, capsys):
    out, rows, _, _ = experiment
    board = choose_champions(rows, out, trials={H: 9})
    record = json.loads((out / f"champion_h{H}.json").read_text())
    # On all its rows ``early`` beats ``steady`` (mean -ln p: its sharp first quarter), but on the rows the
    # blend shares (timestamps 100..399) ``steady`` (skill .2) beats ``early`` (.12) and the blend (.22) beats both.
    def loss(skill: float) -> float:  # mean -ln p(true) of the skill mix, every row alike
        return -math.log(skill + (1 - skill) / 3)
    assert 0.25 * loss(0.99) + 0.75 * loss(0.12) < loss(0.2)  # ``early`` would win on its own rows
    scores = {c["name"]: c["score"] for c in record["candidates"]}
    assert scores == pytest.approx({"early": loss(0.12), "steady": loss(0.2), "ensemble_caruana": loss(0.22)}, abs=1e-6)
    # folders named relative to the experiment folder that holds the record: it can move as one
    assert record["champion"] == {"name": "ensemble_caruana", "kind": "blend", "run_dir": "blends/caruana"}
    assert [c["run_dir"] for c in record["candidates"]] == ["walkforward/early", "walkforward/steady", "blends/caruana"]
    # the DSR's Sharpe ratios are per period, and the record says so (metrics.json's are annualised)
    assert all("sharpe_net_per_period" in c and "sharpe" not in c for c in record["candidates"])
    assert "not annualised" in record["units"]["sharpe_net_per_period"]
    assert "annualised" in record["units"]["sharpe_net_per_period"].split("; ")[1]
    # the oracle is the best *member* on test (skill .30 beats .25); the blend's test skill .28 is below it
    assert record["oracle"]["name"] == "early"
    assert record["oracle"]["test_log_loss"] == pytest.approx(loss(0.30), abs=1e-6)
    assert record["champion_test_log_loss"] == pytest.approx(loss(0.28), abs=1e-6)
    assert record["difference"] == pytest.approx(loss(0.28) - loss(0.30), abs=1e-6)
    # every row's difference is the same constant: the interval has zero width at it
    assert record["interval"] == pytest.approx([record["difference"]] * 2, abs=1e-6)
    assert record["level"] == 0.9 and record["block"] == max(H, math.ceil(200 ** (1 / 3)))
    assert record["metric"] == "oof/log_loss" and record["n_trials"] == 9 and record["horizon"] == H
    assert record["beats_baselines"] is True and record["best_baseline"]["oof_log_loss"] > loss(0.22)
    # the board: markers, DSR per candidate, one PBO for the horizon, baselines on the same rows
    by_model = {r["model"]: r for r in board}
    assert by_model["ensemble_caruana"]["champion"] and not by_model["steady"]["champion"]
    assert by_model["early"]["oracle"] and by_model["early"]["test_f1_macro"] == 0.4
    assert 0 <= by_model["steady"]["dsr"] <= 1 and math.isnan(by_model["gru"]["dsr"])
    assert by_model["gru"]["pbo"] == record["pbo"] and 0 <= record["pbo"] <= 1
    assert record["pbo_partitions"] == 16  # 300 shared timestamps: 16 blocks of >= 5
    assert {"uniform", "class_prior", "random_prior"} <= set(by_model)
    assert by_model["uniform"]["oof_log_loss_shared"] == pytest.approx(math.log(3))
    # the blend's best member is chosen out of fold (steady, .2 on the shared rows), not on test (early, .30);
    # the blend's test skill .28 beats steady's .25 on test: it beats its best member
    assert by_model["ensemble_caruana"]["best_member"] == "steady" and by_model["ensemble_caruana"]["beats_best_member"]
    assert by_model["steady"]["beats_best_member"] is None and by_model["steady"]["best_member"] == ""
    # champion - oracle and its interval on the champion's row only
    champ = by_model["ensemble_caruana"]
    assert champ["test_minus_oracle"] == pytest.approx(loss(0.28) - loss(0.30), abs=1e-6)
    assert [champ["test_minus_oracle_lo"], champ["test_minus_oracle_hi"]] == pytest.approx(record["interval"])
    assert math.isnan(by_model["early"]["test_minus_oracle"])
    printed = capsys.readouterr().out
    assert "h5 champion: ensemble_caruana (blend)" in printed and "oracle early" in printed and "PBO" in printed
    # the written board: sorted on the shared rows, the PNG beside it
    written = write_walkforward_leaderboard(board, out)
    assert written.model.tolist()[:3] == ["ensemble_caruana", "steady", "early"]
    assert (out / "leaderboard.png").stat().st_size > 10_000
    assert {"champion", "oracle", "dsr", "pbo", "n_trials", "test_log_loss_shared"} <= set(written.columns)
    # counts print as integers in leaderboard.md (the columns are float in pandas: baselines leave them empty)
    header, _, *lines = (out / "leaderboard.md").read_text().split("\n\n")[0].splitlines()
    cells = dict(zip(header.split(" | "), lines[0].split(" | "), strict=True))
    assert cells["n_trials"] == "9" and cells["pbo_partitions"] == "16"
    assert "sorted by oof_log_loss_shared (lower first)" in (out / "leaderboard.md").read_text()
    csv = pd.read_csv(out / "leaderboard.csv", dtype=str, keep_default_na=False)
    assert set(csv.n_trials) == {"9", ""} and set(csv.pbo_partitions) == {"16", ""}  # integers, never 9.0
    assert set(csv.run_dir) == {"walkforward/early", "walkforward/steady", "blends/caruana", ""}  # gru failed: none


def test_without_test_predictions_the_champion_is_still_chosen_and_says_why(experiment):
    out, rows, _, _ = experiment
    (Path(rows[1]["run_dir"]) / "predictions" / "test.parquet").unlink()
    board = choose_champions(rows, out)
    record = json.loads((out / f"champion_h{H}.json").read_text())
    assert record["champion"]["name"] == "ensemble_caruana" and record["oracle"] is None
    assert "test.parquet is missing: no test comparison" in record["test_note"] and record["interval"] is None
    assert not any(r["oracle"] for r in board)


def test_the_dsr_with_one_trial_is_the_books_psr(experiment):
    # One trial: the DSR is the PSR against 0 that the metric suite reports for the same rows and book.
    _, rows, _, _ = experiment
    candidates = candidates_of(rows, H)
    oof = align_files(candidates, "oof.parquet")
    trading = TradingConfig(**TRADING)
    _, net = net_returns(oof, H, trading)
    deflated = deflated_sharpe(net, H, 1)
    for i, probs in enumerate(oof.probs):
        assert deflated.dsr[i] == pytest.approx(split_metrics("oof", oof.frame, probs, H, trading)["oof/psr"], abs=1e-9)
    more = deflated_sharpe(net, H, 100)
    assert (more.dsr <= deflated.dsr).all() and more.variance == pytest.approx(np.var(deflated.sharpe, ddof=1))


def test_a_champion_metric_higher_is_better_and_bad_options_fail_in_one_line(experiment):
    out, rows, _, _ = experiment
    blend = Path(rows[2]["run_dir"]) / "config.yaml"
    blend.write_text(yaml.safe_dump({"data": {"horizon": H}}))  # no trading section: booked as the members
    steady = Path(rows[1]["run_dir"]) / "config.yaml"
    write_walkforward_leaderboard(choose_champions(rows, out), out)  # an earlier run by log loss
    (out / "leaderboard.png").unlink()
    board = choose_champions(rows, out, metric="oof/f1_macro", partitions=4)
    record = json.loads((out / f"champion_h{H}.json").read_text())
    best = max(record["candidates"], key=lambda c: c["score"])
    assert record["champion"]["name"] == best["name"] and record["pbo_partitions"] == 4
    # the board of the f1 run: sorted by it, higher first, baselines scored on it, the chart written again
    written = write_walkforward_leaderboard(board, out, "oof/f1_macro")
    scored = written[written.status == "done"]
    assert scored.oof_f1_macro_shared.notna().all() and scored.oof_log_loss_shared.notna().all()
    assert scored.oof_f1_macro_shared.is_monotonic_decreasing and written.iloc[0]["champion"]
    text = (out / "leaderboard.md").read_text()
    assert "sorted by oof_f1_macro_shared (higher first)" in text and "sorted by oof_log_loss_shared" not in text
    assert (out / "leaderboard.png").stat().st_size > 10_000
    before = steady.read_text()
    steady.write_text(yaml.safe_dump({"data": {"horizon": H}, "trading": {**TRADING, "cost_bps": 1.0}}))
    with pytest.raises(CandidateError, match=r"trading\.cost_bps is 1\.0, but .*early has 5\.0; candidates must"):
        choose_champions(rows, out)
    steady.write_text(before)
    with pytest.raises(ConfigError, match="pbo_partitions must be an even"):
        choose_champions(rows, out, partitions=5)
    with pytest.raises(ConfigError, match="not an out-of-fold metric; known"):
        choose_champions(rows, out, metric="oof/nonsense")


def test_a_champion_worse_than_a_guess_says_so(experiment, capsys):
    # every candidate gives the true class 0.2 and the two others 0.4 each: worse than any guess on these rows
    out, rows, _, _ = experiment
    for r in rows[:3]:
        path = Path(r["run_dir"]) / "oof.parquet"
        df = pd.read_parquet(path)
        probs = _probs(df["label"].to_numpy(), np.full(len(df), -0.2))
        df[["prob_short", "prob_flat", "prob_long"]] = probs
        df.to_parquet(path, index=False)
    choose_champions(rows, out)
    record = json.loads((out / f"champion_h{H}.json").read_text())
    assert record["beats_baselines"] is False
    guess = record["best_baseline"]
    assert guess["name"] in {"uniform", "class_prior", "random_prior"} and guess["oof_log_loss"] < -math.log(0.2)
    assert f"WORSE than the {guess['name'].replace('_', '-')} guess" in capsys.readouterr().out


def test_pbo_partitions_are_reduced_for_short_series_and_said_so():
    assert usable_partitions(1000, 5, 16) == 16
    assert usable_partitions(40, 5, 16) == 8  # 40 // 8 = 5 timestamps per block = h; 16 would give 2
    assert usable_partitions(40, 1, 16) == 16 and usable_partitions(1000, 5, 15) == 14
    assert usable_partitions(9, 5, 16) == 0
    short = overfitting_probability(np.zeros((9, 3)), 5)
    assert math.isnan(short.pbo) and short.partitions == 0 and "too few" in short.why
    one = overfitting_probability(np.zeros((100, 1)), 5)
    assert math.isnan(one.pbo) and "1 candidate" in one.why


def test_trials_count_grid_cells_blends_and_the_tuned_studys_complete_and_pruned_trials(tmp_path):
    # A study of 4 complete, 3 pruned and 1 failed trials writes best.yaml with its record.
    run = tmp_path / "trial_run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {"class_path": "x.Y"}, "data": {"horizon": 5}}))
    study = optuna.create_study(direction="minimize", study_name="lgbm")
    states = optuna.trial.TrialState
    for i in range(4):
        study.add_trial(optuna.trial.create_trial(value=1.0 + i, user_attrs={"run_dir": str(run)}))
    for state in (states.PRUNED,) * 3 + (states.FAIL,):
        study.add_trial(optuna.trial.create_trial(state=state))
    best = write_best_config(study, tmp_path / "tune" / "best.yaml")
    assert read_tune_record(best) == {"study": "lgbm", "complete": 4, "pruned": 3, "failed": 1, "best_trial": 0,
                                      "objective before calibration": 1.0}  # a study without a stored metric
    assert yaml.safe_load(best.read_text())["data"] == {"horizon": 5}  # still a plain config
    plain = tmp_path / "lightgbm.yaml"
    plain.write_text("model: {}\n")
    assert config_files(plain, ["--trainer.max_epochs", "3", "--config", str(best)]) == [plain, best]
    assert cell_trials([plain]) == 1 and cell_trials([plain, best]) == 7
    rows = [{"model": model, "horizon": h, "kind": kind} for model, h, kind in (
        ("lightgbm", 5, "walkforward"), ("gru", 5, "walkforward"), ("ensemble_caruana", 5, "blend"),
        ("uniform", 5, "baseline"), ("lightgbm", 20, "walkforward"))]  # fmt: skip
    files = {"lightgbm": [plain, best], "gru": [tmp_path / "gru.yaml"]}
    assert trials_tried(rows, files) == {5: 7 + 1 + 1, 20: 7}
    # an earlier run of the same experiment: another fingerprint of lightgbm h5 and an older caruana blend were
    # tried and finished; the current ones and an unfinished (killed) fingerprint are not counted again
    out = tmp_path / "exp"
    for folder, marker in (("walkforward/lightgbm_h5/aaaa", "oof.parquet"), ("walkforward/lightgbm_h5/bbbb",
                           "oof.parquet"), ("walkforward/lightgbm_h5/killed", "folds.csv"),
                           ("walkforward/lightgbm_h20/cccc", "oof.parquet"),
                           ("blends/ensemble_caruana_h5/version_0", "blend.json"),
                           ("blends/ensemble_caruana_h5/version_1", "blend.json")):  # fmt: skip
        (out / folder).mkdir(parents=True)
        (out / folder / marker).write_text("x")
    now = {("lightgbm", 5): "walkforward/lightgbm_h5/bbbb", ("lightgbm", 20): "walkforward/lightgbm_h20/cccc",
           ("ensemble_caruana", 5): "blends/ensemble_caruana_h5/version_1"}  # fmt: skip
    placed = [{**r, "run_dir": str(out / now[(r["model"], r["horizon"])])} if (r["model"], r["horizon"]) in now else r
              for r in rows]  # fmt: skip
    assert earlier_trials(out, placed) == {5: 2}
    assert trials_tried(placed, files, out) == {5: 7 + 1 + 1 + 2, 20: 7}
    bad = tmp_path / "bad.yaml"
    bad.write_text("# tuned: {not json\nmodel: {}\n")
    with pytest.raises(ConfigError, match="not JSON"):
        cell_trials([bad])


def test_baselines_in_closed_form_against_hand_worked_numbers():
    f, q = np.array([0.2, 0.5, 0.3]), np.array([0.25, 0.5, 0.25])
    # random in proportion: F1_c = 2 f q / (f + q) = .1/.45, .5/1, .15/.55 -> mean .331650
    rnd = random_in_proportion(f, q)
    assert rnd["f1_macro"] == pytest.approx((0.1 / 0.45 + 0.5 + 0.15 / 0.55) / 3, abs=1e-12)
    assert rnd["f1_macro"] == pytest.approx(0.331650, abs=1e-6)
    assert rnd["accuracy"] == pytest.approx(0.05 + 0.25 + 0.075)
    # log loss of the prior: -(.2 ln .25 + .5 ln .5 + .3 ln .25) = .5 ln 4 + .5 ln 2 = 1.039721
    assert rnd["log_loss"] == pytest.approx(1.039721, abs=1e-6)
    assert random_in_proportion(q, q)["f1_macro"] == pytest.approx(1 / 3)  # f = q: mean f_c
    g = guesses(f, q)
    assert g["class_prior"]["f1_macro"] == pytest.approx(2 * 0.5 / 1.5 / 3)  # always flat: F1_flat / 3
    assert g["class_prior"]["log_loss"] == pytest.approx(1.039721, abs=1e-6)
    assert g["uniform"] == pytest.approx({"f1_macro": 2 * 0.2 / 1.2 / 3, "log_loss": math.log(3)})  # always short
    assert g["random_prior"] == pytest.approx({"f1_macro": 0.331650, "log_loss": 1.039721}, abs=1e-6)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("champion_metric", "val/log_loss", "champion_metric: an out-of-fold metric"),
    ("champion_metric", "oof/banana",
     r"'oof/banana' is not an out-of-fold metric; known: oof/accuracy, .*oof/f1_macro"),
    ("champion_metric", "oof/n_trades", "'oof/n_trades' is not an out-of-fold metric"),  # a count, not a metric
    ("pbo_partitions", 3, "pbo_partitions must be an even integer >= 2, got 3"),
])  # fmt: skip
def test_an_experiment_refuses_bad_champion_options_before_any_cell(field, value, message):
    from ensemble.experiments.runner import Experiment

    with pytest.raises(ConfigError, match=message):
        Experiment(**{field: value})
