"""Forward time per batch of the TimesFM backbone against the LSTM backbone, in one process.

Rows (all at the same B, L, F, random weights, train mode as in a training step; a frozen TimesFM
runs under ``torch.no_grad`` inside the backbone, the head and the LSTM with autograd on):
- ``timesfm-tiny``: ``TimesFMNet`` over the tiny TimesFM 3 the tests use (2 layers, 16 wide, patch 4);
- ``timesfm-3.0``: ``TimesFMNet`` over the package's default TimesFM 3 configuration, the published
  ``google/timesfm-3.0-pytorch`` architecture (20 layers, 1280 wide, patch 32), randomly initialised
  in memory instead of read from a checkpoint directory;
- ``timesfm-2.5-module``: the package's TimesFM 2.5 200M torch module alone (reference only: our
  backbone does not use it), on the same context;
- ``lstm``: ``LSTMNet`` with ``configs/lstm.yaml``'s hyperparameters, the peer the ratios refer to.
Steps are interleaved across rows so that a busy host slows all of them alike.

    python tools/bench_timesfm.py [--batch 256] [--seq_len 60] [--features 107] [--context 1]
                                  [--threads 2] [--steps 3] [--only timesfm-tiny lstm]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
ROWS = ("timesfm-tiny", "timesfm-3.0", "timesfm-2.5-module", "lstm")


def timesfm_net(args: argparse.Namespace, checkpoint: str, **load) -> torch.nn.Module:
    from ensemble.models.backbones import TimesFMNet

    names = [f"x{i}" for i in range(args.features)]
    kwargs = {"context_features": names[: args.context], "feature_names": names}
    if load:  # build the published architecture in memory: a 1.3 GB safetensors round trip adds nothing
        with mock.patch("ensemble.models.backbones.timesfm.load_timesfm", **load):
            return TimesFMNet(args.features, 3, args.seq_len, checkpoint=checkpoint, **kwargs)
    return TimesFMNet(args.features, 3, args.seq_len, checkpoint=checkpoint, **kwargs)


class TimesFM25Module(torch.nn.Module):
    """The 2.5 module on the window's first ``context`` features, left-padded to whole 32-bar patches."""

    def __init__(self, context: int) -> None:
        super().__init__()
        from timesfm.timesfm_2p5.timesfm_2p5_torch import TimesFM_2p5_200M_torch_module

        self.model, self.context = TimesFM_2p5_200M_torch_module(), context

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        series = x[:, :, : self.context].transpose(1, 2).flatten(0, 1)  # (B * V, L)
        pad = (-series.shape[1]) % self.model.p
        values = torch.nn.functional.pad(series, (pad, 0)).view(series.shape[0], -1, self.model.p)
        masks = torch.zeros_like(values, dtype=torch.bool)
        masks[:, 0, :pad] = True
        with torch.no_grad():
            (_, embeddings, _, _), _ = self.model(values, masks)
        return embeddings[:, -1]


def build(name: str, args: argparse.Namespace, tmp: Path) -> torch.nn.Module:
    torch.manual_seed(0)
    if name == "timesfm-tiny":
        sys.path.insert(0, str(ROOT / "tests"))
        from timesfm_tiny import write_tiny_timesfm

        return timesfm_net(args, str(write_tiny_timesfm(tmp / "tiny")))
    if name == "timesfm-3.0":
        from ensemble.models.backbones.timesfm_weights import build_timesfm

        return timesfm_net(args, "in-memory", side_effect=lambda _: build_timesfm({}))
    if name == "timesfm-2.5-module":
        return TimesFM25Module(args.context)
    from ensemble.models.backbones import LSTMNet

    config = yaml.safe_load((ROOT / "configs" / "lstm.yaml").read_text())
    kwargs = config["model"]["init_args"]["net"].get("init_args") or {}
    return LSTMNet(num_features=args.features, num_classes=3, seq_len=args.seq_len, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seq_len", type=int, default=60)
    parser.add_argument("--features", type=int, default=107)
    parser.add_argument("--context", type=int, default=1, help="context features fed to TimesFM (variates)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed forwards after one warm-up forward")
    parser.add_argument("--only", nargs="+", choices=ROWS, default=list(ROWS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        nets = {name: build(name, args, Path(tmp)).train() for name in args.only}
    x = torch.randn(args.batch, args.seq_len, args.features)
    times: dict[str, list[float]] = {name: [] for name in nets}
    for step in range(args.steps + 1):  # the first forward warms up
        for name, net in nets.items():
            start = time.perf_counter()
            net(x)
            if step:
                times[name].append(time.perf_counter() - start)

    print(f"B={args.batch} L={args.seq_len} F={args.features}, TimesFM context: {args.context} feature(s), CPU, "
          f"{args.threads} threads, torch {torch.__version__}; best and median of {args.steps} forwards")
    print(f"{'model':<20}{'params':>13}{'best ms':>10}{'median ms':>11}{'x lstm':>9}")
    peer = min(times["lstm"]) if "lstm" in times else None
    for name, net in nets.items():
        best, median = min(times[name]), sorted(times[name])[len(times[name]) // 2]
        ratio = f"{best / peer:>9.1f}" if peer else f"{'-':>9}"
        params = sum(p.numel() for p in net.parameters())
        print(f"{name:<20}{params:>13,}{best * 1e3:>10.1f}{median * 1e3:>11.1f}{ratio}", flush=True)


if __name__ == "__main__":
    main()
