"""What a run prints: how much (normal, ``--quiet``, a muted tuning trial), and which library notes never reach
the user because they cannot act on them.

Three levels:

- **normal**: progress (a line per epoch, or a bar on a terminal), library notes, the result table.
- **quiet** (``ensemble --quiet ...``): the result table and errors only; Lightning's INFO lines, progress lines
  and Python warnings are off.
- **muted** (each trial of ``ensemble tune``): nothing per trial but errors; the study prints one line a trial.

Notes the user cannot act on are dropped by their exact message, in every level: the ``LeafSpec`` deprecation
that Lightning's own code triggers in torch, Lightning's LitLogger advertisement, Optuna's "experimental" notes
on the tuning heartbeat, and "checkpoint directory exists" when a run resumes into its own folder
(``resuming_quietly``).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

NORMAL, QUIET, MUTED = 2, 1, 0
_level = NORMAL
_restore: dict[str, int] = {}  # Lightning logger -> its level before ``quiet_libraries`` lowered it

# Lightning's loggers: "Seed set to", "GPU available", the model summary, "Restoring states ..." are INFO
_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")
# the loggers ``rank_zero_info`` writes to (Lightning points lightning_utilities' at one of its own)
_RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                      "lightning_utilities.core.rank_zero", "lightning.fabric.utilities.seed")  # fmt: skip
# warnings raised inside Lightning/torch about their own code, by the start of their message (a regex)
UNACTIONABLE_WARNINGS = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r".*args parameter is intended to run from within Python",  # LightningCLI on args=, which is how we call it
    # Optuna marks the heartbeat (how dead tuning workers are detected) experimental since 2.8; nothing to change
    r"RetryHeartbeatStaleTrialCallback is experimental",
    r"Argument ``heartbeat_interval`` is an experimental feature",
    r"Argument ``grace_period`` is an experimental feature",
    # an evaluation is staged in its own folder under the run (eval/.<split>-<ckpt>.partial-PID), so the
    # checkpoint's recorded dirpath always differs from it; only the best path, which is what we use, is reloaded
    r"The dirpath has changed from",
)
# Lightning's LitLogger advertisement; and its seed line, which comes before the config is even checked (so a
# bad flag would print two lines, not one): the seed is in the run's config.yaml, and tune prints it once
UNACTIONABLE_LOG_LINES = ("💡 Tip: For seamless cloud logging", "Seed set to")
RESUME_WARNING = r"Checkpoint directory .* exists and is not empty"


def level() -> int:
    """The current level: ``NORMAL``, ``QUIET`` or ``MUTED``."""
    return _level


def tables_shown() -> bool:
    """Whether result tables print (not in a muted tuning trial)."""
    return _level >= QUIET


def say(*parts: object) -> None:
    """Print progress or a note (a line per epoch, a cell's status), at the normal level only."""
    if _level >= NORMAL:
        print(*parts, flush=True)


def quiet_libraries() -> None:
    """Lightning's INFO lines off below the normal level. Lightning sets its loggers to INFO when imported, so
    the families call this again once it is (``EnsembleCLI``); it imports nothing itself."""
    silence_unactionable()
    if _level < NORMAL:
        for name in _LIGHTNING_LOGGERS:
            logger = logging.getLogger(name)
            if logger.level != logging.WARNING:  # the level Lightning (or the user) set: restored by at_level
                _restore[name] = logger.level
            logger.setLevel(logging.WARNING)


@contextmanager
def at_level(new: int) -> Iterator[None]:
    """Run the block at level ``new`` (``QUIET`` for ``--quiet``, ``MUTED`` for a tuning trial); below the
    normal level Python warnings and Lightning's INFO lines are off. The level, the warning filters and
    Lightning's logger levels come back after the block."""
    global _level
    before, outer = _level, dict(_restore)
    _restore.clear()
    with warnings.catch_warnings():
        _level = new
        if new < NORMAL:
            warnings.simplefilter("ignore")  # the table (or nothing) and errors only, as asked
        quiet_libraries()
        try:
            yield
        finally:
            _level = before
            for name, value in _restore.items():
                logging.getLogger(name).setLevel(value)
            _restore.clear()
            _restore.update(outer)


def muted() -> contextlib.AbstractContextManager[None]:
    """Nothing but errors inside the block: a tuning trial, of which the study prints one line."""
    return at_level(MUTED)


class _DropMessages(logging.Filter):
    """Drops log records whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.prefixes)


_DROP = _DropMessages(UNACTIONABLE_LOG_LINES)


def silence_unactionable() -> None:
    """Drop the notes the user cannot act on (see the module's docstring), by message; idempotent."""
    for pattern in UNACTIONABLE_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in _RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if _DROP not in logger.filters:
            logger.addFilter(_DROP)


def resuming_quietly() -> None:
    """A fit resuming into its own run folder: Lightning's "checkpoint directory exists and is not empty"
    warning describes exactly what resuming means, so it is dropped for this process."""
    warnings.filterwarnings("ignore", message=RESUME_WARNING)
