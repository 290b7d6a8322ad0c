"""Information coefficients: per-timestamp Pearson / Spearman across symbols, against scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from ensemble.metrics import TradingConfig, trading_metrics
from ensemble.metrics.stats import _group_ranks_by_sort, group_ranks


def ic_metrics(time: np.ndarray, symbol: np.ndarray, score: np.ndarray, ret: np.ndarray) -> dict[str, float]:
    metrics = trading_metrics(1, 252.0, TradingConfig())
    metrics.update(torch.tensor(time), torch.tensor(np.sign(score)), torch.tensor(ret), symbol=torch.tensor(symbol),
                   score=torch.tensor(score))
    return {k: float(v) for k, v in metrics.compute().items()}


def test_ic_and_rank_ic_equal_the_mean_of_scipy_per_timestamp():
    rng = np.random.default_rng(0)
    rows = []
    for t in range(40):
        n = [2, 1, 7][t % 3] if t < 6 else rng.integers(3, 9)  # some timestamps with fewer than 3 symbols
        score = rng.normal(size=n).round(1)  # rounding makes ties, which Spearman ranks as averages
        if t == 7:
            score[:] = 0.3  # a constant score: correlation undefined, skipped
        rows += [(t, s, score[s], 0.5 * score[s] + rng.normal()) for s in range(n)]
    time, symbol, score, ret = (np.array(c) for c in zip(*rows, strict=True))
    ret[5] = np.nan  # a dropped row (at t = 2)
    keep = ~np.isnan(ret)
    pearson, spearman, skipped = [], [], 0
    for t in np.unique(time[keep]):
        m = keep & (time == t)
        if m.sum() < 3 or np.ptp(score[m]) == 0:
            skipped += 1
            continue
        pearson.append(stats.pearsonr(score[m], ret[m])[0])
        spearman.append(stats.spearmanr(score[m], ret[m])[0])
    perm = rng.permutation(len(time))
    out = ic_metrics(time[perm] * 10**9, symbol[perm], score[perm], ret[perm])
    assert skipped >= 4 and out["ic_skipped"] == skipped
    assert out["ic"] == pytest.approx(np.mean(pearson), abs=1e-9)
    assert out["rank_ic"] == pytest.approx(np.mean(spearman), abs=1e-9)
    assert out["icir"] == pytest.approx(np.mean(pearson) / np.std(pearson, ddof=1), abs=1e-9)
    assert out["rank_icir"] == pytest.approx(np.mean(spearman) / np.std(spearman, ddof=1), abs=1e-9)


def test_average_ranks_within_groups_match_scipy():
    group = torch.tensor([1, 0, 1, 1, 0, 1, 0])
    x = torch.tensor([0.5, 2.0, 0.5, -1.0, 2.0, 3.0, 1.0], dtype=torch.float64)
    for ranks in (group_ranks(group, x), _group_ranks_by_sort(group, x), group_ranks(group, x[None].repeat(2, 1))[1]):
        for g in (0, 1):
            m = (group == g).numpy()
            assert ranks[m].tolist() == pytest.approx(stats.rankdata(x[m].numpy()) - 1)
    # Without ties (continuous values) the ranks are the positions: the fast path, still scipy's.
    x = torch.randn(len(group), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ranks = group_ranks(group, x)
    for g in (0, 1):
        m = (group == g).numpy()
        assert ranks[m].tolist() == pytest.approx(stats.rankdata(x[m].numpy()) - 1)
    # A ragged panel (one wide group, many narrow ones) takes the global sort: same ranks.
    group = torch.cat([torch.zeros(50, dtype=torch.long), torch.arange(1, 400)])
    x = torch.randn(len(group), generator=torch.Generator().manual_seed(0), dtype=torch.float64).round(decimals=1)
    assert torch.equal(group_ranks(group, x), _group_ranks_by_sort(group, x))


def test_synthetic_score_with_true_correlation_recovers_it():
    # 50 symbols x 2,000 timestamps; score = 0.1 * z + sqrt(1 - 0.01) * noise has correlation 0.1 with z.
    rng = np.random.default_rng(1)
    n_time, n_sym, rho = 2000, 50, 0.1
    ret = rng.normal(size=(n_time, n_sym))
    score = rho * ret + np.sqrt(1 - rho**2) * rng.normal(size=(n_time, n_sym))
    time = np.repeat(np.arange(n_time), n_sym) * 3_600 * 10**9
    out = ic_metrics(time, np.tile(np.arange(n_sym), n_time), score.ravel(), 0.01 * ret.ravel())
    assert out["ic"] == pytest.approx(rho, abs=0.01)
    assert out["rank_ic"] == pytest.approx(rho * 0.97, abs=0.01)  # Spearman of a bivariate normal: (6/pi) asin(rho/2)
    assert out["ic_skipped"] == 0


def test_without_a_cross_section_the_ic_is_undefined_not_zero():
    """One symbol: no timestamp has 3 symbols to correlate across, so IC, rank IC and their IRs are NaN (written
    as null, shown as '-'), never a fake 0 that reads as 'no skill'."""
    rng = np.random.default_rng(1)
    score = rng.normal(size=50)
    out = ic_metrics(np.arange(50) * 10**9, np.zeros(50, dtype=np.int64), score, score + rng.normal(size=50))
    assert out["ic_skipped"] == 50
    assert all(np.isnan(out[k]) for k in ("ic", "rank_ic", "icir", "rank_icir"))
    assert np.isfinite(out["sharpe"])  # the other metrics stand
