"""The one base class of every error a user can cause and fix: bad data, config, checkpoint or file.

The CLI prints any ``EnsembleError`` as one line and exits with status 2; anything else is a bug and keeps
its traceback. Deriving from ``ValueError`` keeps ``except ValueError`` callers (and jsonargparse, which
reports a ``ValueError`` raised in an ``__init__`` as a config error) working.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager


class EnsembleError(ValueError):
    """A user-facing error; the message names the file, column, symbol, row or config key at fault."""


class ConfigError(EnsembleError):
    """A config key or value that cannot be used, e.g. ``trainer.devices=2`` for a tree model."""


class NonFiniteLossError(EnsembleError, FloatingPointError):
    """Training produced a NaN or infinite loss; the message says what to change."""


def unknown_key(key: str, known: Iterable[str], what: str = "key") -> ConfigError:
    """The one-line error for an unknown config key ``key`` (dotted as the user wrote it, e.g. ``walkforwrd`` or
    ``caruana.sizee``): it names the key, suggests the closest known one (``difflib.get_close_matches`` on the
    last dotted part, case ignored, cutoff 0.6) and lists the known ones. ``what`` says what kind of key, e.g.
    ``walk-forward key``."""
    known = list(known)
    lower = {k.lower(): k for k in known}  # case aside: --stacked.c is --stacked.C mistyped
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1].lower(), list(lower), n=1)
    hint = f" (did you mean '{lower[close[0]]}'?)" if close else ""
    return ConfigError(f"{key}: unknown {what}{hint}; known: {', '.join(known) or 'none'}")


_NOISE = ("Does not validate", "Subtypes:", "Errors:", "Given value", "Expected a <class 'NoneType'>",
          "Problem with given class_path")
_KEY = re.compile(r'Parser key "([^"]+)"')
_TYPE = re.compile(r"Expected a <class '([\w.]+)'>\. Got value: (.*)")
_LITERAL = re.compile(r"Expected a typing\.Literal\[(.*)\]\. Got value: (.*)")


def _reason(text: str) -> str:
    """jsonargparse's type message in our words: ``expected int, got 'abc'``, ``must be one of a, b, got 'c'``,
    ``expected a finite float, got 'nan'`` (a NaN or infinite float is refused as a value, not as a type)."""
    if m := _LITERAL.fullmatch(text):
        choices = ", ".join(c.strip().strip("'\"") for c in m.group(1).split(","))
        return f"must be one of {choices}, got '{m.group(2)}'"
    if (m := _TYPE.fullmatch(text)) and m.group(1) == "float" and m.group(2).strip().lower().lstrip("+-") in (
            "nan", "inf", "infinity"):
        return f"expected a finite float, got '{m.group(2)}'"
    return _TYPE.sub(r"expected \1, got '\2'", text)


def one_line(err: BaseException) -> str:
    """One readable line for any error. jsonargparse explains a bad config as a nested tree; this keeps
    the dotted key it is about and the innermost reason: ``data.seq_len: expected int, got 'abc'``."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) <= 1:
        return lines[0].strip() if lines else type(err).__name__
    useful = [ln for ln in lines if not ln.strip(" -").startswith(_NOISE)] or lines
    depth = [len(ln) - len(ln.lstrip(" -")) for ln in useful]
    deepest = max(range(len(useful)), key=lambda i: (depth[i], i))
    reason = _reason(useful[deepest].strip(" -"))
    given = [ln.strip().removeprefix("Given value: ") for ln in lines if ln.strip().startswith("Given value: ")]
    if given and (bare := re.fullmatch(r"Expected a <class '([\w.]+)'>", reason)):  # a union: name the value too
        reason = f"expected {bare.group(1)}, got '{given[-1]}'"
    keys = [m.group(1) for ln in useful[:deepest] if (m := _KEY.search(ln))]
    if keys:
        return f"{'.'.join(keys)}: {reason}"
    where = [ln.strip(" -").rstrip(":") for ln in useful[:deepest]]
    return f"{reason} ({' > '.join(where)})" if where else reason


class Preempted(SystemExit):
    """The job was told to stop (SIGTERM: how SLURM and Kubernetes pre-empt; or SIGINT, Ctrl-C). It exits
    with 128 + the signal (143 for SIGTERM, 130 for SIGINT), so a scheduler records a failure, never a success;
    the message says how to resume."""

    EXIT_CODE = 143

    def __init__(self, message: str, signum: int = 15) -> None:
        self.EXIT_CODE = 128 + signum
        super().__init__(self.EXIT_CODE)
        self.message = message


# How the command that is running now goes on after a stop: the innermost ``resumed_by`` wins. None: a plain
# ``fit`` (or a job built from Python), resumed with its own checkpoint.
_RESUME_ADVICE: list[Callable[[str | None], str]] = []


def resume_advice(saved: str | None) -> str:
    """What a stop message says after a run stopped (SIGTERM): the checkpoint ``saved`` on the way out (None: none
    was written yet) and how to go on, as the command that is running says (``resumed_by``); by default, a
    ``fit``'s ``--ckpt_path``."""
    if _RESUME_ADVICE:
        return _RESUME_ADVICE[-1](saved)
    return f"saved {saved}; resume with the same command and --ckpt_path {saved}" if saved else (
        "no checkpoint was written yet; start again")  # fmt: skip


@contextmanager
def resumed_by(advice: Callable[[str | None], str]) -> Iterator[None]:
    """For the block, ``resume_advice`` is ``advice(saved)``: a command that resumes its runs itself (a
    walk-forward re-run resumes the stopped fold from its last checkpoint) tells the user to re-run it, not to
    pass a ``--ckpt_path`` it refuses."""
    _RESUME_ADVICE.append(advice)
    try:
        yield
    finally:
        _RESUME_ADVICE.pop()
