"""Symbol-isolated, past-only windows by index gather: no copies, no per-sample Python.

A sample is the index ``t`` of its last row. Its window is rows ``t-L+1 .. t`` of the same
symbol block, gathered for a whole batch at once with one ``index_select``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from ensemble.data.panel import SplitPanel


def valid_ends(panel: SplitPanel, seq_len: int, require_label: bool = True) -> torch.Tensor:
    """Rows that can end a window: a label exists (unless predicting), it is not borrowed context,
    and the symbol has at least ``seq_len - 1`` earlier rows in this panel."""
    n = len(panel)
    starts = torch.from_numpy(panel.block_starts())
    block_len = torch.diff(torch.cat([starts, torch.tensor([n])]))
    first_row = torch.repeat_interleave(starts, block_len)  # (N,) start of each row's block
    position = torch.arange(n) - first_row
    ok = (position >= seq_len - 1) & ~panel.is_context
    if require_label:
        ok &= panel.label >= 0
    return torch.nonzero(ok).squeeze(1)


def gather_windows(features: torch.Tensor, ends: torch.Tensor, seq_len: int) -> torch.Tensor:
    """(N, F) rows + (B,) end rows -> (B, L, F) windows in one gather."""
    if seq_len == 1:
        return features.index_select(0, ends).unsqueeze(1)
    offsets = torch.arange(1 - seq_len, 1, device=ends.device)
    rows = (ends.unsqueeze(1) + offsets).reshape(-1)  # (B*L,)
    return features.index_select(0, rows).view(ends.shape[0], seq_len, features.shape[1])


def shard(ends: torch.Tensor, rank: int, world_size: int, equal: bool) -> torch.Tensor:
    """This rank's part of ``ends``. ``equal`` drops the remainder so every rank steps the same
    number of times (training); otherwise the parts differ by at most one and cover every sample
    exactly once (evaluation), so no padding duplicate can bias a metric."""
    n = ends.shape[0]
    if equal:
        per_rank = n // world_size
        return ends[rank * per_rank : (rank + 1) * per_rank]
    lo, hi = rank * n // world_size, (rank + 1) * n // world_size
    return ends[lo:hi]


class WindowLoader:
    """An iterable of batch dicts over one panel, usable wherever Lightning takes a dataloader.

    Training loaders shuffle with a generator seeded by (seed, epoch), so an epoch's order is
    reproducible after a resume, and every DDP rank draws the same permutation before sharding.
    """

    def __init__(
        self,
        panel: SplitPanel,
        ends: torch.Tensor,
        seq_len: int,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epoch: Callable[[], int] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.panel = panel
        self.ends = ends
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self._epoch = epoch
        self._own_epoch = 0

    def _num_samples(self) -> int:
        n = self.ends.shape[0]
        if self.shuffle:
            return n // self.world_size
        return (self.rank + 1) * n // self.world_size - self.rank * n // self.world_size

    def __len__(self) -> int:
        return -(-self._num_samples() // self.batch_size)

    def epoch_ends(self) -> torch.Tensor:
        """This rank's end rows for the current epoch, in the order they are served."""
        ends = self.ends
        if self.shuffle:
            epoch = self._epoch() if self._epoch is not None else self._own_epoch
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            ends = ends[torch.randperm(ends.shape[0], generator=gen).to(ends.device)]
        return shard(ends, self.rank, self.world_size, equal=self.shuffle)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        ends = self.epoch_ends()
        self._own_epoch += 1
        p = self.panel
        for start in range(0, ends.shape[0], self.batch_size):
            e = ends[start : start + self.batch_size]
            yield {
                "x": gather_windows(p.features, e, self.seq_len),  # (B, L, F)
                "y": p.label.index_select(0, e),
                "fwd_return": p.fwd_return.index_select(0, e),
                "weight": p.weight.index_select(0, e),
                "symbol": p.symbol.index_select(0, e),
                "time": p.time.index_select(0, e),
                "row": e,
            }
