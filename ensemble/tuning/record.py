"""What ``best.yaml`` records of the study that produced it, so an experiment that runs the config can count
the study's trials among everything it tried (the deflated Sharpe ratio's N).

The record is one YAML comment line, ``# tuned: {"study": ..., "complete": n, "pruned": n, "failed": n}``
(JSON): comments travel with the file when it is copied into a configs folder, and no config parser sees
them, so ``ensemble fit --config best.yaml`` is unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ensemble.errors import ConfigError

PREFIX = "# tuned: "


def tune_record_line(study: str, complete: int, pruned: int, failed: int, best_trial: int,
                     objective: str | None = None, best_value: float | None = None) -> str:  # fmt: skip
    """The comment line (with its newline) for a study's counts of complete, pruned and failed trials, and the
    best trial's value under the key ``objective`` names (``val/log_loss before calibration``: the value the
    study compared, not metrics.json's calibrated one)."""
    record: dict[str, Any] = {"study": study, "complete": complete, "pruned": pruned, "failed": failed,
                              "best_trial": best_trial}  # fmt: skip
    if objective is not None:
        record[objective] = best_value
    return PREFIX + json.dumps(record, sort_keys=True) + "\n"


def read_tune_record(path: str | Path) -> dict[str, Any] | None:
    """The record of the config file at ``path``, or None when it has none (a hand-written config).

    Raises:
        ConfigError: the file cannot be read, or its record line is not the JSON ``tune_record_line`` writes.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror})") from err
    for line in lines:
        if line.startswith(PREFIX):
            try:
                record = json.loads(line[len(PREFIX):])
            except json.JSONDecodeError as err:
                raise ConfigError(f"{path}: its '{PREFIX.strip()}' line is not JSON ({err.msg})") from err
            if not isinstance(record, dict) or not all(isinstance(record.get(k), int) for k in ("complete", "pruned")):
                raise ConfigError(f"{path}: its '{PREFIX.strip()}' line needs integer complete and pruned counts")
            return record
    return None
