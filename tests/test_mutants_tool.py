"""tools/mutants.py stays runnable: every mutant still finds its snippet, and names tests that exist.

When code a mutant targets is changed, this fails first and names the mutant to update (the tool would
refuse to run it anyway, but only when someone runs the tool)."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
spec = importlib.util.spec_from_file_location("mutants_tool", ROOT / "tools" / "mutants.py")
tool = sys.modules["mutants_tool"] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
spec.loader.exec_module(tool)


@pytest.mark.parametrize("mutant", tool.MUTANTS, ids=lambda m: m.id)
def test_each_mutant_applies_once_and_changes_the_code(mutant):
    source = (ROOT / mutant.path).read_text()
    assert source.count(mutant.old) == 1, f"{mutant.id}: update the snippet for {mutant.path}"
    assert mutant.new != mutant.old  # a real change, not a no-op
    compile(source.replace(mutant.old, mutant.new), mutant.path, "exec")  # a fault, not a syntax error
    for test in mutant.tests or tool.TESTS[mutant.path]:
        assert (ROOT / test).is_file(), test


def test_ids_are_unique_and_harmless_entries_name_real_mutants():
    ids = [m.id for m in tool.MUTANTS]
    assert len(ids) == len(set(ids))
    assert set(tool.HARMLESS) <= set(ids)
    documented = (ROOT / "docs" / "mutants.md").read_text()
    assert all(f"`{mid}`" in documented for mid in tool.HARMLESS)  # every accepted survivor is explained
