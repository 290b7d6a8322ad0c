"""Default run names carry the horizon everywhere (runs ``lstm_h5``, blends ``ensemble_weighted_h5``), and the
help says so, in the user's words (no internal function names)."""

import pytest

from ensemble.cli import main


@pytest.mark.parametrize("config", ["configs/lstm.yaml", "configs/lightgbm.yaml"])
def test_tracking_name_help_gives_the_real_default(config, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", config, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    start = text.index("--tracking.name NAME the")
    name_help = text[start : text.index("--tracking.mlflow", start + 30)]
    assert "lstm_h5" in name_help and "check_name" not in name_help, name_help
    assert "short name (``lstm``" not in name_help


def test_blend_help_gives_the_default_name_with_the_horizon(capsys):
    with pytest.raises(SystemExit):
        main(["blend", "--help"])
    assert "ensemble_<method>_h<horizon>" in " ".join(capsys.readouterr().out.split())
