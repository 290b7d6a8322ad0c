"""Out-of-fold blends of walk-forward folders: forward-only fits with provenance (a planted leak is caught), an
oracle on test gets no say, fold f's predictions do not depend on later folds, stacked's C chosen by forward
validation, and ``ensemble blend --runs`` on walk-forward folders (synthetic folders written directly)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ensemble.cli import main
from ensemble.ensembling.blend import BlendError
from ensemble.ensembling.forward import C_GRID, DEFAULT_C
from ensemble.ensembling.methods import METHODS, log_loss
from ensemble.ensembling.oof import fit_last_before_scored, fit_oof_blend, oof_blend
from ensemble.experiments.leaderboard import row

SYMBOLS = ("A", "B")
H = 3
FOLDS = 4
BLOCK = 60  # timestamps per fold
TEST = 60
TIMES = pd.date_range("2023-01-02", periods=BLOCK * FOLDS + TEST + 10, freq="h")


def _labels(rng) -> dict[str, np.ndarray]:
    return {"oof": rng.integers(0, 3, BLOCK * FOLDS * len(SYMBOLS)), "test": rng.integers(0, 3, TEST * len(SYMBOLS))}


def _skilled(labels: np.ndarray, skill: float, rng) -> np.ndarray:
    """(N, 3) probabilities: ``skill`` of the mass on the true class, the rest Dirichlet noise."""
    return skill * np.eye(3)[labels] + (1 - skill) * rng.dirichlet(np.ones(3), size=len(labels))


def _frame(times: pd.DatetimeIndex, labels: np.ndarray, probs: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({
        "datetime": times.repeat(len(SYMBOLS)), "symbol": list(SYMBOLS) * len(times),
        "label": (labels - 1).astype(np.int8),
        **{c: probs[:, i].astype(np.float32) for i, c in enumerate(("prob_short", "prob_flat", "prob_long"))},
        "prediction": (probs.argmax(1) - 1).astype(np.int8),
        "fwd_return": np.where(labels == 2, 0.01, np.where(labels == 0, -0.01, 0.0)).astype(np.float32)})


def walkforward_folder(root: Path, name: str, labels: dict, oof_probs: np.ndarray, test_probs: np.ndarray,
                       folds: int = FOLDS, horizon: int = H) -> Path:  # fmt: skip
    """A finished walk-forward folder as ``ensemble walkforward`` leaves it (span trainval, with a final model)."""
    out = root / name
    (out / "predictions").mkdir(parents=True)
    oof_times, test_times = TIMES[:BLOCK * folds], TIMES[BLOCK * folds + 10:]
    oof = _frame(oof_times, labels["oof"][: BLOCK * folds * len(SYMBOLS)], oof_probs)
    oof["fold"] = np.repeat(np.arange(1, folds + 1), BLOCK * len(SYMBOLS)).astype(np.int16)
    oof.to_parquet(out / "oof.parquet")
    _frame(test_times, labels["test"], test_probs).to_parquet(out / "predictions" / "test.parquet")
    config = {"data": {"horizon": horizon}, "trading": {"bars_per_year": 252 * 7}}
    (out / "walkforward.json").write_text(json.dumps({"config": config, "wf": {"folds": folds, "embargo": 0}}))
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    pd.DataFrame({"fold": range(1, folds + 1), "test_start": [str(t) for t in oof_times[::BLOCK]],
                  "test_end": [str(t) for t in oof_times[BLOCK - 1::BLOCK]]}).to_csv(out / "folds.csv", index=False)
    return out


def _members(root: Path, rng, labels: dict, oracle_test: np.ndarray | None = None) -> list[Path]:
    """good, weak, and a third member: confidently wrong on oof, ``oracle_test`` (or noise) on test."""
    n = len(labels["oof"])
    wrong = _skilled((labels["oof"] + rng.integers(1, 3, n)) % 3, 0.9, rng)
    third_test = oracle_test if oracle_test is not None else rng.dirichlet(np.ones(3), len(labels["test"]))
    good, weak = ((_skilled(labels["oof"], s, rng), _skilled(labels["test"], s, rng)) for s in (0.4, 0.1))
    return [walkforward_folder(root, "good", labels, *good), walkforward_folder(root, "weak", labels, *weak),
            walkforward_folder(root, "third", labels, wrong, third_test)]  # fmt: skip


def _record(run: Path) -> dict:
    return json.loads((run / "blend.json").read_text())


@pytest.mark.parametrize("method", sorted(METHODS))
def test_candidate_folder_and_provenance(tmp_path, method):
    rng = np.random.default_rng(0)
    runs = _members(tmp_path, rng, _labels(rng))
    run = oof_blend(runs, method, tmp_path / "blends")
    record = _record(run)
    assert record["fit_on"] == "oof" and record["members"] == [str(r) for r in runs]
    assert sorted(record["provenance"]["folds"]) == ["2", "3", "4"] and "test" in record["provenance"]
    assert fit_last_before_scored(record) == []  # every fit saw only rows (and label windows) before its scores
    for f, p in record["provenance"]["folds"].items():  # the purge dropped the last H bars of each symbol
        assert p["fit_rows"] == (int(f) - 1) * BLOCK * len(SYMBOLS) - H * len(SYMBOLS)
        assert pd.Timestamp(p["fit_last"]) == pd.Timestamp(TIMES[(int(f) - 1) * BLOCK - 1 - H], tz="UTC")
    oof = pd.read_parquet(run / "oof.parquet")
    assert sorted(oof["fold"].unique()) == [2, 3, 4] and len(oof) == 3 * BLOCK * len(SYMBOLS)
    assert list(oof.columns) == ["datetime", "symbol", "label", "prob_short", "prob_flat", "prob_long", "prediction",
                                 "fwd_return", "fold"]  # fmt: skip
    metrics = json.loads((run / "metrics.json").read_text())
    probs = oof[["prob_short", "prob_flat", "prob_long"]].to_numpy(np.float64)
    assert metrics["oof/log_loss"] == pytest.approx(log_loss(probs, oof["label"].to_numpy() + 1), abs=1e-6)
    assert metrics["fit_on"] == "oof" and "test/log_loss" in metrics
    assert (run / "predictions" / "test.parquet").is_file() and (run / "plots" / "oof_equity_curve.png").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["horizon"] == H


@pytest.mark.parametrize("method", ["weighted", "stacked", "caruana"])
def test_planted_leak_is_caught(tmp_path, method):
    """With the forward-only guard off every fit sees the rows it scores; the provenance check says so."""
    rng = np.random.default_rng(1)
    record = fit_oof_blend(_members(tmp_path, rng, _labels(rng)), method, guard=False).record
    # the final fit's rows all precede test, but the last ones' label windows (H bars) reach its first bar
    assert fit_last_before_scored(record) == ["fold 2", "fold 3", "fold 4", "test"]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_test_oracle_gets_no_say(tmp_path, method):
    """A member perfect on test (confidently wrong out-of-fold) gets no weight; scrambling its test rows changes
    neither the weights nor the blend's out-of-fold predictions."""
    rng = np.random.default_rng(2)
    labels = _labels(rng)
    oracle = np.eye(3)[labels["test"]] * 0.98 + 0.02 / 3
    first = fit_oof_blend(_members(tmp_path / "a", np.random.default_rng(3), labels, oracle), method)
    scrambled = oracle[np.random.default_rng(4).permutation(len(oracle))]
    second = fit_oof_blend(_members(tmp_path / "b", np.random.default_rng(3), labels, scrambled), method)
    a, b = first.record, second.record
    assert a["weights"] == b["weights"] and a.get("C") == b.get("C")
    if method in ("weighted", "caruana", "best"):  # mean weighs all alike by design; stacked has coefficients
        assert a["weights"][2] < 1e-6
    pd.testing.assert_frame_equal(first.oof, second.oof)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_fold_f_does_not_see_later_folds(tmp_path, method):
    """Altering the labels of folds >= f and the members' predictions of folds > f leaves folds <= f unchanged."""
    rng = np.random.default_rng(5)
    labels = _labels(rng)
    before = fit_oof_blend(_members(tmp_path / "base", np.random.default_rng(6), labels), method).oof
    for f in (2, 3):
        runs = _members(tmp_path / f"f{f}", np.random.default_rng(6), labels)
        for run in runs:
            oof = pd.read_parquet(run / "oof.parquet")
            later = oof["fold"] >= f
            oof.loc[later, "label"] = np.int8(1) - oof.loc[later, "label"].abs()  # flips flat <-> short/long
            after = oof["fold"] > f
            oof.loc[after, ["prob_short", "prob_flat", "prob_long"]] = np.float32(1 / 3)
            oof.to_parquet(run / "oof.parquet")
        changed = fit_oof_blend(runs, method).oof
        kept = before["fold"] <= f
        cols = ["prob_short", "prob_flat", "prob_long"]
        np.testing.assert_array_equal(changed.loc[kept, cols].to_numpy(), before.loc[kept, cols].to_numpy())


def test_stacked_c_chosen_by_forward_validation(tmp_path):
    """Members of pure noise: a weakly regularised logistic regression fits the noise of earlier folds, so the
    smallest C (close to the class frequencies) has the lowest forward-only log loss and is chosen; fold 2, with
    no earlier scored fold, uses the default C."""
    rng = np.random.default_rng(7)
    labels = _labels(rng)
    n, t = len(labels["oof"]), len(labels["test"])
    runs = [walkforward_folder(tmp_path, f"noise{i}", labels, rng.dirichlet(np.ones(3) * 0.3, n),
                               rng.dirichlet(np.ones(3) * 0.3, t)) for i in range(4)]  # fmt: skip
    record = fit_oof_blend(runs, "stacked").record
    losses = {float(c): v for c, v in record["C_losses"].items()}
    assert sorted(losses) == list(C_GRID) and record["C"] == 0.01
    assert losses[0.01] == min(losses.values()) and losses[0.01] < losses[100.0] - 0.01
    assert record["provenance"]["folds"]["2"]["C"] == DEFAULT_C
    assert record["provenance"]["folds"]["4"]["C"] == 0.01
    # a C given as an option is the C used, on every fold and for the final fit, not just recorded
    given = fit_oof_blend(runs, "stacked", options={"stacked": {"C": 10.0}}).record
    assert given["C"] == 10.0 and list(given["C_losses"]) == ["10.0"] and given["options"] == {"C": 10.0}
    assert {f: p["C"] for f, p in given["provenance"]["folds"].items()} == {"2": 10.0, "3": 10.0, "4": 10.0}
    assert given["state"]["C"] == 10.0


def test_mismatched_folds_are_one_line(tmp_path):
    rng = np.random.default_rng(8)
    labels = _labels(rng)
    n, t = len(labels["oof"]), len(labels["test"])
    a = walkforward_folder(tmp_path, "a", labels, rng.dirichlet(np.ones(3), n), rng.dirichlet(np.ones(3), t))
    b = walkforward_folder(tmp_path, "b", labels, rng.dirichlet(np.ones(3), n), rng.dirichlet(np.ones(3), t))
    plan = pd.read_csv(b / "folds.csv")
    plan.loc[1, "test_start"] = str(TIMES[BLOCK + 1])
    plan.to_csv(b / "folds.csv", index=False)
    with pytest.raises(BlendError, match=r"b: its folds \(folds.csv test_start/test_end\) differ from .*a's"):
        fit_oof_blend([a, b], "mean")
    c = walkforward_folder(tmp_path, "c", labels, rng.dirichlet(np.ones(3), n), rng.dirichlet(np.ones(3), t),
                           horizon=H + 1)  # fmt: skip
    with pytest.raises(BlendError, match=f"horizon {H + 1}, but .* has {H}"):
        fit_oof_blend([a, c], "mean")
    with pytest.raises(BlendError, match="given twice in --runs"):
        fit_oof_blend([a, b, tmp_path / "." / "a"], "mean")  # one folder, two spellings
    d = walkforward_folder(tmp_path, "d", labels, rng.dirichlet(np.ones(3), n), rng.dirichlet(np.ones(3), t))
    (d / "predictions" / "test.parquet").unlink()  # a member whose final model's test predictions are gone
    with pytest.raises(BlendError, match=r"d: no final-model test predictions"):
        fit_oof_blend([a, d], "mean")  # not a blend that silently drops test


def test_cli_blends_walkforward_folders(tmp_path, capsys):
    rng = np.random.default_rng(9)
    runs = _members(tmp_path, rng, _labels(rng))
    assert main(["blend", "--runs", *map(str, runs[:2]), "--method", "caruana", "--caruana.size", "7",
                 "--caruana.init", "2", "--out", str(tmp_path / "out")]) == 0  # fmt: skip
    (run,) = (tmp_path / "out" / f"ensemble_caruana_h{H}").iterdir()
    record = _record(run)
    assert record["fit_on"] == "oof" and record["options"] == {"size": 7, "init": 2}
    text = capsys.readouterr().out
    assert "fitted on out-of-fold rows" in text and "oof" in text and "fitted on val" not in text
    plain = tmp_path / "plain" / "version_0"
    (plain / "predictions").mkdir(parents=True)
    (plain / "config.yaml").write_text(yaml.safe_dump({"data": {"horizon": H}}))
    assert main(["blend", "--runs", str(runs[0]), str(plain), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "mixes walk-forward folders" in err and len(err.splitlines()) == 1


def test_cli_val_blend_says_fit_on_val(tmp_path, capsys):
    from test_blend import _member, _oracle_case

    probs, labels = _oracle_case(np.random.default_rng(0))
    runs = [_member(tmp_path, name, *p, labels) for name, p in probs.items()]
    assert main(["blend", "--runs", *map(str, runs), "--method", "weighted", "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert sum("fit_on: val" in line for line in text.splitlines()) == 1
    (run,) = (tmp_path / "out" / "ensemble_weighted_h5").iterdir()
    assert _record(run)["options"] == {}  # as an out-of-fold blend's record
    assert _record(run)["fit_on"] == "val" and json.loads((run / "metrics.json").read_text())["fit_on"] == "val"
    assert row("ensemble_weighted", 5, "blend", run, "done")["fit_on"] == "val"  # the leaderboard marks it
