"""``SplitData``: the upstream splits loaded, checked and indexed as windows, without Lightning."""

from __future__ import annotations

import inspect
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ensemble.data.constants import DEFAULT_DEMO_ROOT, NUM_CLASSES, SPLITS
from ensemble.data.contract import ColumnRoles, DataContractError, check_same_features
from ensemble.data.panel import SplitPanel, format_time, load_split, open_parquet, read_keys, read_roles, timezone
from ensemble.data.splits import check_no_overlap, check_symbol_lengths, join_panels, with_context
from ensemble.data.windows import valid_ends

_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}


class SplitData:
    """Train/val/test parquet splits, loaded and checked, as panels and the window ends of each split.

    Everything but serving batches: what trees (which never touch Lightning) and the Lightning
    ``WindowDataModule`` share. The constructor is the ``data:`` section of every config.

    Args:
        root: folder holding the three split files. The default demo folder is generated on first use.
        horizon: label horizon H; reads ``label_h{H}``, ``fwd_return_h{H}`` and ``sample_weight_h{H}``.
        seq_len: window length L (1 gives plain tabular rows, as trees use).
        batch_size: training windows per batch; ``eval_batch_size`` for val/test/predict (default: same).
        exclude: extra column patterns (fnmatch) that are never features.
        context_from_previous_split: val/test windows may start in the end of the preceding split
            (past features only; those rows never become targets).
        data_on_device: keep the split tensors on the trainer's device and gather batches there.
        seed: seeds the per-epoch shuffle.
        bars_per_year: bars in a year at this data's frequency, for annualised trading metrics.
        predict_split: which split ``ensemble predict`` runs on.
        feature_order: read the features by name in this order (a trained model's, e.g. a checkpoint's
            ``feature_names``) instead of the train file's; it must name exactly the train file's features.
    """

    def __init__(
        self,
        root: str = DEFAULT_DEMO_ROOT,
        horizon: int = 5,
        seq_len: int = 1,
        batch_size: int = 512,
        eval_batch_size: int | None = None,
        train_file: str = "train_scaled.parquet",
        val_file: str = "val_scaled.parquet",
        test_file: str = "test_scaled.parquet",
        datetime_col: str = "datetime",
        symbol_col: str = "symbol",
        exclude: list[str] | None = None,
        context_from_previous_split: bool = False,
        data_on_device: bool = False,
        seed: int = 0,
        bars_per_year: float = 252.0,
        predict_split: str = "test",
        feature_order: list[str] | None = None,
    ) -> None:
        super().__init__()  # cooperative: LightningDataModule's in WindowDataModule
        if seq_len < 1:
            raise DataContractError(f"data.seq_len must be >= 1, got {seq_len}")
        if horizon < 1:
            raise DataContractError(f"data.horizon must be >= 1, got {horizon}")
        if predict_split not in SPLITS:
            raise DataContractError(f"data.predict_split must be one of {SPLITS}, got '{predict_split}'")
        self._record_hyperparameters(inspect.currentframe())
        self.datetime_col, self.symbol_col = datetime_col, symbol_col
        self.root = Path(root)
        self.horizon = horizon
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.files = {"train": train_file, "val": val_file, "test": test_file}
        self.exclude = tuple(exclude or ())
        self.context_from_previous_split = context_from_previous_split
        self.data_on_device = data_on_device
        self.seed = seed
        self.bars_per_year = bars_per_year
        self.predict_split = predict_split
        self.feature_order = list(feature_order) if feature_order is not None else None
        self.panels: dict[str, SplitPanel] = {}
        self.ends: dict[str, torch.Tensor] = {}
        self._roles: ColumnRoles | None = None

    # -- schema, read lazily so LightningCLI can link these into the model right after __init__
    def path(self, split: str) -> Path:
        return self.root / self.files[split]

    @property
    def roles(self) -> ColumnRoles:
        if self._roles is None:
            self._ensure_demo()
            roles = read_roles(self.path("train"), self.datetime_col, self.symbol_col, self.exclude)
            roles.require_horizon(self.horizon, self.path("train"))
            if self.feature_order is not None:
                roles = self._in_feature_order(roles)
            self._roles = roles
        return self._roles

    def _in_feature_order(self, roles: ColumnRoles) -> ColumnRoles:
        """``roles`` with its features in ``feature_order``; every split is then read by name in it."""
        ordered = replace(roles, features=tuple(self.feature_order))
        if len(set(self.feature_order)) != len(self.feature_order):
            raise DataContractError(f"data.feature_order names a feature twice: {self.feature_order}")
        check_same_features(ordered, roles, Path("data.feature_order"), self.path("train"))
        return ordered

    @property
    def feature_names(self) -> list[str]:
        return list(self.roles.features)

    @property
    def num_features(self) -> int:
        return len(self.roles.features)

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES

    def _ensure_demo(self) -> None:
        if self.path("train").exists():
            return
        if self.root.as_posix().rstrip("/") != DEFAULT_DEMO_ROOT:
            raise DataContractError(f"{self.path('train')}: file not found (data.root='{self.root}')")
        from ensemble.data.demo import make_demo_splits

        print(f"Demo data not found: generating it in {self.root} (one time, deterministic) ...")
        make_demo_splits(self.root)

    # -- loading
    def _check_all_splits(self) -> None:
        roles = self.roles
        keys = []
        for split in SPLITS:
            path = self.path(split)
            pf = open_parquet(path)
            other = read_roles(path, roles.datetime, roles.symbol, self.exclude)
            check_same_features(roles, other, self.path("train"), path)
            other.require_horizon(self.horizon, path)
            keys.append((path, *read_keys(pf, path, roles), timezone(pf, roles.datetime)))
        check_no_overlap(keys)

    def panel(self, split: str) -> SplitPanel:
        """The loaded split (with borrowed context if enabled), loading it on first use."""
        if split not in self.panels:
            panel = load_split(self.path(split), self.roles, self.horizon)
            index = SPLITS.index(split)
            if self.context_from_previous_split and index > 0:
                panel = with_context(panel, self.panel(SPLITS[index - 1]), self.seq_len)
            check_symbol_lengths(panel, self.seq_len)
            ends = valid_ends(panel, self.seq_len)
            if ends.numel() == 0:
                raise DataContractError(f"{panel.path}: no labelled row can end a window of seq_len={self.seq_len}")
            device = self._device()
            if device is not None:
                panel = _to_device(panel, device)
                ends = ends.to(device)
            self.panels[split], self.ends[split] = panel, ends
        return self.panels[split]

    def load_span(self, splits: tuple[str, ...]) -> SplitPanel:
        """``splits`` (consecutive, e.g. train and val) checked as ``setup`` checks them, loaded once and joined
        into one panel sorted by (symbol, time): the span walk-forward cuts its folds in. No borrowed context:
        the earlier split's rows are real rows of the span.

        Raises:
            DataContractError: as ``setup``, or a symbol with fewer than ``seq_len`` rows in the span.
        """
        self._check_all_splits()
        panel = join_panels([load_split(self.path(s), self.roles, self.horizon) for s in splits])
        check_symbol_lengths(panel, self.seq_len)
        return panel

    def use_windows(self, panel: SplitPanel, ends: dict[str, torch.Tensor]) -> None:
        """Serve ``panel`` (one object for every split) with the given window ends per split instead of loading
        the files: a walk-forward fold's train / inner-val / test-block targets, as index views of one span.
        ``setup`` then finds the panels filled and loads nothing."""
        if set(ends) != set(SPLITS):
            raise ValueError(f"use_windows needs the ends of {SPLITS}, got {sorted(ends)}")
        self.panels = {split: panel for split in SPLITS}
        self.ends = dict(ends)

    def _record_hyperparameters(self, frame: Any) -> None:
        """Where the Lightning datamodule saves its constructor's arguments; nothing here."""

    def _device(self) -> torch.device | None:
        """Where the split tensors live; the CPU unless a Lightning trainer says otherwise."""
        return None

    def setup(self, stage: str) -> None:
        if not self.panels:
            self._check_all_splits()
        for split in _STAGE_SPLITS.get(stage, (self.predict_split,)):
            self.panel(split)

    def describe(self) -> str:
        """A short human summary of the splits and their windows."""
        lines = [
            f"root={self.root}  horizon={self.horizon}  seq_len={self.seq_len}  features={self.num_features}",
            f"{'split':<6}{'rows':>10}{'symbols':>9}{'windows':>10}  short/flat/long   time range",
        ]
        for split in SPLITS:
            p, ends = self.panel(split), self.ends[split]
            counts = torch.bincount(p.label[ends].cpu(), minlength=NUM_CLASSES).tolist()
            share = "/".join(f"{c / max(1, sum(counts)):.2f}" for c in counts)
            t0, t1 = (format_time(int(v), p.tz)[:16] for v in (p.time.min(), p.time.max()))
            lines.append(f"{split:<6}{len(p):>10}{len(p.symbols):>9}{len(ends):>10}  {share:<16} {t0} .. {t1}")
        return "\n".join(lines)


def _to_device(panel: SplitPanel, device: torch.device) -> SplitPanel:
    fields = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(panel).items()}
    return SplitPanel(**fields)
