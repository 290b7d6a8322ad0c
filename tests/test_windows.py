"""Window properties over random panels, DDP sharding, and a planted-leak test."""

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from panels import make_frames, write_frames

from ensemble.data import WindowDataModule, WindowLoader, gather_windows
from ensemble.data.windows import shard, valid_ends

panels = st.fixed_dictionaries(
    {
        "n_symbols": st.integers(1, 4),
        "rows": st.tuples(st.integers(25, 60), st.integers(25, 40), st.integers(25, 40)),
        "seed": st.integers(0, 10_000),
        "seq_len": st.integers(1, 12),
        "context": st.booleans(),
        "shuffle_file": st.booleans(),
    }
)


def _datamodule(root: Path, spec: dict) -> WindowDataModule:
    frames = make_frames(n_symbols=spec["n_symbols"], rows=spec["rows"], n_features=3, seed=spec["seed"])
    if spec["shuffle_file"]:  # symbols interleaved in any order; each symbol's rows stay in time order
        frames = {k: v.sort_values(["symbol", "datetime"], ascending=[False, True]) for k, v in frames.items()}
    write_frames(root, frames)
    dm = WindowDataModule(
        root=str(root), seq_len=spec["seq_len"], batch_size=7, context_from_previous_split=spec["context"]
    )
    for stage in ("fit", "test"):
        dm.setup(stage)
    return dm


@settings(max_examples=40, deadline=None)
@given(spec=panels)
def test_windows_are_symbol_isolated_past_only_and_complete(spec):
    with tempfile.TemporaryDirectory() as tmp:
        dm = _datamodule(Path(tmp), spec)
        L = spec["seq_len"]
        for split in ("train", "val", "test"):
            p, ends = dm.panel(split), dm.ends[split]
            sym = gather_windows(p.symbol.unsqueeze(1).double(), ends, L).squeeze(2)  # (B, L)
            time = gather_windows(p.time.unsqueeze(1).double(), ends, L).squeeze(2)
            assert (sym == p.symbol[ends].double().unsqueeze(1)).all(), "window crosses a symbol"
            assert (time[:, -1] == p.time[ends].double()).all(), "window does not end at its target"
            assert (torch.diff(time, dim=1) > 0).all(), "rows not consecutive in time"
            assert (p.label[ends] >= 0).all() and not p.is_context[ends].any()
            # every labelled row with L-1 rows of history is a target exactly once per epoch
            loader = WindowLoader(p, ends, L, 5, shuffle=(split == "train"), seed=spec["seed"])
            batches = list(loader)
            served = torch.cat([b["row"] for b in batches])
            assert sorted(served.tolist()) == sorted(set(ends.tolist()))
            assert len(batches) == len(loader) == -(-len(ends) // 5)
            for b in batches:  # every field of a batch is the panel's, at the target row
                r = b["row"]
                assert torch.equal(b["x"], gather_windows(p.features, r, L)) and b["x"].shape == (len(r), L, 3)
                assert torch.equal(b["x"][:, -1], p.features[r])
                for key, column in (("y", p.label), ("fwd_return", p.fwd_return), ("weight", p.weight),
                                    ("symbol", p.symbol), ("time", p.time)):
                    assert torch.equal(b[key], column[r]), key
            df = pd.DataFrame({"s": p.symbol.numpy(), "y": p.label.numpy(), "c": p.is_context.numpy()})
            pos = df.groupby("s").cumcount().to_numpy()
            expected = np.flatnonzero((pos >= L - 1) & (df.y >= 0) & ~df.c)
            assert ends.tolist() == expected.tolist()
            # predicting (no label needed): still never a borrowed context row, never a short history
            unlabelled = valid_ends(p, L, require_label=False)
            assert unlabelled.tolist() == np.flatnonzero((pos >= L - 1) & ~df.c).tolist()


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 200), world=st.integers(1, 5), seed=st.integers(0, 99))
def test_ddp_shards_disjoint_equal_and_covering(n, world, seed):
    ends = torch.randperm(1000, generator=torch.Generator().manual_seed(seed))[:n]
    evals = [shard(ends, r, world, equal=False) for r in range(world)]
    assert sorted(torch.cat(evals).tolist()) == sorted(ends.tolist())  # every sample exactly once
    trains = [shard(ends, r, world, equal=True) for r in range(world)]
    assert len({len(t) for t in trains}) == 1  # equal length: every rank steps the same
    flat = torch.cat(trains).tolist()
    assert len(flat) == len(set(flat)) and n - len(flat) < world


def test_ddp_ranks_share_one_permutation(splits):
    dm = WindowDataModule(root=str(splits), seq_len=3)
    dm.setup("fit")
    p, ends = dm.panel("train"), dm.ends["train"]
    loaders = [WindowLoader(p, ends, 3, 4, shuffle=True, seed=1, rank=r, world_size=2) for r in range(2)]
    rows = [torch.cat([b["row"] for b in ld]) for ld in loaders]
    assert len(rows[0]) == len(rows[1]) and not set(rows[0].tolist()) & set(rows[1].tolist())
    assert len(loaders[0]) == len(loaders[1])


def test_shuffle_is_seeded_per_epoch(splits):
    dm = WindowDataModule(root=str(splits), seq_len=2)
    dm.setup("fit")
    p, ends = dm.panel("train"), dm.ends["train"]
    epoch = {"now": 0}
    a = WindowLoader(p, ends, 2, 8, shuffle=True, seed=3, epoch=lambda: epoch["now"])
    first = a.epoch_ends().clone()
    assert torch.equal(first, a.epoch_ends())  # same epoch, same order
    epoch["now"] = 1
    assert not torch.equal(first, a.epoch_ends())  # a new epoch reshuffles
    b = WindowLoader(p, ends, 2, 8, shuffle=True, seed=3, epoch=lambda: 1)
    assert torch.equal(a.epoch_ends(), b.epoch_ends())  # reproducible after a resume


def _leaks(batch: dict[str, torch.Tensor], panel, col: dict[str, int]) -> list[str]:
    """What a batch exposes. The target's tag is read from the SOURCE panel at the batch's target row,
    never from the window itself, so a window that moved (look-ahead) cannot move its reference too."""
    target_tag = panel.features[batch["row"], col["tag"]].unsqueeze(1)  # (B, 1)
    found = [leak for leak in ("leak_next_tag", "leak_nb_tag") if (batch["x"][:, :, col[leak]] == target_tag).any()]
    # every planted "next" tag in a window belongs to a row strictly before the target
    if not (batch["x"][:, :, col["leak_next_tag"]] < target_tag).all():
        found.append("a later row's tag")
    return found


class _ShiftedLoader(WindowLoader):
    """A deliberately broken loader: each window is served one row into the future of its target."""

    def __iter__(self):
        for batch in super().__iter__():
            yield {**batch, "x": gather_windows(self.panel.features, batch["row"] + 1, self.seq_len)}


def test_planted_label_never_reaches_a_window(tmp_path):
    """Plant each target's label and a unique tag in the NEXT row of its symbol and in the
    NEIGHBOURING symbol's row at the same time; no window may ever contain them."""
    frames = make_frames(n_symbols=3, rows=(80, 40, 40), n_features=2, seed=5)
    tag_base = {"train": 0, "val": 10_000, "test": 20_000}
    for split, df in frames.items():
        df["tag"] = (tag_base[split] + np.arange(len(df))).astype("float64")
        df["leak_next_label"] = 0.0
        df["leak_next_tag"] = -1.0
        df["leak_nb_label"] = 0.0
        df["leak_nb_tag"] = -1.0
        for s in range(3):
            own = df.index[df.symbol == f"S{s}"]
            df.loc[own[1:], "leak_next_label"] = df.loc[own[:-1], "label_h5"].fillna(0).to_numpy()
            df.loc[own[1:], "leak_next_tag"] = df.loc[own[:-1], "tag"].to_numpy()
            nb = df.index[df.symbol == f"S{(s + 1) % 3}"]
            df.loc[nb, "leak_nb_label"] = df.loc[own, "label_h5"].fillna(0).to_numpy()
            df.loc[nb, "leak_nb_tag"] = df.loc[own, "tag"].to_numpy()
    root = write_frames(tmp_path / "leak", frames)
    for context in (False, True):
        dm = WindowDataModule(root=str(root), seq_len=10, batch_size=16, context_from_previous_split=context)
        names = dm.feature_names
        col = {n: names.index(n) for n in ("tag", "leak_next_tag", "leak_nb_tag")}
        dm.setup("fit")
        dm.setup("test")
        for split in ("train", "val", "test"):
            p = dm.panel(split)
            served = 0
            for batch in WindowLoader(p, dm.ends[split], 10, 16):
                assert not _leaks(batch, p, col), f"{_leaks(batch, p, col)} exposed in {split} (context={context})"
                served += len(batch["row"])
            assert served == len(dm.ends[split]) > 0
    # the check has teeth: the same assertion, on a loader shifted one row into the future, fails
    p, ends = dm.panel("train"), dm.ends["train"]
    ends = ends[ends + 1 < len(p)]
    caught = [_leaks(b, p, col) for b in _ShiftedLoader(p, ends, 10, 16)]
    assert all("leak_next_tag" in c for c in caught), caught


def test_borrowed_context_never_ends_a_window_whatever_the_length(tmp_path):
    """Context borrowed for seq_len 10 sits at positions 0..8 of each symbol; asked for shorter windows, or
    for prediction (no label needed), those rows must still never become targets."""
    root = write_frames(tmp_path / "ctx", make_frames(n_symbols=2, rows=(40, 30, 30), n_features=2, seed=1))
    dm = WindowDataModule(root=str(root), seq_len=10, context_from_previous_split=True)
    dm.setup("fit")
    p = dm.panel("val")
    assert int(p.is_context.sum()) == 2 * 9
    for seq_len in (1, 3, 10):
        for require_label in (True, False):
            ends = valid_ends(p, seq_len, require_label=require_label)
            assert len(ends) > 0 and not p.is_context[ends].any(), (seq_len, require_label)
