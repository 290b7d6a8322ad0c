"""Every registered model, trees included: built from its YAML, a tiny fit, predictions, an export round trip;
every neural backbone: shape, finite output, non-zero gradients; every config parses."""

import inspect
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from timesfm_tiny import required_cli_args, required_net_args

from ensemble.errors import ConfigError
from ensemble.export import export_run, predict_file
from ensemble.models import Classifier
from ensemble.models.registry import get_model, list_models, register
from ensemble.training.artifacts import PROB_COLUMNS
from ensemble.training.config import config_from_flags, merge, model_short_name, resolve_config
from ensemble.training.family import build

NEURAL = [e.name for e in list_models("neural")]
CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    """Where the tiny pretrained weights of models that need them (TimesFM) are written once."""
    return tmp_path_factory.mktemp("weights")


def _small(name: str, num_features: int, seq_len: int, weights_dir: Path) -> torch.nn.Module:
    small = {"hidden_size": 8, "d_model": 8, "nhead": 2, "dim_feedforward": 16}
    cls = get_model(name).cls
    params = inspect.signature(cls).parameters
    if "feature_names" in params:
        small["feature_names"] = [f"f{i}" for i in range(num_features)]
    return cls(num_features=num_features, num_classes=3, seq_len=seq_len,
               **{k: v for k, v in small.items() if k in params}, **required_net_args(name, weights_dir))


@pytest.mark.parametrize("name", NEURAL)
@pytest.mark.parametrize(("batch", "seq_len", "features"), [(4, 12, 5), (1, 16, 3)])
def test_backbone_shapes_and_gradients(name, batch, seq_len, features, weights_dir):
    torch.manual_seed(0)
    net = _small(name, features, seq_len, weights_dir)
    x = torch.randn(batch, seq_len, features)
    logits = net(x)
    assert logits.shape == (batch, 3) and torch.isfinite(logits).all()
    logits.sum().backward()
    no_grad = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad}"
    zero = [n for n, p in net.named_parameters() if p.requires_grad and not p.grad.abs().sum() > 0]
    assert len(zero) < len(list(net.parameters())), f"every gradient is zero: {zero}"


@pytest.mark.parametrize("name", NEURAL)
def test_backbone_tiny_fit_lowers_the_loss(name, weights_dir):
    torch.manual_seed(0)
    x = torch.randn(64, 12, 4)
    y = (x[:, -1, 0] > 0).long() * 2  # a clean signal in the last row
    model = Classifier(_small(name, 4, 12, weights_dir), horizon=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_registry_rejects_unknown_and_duplicate_names():
    with pytest.raises(ConfigError, match=r"unknown model 'nope'; known models: .*lstm"):
        get_model("nope")
    with pytest.raises(ConfigError, match="already registered"):
        register("lstm")(type("Other", (), {}))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_config_parses_and_instantiates(config, splits, weights_dir, tmp_path):
    overrides = {"data.root": str(splits), "data.seq_len": 5, "tracking.save_dir": str(tmp_path / "runs"),
                 "trainer.logger": False}  # fmt: skip
    base = resolve_config(config, overrides)
    job = build(merge(base, config_from_flags(required_cli_args(model_short_name(base), weights_dir))))
    names = getattr(job.model, "feature_names", None) or job.model.hparams["feature_names"]  # tree, or net
    assert list(names) == ["f0", "f1", "f2", "f3"]  # linked from the data, never typed
    assert job.run_dir is None or not any(job.run_dir.iterdir())  # checking a config leaves nothing behind


# tiny-data settings where a bundled default would not train on 4 features x a few hundred rows
TINY = {"lightgbm": {"model.init_args.min_data_in_leaf": 5}}


@pytest.mark.parametrize("entry", list_models(), ids=lambda e: e.name)
def test_every_registered_model_fits_predicts_and_round_trips(entry, splits, weights_dir, tmp_path):
    """Build from its YAML, a tiny fit, then: prediction shape, finite probabilities summing to 1, and an
    export that predicts what the run wrote."""
    config = resolve_config(Path(__file__).parents[1] / entry.config, {
        "data.root": str(splits), "data.seq_len": 5 if entry.family == "neural" else 1,
        "tracking.save_dir": str(tmp_path / "runs"), "trainer.max_epochs": 1,
        "trainer.enable_progress_bar": False, "trainer.enable_model_summary": False, **TINY.get(entry.name, {})})
    config = merge(config, config_from_flags(required_cli_args(entry.name, weights_dir)))
    job = build(config)
    metrics = job.fit()
    assert np.isfinite(metrics["test/log_loss"]) and 0 <= metrics["test/f1_macro"] <= 1
    written = pd.read_parquet(job.run_dir / "predictions" / "test.parquet")
    probs = written[list(PROB_COLUMNS)].to_numpy(np.float64)
    assert probs.shape == (len(written), 3) and len(written) > 0
    assert np.isfinite(probs).all() and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    export = export_run(job.run_dir, tmp_path / "export")
    again = predict_file(str(export), splits / "test_scaled.parquet", tmp_path / "again.parquet")
    both = written.merge(again, on=["datetime", "symbol"], suffixes=("", "_again"))
    assert len(both) == len(written)
    np.testing.assert_allclose(both[list(PROB_COLUMNS)].to_numpy(),
                               both[[f"{c}_again" for c in PROB_COLUMNS]].to_numpy(), atol=1e-5)  # fmt: skip
