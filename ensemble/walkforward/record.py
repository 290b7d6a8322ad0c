"""``walkforward.json``: what a walk-forward's folds were trained with, so a re-run resumes only the same setup.

It holds the config (all but where runs land), the ``wf`` settings and a stamp of each split file. A re-run with
another config, other ``wf`` settings or rewritten split files is refused instead of mixing folds of two setups.

The ``trading`` section is recorded with the config (out-of-fold blends read it) but is not compared: costs,
sizing, book and benchmark only book the predictions into returns, they train nothing (unless a checkpoint or
early-stopping monitor watches a trading metric, e.g. ``val/sharpe_net``: then they choose the model and count
as training settings). A re-run with another ``trading`` section keeps every finished fold and books the stored
out-of-fold (and final test) predictions again.

The record is written only once the run's inputs passed every check (``runner.run_walkforward``), so a start that
fails on a bad value leaves nothing that refuses the corrected command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ensemble.errors import ConfigError
from ensemble.experiments.cells import fingerprint
from ensemble.io import write_json
from ensemble.metrics.suite import books_on_trading
from ensemble.training.config import changed_keys, get_dotted
from ensemble.walkforward.config import WalkForward

RECORD = "walkforward.json"


def stamp(path: Path) -> list[int]:
    """[size in bytes, mtime in ns] of a split file (it exists: ``fold.check_data_files``): a rewritten file (new
    labels upstream) changes it."""
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def monitors(config: dict[str, Any]) -> list[str]:
    """The metrics that choose a run's model: ``checkpoint.monitor`` (default ``val/log_loss``) and the monitor of
    every early-stopping or checkpoint callback in ``trainer.callbacks``."""
    found = [get_dotted(config, "checkpoint.monitor", None) or "val/log_loss"]
    for callback in get_dotted(config, "trainer.callbacks", None) or []:
        if isinstance(callback, dict) and (callback.get("init_args") or {}).get("monitor"):
            found.append(callback["init_args"]["monitor"])
    return found


def trading_trains(config: dict[str, Any]) -> bool:
    """Whether ``config``'s ``trading`` section chooses its model: a monitor watches a trading metric."""
    return any(books_on_trading(m) for m in monitors(config))


def defining(config: dict[str, Any]) -> dict[str, Any]:
    """What defines a walk-forward's runs in ``config``: all but where they land (tracking, ckpt_path)."""
    return {k: v for k, v in config.items() if k not in ("tracking", "ckpt_path")}


def training(config: dict[str, Any]) -> dict[str, Any]:
    """What the folds were trained with: ``defining`` without the ``trading`` section, unless it trains
    (``trading_trains``)."""
    kept = defining(config)
    return kept if trading_trains(config) else {k: v for k, v in kept.items() if k != "trading"}


def cell_fingerprint(config: dict[str, Any], wf: WalkForward) -> str:
    """An experiment cell's folder name for ``config`` and ``wf`` (the whole defining config, trading included:
    an experiment's folders keep the names they were given)."""
    return fingerprint({**defining(config), "wf": wf.record()})


def make_record(config: dict[str, Any], wf: WalkForward, files: dict[str, list[int]]) -> dict[str, Any]:
    """The record of a walk-forward of ``config`` with ``wf`` on split files ``files`` (split -> ``stamp``):
    ``config`` is the whole ``defining`` config (its ``trading`` section is the one the outputs are booked with,
    which out-of-fold blends read); ``fingerprint`` covers only what trains the folds."""
    return {"fingerprint": fingerprint({**training(config), "wf": wf.record()}), "wf": wf.record(),
            "config": defining(config), "files": files}  # fmt: skip


def check_record(out: Path, record: dict[str, Any]) -> list[str]:
    """Refuse a re-run into ``out`` whose ``record`` differs from the stored one in what trains the folds; the
    ``trading.*`` keys that changed since (empty: none, or a first run). Writes nothing (``write_record``).

    Raises:
        ConfigError: split files rewritten since, or another config or other ``wf`` settings, naming up to three
            changed keys and the fix.
    """
    path = out / RECORD
    if not path.is_file():
        return []
    before = json.loads(path.read_text())
    files = record["files"]
    changed = [s for s, stamp in files.items() if before.get("files", {}).get(s, stamp) != stamp]
    if changed:
        raise ConfigError(f"{out}: the {changed[0]} split file changed since this walk-forward ran its folds; "
                          f"delete {out} (or give another --wf.name / --wf.out) to run it on the new data")
    old, new = before.get("config", {}), record["config"]
    keys = [f"wf.{k}" for k in changed_keys(before.get("wf", {}), record["wf"])] + changed_keys(
        training(old), training(new))  # fmt: skip
    if keys:
        what = f"{', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} changed"
        raise ConfigError(f"{out}: this walk-forward ran its folds with other settings ({what}); give another "
                          f"--wf.name, or delete {out}")  # fmt: skip
    return [f"trading.{k}" for k in changed_keys(old.get("trading") or {}, new.get("trading") or {})]


def write_record(out: Path, record: dict[str, Any]) -> None:
    """Store ``record`` (after ``check_record`` passed and every input was checked)."""
    write_json(out / RECORD, record)
