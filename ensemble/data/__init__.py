"""The ground floor: data contract, split loading, windows and the datamodule.

Attributes import on first use, so code that needs the contract or the constants does not load Lightning
(which ``WindowDataModule`` needs).
"""

from ensemble.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "DEFAULT_DEMO_ROOT": ".constants",
    "NUM_CLASSES": ".constants",
    "SPLITS": ".constants",
    "ColumnRoles": ".contract",
    "DataContractError": ".contract",
    "detect_roles": ".contract",
    "SplitData": ".split_data",
    "WindowDataModule": ".datamodule",
    "SplitPanel": ".panel",
    "load_split": ".panel",
    "WindowLoader": ".windows",
    "gather_windows": ".windows",
    "valid_ends": ".windows",
})
__all__ = [
    "DEFAULT_DEMO_ROOT",
    "NUM_CLASSES",
    "SPLITS",
    "ColumnRoles",
    "DataContractError",
    "SplitData",
    "SplitPanel",
    "WindowDataModule",
    "WindowLoader",
    "detect_roles",
    "gather_windows",
    "load_split",
    "valid_ends",
]
