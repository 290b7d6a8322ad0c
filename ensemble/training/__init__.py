"""The family layer: build and fit any registered model from Python, and everything a run writes.

    from ensemble.training import build
    job = build("configs/lightgbm.yaml", {"data.horizon": 20})
    metrics = job.fit()

Nets train under Lightning (``nets.py``), trees under ``TreeTrainer`` (``trees/``); ``family.py`` is the
interface both implement, and the only place that knows the families differ.
"""

from ensemble.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "ExportError": ".family",
    "Family": ".family",
    "Job": ".family",
    "build": ".family",
    "family_for": ".family",
    "family_named": ".family",
    "resolve_config": ".config",
    "config_from_flags": ".config",
    "Tracking": ".tracking",
})
__all__ = ["ExportError", "Family", "Job", "Tracking", "build", "config_from_flags", "family_for", "family_named",
           "resolve_config"]  # fmt: skip
