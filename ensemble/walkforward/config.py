"""The ``wf`` settings of a walk-forward, checked once, from the command line or an experiment's section."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ensemble.data.folds import FoldSpec
from ensemble.errors import ConfigError, unknown_key
from ensemble.training.runs import check_name

SPANS = ("trainval", "all")
HELP = {
    "folds": "test blocks the span is cut into (>= 2)",
    "mode": "expanding (train on everything before the block) or rolling (the last --wf.train_bars bars)",
    "train_bars": "rolling mode: bars per symbol in each fold's training window, inner validation included",
    "val_bars": "inner-validation targets per symbol at the end of each training window (the purged bars come on top)",
    "val_fraction": "inner-validation targets as a fraction of each symbol's training window (without val_bars)",
    "embargo": "bars dropped as targets before each boundary, beyond the purged label windows (>= 0)",
    "refit_every": "refit on every k-th fold; the folds between reuse the last fold's model (>= 1)",
    "span": "trainval: walk over train and val, keep test as an untouched holdout; all: walk over test too",
    "name": "the walk-forward's folder name (default: <model>_h<horizon>)",
    "out": "the output folder (default: walkforward/<name>)",
}


@dataclass(frozen=True)
class WalkForward(FoldSpec):
    """A walk-forward's settings: ``FoldSpec``'s fields (how folds are cut) plus how folds are run and where they
    land.

    Raises:
        DataContractError: a fold-cutting value out of range (as ``FoldSpec``), naming its ``wf.*`` key.
        ConfigError: another value out of range, naming its ``wf.*`` key.
    """

    refit_every: int = 1
    span: str = "trainval"
    name: str | None = None
    out: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()  # the fold arithmetic's own checks, with the key in each message
        if self.refit_every < 1:
            raise ConfigError(f"wf.refit_every must be >= 1, got {self.refit_every}")
        if self.span not in SPANS:
            raise ConfigError(f"wf.span must be one of {', '.join(SPANS)}, got '{self.span}'")
        if self.name is not None:
            check_name(self.name, "wf.name")

    def spec(self) -> FoldSpec:
        """The fold-cutting part.

        Raises:
            DataContractError: as ``FoldSpec``.
        """
        return FoldSpec(**{f.name: getattr(self, f.name) for f in fields(FoldSpec)})

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits the span joins."""
        return ("train", "val", "test") if self.span == "all" else ("train", "val")

    def record(self) -> dict[str, Any]:
        """What defines the folds and their runs (not where they land), for the resume fingerprint."""
        return {k: v for k, v in asdict(self).items() if k not in ("name", "out")}

    @classmethod
    def from_mapping(cls, values: dict[str, Any], where: str = "walkforward") -> WalkForward:
        """From an experiment's ``walkforward:`` section.

        Raises:
            ConfigError: an unknown key, naming it and ``where``.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise unknown_key(f"{where}.{unknown[0]}", sorted(known), "walk-forward key")
        return cls(**values)
