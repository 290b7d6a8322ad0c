"""Turn any user-facing error into one readable line."""

from __future__ import annotations

import argparse

from ensemble.errors import EnsembleError, one_line

__all__ = ["one_line", "user_error"]


def user_error(err: BaseException) -> BaseException | None:
    """The user error ``err`` is or wraps, else None (a bug: it keeps its traceback).

    Ours are ``EnsembleError``s; a bad flag or config key is argparse's (or jsonargparse's) ``ArgumentError``.
    jsonargparse re-raises what a model's or data module's ``__init__`` raised as a ``ValueError`` caused
    by it, so the cause chain is searched for one of ours.
    """
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, EnsembleError | argparse.ArgumentError):
            return seen
        seen = seen.__cause__
    return None
