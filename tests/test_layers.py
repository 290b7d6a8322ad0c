"""Imports flow one way (the README's code map): data <- metrics <- models <- training <- tuning, experiments,
blending, export <- commands and cli. Lazy imports inside functions count too; so does a cycle on one floor."""

import subprocess
import sys
from pathlib import Path

from layers import violations

ROOT = Path(__file__).parents[1] / "ensemble"


def test_the_package_imports_downward_only_and_has_no_cycle():
    problems = violations(ROOT)
    assert not problems, "\n".join(problems)


def test_the_checker_catches_an_upward_import_and_a_cycle(tmp_path):
    pkg = tmp_path / "ensemble"
    for folder in ("data", "training"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "a.py").write_text("def f():\n    from ensemble.training import b  # lazy, still upward\n")
    (pkg / "training" / "b.py").write_text("from ensemble.training import c\n")
    (pkg / "training" / "c.py").write_text("from . import b\n")
    problems = violations(pkg)
    assert any("a.py:2: ensemble.data.a (floor 1) imports ensemble.training" in p for p in problems), problems
    assert any("import cycle" in p and "ensemble.training.b" in p and "ensemble.training.c" in p for p in problems)


def _imported(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"import sys\n{code}\nprint(' '.join(sys.modules), file=sys.stderr)"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return set(out.stderr.split())  # stdout is the command's own output


HEAVY = ("lightning", "xgboost", "lightgbm", "catboost", "pytorch_forecasting", "neuralforecast", "torchmetrics")


def test_help_and_models_import_no_training_library():
    for argv in (["--help"], ["models"]):
        loaded = _imported(f"from ensemble.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass")
        assert not {m.split(".")[0] for m in loaded} & set(HEAVY), (argv, sorted(set(HEAVY) & loaded))


def test_importing_models_loads_no_tree_library_and_no_trainer():
    loaded = _imported("import ensemble.models\nfrom ensemble.models import Classifier")
    roots = {m.split(".")[0] for m in loaded}
    assert not roots & {"xgboost", "lightgbm", "catboost"}
    assert not any(m.startswith("ensemble.training") for m in loaded)


def test_a_lightgbm_model_loads_no_other_tree_library():
    loaded = _imported("from ensemble.models.trees import LightGBMModel")
    assert "lightgbm" in loaded and not {"xgboost", "catboost"} & loaded
