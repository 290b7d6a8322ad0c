import os
import sys
from pathlib import Path

import pytest

# Tests run on 2 CPU cores: keep torch from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).parent))

# Lightning gives its loggers a StreamHandler on sys.stderr when first imported; imported inside a test that
# captures output, that handler would keep the test's (then closed) stream and break later tests' stderr.
import lightning.pytorch  # noqa: F401


@pytest.fixture
def splits(tmp_path):
    from panels import write_splits

    return write_splits(tmp_path / "splits")


@pytest.fixture
def fit_args(tmp_path, splits):
    """CLI arguments that force a tiny, fast, CPU-only run into a temp run folder."""

    def make(config: str = "configs/lstm.yaml", epochs: int = 2, **extra: str) -> list[str]:
        args = [
            "--config", str(Path(__file__).parents[1] / config),
            "--data.root", str(splits),
            "--data.seq_len", "5",
            "--data.batch_size", "64",
            "--trainer.max_epochs", str(epochs),
            "--trainer.accelerator", "cpu",
            "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false",
            "--tracking.save_dir", str(tmp_path / "runs"),
        ]
        for key, value in extra.items():
            args += [f"--{key.replace('__', '.')}", str(value)]
        return args

    return make
