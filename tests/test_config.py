"""Run configs as Python objects: YAML + dotted overrides, and flag lists read as jsonargparse reads them."""

import pytest
import yaml

from ensemble.errors import ConfigError
from ensemble.training.config import config_from_flags, family_name, model_short_name, resolve_config


def test_flags_set_values_append_to_lists_and_address_the_last_class(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"trainer": {"max_epochs": 1, "callbacks": [{"class_path": "A"}]}}))
    config = config_from_flags(["--config", str(base), "--trainer.max_epochs=3", "--data.exclude", "[x_*, y]",
                                "--trainer.callbacks+=B", "--trainer.callbacks.patience", "2",
                                "--tracking.mlflow", "false", "--tracking.name", "null"])  # fmt: skip
    assert config["trainer"]["max_epochs"] == 3 and config["data"]["exclude"] == ["x_*", "y"]
    assert config["trainer"]["callbacks"] == [{"class_path": "A"}, {"class_path": "B", "init_args": {"patience": 2}}]
    assert config["tracking"] == {"mlflow": False, "name": None}


def test_bad_flags_and_keys_are_one_line_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"--trainer\.max_epochs needs a value"):
        config_from_flags(["--trainer.max_epochs"])
    with pytest.raises(ConfigError, match="unexpected argument 'oops'"):
        config_from_flags(["oops"])
    with pytest.raises(ConfigError, match=r"'data\.root' is a value, not a section"):
        resolve_config({"data": {"root": "x"}}, {"data.root.deeper": 1})
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="a config is a mapping"):
        resolve_config(tmp_path / "list.yaml")
    (tmp_path / "evil.yaml").write_text("model: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not a loadable YAML config"):
        resolve_config(tmp_path / "evil.yaml")


def test_the_registry_names_the_family_and_short_name():
    tree = {"model": {"class_path": "ensemble.models.trees.LightGBMModel"}}
    net = {"model": {"class_path": "ensemble.models.Classifier",
                     "init_args": {"net": {"class_path": "ensemble.models.backbones.gru.GRUNet"}}}}  # fmt: skip
    assert (family_name(tree), model_short_name(tree)) == ("tree", "lightgbm")
    assert (family_name(net), model_short_name(net)) == ("neural", "gru")
    assert family_name({"model": {"class_path": "my.pkg.MyModule"}}) == "neural"  # any LightningModule


def test_changed_keys_names_every_differing_dotted_key():
    from ensemble.training.config import changed_keys

    before = {"data": {"horizon": 5, "seq_len": 60}, "model": {"init_args": {"lr": 0.1}}, "gone": 1}
    after = {"data": {"horizon": 20, "seq_len": 60}, "model": {"init_args": {"lr": 0.1, "new": None}}, "x": {"y": 1}}
    assert changed_keys(before, after) == ["data.horizon", "gone", "model.init_args.new", "x"]
    assert changed_keys(before, before) == []
