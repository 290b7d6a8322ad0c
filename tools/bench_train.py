"""One training epoch through ``ensemble fit``'s module and datamodule vs a hand-written PyTorch loop.

Same backbone, same batches, same optimizer, in the same process; prints the Lightning/plain ratio
(target <= 1.10), samples per second and peak RSS.

    python tools/bench_train.py [--seq_len 30] [--batches 60] [--hidden 64] [--repeats 2]
"""

from __future__ import annotations

import argparse
import copy
import resource
import time

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from ensemble.data import DEFAULT_DEMO_ROOT, WindowDataModule, WindowLoader
from ensemble.models import Classifier
from ensemble.models.backbones import LSTMNet


def plain_loop(model: Classifier, loader: WindowLoader, batches: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    start = time.perf_counter()
    for i, batch in enumerate(loader):
        if i == batches:
            break
        loss = F.cross_entropy(model(batch["x"]), batch["y"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def lightning_epoch(model: Classifier, dm: WindowDataModule, batches: int) -> float:
    trainer = pl.Trainer(
        max_epochs=1, limit_train_batches=batches, limit_val_batches=0, num_sanity_val_steps=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        accelerator="cpu", devices=1,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=DEFAULT_DEMO_ROOT)
    ap.add_argument("--seq_len", type=int, default=30)
    ap.add_argument("--batch_size", type=int, default=512)
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dm = WindowDataModule(root=args.root, seq_len=args.seq_len, batch_size=args.batch_size)
    dm.setup("fit")
    torch.manual_seed(0)
    template = Classifier(LSTMNet(dm.num_features, 3, args.seq_len, hidden_size=args.hidden), horizon=dm.horizon)
    plain, light = [], []
    for _ in range(args.repeats):  # interleaved, best of n: the machine is shared and noisy
        loader = WindowLoader(dm.panel("train"), dm.ends["train"], args.seq_len, args.batch_size, shuffle=True)
        plain.append(plain_loop(copy.deepcopy(template), loader, args.batches))
        light.append(lightning_epoch(copy.deepcopy(template), dm, args.batches))
    samples = args.batches * args.batch_size
    p, lt = min(plain), min(light)
    print(f"LSTM hidden={args.hidden}, seq_len={args.seq_len}, batch={args.batch_size}, {args.batches} batches, "
          f"threads={torch.get_num_threads()}")
    print(f"{'plain PyTorch loop':<22}{p:>8.2f} s  {samples / p:>9,.0f} samples/s")
    print(f"{'ensemble (Lightning)':<22}{lt:>8.2f} s  {samples / lt:>9,.0f} samples/s")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"ratio ensemble/plain: {lt / p:.3f}   peak RSS: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
