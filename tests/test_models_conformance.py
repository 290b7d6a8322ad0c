"""Every registered neural model: shape, finite output, gradients, a tiny fit; every config parses."""

import inspect
from pathlib import Path

import pytest
import torch
from timesfm_tiny import required_cli_args, required_net_args

import ensemble.models  # noqa: F401  (registers the bundled models)
from ensemble.commands.configs import configured_model_family, configured_short_name
from ensemble.commands.lightning import EnsembleCLI
from ensemble.models import Classifier
from ensemble.models.registry import get_model, list_models, register

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
    with pytest.raises(KeyError, match=r"unknown model 'nope'; known models: .*lstm"):
        get_model("nope")
    with pytest.raises(ValueError, match="already registered"):
        register("lstm")(type("Other", (), {}))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_config_parses_and_instantiates(config, splits, weights_dir, tmp_path):
    args = ["--config", str(config), "--data.root", str(splits), "--data.seq_len", "5",
            "--tracking.save_dir", str(tmp_path / "runs")]  # not the repo's lightning_logs/
    if configured_model_family(args) == "tree":
        pytest.skip("tree configs are covered by the tree CLI tests")
    args += required_cli_args(configured_short_name(args), weights_dir)
    cli = EnsembleCLI(args=args, run=False)
    assert isinstance(cli.model, Classifier)
    assert cli.model.hparams.feature_names == ["f0", "f1", "f2", "f3"]
    assert cli.model.net(torch.randn(2, 5, 4)).shape == (2, 3)
