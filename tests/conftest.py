import os
import sys
from pathlib import Path

import pytest

# Tests run on 2 CPU cores: keep torch from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def splits(tmp_path):
    from panels import write_splits

    return write_splits(tmp_path / "splits")
