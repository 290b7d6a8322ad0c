"""``SplitData``: the upstream splits loaded, checked and indexed as windows, without Lightning."""

from __future__ import annotations

import inspect
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ensemble import console
from ensemble.data.calendar import infer_bars_per_year
from ensemble.data.constants import DEFAULT_DEMO_ROOT, NUM_CLASSES, SPLITS
from ensemble.data.contract import ColumnRoles, DataContractError, check_same_features
from ensemble.data.normalize import NormalizeMethod, Normalizer, check_method, window_rows
from ensemble.data.panel import (
    SplitPanel,
    format_time,
    label_present,
    load_split,
    open_parquet,
    read_keys,
    read_roles,
    timezone,
)
from ensemble.data.purge import SplitKeys, label_overlaps, overlap_error
from ensemble.data.splits import check_no_overlap, check_symbol_lengths, join_panels, with_context
from ensemble.data.windows import valid_ends

# fit loads test too: a bad value in any split (NaN, inf, beyond float32, a bad label or weight) is refused before
# epoch 1, naming its file, column, symbol and row, not after training; a fit evaluates test from it afterwards
_STAGE_SPLITS = {"fit": SPLITS, "validate": ("val",), "test": ("test",)}


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
        predict_split: which split ``ensemble predict`` runs on.
        feature_order: read the features by name in this order (a trained model's, e.g. a checkpoint's
            ``feature_names``) instead of the train file's; it must name exactly the train file's features.
        normalize: ``none``, ``zscore`` or ``robust`` per feature, fitted on the rows the training windows read
            (``ensemble.data.normalize``); a checkpoint's stored statistics replace a refit (``load_state_dict``).
        normalize_per_symbol: one set of statistics per symbol (pooled ones for a symbol without training rows).
        purge_labels: null the labels whose ``h``-bar window reaches the next split (``ensemble.data.purge``)
            instead of refusing the splits; those rows stay as past context.
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
        predict_split: str = "test",
        feature_order: list[str] | None = None,
        normalize: NormalizeMethod = "none",
        normalize_per_symbol: bool = False,
        purge_labels: bool = False,
    ) -> None:
        super().__init__()  # cooperative: LightningDataModule's in WindowDataModule
        if seq_len < 1:
            raise DataContractError(f"data.seq_len must be >= 1, got {seq_len}")
        if horizon < 1:
            raise DataContractError(f"data.horizon must be >= 1, got {horizon}")
        if predict_split not in SPLITS:
            raise DataContractError(f"data.predict_split must be one of {SPLITS}, got '{predict_split}'")
        check_method(normalize)
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
        self._bars_per_year: float | None = None
        self._train_symbols: int | None = None
        self._windows_given = False  # use_windows filled panels and ends (a walk-forward fold)
        self.predict_split = predict_split
        self.feature_order = list(feature_order) if feature_order is not None else None
        self.normalize, self.normalize_per_symbol, self.purge_labels = normalize, normalize_per_symbol, purge_labels
        self.normalizer: Normalizer | None = None  # fitted at the end of setup, or loaded from a checkpoint
        self.panels: dict[str, SplitPanel] = {}
        self.ends: dict[str, torch.Tensor] = {}
        self._roles: ColumnRoles | None = None
        self._normalized: list[torch.Tensor] = []  # feature tensors already normalised (never twice)
        self._purged: dict[str, dict[str, np.ndarray]] | None = None  # split -> symbol -> UTC ns to unlabel

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
    def bars_per_year(self) -> float:
        """Bars per year at this data's frequency, inferred from the train split's timestamps
        (``ensemble.data.calendar.infer_bars_per_year``); ``trading.bars_per_year``, when set, wins over it."""
        if self._bars_per_year is None:
            path = self.path("train")
            pf = open_parquet(path)
            _, times, names = read_keys(pf, path, self.roles)
            try:  # weekdays on the data's own wall clock: UTC instants of a Tokyo midnight are the day before
                self._bars_per_year = infer_bars_per_year(times, timezone(pf, self.roles.datetime))
            except ValueError as err:
                raise DataContractError(f"{path}: {err} (trading.bars_per_year)") from err
            self._train_symbols = len(names)
        return self._bars_per_year

    @property
    def train_symbols(self) -> int:
        """Symbols in the train split (read with ``bars_per_year``): the universe a ``topk`` book is checked
        against before training, not after it."""
        if self._train_symbols is None:
            _ = self.bars_per_year
        return int(self._train_symbols)

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

        console.say(f"Demo data not found: generating it in {self.root} (one time, deterministic) ...")
        make_demo_splits(self.root)

    # -- loading
    def _check_all_splits(self, label_windows: bool = True) -> None:
        """Same features, no time overlap, and (``label_windows``) no label window reaching the next split (or
        ``purge_labels``)."""
        roles = self.roles
        keys, split_keys = [], []
        for split in SPLITS:
            path = self.path(split)
            pf = open_parquet(path)
            other = read_roles(path, roles.datetime, roles.symbol, self.exclude)
            check_same_features(roles, other, self.path("train"), path)
            other.require_horizon(self.horizon, path)
            codes, times, names = read_keys(pf, path, roles)
            tz = timezone(pf, roles.datetime)
            keys.append((path, codes, times, names, tz))
            labelled = label_present(pf, path, other.labels[self.horizon], codes, names)
            split_keys.append(SplitKeys(path, codes, times, names, tz, labelled))
        check_no_overlap(keys)
        overlaps = label_overlaps(split_keys, self.horizon) if label_windows else []
        if overlaps and not self.purge_labels:
            overlap_error(split_keys, SPLITS, overlaps, self.horizon)
        self._purged = {split: {} for split in SPLITS}
        for overlap in overlaps:
            self._purged[SPLITS[overlap.early]][overlap.symbol] = overlap.times

    def panel(self, split: str) -> SplitPanel:
        """The loaded split (with borrowed context if enabled), loading it on first use."""
        if split not in self.panels:
            if self._purged is None:
                self._check_all_splits()
            panel = self._purge(load_split(self.path(split), self.roles, self.horizon), split)
            if self.normalizer is not None:  # before borrowing context: the previous panel is normalised too
                self.normalizer.apply(panel, self.feature_names)
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
            if self.normalizer is not None:
                self._normalized.append(panel.features)
            self.panels[split], self.ends[split] = panel, ends
        return self.panels[split]

    def _purge(self, panel: SplitPanel, split: str) -> SplitPanel:
        """Null the labels (and weights) of the rows ``purge_labels`` found reaching the next split."""
        for symbol, times in (self._purged or {}).get(split, {}).items():
            code = panel.symbols.index(symbol)
            rows = torch.from_numpy((panel.symbol.numpy() == code) & np.isin(panel.time.numpy(), times))
            panel.label[rows], panel.weight[rows] = -1, 0.0
        return panel

    # -- normalisation
    def normalize_panels(self) -> None:
        """Fit the normalisation (unless loaded from a checkpoint) on the feature rows the training windows read
        (``ends["train"]`` and their ``seq_len - 1`` look-back rows: borrowed context counts, other splits'
        rows never do), then normalise each distinct loaded panel once, in place.

        Called at the end of ``setup``; ``train``, ``val`` and ``test`` may be one panel object with different
        ends (a walk-forward fold), which is normalised once.
        """
        if self.normalizer is None:
            train = self.panel("train")
            # no rows to gather for "none" (and none to copy off the device: data_on_device keeps them there)
            none = self.normalize == "none"
            rows = torch.empty(0, dtype=torch.long) if none else window_rows(self.ends["train"], self.seq_len)
            self.normalizer = Normalizer.fit(train, rows, self.normalize, self.feature_names,
                                             self.normalize_per_symbol)  # fmt: skip
        for panel in self.panels.values():
            if not any(panel.features is done for done in self._normalized):
                self.normalizer.apply(panel, self.feature_names)
                self._normalized.append(panel.features)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of the data: the fitted normalisation (Lightning saves this for nets)."""
        return {"normalizer": self.normalizer.state_dict()} if self.normalizer is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any], source: str = "checkpoint") -> None:
        """Use a checkpoint's stored normalisation instead of refitting one. Raw panels (loaded, or a fold's
        windows from ``use_windows``) are kept and normalised with it by ``setup``; panels already normalised
        with other statistics are dropped and reloaded on next use (Lightning restores after ``setup``).

        Raises:
            DataContractError: the stored statistics (from ``source``, for the message) are damaged, or a fold's
                given windows were already normalised with other statistics (they cannot be reloaded).
        """
        if "normalizer" not in state_dict:
            return
        stored = Normalizer.from_state(state_dict["normalizer"], source)
        if self.normalizer is not None and self.normalizer.state_dict() == stored.state_dict():
            return
        if self._normalized:  # mixing raw and normalised rows (borrowed context) must never happen
            if self._windows_given:
                raise DataContractError(f"{source}: a walk-forward fold's windows were normalised before its "
                                        "checkpoint's statistics arrived; load the checkpoint first")  # fmt: skip
            self.panels, self.ends, self._normalized = {}, {}, []
        self.normalizer = stored

    def load_span(self, splits: tuple[str, ...]) -> SplitPanel:
        """``splits`` (consecutive, e.g. train and val) checked as ``setup`` checks them, loaded once and joined
        into one panel sorted by (symbol, time): the span walk-forward cuts its folds in. No borrowed context:
        the earlier split's rows are real rows of the span.

        Raises:
            DataContractError: as ``setup``, or a symbol with fewer than ``seq_len`` rows in the span.
        """
        # the upstream boundaries are interior to the span, where the folds purge exactly (in each symbol's bars),
        # and the held-out split after it is never a fold's target: no split label-overlap check to pass here
        self._check_all_splits(label_windows=False)
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
        self._windows_given = True
        self._purged = {split: {} for split in SPLITS}  # checked when the span was loaded (``load_span``)

    def _record_hyperparameters(self, frame: Any) -> None:
        """Where the Lightning datamodule saves its constructor's arguments; nothing here."""

    def _device(self) -> torch.device | None:
        """Where the split tensors live; the CPU unless a Lightning trainer says otherwise."""
        return None

    def setup(self, stage: str) -> None:
        if self._purged is None:
            self._check_all_splits()
        for split in _STAGE_SPLITS.get(stage, (self.predict_split,)):
            self.panel(split)
        self.normalize_panels()

    def class_counts(self, split: str) -> torch.Tensor:
        """(3,) int64 counts of short/flat/long among ``split``'s window ends (the rows a model learns from or is
        judged on), loading the split on first use."""
        panel = self.panel(split)
        return torch.bincount(panel.label[self.ends[split]].cpu(), minlength=NUM_CLASSES)

    def describe(self) -> str:
        """A short human summary of the splits and their windows."""
        lines = [
            f"root={self.root}  horizon={self.horizon}  seq_len={self.seq_len}  features={self.num_features}",
            f"{'split':<6}{'rows':>10}{'symbols':>9}{'windows':>10}  short/flat/long   time range",
        ]
        for split in SPLITS:
            p, ends = self.panel(split), self.ends[split]
            counts = self.class_counts(split).tolist()
            share = "/".join(f"{c / max(1, sum(counts)):.2f}" for c in counts)
            t0, t1 = (format_time(int(v), p.tz)[:16] for v in (p.time.min(), p.time.max()))
            lines.append(f"{split:<6}{len(p):>10}{len(p.symbols):>9}{len(ends):>10}  {share:<16} {t0} .. {t1}")
        return "\n".join(lines)


def _to_device(panel: SplitPanel, device: torch.device) -> SplitPanel:
    fields = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(panel).items()}
    return SplitPanel(**fields)
