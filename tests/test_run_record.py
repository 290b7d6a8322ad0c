"""A run's config.yaml is the fit's record: evaluations and resumes, failed or not, never rewrite it."""

import pytest

from ensemble.cli import main


@pytest.mark.parametrize("config", ["configs/lstm.yaml", "configs/lightgbm.yaml"])
def test_config_yaml_is_byte_identical_after_evaluations_and_resumes(config, tmp_path, fit_args):
    tiny = ["--model.init_args.min_data_in_leaf", "5"] if "lightgbm" in config else []
    args = [*fit_args(config=config, epochs=2), *tiny]
    assert main(["fit", *args]) == 0
    name = "lstm" if "lstm" in config else "lightgbm"
    record = tmp_path / "runs" / f"{name}_h5" / "version_0" / "config.yaml"
    before = record.read_bytes()

    assert main(["test", *args, "--ckpt_path", "best", "--data.batch_size", "32"]) == 0  # an evaluation
    assert main(["validate", *args, "--ckpt_path", "last", "--data.batch_size", "16"]) == 0
    changed = (["--model.init_args.net.init_args.hidden_size", "16"] if name == "lstm"
               else ["--data.seq_len", "3"])  # fmt: skip
    assert main(["fit", *args, "--ckpt_path", "last", *changed]) == 2  # a resume that is refused
    assert main(["fit", *args, "--ckpt_path", "last", "--trainer.max_epochs", "3"]) == 0  # a resume that runs
    assert record.read_bytes() == before
