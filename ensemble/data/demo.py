"""Deterministic demo splits in exactly the production shape (the README's data contract).

Simulation (daily bars on weekdays; 50 symbols x 4,320 bars, about 17 years, by default):
r_{t+1} = mu_t + beta_i * m_{t+1} + e_{t+1}, with a common market factor m and an idiosyncratic part e, each
GARCH(1,1) with Student-t shocks (vol clustering, fat tails, correlated symbols). The hidden signal
mu_t = sigma_{t+1} * (b1 * z1_t + b2 * (z2_t - z2_{t-5})) is in units of ex-ante vol; z1 (persistent AR(1))
and z2 are observed as the innocuous features ``flow_imbalance`` and ``basis_spread``. A single row reveals
the z1 part; the z2 part needs a window of >= 6 bars. The simulation itself is clock-free (a bar is a bar);
only the timestamps and ``BARS_PER_YEAR`` make it daily.

Signal strength (``signal``): ``True`` / ``"default"`` is realistic: b = ``SIGNAL_B``, small enough that a
well-fitted model reaches a gross test Sharpe of 1-3 at the demo's own ``BARS_PER_YEAR`` (252) and a rank IC
of about 0.08, the levels of a real daily equity signal (a stronger demo reads as a bug to a quant).
``"strong"`` (``SIGNAL_B_STRONG``) is for tests that need a model to learn in a few epochs. ``False`` /
``"none"``: b1 = b2 = 0.

Labels: triple barrier at +-k_H * sqrt(H) * sigma_t(H), with sigma_t(H)^2 the simulator's own ex-ante GARCH
forecast of the mean variance over the next H bars. Not an EWMA: a lagging estimate would let vol features
predict whether a barrier is hit at all, so no-signal labels would not be independent of the features.
Labels are computed per split, so the last H rows of each symbol in each split are null.

Scaling: features are z-scored with mean/std of the TRAIN rows of the first ``STATS_SYMBOLS`` symbols (all
of them at the default size), from a first pass over those symbols only: symbols are exchangeable, so this
is leakage-free and keeps memory bounded at any size. Then generation runs ``CHUNK_SYMBOLS`` symbols at a
time, one parquet row group per chunk.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from contextlib import ExitStack
from functools import cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ensemble.data.constants import SPLITS
from ensemble.data.rolling import lag as _lag
from ensemble.data.rolling import rext as _rext
from ensemble.data.rolling import rmean as _rmean
from ensemble.data.rolling import rstd as _rstd
from ensemble.data.rolling import rsum as _rsum

DEMO_HORIZONS = (5, 20)
BARS_PER_YEAR = 252  # daily bars on weekdays
START = np.datetime64("2008-01-01", "D")  # the first written bar is the first weekday on or after it
N_SYMBOLS, N_BARS = 50, 4320  # the default demo: 50 symbols x 17 years
# 50/15/35: a test split of 6 years, so one split's annual Sharpe has a standard error of about 0.41 (Lo 2002);
# with 15% (0.7 years at 4320 bars) one split could not tell a Sharpe of 0.5 from 4.
SPLIT_FRACTIONS = (0.50, 0.15, 0.35)
SIGNAL_B = (0.039, 0.0195)  # (b1, b2) of the default demo: realistic (see tests/test_demo_realism.py)
SIGNAL_B_STRONG = (0.20, 0.10)  # learnable in a few epochs, far from perfect (see tests/test_demo_data.py)
SIGNALS = {"none": (0.0, 0.0), "default": SIGNAL_B, "strong": SIGNAL_B_STRONG}
SIGNAL_FEATURES = ("flow_imbalance", "basis_spread")
BURN_IN = 400  # unwritten pre-history, so every rolling window is already full at the first row
WINDOWS = (6, 12, 24, 48, 96, 168, 336)
GARCH_A, GARCH_B = 0.05, 0.93  # shared by market and idiosyncratic parts: closed-form multi-bar forecast
MKT_VAR = 0.002**2  # market factor's long-run variance per bar: ~6% of a typical symbol's (docs/benchmarks.md)
T_DOF = 6.0  # Student-t shocks: fat tails with finite kurtosis
# Continuous-monitoring barrier; per horizon minus the discrete-monitoring correction. 0.88 makes flat the
# rarest class (about 28%), so the arg-max of a weak forecast is a side, not flat almost everywhere.
BARRIER_K = 0.88
CHUNK_SYMBOLS = 8  # symbols per generation chunk (and parquet row group)
STATS_SYMBOLS = 64  # symbols whose train rows give the scaling statistics
# "Alternative data" block: AR(1) series, persistence per column; two of them carry the signal.
ALT = (("funding_rate", 0.97), ("flow_imbalance", 0.97), ("open_interest_chg", 0.5),
       ("basis_spread", 0.9), ("sentiment_score", 0.995))


class Bars(NamedTuple):
    """Raw simulated series for a few symbols; T = BURN_IN + n_bars rows, S symbols."""

    time: np.ndarray  # (T,) datetime64[ns]
    ret: np.ndarray  # (T, S) log returns
    mkt: np.ndarray  # (T,) market factor returns
    hl: np.ndarray  # (T, S) log(high / low)
    log_volume: np.ndarray  # (T, S)
    alt: np.ndarray  # (T, S, len(ALT))
    noise: np.ndarray  # (T, S, n_noise) pure noise
    var_next: np.ndarray  # (T, S) ex-ante variance of r_{t+1}, known at t
    var_bar: np.ndarray  # (S,) long-run variance


def signal_strength(signal: bool | str) -> tuple[str, tuple[float, float]]:
    """(name, (b1, b2)) of a ``signal`` argument: True/"default", "strong", or False/"none".

    Raises:
        ValueError: an unknown name.
    """
    name = {True: "default", False: "none"}.get(signal, signal) if isinstance(signal, bool) else signal
    if name not in SIGNALS:
        raise ValueError(f"signal must be one of {', '.join(SIGNALS)} (or True/False), got {signal!r}")
    return name, SIGNALS[name]


def split_lengths(n_bars: int) -> tuple[int, int, int]:
    """Bars per symbol in train / val / test (``SPLIT_FRACTIONS``: 50/15/35, chronological)."""
    n_train, n_val = round(n_bars * SPLIT_FRACTIONS[0]), round(n_bars * SPLIT_FRACTIONS[1])
    return n_train, n_val, n_bars - n_train - n_val


def demo_symbol_count(n_symbols: int = N_SYMBOLS, size: float = 1.0) -> int:
    return max(1, round(n_symbols * size))


def demo_row_counts(n_symbols: int = N_SYMBOLS, n_bars: int = N_BARS, size: float = 1.0) -> dict[str, int]:
    """Rows per split file, by arithmetic only."""
    n_sym = demo_symbol_count(n_symbols, size)
    return {split: n_sym * n for split, n in zip(SPLITS, split_lengths(n_bars), strict=True)}


def barrier_k(horizon: int) -> float:
    # Discrete monitoring misses crossings between bars (Broadie-Glasserman-Kou shift 0.5826 / sqrt(H)).
    return BARRIER_K - 0.5826 / np.sqrt(horizon)


def feature_names(n_features: int = 107) -> list[str]:
    """Feature columns in file order: the catalog, then pure noise; the signal features are always kept."""
    if n_features < len(SIGNAL_FEATURES):
        raise ValueError(f"n_features must be >= {len(SIGNAL_FEATURES)}, got {n_features}")
    catalog = _catalog_names()
    others = [n for n in catalog if n not in SIGNAL_FEATURES][: n_features - len(SIGNAL_FEATURES)]
    kept = [n for n in catalog if n in SIGNAL_FEATURES or n in others]
    return kept + [f"noise_{j:02d}" for j in range(n_features - len(kept))]


@cache
def _catalog_names() -> list[str]:
    return bar_features(simulate_bars(0, [0], 1))[0]  # names only: one tiny symbol is enough


# -- simulation ----------------------------------------------------------------------------------
def _shocks(rng: np.random.Generator, shape: int | tuple[int, ...]) -> np.ndarray:
    return rng.standard_t(T_DOF, shape) / np.sqrt(T_DOF / (T_DOF - 2.0))  # unit variance


def _recurse(x0: np.ndarray | float, a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    """x[0] = x0, x[t + 1] = a[t] * x[t] + b[t] along axis 0: GARCH variances, AR(1) and EWMA are all this."""
    b = np.broadcast_to(b, a.shape)
    x = np.empty((len(a) + 1, *a.shape[1:]))
    x[0] = x0
    for t in range(len(a)):
        x[t + 1] = a[t] * x[t] + b[t]
    return x


def _garch(z: np.ndarray, var_bar: np.ndarray | float) -> np.ndarray:
    """Conditional variances h[0..T] for unit shocks z[0..T-1]; h[t] is known after bar t-1."""
    return _recurse(var_bar, GARCH_A * z**2 + GARCH_B, var_bar * (1.0 - GARCH_A - GARCH_B))


def simulate_bars(seed: int, symbols: Sequence[int], n_bars: int, signal: bool | str = True, n_noise: int = 0
                  ) -> Bars:
    """Simulate the given symbol ids. Each symbol has its own seeded stream, so chunking never changes data.

    ``signal``: see :func:`signal_strength`; only the drift changes with it, every random draw stays the same.
    """
    b1, b2 = signal_strength(signal)[1]
    n = BURN_IN + n_bars
    m_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    zm = _shocks(m_rng, n)
    hm = _garch(zm, MKT_VAR)
    mkt = np.sqrt(hm[:n]) * zm
    draws = []
    for i in symbols:  # fixed draw order; noise last, so n_features never changes the other series
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, int(i))))
        draws.append((rng.uniform(0.6, 1.3), rng.uniform(0.004, 0.010) ** 2, _shocks(rng, n),
                      rng.standard_normal((n, len(ALT) + 2)), rng.standard_normal((n, n_noise))))
    cols = list(zip(*draws, strict=True))
    beta, idio_var = np.array(cols[0]), np.array(cols[1])
    z, extra, noise = (np.stack(c, axis=1) for c in cols[2:])
    hi = _garch(z, idio_var)
    v = beta**2 * hm[:, None] + hi  # (T + 1, S) total conditional variance
    e, phi = extra[..., : len(ALT)], np.array([phi for _, phi in ALT])  # unit-variance AR(1) series
    alt = _recurse(e[0], np.broadcast_to(phi, e[1:].shape), np.sqrt(1 - phi**2) * e[1:])
    ret = beta * mkt[:, None] + np.sqrt(hi[:n]) * z
    if b1 or b2:
        z1, z2 = alt[..., 1], alt[..., 3]
        ret[1:] += (np.sqrt(v[1:]) * (b1 * z1 + b2 * (z2 - _lag(z2, 5))))[:-1]  # mu_t -> r_{t+1}
    sd = np.sqrt(v[:n])
    hl = np.maximum(np.abs(ret), 1.6 * sd * np.exp(0.25 * extra[..., -2] - 0.03))
    var_bar = beta**2 * MKT_VAR + idio_var
    log_volume = 10.0 + 0.8 * np.log(v[:n] / var_bar) + 0.3 * np.abs(ret) / sd + 0.3 * extra[..., -1]
    days = np.busday_offset(START, np.arange(n) - BURN_IN, roll="forward")  # weekdays; the burn-in before START
    time = days.astype("datetime64[ns]")
    return Bars(time, ret, mkt, hl, log_volume, alt, noise, v[1:], var_bar)


# -- features (past-only: every value at t uses rows <= t) ---------------------------------------
def bar_features(b: Bars) -> tuple[list[str], np.ndarray]:
    """All catalog + noise features of ``b``, as (names, float32 array (F, T, S))."""
    names: list[str] = []
    cols: list[np.ndarray] = []

    def put(name: str, x: np.ndarray) -> None:
        names.append(name)
        cols.append(np.broadcast_to(x, b.ret.shape).astype(np.float32))

    r, p, m, lv = b.ret, np.cumsum(b.ret, axis=0), b.mkt[:, None], b.log_volume
    vol = {w: _rstd(r, w) for w in WINDOWS}
    for k in (1, 2, 3, 4, 5, 6, 8, 12, 24):
        put(f"ret_lag_{k}", _lag(r, k - 1))
    for w in WINDOWS:
        put(f"mom_{w}", _rsum(r, w))
        put(f"vol_{w}", vol[w])
        put(f"zret_{w}", _rsum(r, w) / (vol[w] * np.sqrt(w)))
        put(f"price_z_{w}", (p - _rmean(p, w)) / _rstd(p, w))
    for w in WINDOWS[:-1]:
        put(f"vol_ratio_{w}_336", vol[w] / vol[336])
    alpha = 2.0 / (np.array([12, 48, 168]) + 1.0)
    r2 = (r**2)[..., None] * np.ones_like(alpha)
    ew = np.sqrt(_recurse(r2[0], np.broadcast_to(1 - alpha, r2[1:].shape), alpha * r2[1:]))
    for j, span in enumerate((12, 48, 168)):
        put(f"ewm_vol_{span}", ew[..., j])
    for w in (48, 168):
        put(f"skew_{w}", _rmean((r - _rmean(r, w)) ** 3, w) / vol[w] ** 3)
    for w in (14, 48):
        put(f"rsi_{w}", 2.0 * _rsum(np.maximum(r, 0), w) / np.maximum(_rsum(np.abs(r), w), 1e-12) - 1)
    for w in (24, 168):
        put(f"drawdown_{w}", p - _rext(p, w, np.max))
        put(f"rebound_{w}", p - _rext(p, w, np.min))
        put(f"abs_ret_mean_{w}", _rmean(np.abs(r), w))
    put("max_ret_24", _rext(r, 24, np.max))
    put("min_ret_24", _rext(r, 24, np.min))
    put("vol_of_vol_168", _rstd(vol[24], 168) / vol[168])
    put("autocorr_48", (_rmean(r * _lag(r, 1), 48) - _rmean(r, 48) ** 2) / vol[48] ** 2)
    put("hl_range", b.hl)
    for w in (6, 24, 96):
        put(f"range_mean_{w}", _rmean(b.hl, w))
    put("range_vol_ratio_24", _rmean(b.hl, 24) / vol[24])
    put("log_volume", lv)
    for w in (24, 168):
        put(f"volume_z_{w}", (lv - _rmean(lv, w)) / _rstd(lv, w))
    put("volume_trend_6_48", _rmean(lv, 6) - _rmean(lv, 48))
    for k in (1, 2, 3):
        put(f"mkt_ret_lag_{k}", _lag(m, k - 1))
    for w in (6, 24, 96):
        put(f"mkt_mom_{w}", _rsum(m, w))
    for w in (24, 96):
        put(f"mkt_vol_{w}", _rstd(m, w))
    beta = (_rmean(r * m, 168) - _rmean(r, 168) * _rmean(m, 168)) / _rstd(m, 168) ** 2
    put("beta_168", beta)
    put("corr_168", beta * _rstd(m, 168) / vol[168])
    put("resid_ret_1", r - beta * m)
    for w in (24, 96):
        put(f"rel_mom_{w}", _rsum(r, w) - _rsum(m, w))
    for j, (name, _) in enumerate(ALT):
        put(name, b.alt[..., j])
    days = b.time.astype("datetime64[D]")
    day_of_year = (days - days.astype("datetime64[Y]")).astype(np.int64)[:, None]
    weekday = (days.astype(np.int64)[:, None] + 3) % 7  # 1970-01-01 was a Thursday
    for unit, phase in (("doy", day_of_year / 365.25), ("dow", weekday / 7)):
        put(f"{unit}_sin", np.sin(2 * np.pi * phase))
        put(f"{unit}_cos", np.cos(2 * np.pi * phase))
    for j in range(b.noise.shape[-1]):
        put(f"noise_{j:02d}", b.noise[..., j])
    return names, np.stack(cols)


# -- labels ---------------------------------------------------------------------------------------
def triple_barrier(
    logp: np.ndarray, var_next: np.ndarray, var_bar: np.ndarray, horizon: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label, fwd_return, weight), each (n, S), for one split segment; label/fwd NaN in the last H rows.

    Only prices inside the segment are used, so a label never looks into a later split.
    """
    n, h = len(logp), horizon
    rho = GARCH_A + GARCH_B
    # mean E_t[h_{t+j}] for j = 1..H: the forecast decays geometrically to the long-run variance
    var_h = var_bar + (var_next - var_bar) * (1 - rho**h) / (h * (1 - rho))
    label = np.full(logp.shape, np.nan)
    fwd = np.full(logp.shape, np.nan)
    m = n - h  # > 0: make_demo_splits checks every split is longer than the horizon
    base, barrier = logp[:m], barrier_k(h) * np.sqrt(h * var_h[:m])
    up = down = np.full(base.shape, h + 1)  # first bar at which each barrier is hit; h + 1: never
    for j in range(1, h + 1):
        move = logp[j : j + m] - base
        up = np.where((up > h) & (move >= barrier), j, up)
        down = np.where((down > h) & (move <= -barrier), j, down)
    label[:m] = np.sign(down - up)  # +1 when the upper barrier is hit first, 0 when neither is hit
    fwd[:m] = logp[h:] - base
    weight = np.clip(np.sqrt(var_h / var_bar), 0.5, 2.0)  # vol-based: busy markets count more
    return label, fwd, weight


# -- writing --------------------------------------------------------------------------------------
def _chunks(n_symbols: int) -> list[range]:
    return [range(i, min(i + CHUNK_SYMBOLS, n_symbols)) for i in range(0, n_symbols, CHUNK_SYMBOLS)]


def _segments(n_bars: int) -> dict[str, tuple[int, int]]:
    bounds = np.cumsum((BURN_IN, *split_lengths(n_bars)))
    return {split: (int(bounds[i]), int(bounds[i + 1])) for i, split in enumerate(SPLITS)}


def _schema(names: list[str], horizons: Sequence[int]) -> pa.Schema:
    fields = [pa.field("datetime", pa.timestamp("ns")), pa.field("symbol", pa.string())]
    fields += [pa.field(n, pa.float32()) for n in names]
    for h in horizons:
        fields += [pa.field(f"label_h{h}", pa.int8()), pa.field(f"fwd_return_h{h}", pa.float32()),
                   pa.field(f"sample_weight_h{h}", pa.float32())]
    return pa.schema(fields)


def _table(bars: Bars, feats: np.ndarray, keep: list[int], symbols: range, seg: tuple[int, int],
           mean: np.ndarray, std: np.ndarray, horizons: Sequence[int], schema: pa.Schema) -> pa.Table:
    a, b = seg

    def flat(x: np.ndarray) -> np.ndarray:  # (n, S) time-major -> one block per symbol
        return np.ascontiguousarray(x.T).ravel()

    cols = [pa.array(np.tile(bars.time[a:b], len(symbols))),
            pa.array(np.repeat([f"SYM{i:03d}" for i in symbols], b - a))]
    for k, mu, sd in zip(keep, mean, std, strict=True):
        cols.append(pa.array(flat((feats[k, a:b] - mu) / sd).astype(np.float32)))
    logp = np.cumsum(bars.ret, axis=0)[a:b]
    for h in horizons:
        label, fwd, weight = (flat(x) for x in triple_barrier(logp, bars.var_next[a:b], bars.var_bar, h))
        missing = np.isnan(label)
        cols += [pa.array(np.where(missing, 0, label).astype(np.int8), mask=missing),
                 pa.array(fwd.astype(np.float32), mask=missing), pa.array(weight.astype(np.float32))]
    return pa.Table.from_arrays(cols, schema=schema)


def _train_stats(seed: int, n_symbols: int, n_bars: int, signal: bool | str, keep: list[int], n_noise: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean/std over the train rows of the first STATS_SYMBOLS symbols."""
    a, b = _segments(n_bars)["train"]
    sums = np.zeros((2, len(keep)))
    for symbols in _chunks(min(n_symbols, STATS_SYMBOLS)):
        x = bar_features(simulate_bars(seed, symbols, n_bars, signal, n_noise))[1]
        for j, k in enumerate(keep):
            v = x[k, a:b].astype(np.float64)
            sums[:, j] += v.sum(), (v**2).sum()
    count = min(n_symbols, STATS_SYMBOLS) * (b - a)
    mean = sums[0] / count
    std = np.sqrt(np.maximum(sums[1] / count - mean**2, 0.0))
    return mean, np.where(std > 0, std, 1.0)


def make_demo_splits(out: str | Path, *, seed: int = 0, n_symbols: int = N_SYMBOLS, n_bars: int = N_BARS,
                     size: float = 1.0, signal: bool | str = True, n_features: int = 107,
                     horizons: tuple[int, ...] = DEMO_HORIZONS) -> dict[str, Path]:
    """Write ``{out}/{train,val,test}_scaled.parquet`` and ``demo_info.json``; return the split paths.

    ``size`` multiplies the number of symbols. ``signal``: True/"default" (realistic), "strong" (for tests
    that need fast learning) or False/"none" (labels independent of features); see :func:`signal_strength`.
    Deterministic for a given seed; files appear atomically. The bars are daily, on weekdays: annualise with
    ``BARS_PER_YEAR`` = 252 (also written to ``demo_info.json``).

    Raises:
        ValueError: splits too short for the horizons, an unknown ``signal``, a ``size`` that is not > 0, fewer
            than one symbol, or a negative ``seed``.
    """
    if not (isinstance(size, int | float) and 0 < size < float("inf")):
        raise ValueError(f"size must be a number > 0 (it multiplies the {n_symbols} symbols), got {size}")
    if n_symbols < 1 or seed < 0:
        raise ValueError(f"n_symbols must be >= 1 and seed >= 0, got n_symbols={n_symbols}, seed={seed}")
    signal_name, signal_b = signal_strength(signal)
    out, n_sym, lengths = Path(out), demo_symbol_count(n_symbols, size), split_lengths(n_bars)
    if min(lengths) <= max(horizons):
        raise ValueError(f"n_bars={n_bars} gives splits of {lengths} bars: each needs > {max(horizons)} bars")
    names = feature_names(n_features)
    n_noise = max(0, n_features - len(_catalog_names()))
    keep = [(_catalog_names() + [f"noise_{j:02d}" for j in range(n_noise)]).index(n) for n in names]
    mean, std = _train_stats(seed, n_sym, n_bars, signal, keep, n_noise)
    schema, segments = _schema(names, horizons), _segments(n_bars)
    out.mkdir(parents=True, exist_ok=True)
    # train last: its presence (what WindowDataModule checks) means the whole set is complete
    final = {name: out / name for name in ("val_scaled.parquet", "test_scaled.parquet", "demo_info.json",
                                           "train_scaled.parquet")}
    tmps = {name: out / f".{name}.tmp{os.getpid()}" for name in final}
    try:
        with ExitStack() as stack:
            writers = {s: stack.enter_context(pq.ParquetWriter(tmps[f"{s}_scaled.parquet"], schema)) for s in SPLITS}
            for symbols in _chunks(n_sym):
                bars = simulate_bars(seed, symbols, n_bars, signal, n_noise)
                feats = bar_features(bars)[1]
                for split, writer in writers.items():
                    table = _table(bars, feats, keep, symbols, segments[split], mean, std, horizons, schema)
                    writer.write_table(table, row_group_size=table.num_rows)  # one row group per chunk
                del bars, feats, table
        info = {
            "seed": seed, "n_symbols": n_sym, "n_bars": n_bars, "size": size,
            "rows": dict(zip(SPLITS, (n_sym * n for n in lengths), strict=True)),
            "start": str(START), "bars_per_year": BARS_PER_YEAR, "horizons": list(horizons),
            "barrier_k": {str(h): barrier_k(h) for h in horizons},
            "signal": signal_name, "signal_b": list(signal_b),
            "signal_features": list(SIGNAL_FEATURES), "feature_names": names,
            "scaling": {"train_symbols": min(n_sym, STATS_SYMBOLS), "mean": mean.tolist(), "std": std.tolist()},
        }
        tmps["demo_info.json"].write_text(json.dumps(info, indent=1))
    except BaseException:
        for tmp in tmps.values():  # never leave a half-written file behind, then re-raise
            tmp.unlink(missing_ok=True)
        raise
    for name, path in final.items():
        os.replace(tmps[name], path)
    return {split: final[f"{split}_scaled.parquet"] for split in SPLITS}
