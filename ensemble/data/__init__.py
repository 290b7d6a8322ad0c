"""The ground floor: data contract, split loading, windows and the datamodule."""

from ensemble.data.contract import ColumnRoles, DataContractError, detect_roles
from ensemble.data.datamodule import DEFAULT_DEMO_ROOT, NUM_CLASSES, WindowDataModule
from ensemble.data.panel import SplitPanel, load_split
from ensemble.data.windows import WindowLoader, gather_windows, valid_ends

__all__ = [
    "DEFAULT_DEMO_ROOT",
    "NUM_CLASSES",
    "ColumnRoles",
    "DataContractError",
    "SplitPanel",
    "WindowDataModule",
    "WindowLoader",
    "detect_roles",
    "gather_windows",
    "load_split",
    "valid_ends",
]
