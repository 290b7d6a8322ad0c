"""The ``trading:`` section of a run config: parsed once, handed to the model, and reported.

Every config (nets, trees, blends, walk-forward, experiments) carries the same section; the model receives it as
a plain dict (``TradingConfig.as_dict``) so checkpoints store values, never pickled objects.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Mapping
from typing import Any

from ensemble.errors import ConfigError, unknown_key
from ensemble.metrics.config import TradingConfig

_ANNOUNCED: set[tuple[str, float]] = set()  # once per process: a tuning study builds one job per trial

BARS_PER_YEAR_TOLERANCE = 2.0  # a given annualisation may differ from the inferred one by up to this factor

# Keys that moved between sections: an old config fails with the new place rather than "not expected".
MOVED_KEYS = {"data.bars_per_year": "trading.bars_per_year"}


def add_trading_arguments(parser: Any, target: str) -> None:
    """Add ``--trading.*`` (the ``TradingConfig`` fields) to a jsonargparse ``parser`` and link the section, as a
    dict, into the model argument ``target`` (e.g. ``model.init_args.trading``) when classes are instantiated."""
    parser.add_class_arguments(TradingConfig, "trading")
    parser.link_arguments("trading", target, compute_fn=TradingConfig.as_dict, apply_on="instantiate")


def trading_section(config: Mapping[str, Any]) -> TradingConfig:
    """The checked ``trading:`` section of a resolved config dict (defaults when it has none).

    Raises:
        ConfigError: an unknown key or a bad value, named ``trading.<key>``.
    """
    section = config.get("trading")
    if section is not None and not isinstance(section, Mapping):
        raise ConfigError(f"trading: expected a mapping of keys ({', '.join(TradingConfig.__dataclass_fields__)})")
    return TradingConfig.from_mapping(dict(section) if section else None)


def check_trading(namespace: Any) -> TradingConfig:
    """The ``trading`` group of a parsed jsonargparse namespace, checked before anything is built.

    Raises:
        ConfigError: a bad value, named ``trading.<key>``.
    """
    section = namespace.get("trading") if hasattr(namespace, "get") else None
    return TradingConfig.from_mapping(section.as_dict() if hasattr(section, "as_dict") else section)


def check_moved_keys(config: Mapping[str, Any]) -> None:
    """Refuse a key that moved to another section, naming where it lives now.

    Raises:
        ConfigError: e.g. ``data.bars_per_year moved to trading.bars_per_year``.
    """
    for old, new in MOVED_KEYS.items():
        section, key = old.split(".")
        if isinstance(config.get(section), Mapping) and key in config[section]:
            raise ConfigError(f"{old} moved to {new}; move the key in your config (null infers it from the data)")


def check_trading_flags(argv: list[str]) -> None:
    """Refuse a ``--section.key`` flag whose key moved (``--data.bars_per_year``), naming its new place, and a
    ``--trading.<key>`` that is no trading key, naming the closest one (the parser would only say "unrecognized
    arguments").

    Raises:
        ConfigError: e.g. ``--data.bars_per_year moved to --trading.bars_per_year``, or ``--trading.cots_bps:
            unknown trading key (did you mean 'cost_bps'?); known: ...``.
    """
    for arg in argv:
        key = arg.split("=", 1)[0].removeprefix("--")
        if key in MOVED_KEYS:
            raise ConfigError(f"--{key} moved to --{MOVED_KEYS[key]} (null infers it from the data)")
        section, dot, name = key.partition(".")
        if arg.startswith("--") and section == "trading" and dot and name not in TradingConfig.__dataclass_fields__:
            raise unknown_key(f"--{key}", TradingConfig.__dataclass_fields__, "trading key")


def check_bars_per_year(given: float | None, inferred: float | None, source: str) -> None:
    """Refuse a given ``trading.bars_per_year`` more than ``BARS_PER_YEAR_TOLERANCE`` times away (either way) from
    the value the data give: the one check every place a trading section enters applies (fit, blend).

    Args:
        given: the set value (bars per year); None (inferred) passes.
        inferred: the data's own value (bars per year); None or 0 (unknown) passes.
        source: what ``inferred`` came from, for the message (e.g. "the timestamps of data/train.parquet").

    Raises:
        ConfigError: e.g. ``trading.bars_per_year is 252, but the timestamps of ... give 8760 bars a year ...``.
    """
    if given is None or not inferred or max(given / inferred, inferred / given) <= BARS_PER_YEAR_TOLERANCE:
        return
    raise ConfigError(f"trading.bars_per_year is {given:g}, but {source} give {inferred:g} bars a year "
                      f"(x{given / inferred:.2g}); set trading.bars_per_year: null to use the data's own, or the "
                      "value for this data")


def announce_bars_per_year(trading: TradingConfig, inferred: float, source: str, show: bool = True,
                           symbols: int | None = None) -> None:
    """Say on stderr which annualisation the trading metrics use when the config does not set one; refuse a set
    value that contradicts the data's own clock.

    A bundled config states the demo's daily 252; copied onto hourly 24/7 bars it would annualise every Sharpe
    by sqrt(252 / 8760), about 5.9x too low, without a word. Beyond ``BARS_PER_YEAR_TOLERANCE`` either way, a given
    value is refused; within it (252 against 365 for daily bars, a 6.5- against a 7-bar session) it is the
    user's convention and wins.

    Args:
        trading: the run's section; nothing is printed when it sets ``bars_per_year``.
        inferred: the value inferred from the data's timestamps (bars per year).
        source: where it was inferred from, e.g. the train file's path.
        show: print the inferred value (False on DDP ranks other than 0, which still check).
        symbols: the train split's symbol count: a ``topk`` book with ``2k`` above it is refused here, before
            training, rather than when the first metric is computed.

    Raises:
        ConfigError: ``trading.bars_per_year`` differs from ``inferred`` by more than the tolerance, or
            ``trading.k`` is more than half of ``symbols`` (naming ``source``).
    """
    problems = []  # both data checks in one line: fixing k should not reveal bars_per_year next
    if symbols is not None:
        try:
            trading.check_symbols(symbols)
        except ConfigError as err:
            problems.append(f"{err} in {source}")
    try:
        check_bars_per_year(trading.bars_per_year, inferred, f"the timestamps of {source}")
    except ConfigError as err:
        problems.append(str(err))
    if problems:
        raise ConfigError("; ".join(problems))
    if show and trading.bars_per_year is None and (str(source), inferred) not in _ANNOUNCED:
        _ANNOUNCED.add((str(source), inferred))
        print(f"trading.bars_per_year not set: {inferred:g} bars a year, inferred from the timestamps of {source} "
              "(stored as */bars_per_year in metrics.json)", file=sys.stderr)


def check_against_data(config: Mapping[str, Any]) -> None:
    """Check a resolved run config's ``trading:`` section against its data before anything trains: the same
    checks a fit makes once its data module exists (``announce_bars_per_year``: a ``topk`` book's ``k`` against
    the train split's symbols, a given ``bars_per_year`` against the timestamps). Reads only the train split's
    datetime and symbol columns. An experiment runs it for every cell before launching any.

    Raises:
        ConfigError: a bad ``trading`` value, or one that does not fit the data (naming the train file).
        DataContractError: the train split cannot be read.
    """
    from ensemble.data.split_data import SplitData  # the data layer, only when a config is checked

    data_keys = inspect.signature(SplitData.__init__).parameters
    data = SplitData(**{k: v for k, v in dict(config.get("data") or {}).items() if k in data_keys})
    announce_bars_per_year(trading_section(config), data.bars_per_year, data.path("train"), show=False,
                           symbols=data.train_symbols)
