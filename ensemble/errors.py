"""The one base class of every error a user can cause and fix: bad data, config, checkpoint or file.

The CLI prints any ``EnsembleError`` as one line and exits with status 2; anything else is a bug and keeps
its traceback. Deriving from ``ValueError`` keeps ``except ValueError`` callers (and jsonargparse, which
reports a ``ValueError`` raised in an ``__init__`` as a config error) working.
"""

from __future__ import annotations


class EnsembleError(ValueError):
    """A user-facing error; the message names the file, column, symbol, row or config key at fault."""


class ConfigError(EnsembleError):
    """A config key or value that cannot be used, e.g. ``trainer.devices=2`` for a tree model."""


class NonFiniteLossError(EnsembleError, FloatingPointError):
    """Training produced a NaN or infinite loss; the message says what to change."""


def one_line(err: BaseException) -> str:
    """jsonargparse explains a bad config as a nested tree; keep the path and the innermost reason."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) == 1:
        return lines[0].strip()
    noise = ("Does not validate", "Subtypes:", "Errors:", "Expected a <class", "Given value")
    useful = [ln for ln in lines if not ln.strip(" -").startswith(noise)]
    depth = [len(ln) - len(ln.lstrip(" -")) for ln in useful]
    deepest = max(range(len(useful)), key=lambda i: (depth[i], i))
    reason = useful[deepest].strip(" -")
    where = [ln.strip(" -").rstrip(":") for ln in useful[:deepest]]
    return f"{reason} ({' > '.join(where)})" if where else reason


class Preempted(SystemExit):
    """The job was told to stop (SIGTERM: how SLURM and Kubernetes pre-empt). It exits with 143 (128 +
    SIGTERM), so a scheduler records a failure, never a success; the message says how to resume."""

    EXIT_CODE = 143

    def __init__(self, message: str) -> None:
        super().__init__(self.EXIT_CODE)
        self.message = message
