"""Training-batch delivery, in windows per second: ours vs pytorch-forecasting vs a memcpy bound.

All three run in the same process on the same panel (the production-size demo train split),
so the printed ratios hold even on a shared, noisy machine.

    python tools/bench_windows.py [--seq_len 60] [--batch_size 512] [--batches 100] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from ensemble.data import DEFAULT_DEMO_ROOT, WindowDataModule, WindowLoader


def _rate(batches, n_batches: int, batch_size: int) -> float:
    it = iter(batches)
    next(it)  # warm-up
    start = time.perf_counter()
    for _ in range(n_batches):
        next(it)
    return n_batches * batch_size / (time.perf_counter() - start)


def ours(dm: WindowDataModule, n_batches: int) -> float:
    loader = WindowLoader(dm.panel("train"), dm.ends["train"], dm.seq_len, dm.batch_size, shuffle=True)
    return _rate(loader, n_batches, dm.batch_size)


def memcpy_bound(dm: WindowDataModule, n_batches: int) -> float:
    src = torch.randn(dm.batch_size, dm.seq_len, dm.num_features)
    dst = torch.empty_like(src)

    def copies():
        while True:
            yield dst.copy_(src)

    return _rate(copies(), n_batches, dm.batch_size)


def pytorch_forecasting(dm: WindowDataModule, n_batches: int) -> float:
    import pandas as pd
    from pytorch_forecasting import TimeSeriesDataSet

    p = dm.panel("train")
    df = pd.DataFrame(p.features.numpy(), columns=[f"x{i}" for i in range(dm.num_features)])
    df["symbol"] = [p.symbols[c] for c in p.symbol.tolist()]
    df["time_idx"] = df.groupby("symbol").cumcount()
    df["label"] = p.label.numpy().clip(min=0).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = TimeSeriesDataSet(
            df,
            time_idx="time_idx",
            target="label",
            group_ids=["symbol"],
            max_encoder_length=dm.seq_len,
            min_encoder_length=dm.seq_len,
            max_prediction_length=1,
            time_varying_unknown_reals=[c for c in df.columns if c.startswith("x")],
            target_normalizer=None,
            add_relative_time_idx=False,
            add_target_scales=False,
            add_encoder_length=False,
        )
        loader = ds.to_dataloader(train=True, batch_size=dm.batch_size, num_workers=0)
        return _rate(loader, n_batches, dm.batch_size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=DEFAULT_DEMO_ROOT)
    ap.add_argument("--seq_len", type=int, default=60)
    ap.add_argument("--batch_size", type=int, default=512)
    ap.add_argument("--batches", type=int, default=100)
    ap.add_argument("--pf_batches", type=int, default=10, help="pytorch-forecasting is slow: fewer batches")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dm = WindowDataModule(root=args.root, seq_len=args.seq_len, batch_size=args.batch_size)
    dm.setup("fit")
    print(f"panel: {len(dm.panel('train'))} rows x {dm.num_features} features, "
          f"seq_len={args.seq_len}, batch={args.batch_size}, threads={torch.get_num_threads()}")
    bound = memcpy_bound(dm, args.batches)
    mine = ours(dm, args.batches)
    pf = pytorch_forecasting(dm, args.pf_batches)
    print(f"{'memcpy bound':<24}{bound:>12,.0f} windows/s")
    print(f"{'ensemble WindowLoader':<24}{mine:>12,.0f} windows/s   {mine / bound:.0%} of bound")
    print(f"{'pytorch-forecasting':<24}{pf:>12,.0f} windows/s   ours is {mine / pf:,.0f}x faster")


if __name__ == "__main__":
    main()
