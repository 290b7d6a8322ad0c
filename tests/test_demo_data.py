"""Demo data: deterministic, production-shaped, past-only features, purged labels, a learnable signal.

The learnability checks use ``signal="strong"`` (fast learning on a small panel); the default, realistic
signal is judged by the trading numbers a fitted model reaches, in tests/test_demo_realism.py.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ensemble.data import demo
from ensemble.data.demo import (
    DEMO_HORIZONS,
    SIGNAL_B,
    SIGNAL_B_STRONG,
    SIGNAL_FEATURES,
    demo_row_counts,
    feature_names,
    make_demo_splits,
    simulate_bars,
    split_lengths,
    triple_barrier,
)

SMALL = {"n_symbols": 3, "n_bars": 800, "seed": 1}
MEDIUM = {"n_symbols": 4, "n_bars": 8000, "seed": 0}  # 16,000 train rows
# A single-row model "has signal" when its val macro-F1 clears both of these. The majority-class baseline
# alone is not enough: it scores ~0.18, while any non-constant guess scores ~1/3 by chance.
MAJORITY_MARGIN = 0.05
CHANCE_F1 = 1 / 3 + 0.04
SIGNAL_MARGIN = 0.05  # over the no-signal twin, which scores ~0.31 (flat, the rarest class, is rarely guessed)


def _tables(paths: dict) -> dict[str, pa.Table]:
    return {split: pq.read_table(path) for split, path in paths.items()}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict:
    return make_demo_splits(tmp_path_factory.mktemp("small"), **SMALL)


@pytest.fixture(scope="module")
def medium(tmp_path_factory) -> dict[str, dict[str, pa.Table]]:
    return {
        signal: _tables(make_demo_splits(tmp_path_factory.mktemp(f"medium_{signal}"), signal=signal, **MEDIUM))
        for signal in ("strong", "none")
    }


def test_deterministic_per_seed_and_chunking(small, tmp_path, monkeypatch):
    same = make_demo_splits(tmp_path / "same", **SMALL)
    for split, path in small.items():
        assert path.read_bytes() == same[split].read_bytes(), split
    monkeypatch.setattr(demo, "CHUNK_SYMBOLS", 1)  # symbols are seeded one by one: chunking is invisible
    rechunked = _tables(make_demo_splits(tmp_path / "chunked", **SMALL))
    assert all(rechunked[s].equals(t) for s, t in _tables(small).items())
    other = _tables(make_demo_splits(tmp_path / "other", **{**SMALL, "seed": 2}))
    assert not other["train"].equals(_tables(small)["train"])


def test_row_counts(small):
    assert split_lengths(4320) == (2160, 648, 1512)  # 50/15/35
    assert demo_row_counts() == {"train": 108000, "val": 32400, "test": 75600}  # 50 symbols
    assert demo_row_counts(size=10)["train"] == 1080000
    assert demo_row_counts(size=0.01) == demo_row_counts(n_symbols=1)
    counts = {split: pq.ParquetFile(path).metadata.num_rows for split, path in small.items()}
    assert counts == {"train": 3 * 400, "val": 3 * 120, "test": 3 * 280} == demo_row_counts(3, 800)


def test_schema_and_roles(small):
    from ensemble.data.contract import detect_roles

    names = feature_names()
    assert len(names) == len(set(names)) == 107 and set(SIGNAL_FEATURES) <= set(names)
    expected = ["datetime", "symbol", *names]
    for h in DEMO_HORIZONS:
        expected += [f"label_h{h}", f"fwd_return_h{h}", f"sample_weight_h{h}"]
    for split, path in small.items():
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
        assert schema.names == expected
        assert schema.field("datetime").type == pa.timestamp("ns")  # naive
        assert schema.field("symbol").type == pa.string()
        assert all(schema.field(n).type == pa.float32() for n in names)
        for h in DEMO_HORIZONS:
            assert schema.field(f"label_h{h}").type == pa.int8()
            assert schema.field(f"fwd_return_h{h}").type == pa.float32()
            assert schema.field(f"sample_weight_h{h}").type == pa.float32()
        assert pf.num_row_groups == 1  # one chunk of 3 symbols
        roles = detect_roles(schema, path)
        assert list(roles.features) == names and roles.horizons == list(DEMO_HORIZONS), split
    info = json.loads((small["train"].parent / "demo_info.json").read_text())
    assert info["feature_names"] == names and info["horizons"] == list(DEMO_HORIZONS)
    assert (info["seed"], info["signal"], info["bars_per_year"]) == (1, "default", 252)
    assert info["signal_b"] == list(SIGNAL_B)


def test_signal_strengths(tmp_path):
    assert demo.signal_strength(True) == demo.signal_strength("default") == ("default", SIGNAL_B)
    assert demo.signal_strength(False) == demo.signal_strength("none") == ("none", (0.0, 0.0))
    assert demo.signal_strength("strong") == ("strong", SIGNAL_B_STRONG)
    assert SIGNAL_B[0] < SIGNAL_B_STRONG[0]
    with pytest.raises(ValueError, match="signal must be one of none, default, strong"):
        make_demo_splits(tmp_path, signal="medium", **SMALL)
    # Only the drift changes with the strength: every random draw (market, vol, features) stays the same.
    weak, strong, none = (simulate_bars(0, [0, 1], 300, s) for s in ("default", "strong", "none"))
    np.testing.assert_array_equal(weak.alt, strong.alt)
    np.testing.assert_array_equal(weak.mkt, none.mkt)
    drift = {name: b.ret - none.ret for name, b in (("default", weak), ("strong", strong))}
    np.testing.assert_allclose(drift["strong"], drift["default"] * SIGNAL_B_STRONG[0] / SIGNAL_B[0], rtol=1e-9)


def test_feature_count_is_configurable():
    assert len(feature_names(120)) == 120 and feature_names(120)[:107] == feature_names()
    few = feature_names(10)
    assert len(few) == 10 and set(SIGNAL_FEATURES) <= set(few)


def test_labels_purged_and_splits_ordered(small):
    tables = {split: t.to_pandas() for split, t in _tables(small).items()}
    for split, df in tables.items():
        assert np.isfinite(df[feature_names()].to_numpy()).all()
        for h in DEMO_HORIZONS:
            labels = df[f"label_h{h}"].dropna()
            assert set(labels.unique()) <= {-1, 0, 1}
            assert (df[f"sample_weight_h{h}"] > 0).all()
        for symbol, g in df.groupby("symbol"):
            assert g["datetime"].is_monotonic_increasing and g["datetime"].is_unique, (split, symbol)
            for h in DEMO_HORIZONS:
                null = g[f"label_h{h}"].isna().to_numpy()
                assert not null[:-h].any() and null[-h:].all(), (split, symbol, h)
                assert (g[f"fwd_return_h{h}"].isna().to_numpy() == null).all()
    assert tables["train"]["datetime"].min() == np.datetime64("2008-01-01")  # a Tuesday
    assert (tables["train"]["datetime"].dt.dayofweek < 5).all()  # weekdays only
    for early, late in (("train", "val"), ("val", "test")):
        last = tables[early].groupby("symbol")["datetime"].max()
        first = tables[late].groupby("symbol")["datetime"].min()
        assert (last < first).all()
        days = (x.to_numpy().astype("datetime64[D]") for x in (last, first))
        assert (np.busday_count(*days) == 1).all()  # the next weekday


def test_labels_never_read_past_their_segment():
    bars = simulate_bars(0, [0, 1], 300)
    logp, var_next = np.cumsum(bars.ret, axis=0), bars.var_next
    full = triple_barrier(logp, var_next, bars.var_bar, 20)
    cut = triple_barrier(logp[:500], var_next[:500], bars.var_bar, 20)
    for a, b in zip(full, cut, strict=True):  # label, fwd_return, weight
        np.testing.assert_array_equal(a[:480], b[:480])
    assert np.isnan(cut[0][480:]).all() and not np.isnan(full[0][480:500]).any()
    labels = full[0][~np.isnan(full[0])]
    assert 0.25 < (labels == 0).mean() < 0.45  # roughly balanced classes


def test_train_features_standardised(small):
    x = _tables(small)["train"].select(feature_names()).to_pandas().to_numpy(np.float64)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(x.std(axis=0), 1.0, atol=1e-4)


def test_features_are_past_only():
    bars = simulate_bars(3, [0, 1], 600, n_noise=3)
    t = 700
    rng = np.random.default_rng(0)
    moved = bars._replace(
        **{
            name: np.concatenate([x[: t + 1], x[t + 1 :] + rng.normal(0, 0.05, x[t + 1 :].shape)])
            for name, x in bars._asdict().items()
            if name in ("ret", "mkt", "hl", "log_volume", "alt", "noise")
        }
    )
    names, before = demo.bar_features(bars)
    after = demo.bar_features(moved)[1]
    np.testing.assert_array_equal(before[:, : t + 1], after[:, : t + 1])
    # the check can see: later rows do move, except the calendar (timestamps were left alone)
    same = [n for n, f, g in zip(names, before[:, -1], after[:, -1], strict=True) if np.array_equal(f, g)]
    assert same == ["doy_sin", "doy_cos", "dow_sin", "dow_cos"]


def _macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    scores = []
    for c in (-1, 0, 1):
        tp = np.sum((pred == c) & (y == c))
        denom = np.sum(pred == c) + np.sum(y == c)
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def _val_scores(tables: dict[str, pa.Table], h: int) -> tuple[float, float]:
    """(LightGBM val macro-F1 from single rows, majority-class macro-F1)."""
    lgb = pytest.importorskip("lightgbm")
    names = feature_names()
    data = {}
    for split in ("train", "val"):
        df = tables[split].to_pandas()
        df = df[df[f"label_h{h}"].notna()]
        data[split] = (df[names].to_numpy(), df[f"label_h{h}"].to_numpy(np.int64))
    (x, y), (xv, yv) = data["train"], data["val"]
    model = lgb.LGBMClassifier(
        n_estimators=100,
        learning_rate=0.05,
        num_leaves=15,
        min_child_samples=100,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        random_state=0,
        n_jobs=1,
        verbose=-1,
    )
    model.fit(x, y)
    majority = np.bincount(y + 1).argmax() - 1
    return _macro_f1(yv, model.predict(xv)), _macro_f1(yv, np.full_like(yv, majority))


@pytest.mark.parametrize("h", DEMO_HORIZONS)
def test_signal_is_learnable_only_in_signal_mode(medium, h):
    f1, majority = _val_scores(medium["strong"], h)
    chance = _val_scores(medium["none"], h)[0]  # the same draws without the drift: what noise scores
    assert f1 >= majority + MAJORITY_MARGIN and f1 >= chance + SIGNAL_MARGIN, (f1, majority, chance)
    assert chance < CHANCE_F1, chance


def _max_abs_corr(table: pa.Table, target: np.ndarray) -> float:
    x = table.select(feature_names()).to_pandas().to_numpy(np.float64)
    keep = ~np.isnan(target)
    x, y = x[keep], target[keep]
    return float(np.abs(((x - x.mean(0)) / x.std(0)).T @ ((y - y.mean()) / y.std()) / len(y)).max())


@pytest.mark.parametrize("h", DEMO_HORIZONS)
def test_no_signal_labels_independent_of_features(medium, h):
    def label(table: pa.Table) -> np.ndarray:
        return table.column(f"label_h{h}").to_numpy(zero_copy_only=False).astype(np.float64)

    signal, noise = medium["strong"]["train"], medium["none"]["train"]
    assert _max_abs_corr(signal, label(signal)) > 0.15  # the check can see a real signal
    # Overlapping h-bar labels on persistent features: the largest of 107 chance correlations grows with h
    # (0.07-0.08 at h = 20 over seeds 0-2, each time a different feature), so the bound does too.
    bound = 0.08 if h <= 5 else 0.10
    assert _max_abs_corr(noise, label(noise)) < bound
    assert _max_abs_corr(noise, np.abs(label(noise))) < bound  # whether a barrier is hit: no vol-regime leak


def test_rejects_splits_shorter_than_the_horizon(tmp_path):
    with pytest.raises(ValueError, match="n_bars=100"):
        make_demo_splits(tmp_path, n_symbols=1, n_bars=100)


def test_failed_run_leaves_previous_files_intact(small, tmp_path, monkeypatch):
    out = small["train"].parent
    before = {split: path.read_bytes() for split, path in small.items()}

    def boom(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(demo, "_table", boom)
    with pytest.raises(RuntimeError, match="killed"):
        make_demo_splits(out, **{**SMALL, "seed": 5})
    assert {split: path.read_bytes() for split, path in small.items()} == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left behind


@pytest.mark.parametrize("signal", ["strong", "default"])
def test_contradicting_signal_flags_are_one_line(signal, tmp_path, capsys):
    from ensemble.cli import main

    assert main(["data", "demo", "--out", str(tmp_path / "d"), "--signal", signal, "--no-signal"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--no-signal" in err[0] and "--signal" in err[0], err
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(("flag", "value"), [("--size", "0"), ("--size", "-1"), ("--size", "nan"), ("--size", "x"),
                                             ("--seed", "-3"), ("--seed", "1.5")])
def test_a_bad_size_or_seed_is_one_line_and_writes_nothing(flag, value, tmp_path, capsys):
    from ensemble.cli import main

    assert main(["data", "demo", "--out", str(tmp_path / "d"), flag, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"argument {flag}: must be" in err[0] and repr(value) in err[0], err
    assert not (tmp_path / "d").exists()
    with pytest.raises(ValueError, match="size must be a number > 0"):  # the Python API refuses it too
        make_demo_splits(tmp_path / "d", size=0)
