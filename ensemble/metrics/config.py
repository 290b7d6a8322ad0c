"""The ``trading:`` section of a config: costs, sizing, book, benchmark and annualisation.

A plain dataclass, so every layer above (nets, trees, blends, experiments, walk-forward) can carry it and the
CLI can parse it. Bad values fail at construction with one line naming the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from ensemble.errors import ConfigError, unknown_key

SIZINGS = ("argmax", "prob_diff", "threshold")
BOOKS = ("per_symbol", "topk")
BENCHMARKS = ("equal_weight", "none")


@dataclass(frozen=True)
class TradingConfig:
    """How predictions become a book, and how the book is charged and judged.

    Args:
        cost_bps: commission in basis points of traded notional, charged per unit of |change in weight|,
            per symbol (see the convention in ``metrics/trading.py``).
        slippage_bps: added to ``cost_bps``; kept apart only so reports can say which is which.
        sizing: per-symbol position from the class probabilities (p_short, p_flat, p_long):
            ``argmax``: the arg-max class as -1/0/+1; ``prob_diff``: p_long - p_short in [-1, 1];
            ``threshold``: the arg-max class when its probability is >= ``threshold``, else flat.
        threshold: used by ``sizing="threshold"``; must lie in (1/3, 1): at or below 1/3 every row trades.
        book: ``per_symbol``: equal-weight book of every symbol, each sized as above;
            ``topk``: at each timestamp long the ``k`` symbols with the highest score p_long - p_short and
            short the ``k`` lowest, each at 1/(2k) of capital (dollar-neutral, gross exposure 1);
            ``sizing`` does not apply, and any but ``argmax`` is refused.
        k: names per leg of the ``topk`` book; at most half the symbols (checked by :meth:`check_symbols`).
        benchmark: ``equal_weight``: long every symbol at 1/N (same universe, same cost convention);
            ``none``: no excess return or information ratio is reported.
        bars_per_year: annualisation; ``None``: inferred from the timestamps (``infer_bars_per_year``).

    Raises:
        ConfigError: (a ``ValueError``) one line naming the key, e.g. ``trading.cost_bps must be >= 0, got -1``.
    """

    cost_bps: float = 5.0
    slippage_bps: float = 0.0
    sizing: Literal["argmax", "prob_diff", "threshold"] = "argmax"
    threshold: float = 0.5
    book: Literal["per_symbol", "topk"] = "per_symbol"
    k: int = 1
    benchmark: Literal["equal_weight", "none"] = "equal_weight"
    bars_per_year: float | None = None

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:  # every problem at once: fixing one key should not reveal the next
            raise ConfigError("; ".join(problems))

    def problems(self) -> list[str]:
        """Every bad value, one phrase each naming its key; ``threshold`` is judged only under
        ``sizing: threshold`` and ``k`` only under ``book: topk``, the settings that read them. A ``topk`` book
        refuses any sizing but the default ``argmax``, which it does not read either."""
        out = []
        for key in ("cost_bps", "slippage_bps"):
            value = getattr(self, key)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                out.append(f"trading.{key} must be >= 0, got {value}")
        for key, allowed in (("sizing", SIZINGS), ("book", BOOKS), ("benchmark", BENCHMARKS)):
            if getattr(self, key) not in allowed:
                out.append(f"trading.{key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        if self.book == "topk" and self.sizing != "argmax" and self.sizing in SIZINGS:
            # a silent no-op would read as if the sizing had shaped the book
            out.append(f"trading.sizing does not apply to book: topk (equal-weight legs ranked by p_long - p_short); "
                       f"leave it argmax, got {self.sizing!r}")
        if self.sizing == "threshold" and not (isinstance(self.threshold, int | float) and 1 / 3 < self.threshold < 1):
            out.append(f"trading.threshold must lie in (1/3, 1), got {self.threshold}")
        if "k" in self.applicable() and (isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1):
            out.append(f"trading.k must be an integer >= 1, got {self.k}")
        bpy = self.bars_per_year
        if bpy is not None and not (isinstance(bpy, int | float) and math.isfinite(bpy) and bpy > 0):
            out.append(f"trading.bars_per_year must be > 0 (or null to infer it), got {bpy}")
        return out

    def applicable(self) -> set[str]:
        """The keys this book reads: ``threshold`` only with ``sizing: threshold``, ``k`` only with ``book:
        topk``, and ``sizing`` not with ``book: topk`` (which ranks the score p_long - p_short)."""
        skip = set()
        if self.sizing != "threshold" or self.book == "topk":
            skip.add("threshold")
        if self.book != "topk":
            skip.add("k")
        else:
            skip.add("sizing")
        return set(self.__dataclass_fields__) - skip

    @classmethod
    def from_mapping(cls, values: dict[str, Any] | TradingConfig | None) -> TradingConfig:
        """The config of a ``trading:`` section (a dict, as checkpoints and run configs store it); None gives
        the defaults.

        Raises:
            ConfigError: an unknown key (named, with the known ones) or a bad value.
        """
        if values is None or isinstance(values, TradingConfig):
            return values or cls()
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise unknown_key(f"trading.{unknown[0]}", cls.__dataclass_fields__)
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """The section as plain values, for checkpoints, run configs and metrics.json."""
        return dict(vars(self))

    def describe(self) -> str:
        """A few words for figure titles, e.g. ``5 bps, arg-max, per-symbol book`` or ``7 bps, top-10 book``."""
        cost = f"{self.cost_bps + self.slippage_bps:g} bps"
        if self.book == "topk":
            return f"{cost}, top-{self.k} book"
        sizing = {"argmax": "arg-max", "prob_diff": "p_long - p_short",
                  "threshold": f"arg-max if p >= {self.threshold:g}"}[self.sizing]  # fmt: skip
        return f"{cost}, {sizing}, per-symbol book"

    @property
    def cost_rate(self) -> float:
        """Cost + slippage as a fraction of traded notional: (cost_bps + slippage_bps) * 1e-4."""
        return (self.cost_bps + self.slippage_bps) * 1e-4

    def check_symbols(self, n_symbols: int) -> None:
        """Checks what needs the universe: a ``topk`` book needs 2k <= symbols.

        Raises:
            ConfigError: ``trading.k must be <= half the symbols ...``.
        """
        if self.book == "topk" and 2 * self.k > n_symbols:
            raise ConfigError(f"trading.k must be <= half the symbols ({n_symbols // 2} of {n_symbols}), got {self.k}")
