"""The README's smaller commands: `ensemble data demo|summary`, `ensemble models`, and a third-party model
registered through the ``ensemble.models`` entry-point group."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ensemble.cli import main

ROOT = Path(__file__).parents[1]
BUNDLED = {"lstm": "neural", "gru": "neural", "transformer": "neural", "tft": "neural", "nhits": "neural",
           "patchtst": "neural", "timesfm": "neural", "xgboost": "tree", "lightgbm": "tree", "catboost": "tree"}


def _expected_summary(path: Path, seq_len: int, horizon: int) -> dict:
    """Rows, symbols, windows and class shares counted with pandas from the file itself."""
    df = pd.read_parquet(path, columns=["datetime", "symbol", f"label_h{horizon}"])
    df = df.sort_values(["symbol", "datetime"], kind="stable")
    position = df.groupby("symbol").cumcount()
    target = df[(position >= seq_len - 1) & df[f"label_h{horizon}"].notna()][f"label_h{horizon}"]
    shares = "/".join(f"{(target == c).mean():.2f}" for c in (-1, 0, 1))
    start, end = (str(t)[:16].replace(" ", "T") for t in (df.datetime.min(), df.datetime.max()))
    return {"rows": len(df), "symbols": df.symbol.nunique(), "windows": len(target), "shares": shares,
            "start": start, "end": end}


def test_data_demo_writes_the_splits_and_summary_counts_them(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["data", "demo", "--out", str(out), "--size", "0.1", "--seed", "3"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == ["train", str(out / "train_scaled.parquet"), "val", str(out / "val_scaled.parquet"),
                       "test", str(out / "test_scaled.parquet")]
    info = json.loads((out / "demo_info.json").read_text())
    assert info["seed"] == 3 and info["n_symbols"] == 5  # --size 0.1 of 50 symbols
    for split, rows in info["rows"].items():
        assert len(pd.read_parquet(out / f"{split}_scaled.parquet", columns=["symbol"])) == rows

    assert main(["data", "summary", "--root", str(out), "--seq_len", "10", "--horizon", "20"]) == 0
    text = capsys.readouterr().out
    assert "horizon=20  seq_len=10  features=107" in text
    for split in ("train", "val", "test"):
        exp = _expected_summary(out / f"{split}_scaled.parquet", seq_len=10, horizon=20)
        line = next(ln for ln in text.splitlines() if ln.startswith(split))
        assert line.split()[:5] == [split, str(exp["rows"]), str(exp["symbols"]), str(exp["windows"]), exp["shares"]]
        assert f"{exp['start']} .. {exp['end']}" in line


def test_data_summary_of_bad_splits_is_one_clear_line(tmp_path, splits, capsys):
    df = pd.read_parquet(splits / "val_scaled.parquet")
    df.loc[3, "label_h5"] = 7.0
    df.to_parquet(splits / "val_scaled.parquet")
    assert main(["data", "summary", "--root", str(splits), "--seq_len", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "val_scaled.parquet" in err[0] and "label_h5" in err[0], err


def _models_table(text: str) -> dict[str, tuple[str, str, str]]:
    lines = text.strip().split("\n\n", 1)[1].splitlines()  # after the line that says what is listed
    assert lines[0].split() == ["name", "family", "config", "class"]
    return {name: (family, config, cls) for name, family, config, cls in (ln.split() for ln in lines[1:])}


def test_models_lists_every_bundled_model_with_its_family_and_config(capsys):
    assert main(["models"]) == 0
    table = _models_table(capsys.readouterr().out)
    assert {n: v[0] for n, v in table.items() if n in BUNDLED} == BUNDLED
    for name in BUNDLED:
        _, config, cls = table[name]
        assert (ROOT / config).is_file(), config
        assert cls.startswith("ensemble.") and re.fullmatch(r"[\w.]+", cls)
    assert main(["models", "--family", "tree"]) == 0
    assert set(_models_table(capsys.readouterr().out)) == {n for n, f in BUNDLED.items() if f == "tree"}


PLUGIN = '''
from torch import nn

import ensemble.models


@ensemble.models.register("tinyplugin", family="neural", config="configs/tinyplugin.yaml")
class TinyPluginNet(nn.Module):
    """Last row of the window through one linear layer: (B, L, F) -> (B, 3)."""

    def __init__(self, num_features: int, num_classes: int = 3) -> None:
        super().__init__()
        self.head = nn.Linear(num_features, num_classes)

    def forward(self, x):
        return self.head(x[:, -1])
'''


def test_a_third_party_model_registers_through_its_entry_point(tmp_path):
    site = tmp_path / "site"
    dist = site / "h20_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: h20-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[ensemble.models]\ntinyplugin = h20_plugin\n")
    (site / "h20_plugin.py").write_text(PLUGIN)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    run = subprocess.run([sys.executable, "-m", "ensemble.cli", "models"], capture_output=True, text=True, env=env,
                         timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    table = _models_table(run.stdout)
    assert table["tinyplugin"] == ("neural", "configs/tinyplugin.yaml", "h20_plugin.TinyPluginNet")
    assert set(BUNDLED) <= set(table)  # the bundled models are still there
    # control: without the dist-info on the path the model is unknown
    bare = subprocess.run([sys.executable, "-m", "ensemble.cli", "models"], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env={**env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    assert bare.returncode == 0 and "tinyplugin" not in bare.stdout


@pytest.mark.parametrize("argv", [["data"], ["data", "nosuch"], ["models", "--family", "forest"]])
def test_bad_subcommands_exit_with_status_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ensemble: error: ensemble"), err  # one line, naming the command
