"""Output that is not a terminal (CI, a log file, an experiment cell) gets a line per epoch, no redrawn bars."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("config", ["configs/lstm.yaml", "configs/lightgbm.yaml"])
def test_piped_fit_prints_a_line_per_epoch_and_no_bar(config, fit_args):
    args = fit_args(config=config, epochs=2)
    i = args.index("--trainer.enable_progress_bar")
    del args[i : i + 2]  # the default: the CLI decides from whether stderr is a terminal
    tiny = ["--model.init_args.min_data_in_leaf", "5"] if "lightgbm" in config else []
    out = subprocess.run([sys.executable, "-m", "ensemble.cli", "fit", *args, *tiny], capture_output=True, text=True,
                         timeout=600, check=True)  # fmt: skip
    text = out.stdout + out.stderr
    assert "it/s" not in text and "round/s" not in text  # no tqdm bar drawn into the pipe
    epochs = [line for line in text.splitlines() if line.startswith(("epoch ", "lightgbm epoch "))]
    assert len(epochs) == 2 and all("val/f1_macro" in line for line in epochs), epochs
