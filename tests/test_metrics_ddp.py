"""The metric suite under real DDP: 2 CPU processes on gloo must agree with one process on all rows.

Every metric of the suite is compared (costs, turnover, PSR, IC, benchmark included), for each book and sizing.
"""

from __future__ import annotations

import json
import socket
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ensemble.metrics import ClassificationMetrics, MetricSuite, SharpeRatio, TradingConfig

HORIZON, BARS_PER_YEAR = 3, 252.0
CONFIGS = {
    "argmax": TradingConfig(cost_bps=5, slippage_bps=2),
    "prob_diff": TradingConfig(sizing="prob_diff", cost_bps=10),
    "threshold": TradingConfig(sizing="threshold", threshold=0.4),
    "topk": TradingConfig(book="topk", k=2, benchmark="none"),
}


def panel() -> tuple[torch.Tensor, ...]:
    """4 symbols x 30 timestamps, time-major, some NaN returns: (probs, target, time, fwd_return, symbol)."""
    g = torch.Generator().manual_seed(0)
    n_time, n_sym = 30, 4
    time = (torch.arange(n_time) * 3_600 * 10**9).repeat_interleave(n_sym)
    n = len(time)
    probs = torch.softmax(torch.randn(n, 3, generator=g), dim=1)
    target = torch.randint(0, 3, (n,), generator=g)
    ret = torch.randn(n, generator=g) * 0.01
    ret[torch.rand(n, generator=g) < 0.1] = float("nan")
    return probs, target, time, ret, torch.arange(n_sym).repeat(n_time)


def rank_rows(rank: int) -> torch.Tensor:
    # Contiguous cut at an odd row (timestamp 10's symbols land on both ranks), then every other row of the
    # rest: most timestamps are split across ranks, and the ranks get different row counts.
    n = len(panel()[2])
    head, tail = torch.arange(41), torch.arange(41, n)
    return torch.cat([head, tail[0::2]]) if rank == 0 else tail[1::2]


def suites() -> dict[str, MetricSuite]:
    return {name: MetricSuite("val", HORIZON, BARS_PER_YEAR, config) for name, config in CONFIGS.items()}


def single_process() -> tuple[dict[str, dict[str, float]], list[list[int]], float, float]:
    probs, target, time, ret, symbol = panel()
    every = suites()
    for suite in every.values():
        suite.update(probs, target, time, ret, symbol=symbol)
    sharpe = SharpeRatio(HORIZON, BARS_PER_YEAR)
    sharpe.update(time, probs.argmax(1) - 1, ret)
    ece = ClassificationMetrics()
    ece.update(probs, target)
    metrics = {name: suite.compute() for name, suite in every.items()}
    return metrics, every["argmax"].confusion_matrix().tolist(), float(sharpe.compute()), float(ece.compute()["ece"])


def worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        probs, target, time, ret, symbol = panel()
        idx = rank_rows(rank)
        every = suites()
        for part in idx.chunk(3):  # several batches per rank
            for suite in every.values():
                suite.update(probs[part], target[part], time[part], ret[part], symbol=symbol[part])
        # A rank that saw no rows at all must still sync (int64 time state on every rank).
        sharpe = SharpeRatio(HORIZON, BARS_PER_YEAR)
        ece = ClassificationMetrics()  # a rank that saw no rows still syncs its sums
        if rank == 0:
            sharpe.update(time, probs.argmax(1) - 1, ret)
            ece.update(probs, target)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rank 1's compute-before-update warning
            result = {
                "metrics": {name: suite.compute() for name, suite in every.items()},
                "confmat": every["argmax"].confusion_matrix().tolist(),
                "sharpe_one_rank": float(sharpe.compute()),
                "ece_one_rank": float(ece.compute()["ece"]),
            }
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_two_process_gloo_matches_single_process(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    metrics, confmat, sharpe, ece = single_process()
    for name, values in metrics.items():  # the comparison can see: the new metrics are not trivially 0
        keys = ("turnover", "sharpe_net", "psr", "ic", "rank_ic", "icir", "ece", "brier")
        assert all(values[f"val/{k}"] != 0 for k in keys), name
    for rank in range(2):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        for name, expected in metrics.items():
            assert result["metrics"][name] == pytest.approx(expected, rel=1e-6), name
        assert result["confmat"] == confmat
        assert result["sharpe_one_rank"] == pytest.approx(sharpe, rel=1e-6)
        assert result["ece_one_rank"] == pytest.approx(ece, rel=1e-6)
