"""Blends: fitted on val only (a planted test-set oracle must not sway them), judged on test."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from ensemble.cli import main
from ensemble.ensembling.blend import BlendError, blend, make_method
from ensemble.ensembling.methods import MeanBlend, StackedBlend, WeightedBlend, log_loss
from ensemble.errors import ConfigError

N = 400


def _probs(labels: np.ndarray, skill: float, rng) -> np.ndarray:
    noise = rng.dirichlet(np.ones(3), size=len(labels))
    onehot = np.eye(3)[labels]
    return (skill * onehot + (1 - skill) * noise).astype(np.float32)


def _member(root, name, val_probs, test_probs, labels, horizon=5):
    run = root / name / "version_0"
    (run / "predictions").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {"horizon": horizon}, "trading": {"bars_per_year": 252}}))
    times = pd.date_range("2022-01-01", periods=N // 2, freq="h").repeat(2)
    for split, probs in (("val", val_probs), ("test", test_probs)):
        y = labels[split]
        pd.DataFrame(
            {
                "datetime": times,
                "symbol": ["A", "B"] * (N // 2),
                "label": (y - 1).astype(np.int8),
                "prob_short": probs[:, 0],
                "prob_flat": probs[:, 1],
                "prob_long": probs[:, 2],
                "prediction": (probs.argmax(1) - 1).astype(np.int8),
                "fwd_return": np.where(y == 2, 0.01, np.where(y == 0, -0.01, 0.0)).astype(np.float32),
            }
        ).to_parquet(run / "predictions" / f"{split}.parquet")
    return run


def _oracle_case(rng) -> tuple[dict, dict]:
    """Members' (val, test) probabilities, (N, 3) each: good, weak, and an oracle on TEST only (random on val)."""
    labels = {s: rng.integers(0, 3, N) for s in ("val", "test")}
    probs = {
        "good": (_probs(labels["val"], 0.5, rng), _probs(labels["test"], 0.5, rng)),
        "weak": (_probs(labels["val"], 0.1, rng), _probs(labels["test"], 0.1, rng)),
        "oracle": (rng.dirichlet(np.ones(3), N).astype(np.float32),
                   np.eye(3, dtype=np.float32)[labels["test"]] * 0.98 + 0.0066),
    }
    return probs, labels


@pytest.fixture
def members(tmp_path):
    probs, labels = _oracle_case(np.random.default_rng(0))
    # a blend that peeked at test would lean on the oracle
    runs = [_member(tmp_path, name, val, test, labels) for name, (val, test) in probs.items()]
    return tmp_path, runs, labels


def test_methods_on_arrays():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 500)
    probs = np.stack([_probs(y, 0.6, rng), _probs(y, 0.05, rng)])
    assert np.allclose(MeanBlend().fit(probs, y).predict_proba(probs), probs.mean(0))
    w = WeightedBlend().fit(probs, y).weights_
    assert w.sum() == pytest.approx(1.0) and w[0] > 0.8
    stacked = StackedBlend().fit(probs, y).predict_proba(probs)
    assert np.allclose(stacked.sum(1), 1.0)


def test_weighted_blend_finds_the_optimum_powell_missed():
    """The oracle fixture with val and test pooled: Powell on softmax logits stopped at [1, 0, 0]
    (log loss 0.43366); a 0.01 grid over the simplex finds (0.9, 0, 0.1) at 0.43185."""
    probs, labels = _oracle_case(np.random.default_rng(0))
    pooled = np.stack([np.concatenate(pair) for pair in probs.values()])  # (3, 2N, 3)
    y = np.concatenate([labels["val"], labels["test"]])
    grid = min(
        log_loss(np.tensordot(np.array([a, b, 1 - a - b]), pooled, axes=1), y)
        for a in np.linspace(0, 1, 101) for b in np.linspace(0, 1 - a, max(1, round((1 - a) * 100)) + 1)
    )
    fitted = WeightedBlend().fit(pooled, y)
    assert grid == pytest.approx(0.43185, abs=5e-5)
    assert log_loss(fitted.predict_proba(pooled), y) <= grid + 1e-9
    np.testing.assert_allclose(fitted.weights_, [0.9013, 0.0, 0.0987], atol=2e-3)


def test_blend_writes_an_ordinary_run_and_ignores_a_test_oracle(members):
    root, runs, _ = members
    for method in ("weighted", "stacked", "caruana", "best"):
        run = blend(runs, method, root / "blends")
        for rel in (
            "predictions/val.parquet",
            "predictions/test.parquet",
            "metrics.json",
            "config.yaml",
            "plots/test_confusion_matrix.png",
        ):
            assert (run / rel).is_file()
        metrics = json.loads((run / "metrics.json").read_text())
        assert {"val/log_loss", "test/log_loss", "test/sharpe", "test/f1_macro"} <= set(metrics)
        if method != "stacked":
            weights = json.loads((run / "blend.json").read_text())["weights"]
            assert weights[2] < 0.05, (method, weights)  # the test-only oracle gets (almost) nothing


def test_test_predictions_never_reach_the_fit(members):
    root, runs, _ = members
    first = blend(runs, "stacked", root / "a")
    for run in runs:  # scramble every member's test predictions
        path = run / "predictions" / "test.parquet"
        df = pd.read_parquet(path)
        df[["prob_short", "prob_flat", "prob_long"]] = df[["prob_long", "prob_short", "prob_flat"]].to_numpy()
        df.to_parquet(path)
    second = blend(runs, "stacked", root / "b")
    val_a = pd.read_parquet(first / "predictions" / "val.parquet")
    val_b = pd.read_parquet(second / "predictions" / "val.parquet")
    pd.testing.assert_frame_equal(val_a, val_b)  # same fitted model: val predictions identical


def test_bad_blends_are_named(members, capsys):
    root, runs, _ = members
    with pytest.raises(BlendError, match="at least two runs"):
        blend(runs[:1], "mean", root / "x")
    with pytest.raises(BlendError, match="unknown blend method 'median'"):
        blend(runs, "median", root / "x")
    cfg = yaml.safe_load((runs[1] / "config.yaml").read_text())
    cfg["data"]["horizon"] = 20
    (runs[1] / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["blend", "--runs", *map(str, runs), "--out", str(root / "x")]) == 2
    assert "different horizons [5, 20]" in capsys.readouterr().err


def test_a_member_given_twice_is_refused(members, capsys):
    root, runs, _ = members
    with pytest.raises(BlendError, match=r"given twice in --runs"):
        blend([runs[0], runs[1], runs[0].parent / "." / runs[0].name], "mean", root / "x")  # one path, two spellings
    assert main(["blend", "--runs", str(runs[0]), str(runs[0]), "--method", "mean", "--out", str(root / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "given twice" in err and str(runs[0]) in err and len(err.splitlines()) == 1
    assert not (root / "x").exists()


def test_the_val_note_follows_the_checks(tmp_path, capsys):
    nope = [str(tmp_path / "nope1"), str(tmp_path / "nope2")]
    assert main(["blend", "--runs", *nope, "--method", "mean"]) == 2
    out, err = capsys.readouterr()
    assert "note:" not in out and f"{nope[0]}, {nope[1]}: no such folder" in err


def test_a_missing_folder_is_named_as_missing_not_as_another_kind_of_run(tmp_path, capsys):
    """A folder that is not there is neither a walk-forward nor a plain run: the error says it does not exist."""
    wf = tmp_path / "wf"
    wf.mkdir()
    (wf / "walkforward.json").write_text("{}")
    assert main(["blend", "--runs", str(tmp_path / "typo"), str(wf), "--method", "mean"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"{tmp_path / 'typo'}: no such folder; give finished run or walk-forward folders")
    assert "mixes" not in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(("flag", "message"), [
    ("--caruana.sizee", "--caruana.sizee: unknown caruana option (did you mean 'size'?); known: size, init, bags, "
                        "bag_fraction, seed"),
    ("--stacked.c", "--stacked.c: unknown stacked option (did you mean 'C'?); known: C"),
    ("--mean.size", "--mean.size: unknown mean option; known: none"),
    ("--trading.cost_bp", "--trading.cost_bp: unknown trading key (did you mean 'cost_bps'?); known: cost_bps,"),
])  # fmt: skip
def test_a_misspelt_method_option_names_the_key_and_the_valid_ones(tmp_path, capsys, flag, message):
    for argv in ([flag, "5"], [f"{flag}=5"]):
        assert main(["blend", "--runs", str(tmp_path), str(tmp_path), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_blend_options_are_checked_and_recorded(members, capsys):
    root, runs, _ = members
    with pytest.raises(ConfigError, match=r"blend_options\.caruana\.sise: unknown caruana option \(did you mean "
                                          r"'size'\?\); known: size, init, bags, bag_fraction, seed"):  # fmt: skip
        make_method("caruana", {"caruana": {"sise": 5}})
    with pytest.raises(ConfigError, match=r"blend_options\.mean\.size: unknown mean option; known: none"):
        make_method("mean", {"mean": {"size": 5}})
    with pytest.raises(ConfigError, match="blend options for caruana must be a mapping"):
        make_method("caruana", {"caruana": 5})
    with pytest.raises(ConfigError, match=r"blend_options\.caruna: unknown blend method \(did you mean 'caruana'"):
        make_method("mean", {"caruna": {"size": 5}})
    capsys.readouterr()
    assert main(["blend", "--runs", *map(str, runs[:2]), "--method", "mean", "--stacked.C", "0.5", "--out",
                 str(root / "out")]) == 2  # fmt: skip
    assert "--stacked.* apply to --method stacked, not mean; drop --stacked.C" in capsys.readouterr().err
    out = root / "out"
    assert main(["blend", "--runs", *map(str, runs), "--method", "mean", "--caruana.size", "5", "--out", str(out)]) == 2
    assert "--caruana.* apply to --method caruana" in capsys.readouterr().err and not out.exists()
    assert main(["blend", "--runs", *map(str, runs[:2]), "--method", "caruana", "--caruana.size", "5",
                 "--caruana.bags", "2", "--caruana.seed", "3", "--out", str(out)]) == 0  # fmt: skip
    (run,) = (out / "ensemble_caruana_h5").iterdir()  # the horizon in the default name, as lstm_h5
    record = json.loads((run / "blend.json").read_text())
    assert record["options"] == {"size": 5, "bags": 2, "seed": 3} and record["state"]["seed"] == 3
    mean_run = blend(runs, "mean", out)  # a val blend records its options as an out-of-fold blend does
    assert json.loads((mean_run / "blend.json").read_text())["options"] == {}


def test_help_texts(capsys):
    with pytest.raises(SystemExit):
        main(["blend", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "how the members are combined" in text and "(default: stacked)" in text and "--caruana.seed" in text
    with pytest.raises(SystemExit):
        main(["register", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "MLflow tracking and registry store (default: sqlite:///mlflow.db)" in text


def test_a_member_that_predicted_fewer_rows_is_named_with_the_rows_the_blend_was_judged_on(members, capsys):
    root, runs, _ = members
    for split in ("val", "test"):  # the weak member predicted symbol A only (trained on a smaller universe)
        path = runs[1] / "predictions" / f"{split}.parquet"
        frame = pd.read_parquet(path)
        frame[frame.symbol == "A"].to_parquet(path)
    blend(runs, "mean", root / "blends")
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("blend judged on")]
    half = f"{N // 2:,}"
    assert [ln.split(",")[0] for ln in lines] == ["blend judged on the val rows every member predicted",
                                                   "blend judged on the test rows every member predicted"]
    assert f"{half} rows (1 symbol)" in lines[1] and f"{runs[1]}: {half} (1)" in lines[1]
    assert f"{runs[0]}: {N:,} (2)" in lines[1]
    capsys.readouterr()
    blend(runs[::2], "mean", root / "blends")  # members that predicted the same rows: no line
    assert "blend judged on" not in capsys.readouterr().out
