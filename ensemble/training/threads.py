"""One thread setting for every library a fit uses: torch, OpenMP/BLAS and the tree libraries.

Idle OpenMP and torch threads spin, so a process that keeps its libraries' defaults (one thread per core)
beside other busy processes fights them for the cores: measured on a shared 2-core machine, an LSTM fit
used 221 CPU-seconds with the default threads under a competing load against 21.5 with one thread (issue 19).
A fit process therefore takes its thread count from one number, by default the cores it may run on
(``os.sched_getaffinity``) divided among the workers sharing them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ensemble.errors import ConfigError

# read by OpenMP (LightGBM, XGBoost, torch's intra-op pool), OpenBLAS, MKL and numexpr when they load
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (Linux), else ``os.cpu_count()``."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads(workers: int = 1) -> int:
    """Each of ``workers`` processes' share of the usable cores, at least 1."""
    return max(1, usable_cores() // max(1, workers))


def check_threads(threads: int | None, key: str = "threads") -> int | None:
    """``threads`` if it is None or a positive int.

    Raises:
        ConfigError: zero or negative, naming ``key``.
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"{key} must be a whole number >= 1, got {threads!r}")
    return threads


def apply_threads(threads: int) -> dict[str, int]:
    """Set this process's threads everywhere: the environment (for libraries not loaded yet and for child
    processes), OpenMP/BLAS pools already loaded (threadpoolctl), and torch's intra-op pool.

    Returns:
        What was set: ``{"threads": n, "torch": torch.get_num_threads()}``.
    """
    check_threads(threads)
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
    import torch

    torch.set_num_threads(threads)
    return {"threads": threads, "torch": torch.get_num_threads()}


def thread_overrides(config: Mapping[str, Any], threads: int) -> dict[str, Any]:
    """Dotted-key overrides giving a tree model ``threads`` library threads (``n_jobs``: XGBoost's ``nthread``,
    LightGBM's ``num_threads``, CatBoost's ``thread_count``), unless its config already sets ``n_jobs``;
    nothing for a net (torch's threads are set by ``apply_threads``)."""
    from ensemble.training.config import family_name

    if family_name(config) != "tree":
        return {}
    model = config.get("model")
    init = model.get("init_args") if isinstance(model, Mapping) else None
    if not isinstance(init, Mapping) or init.get("n_jobs") is not None:  # the user's own choice wins
        return {}
    return {"model.init_args.n_jobs": threads}
