"""Statistics of return series and cross-sections, vectorised over the h phases and over timestamps.

Everything works in float64 on (h, P) phase matrices (row j = the non-overlapping series of phase j, zero
padded to P periods, with a mask), so one call serves every phase with no Python loop over phases.
Degenerate cases (fewer periods than a statistic needs, zero variance) give 0, never NaN.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import torch
from torch import Tensor

from ensemble.errors import EnsembleError


def phase_matrix(x: Tensor, horizon: int) -> tuple[Tensor, Tensor]:
    """(h, P) matrix whose row j is ``x[j::h]`` zero padded, and the (h, P) bool mask of real entries.

    x: (T,) per-timestamp values in time order; P = max(ceil(T / h), 1).
    """
    n, p = len(x), max(-(-len(x) // horizon), 1)  # one column even when empty: reductions need one
    padded = x.new_zeros(p * horizon)
    padded[:n] = x
    mask = torch.zeros(p * horizon, dtype=torch.bool, device=x.device)
    mask[:n] = True
    return padded.view(p, horizon).T, mask.view(p, horizon).T


def _moments(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Per row: (count, mean, 2nd, 3rd, 4th central moments), population (biased) moments."""
    count = mask.sum(dim=1)
    mean = x.sum(dim=1) / count.clamp_min(1)
    dev = (x - mean[:, None]) * mask
    m2, m3, m4 = ((dev**k).sum(dim=1) / count.clamp_min(1) for k in (2, 3, 4))
    return count, mean, m2, m3, m4


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """(h,) mean of each row over its real entries (0 for an empty row)."""
    return x.sum(dim=1) / mask.sum(dim=1).clamp_min(1)


def _sharpe(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    count, mean, m2, _, _ = _moments(x, mask)
    std = (m2 * count / (count - 1).clamp_min(1)).sqrt()
    scale = (x.abs() * mask).amax(dim=1)
    ok = (count >= 2) & (std > 1e-9 * scale)
    return torch.where(ok, mean / std.where(ok, torch.ones_like(std)), torch.zeros_like(mean)), ok


def sharpe(x: Tensor, mask: Tensor) -> Tensor:
    """(h,) per-period Sharpe ratio mean / std (unbiased, ddof=1) of each row; not annualised.

    A row with fewer than 2 periods, or a std at rounding level (constant returns: undefined), gives 0.
    """
    return _sharpe(x, mask)[0]


def psr_from_moments(sharpe: Tensor, n: Tensor, skew: Tensor, kurtosis: Tensor,
                     benchmark_sharpe: float | Tensor = 0.0) -> Tensor:
    """Probabilistic Sharpe ratio from a track record's moments, elementwise (tensors broadcast).

    Bailey and Lopez de Prado (2012), "The Sharpe ratio efficient frontier", J. of Risk 15(2), eq. (11):
    PSR = Phi((SR - SR*) sqrt(n - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2)).

    Args:
        sharpe: SR, the per-period (not annualised) Sharpe ratio.
        n: number of returns in the track record.
        skew: g3, the skewness of the returns.
        kurtosis: g4, the non-excess kurtosis (3 for normal returns).
        benchmark_sharpe: SR*, per-period, in the units of ``sharpe``.

    The denominator is >= (1 - g3 SR / 2)^2 >= 0 because g4 >= 1 + g3^2; it is clamped away from 0.
    """
    var = (1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe**2).clamp_min(1e-12)
    return torch.special.ndtr((sharpe - benchmark_sharpe) * (n - 1).clamp_min(0).sqrt() / var.sqrt())


def probabilistic_sharpe(x: Tensor, mask: Tensor, benchmark_sharpe: float = 0.0) -> Tensor:
    """(h,) probabilistic Sharpe ratio of each row against a per-period Sharpe of ``benchmark_sharpe``.

    ``psr_from_moments`` with SR the per-period (not annualised, ddof=1) Sharpe ratio, g3 the skewness and
    g4 the (non-excess, population) kurtosis of each row's n returns.
    A row where the Sharpe is undefined (< 3 periods, zero std) gives 0: no evidence of skill.
    """
    count, _, m2, m3, m4 = _moments(x, mask)
    sr, defined = _sharpe(x, mask)
    safe_m2 = m2.clamp_min(torch.finfo(m2.dtype).tiny)
    psr = psr_from_moments(sr, count.to(sr.dtype), m3 / safe_m2**1.5, m4 / safe_m2**2, benchmark_sharpe)
    ok = (count >= 3) & defined
    return torch.where(ok, psr, torch.zeros_like(psr))


EULER_GAMMA = 0.5772156649015329  # the Euler-Mascheroni constant


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Expected maximum Sharpe ratio of ``n_trials`` unskilled trials: the benchmark the best must beat.

    Bailey and Lopez de Prado (2014), "The deflated Sharpe ratio: correcting for selection bias, backtest
    overfitting and non-normality", J. of Portfolio Management 40(5), eq. (2):
    SR0 = sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e))), gamma the Euler-Mascheroni
    constant, V the variance of the trials' Sharpe ratios. One trial gives 0 exactly (the expected value
    of a single unskilled trial; the formula's Phi^-1(0) is -inf there).

    Args:
        n_trials: N >= 1, every configuration tried (not only those whose returns are at hand).
        sharpe_variance: V >= 0, variance across the trials of their Sharpe ratios, in squared units of
            the Sharpe the result is compared with (per-period Sharpe: per-period variance; an annualised
            variance V_a over b periods a year is V_a / b per period).

    Raises:
        EnsembleError: ``n_trials`` < 1 or ``sharpe_variance`` negative or not finite.
    """
    if int(n_trials) != n_trials or n_trials < 1:
        raise EnsembleError(f"deflated Sharpe: n_trials must be a whole number >= 1, got {n_trials}")
    if not math.isfinite(sharpe_variance) or sharpe_variance < 0:
        raise EnsembleError(f"deflated Sharpe: sharpe_variance must be finite and >= 0, got {sharpe_variance}")
    if n_trials == 1:
        return 0.0
    inv = NormalDist().inv_cdf
    return math.sqrt(sharpe_variance) * ((1 - EULER_GAMMA) * inv(1 - 1 / n_trials)
                                         + EULER_GAMMA * inv(1 - 1 / (n_trials * math.e)))


def dsr(x: Tensor, mask: Tensor, n_trials: int, sharpe_variance: float) -> Tensor:
    """(h,) deflated Sharpe ratio of each row: its PSR against the expected maximum Sharpe of the trials.

    Bailey and Lopez de Prado (2014), eq. (2)-(3): DSR = PSR(SR0) with SR0 = ``expected_max_sharpe``. The
    probability that the row's true Sharpe is above what the best of ``n_trials`` unskilled strategies
    would show by chance; with one trial it is ``probabilistic_sharpe(x, mask)`` (against 0). A row whose
    Sharpe is undefined (< 3 periods, zero std) gives 0, as there.

    Args:
        x, mask: (h, P) per-period returns and their mask, as ``phase_matrix`` gives them.
        n_trials: N, the number of configurations tried (grid cells, blends, tuning trials...).
        sharpe_variance: variance across the trials of their **per-period** (not annualised) Sharpe
            ratios, the units of ``sharpe`` and ``probabilistic_sharpe`` here.

    Raises:
        EnsembleError: as ``expected_max_sharpe``.
    """
    return probabilistic_sharpe(x, mask, expected_max_sharpe(n_trials, sharpe_variance))


def max_drawdown(x: Tensor, mask: Tensor) -> Tensor:
    """(h,) largest peak-to-trough fall of each row's additive equity [0, cumsum(x)...] (>= 0).

    Padding is zero returns after the end: a flat tail never deepens a drawdown.
    """
    equity = torch.cat([x.new_zeros(len(x), 1), torch.cumsum(x * mask, dim=1)], dim=1)
    return (torch.cummax(equity, dim=1).values - equity).amax(dim=1)


def group_ranks(group: Tensor, x: Tensor) -> Tensor:
    """(K, N) 0-based rank of each x within its group, ties given their average rank (as scipy's rankdata).

    group: (N,) int64 in [0, G), every id present (as ``torch.unique``'s inverse gives it); x: (K, N) float,
    K series ranked at once (or (N,) -> (N,)). A panel is near-rectangular (each timestamp holds most
    symbols), so the groups are laid out as rows of a (K, G, widest group) matrix and sorted in one batched
    call, much faster than sorting all N rows by (group, x); a ragged panel, where that matrix would be over
    4x the rows, takes a global sort per series instead.
    """
    if x.dim() == 1:
        return group_ranks(group, x[None])[0]
    size = torch.bincount(group)
    width = int(size.max()) if len(size) else 0
    if len(size) * width > 4 * x.shape[1] + 1024:
        return torch.stack([_group_ranks_by_sort(group, row) for row in x])
    order = torch.argsort(group, stable=True)
    g = group[order]
    col = torch.arange(len(g), device=x.device) - (torch.cumsum(size, dim=0) - size)[g]
    dense = torch.full((len(x), len(size), width), torch.inf, dtype=torch.float64, device=x.device)
    dense[:, g, col] = x[:, order].double()  # padding sorts last and never counts below a real value
    ordered, where = torch.sort(dense, dim=-1)
    pos = torch.arange(width, device=x.device).expand_as(ordered)
    new_run = torch.ones_like(ordered, dtype=torch.bool)
    new_run[..., 1:] = ordered[..., 1:] != ordered[..., :-1]
    if bool((new_run | torch.isinf(ordered)).all()):  # no ties among real values (the usual case for floats)
        ranks = torch.empty_like(ordered).scatter_(-1, where, pos.to(torch.float64))
    else:  # a run of equal values spans positions [first, last]; each of its members gets (first + last) / 2
        first = torch.cummax(torch.where(new_run, pos, torch.zeros_like(pos)), dim=-1).values
        end_run = torch.ones_like(new_run)
        end_run[..., :-1] = new_run[..., 1:]
        last = torch.where(end_run, pos, torch.full_like(pos, width)).flip(-1).cummin(dim=-1).values.flip(-1)
        ranks = torch.empty_like(ordered).scatter_(-1, where, (first + last).to(torch.float64) / 2)
    out = torch.empty(x.shape, dtype=torch.float64, device=x.device)
    out[:, order] = ranks[:, g, col]
    return out


def _group_ranks_by_sort(group: Tensor, x: Tensor) -> Tensor:
    order = torch.argsort(x)  # the order among equal x never matters: ties get their run's average rank
    order = order[torch.argsort(group[order], stable=True)]  # by group, then by x
    g, v = group[order], x[order]
    new_group = torch.ones_like(g, dtype=torch.bool)
    new_group[1:] = g[1:] != g[:-1]
    new_run = new_group.clone()
    new_run[1:] |= v[1:] != v[:-1]
    pos = torch.arange(len(x), device=x.device)
    start = torch.cummax(torch.where(new_group, pos, torch.zeros_like(pos)), dim=0).values
    rank = (pos - start).to(torch.float64)
    run = torch.cumsum(new_run.long(), dim=0) - 1
    n_runs = int(run[-1]) + 1 if len(run) else 0
    total = torch.zeros(n_runs, dtype=torch.float64, device=x.device).index_add_(0, run, rank)
    count = torch.zeros_like(total).index_add_(0, run, torch.ones_like(rank))
    out = torch.empty_like(rank)
    out[order] = (total / count)[run]
    return out


def cross_sectional_corr(group: Tensor, n_groups: int, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Pearson correlation of x and y within each group: ((G,) corr, (G,) bool valid).

    A group is valid with >= 3 rows and non-constant x and y; invalid groups get corr 0.
    """
    def per_group(v: Tensor) -> Tensor:
        return torch.zeros(n_groups, dtype=torch.float64, device=v.device).index_add_(0, group, v)

    n = per_group(torch.ones_like(x))
    dx = x - (per_group(x) / n.clamp_min(1))[group]
    dy = y - (per_group(y) / n.clamp_min(1))[group]
    sxx, syy, sxy = per_group(dx * dx), per_group(dy * dy), per_group(dx * dy)
    # Relative tolerance: a constant cross-section leaves only rounding in sxx.
    valid = (n >= 3) & (sxx > 1e-20 * per_group(x * x)) & (syy > 1e-20 * per_group(y * y))
    denom = (sxx * syy).sqrt().where(valid, torch.ones_like(sxx))
    return torch.where(valid, sxy / denom, torch.zeros_like(sxy)), valid


def cross_sectional_ics(group: Tensor, n_groups: int, score: Tensor, fwd_return: Tensor
                        ) -> tuple[Tensor, Tensor, Tensor]:
    """Per group (timestamp): the IC (Pearson) and rank IC (Spearman: Pearson of the average ranks) of ``score``
    against ``fwd_return`` across its rows, and whether the group is valid (``cross_sectional_corr``'s rule):
    ((G,) ic, (G,) rank_ic, (G,) bool valid)."""
    ic, valid = cross_sectional_corr(group, n_groups, score, fwd_return)
    ranks = group_ranks(group, torch.stack([score, fwd_return]))
    rank_ic, _ = cross_sectional_corr(group, n_groups, ranks[0], ranks[1])
    return ic, rank_ic, valid
