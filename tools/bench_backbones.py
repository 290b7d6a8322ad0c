"""Forward+backward step time and peak memory of every neural backbone at one batch shape.

Each backbone is built with the hyperparameters of its ``configs/{name}.yaml`` (what ``ensemble fit``
trains) and runs in a fresh child process, so its peak memory is its own: on CPU the growth of peak
RSS over the step (parameters, activations, gradients), on CUDA ``max_memory_allocated``. TFT is also
built with pytorch-forecasting's stock ``VariableSelectionNetwork`` (same hidden sizes, same
parameters); for their ratio the two also run in one process with interleaved steps, so a busy
host slows both alike (target: ours >= 3x faster).

    python tools/bench_backbones.py [--batch 256] [--seq_len 60] [--features 107] [--threads 2]
                                    [--steps 3] [--device cpu] [--only tft tft-stock]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BACKBONES = ("lstm", "gru", "transformer", "tft", "tft-stock", "nhits", "patchtst")


def build(name: str, features: int, seq_len: int):
    import yaml

    from ensemble.models import get_model

    config = yaml.safe_load((CONFIGS / f"{name.removesuffix('-stock')}.yaml").read_text())
    kwargs = dict(config["model"]["init_args"]["net"].get("init_args") or {})
    if name == "tft-stock":
        kwargs["variable_selection"] = "library"
    return get_model(name.removesuffix("-stock")).cls(num_features=features, num_classes=3, seq_len=seq_len, **kwargs)


def measure(args: argparse.Namespace) -> list[dict]:
    """In this (child) process: best and median step time of each named backbone, their steps
    interleaved so that a busy host slows all of them alike; peak memory when there is only one."""
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    nets = {name: build(name, args.features, args.seq_len).to(device) for name in args.one}
    x = torch.randn(args.batch, args.seq_len, args.features, device=device)
    y = torch.randint(0, 3, (args.batch,), device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    times: dict[str, list[float]] = {name: [] for name in nets}
    for step in range(args.steps + 1):  # the first step warms up
        for name, net in nets.items():
            net.zero_grad(set_to_none=True)
            sync()
            start = time.perf_counter()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            sync()
            if step:
                times[name].append(time.perf_counter() - start)
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    return [
        {
            "name": name,
            "params": sum(p.numel() for p in net.parameters()),
            "best_s": min(times[name]),
            "median_s": sorted(times[name])[len(times[name]) // 2],
            "peak_mb": peak_mb if len(nets) == 1 else None,
        }
        for name, net in nets.items()
    ]


def run_child(names: list[str], args: argparse.Namespace) -> list[dict]:
    argv = [sys.executable, __file__, "--one", *names, "--batch", str(args.batch), "--seq_len", str(args.seq_len),
            "--features", str(args.features), "--threads", str(args.threads), "--steps", str(args.steps),
            "--device", args.device]
    out = subprocess.run(argv, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"benchmark of {names} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seq_len", type=int, default=60)
    parser.add_argument("--features", type=int, default=107)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", nargs="+", choices=BACKBONES, default=list(BACKBONES))
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args)))
        return

    print(f"B={args.batch} L={args.seq_len} F={args.features}, {args.device}, {args.threads} threads, "
          f"best and median of {args.steps} forward+backward steps (hyperparameters from configs/)")
    print(f"{'backbone':<12}{'params':>10}{'best ms':>10}{'median ms':>11}{'samples/s':>11}{'peak MB':>9}")
    results = {}
    for name in args.only:
        (r,) = results[name] = run_child([name], args)
        print(f"{name:<12}{r['params']:>10,}{r['best_s'] * 1e3:>10.0f}{r['median_s'] * 1e3:>11.0f}"
              f"{args.batch / r['best_s']:>11.0f}{r['peak_mb']:>9.0f}", flush=True)
    if {"tft", "tft-stock"} <= results.keys():
        ours, stock = run_child(["tft", "tft-stock"], args)  # interleaved steps: the ratio survives a busy host
        best, median = stock["best_s"] / ours["best_s"], stock["median_s"] / ours["median_s"]
        print(f"TFT step, vectorised vs stock variable selection (interleaved steps): {best:.1f}x faster at best "
              f"({ours['best_s']:.2f} vs {stock['best_s']:.2f} s), {median:.1f}x at the median "
              f"({ours['median_s']:.2f} vs {stock['median_s']:.2f} s); target >= 3x")

if __name__ == "__main__":
    main()
