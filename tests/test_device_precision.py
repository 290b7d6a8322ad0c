"""Where the data lives and which dtype the net computes in, observed rather than assumed.

``data_on_device`` on a CPU-only machine: the trainer's device is faked as PyTorch's ``meta`` device, so a
device move that silently did nothing leaves CPU tensors and fails; the real CUDA case runs where a GPU is.
bf16: a forward hook records the dtype the backbone's output actually has during training.
"""

import json
from types import SimpleNamespace

import pytest
import torch

from ensemble.cli import main
from ensemble.data import WindowDataModule

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _fake_trainer(device: torch.device) -> SimpleNamespace:
    """What the datamodule reads from a Trainer: its root device, rank, world size and epoch."""
    return SimpleNamespace(strategy=SimpleNamespace(root_device=device), global_rank=0, world_size=1,
                           current_epoch=0)


def _datamodule(splits, trainer, on_device: bool) -> WindowDataModule:
    dm = WindowDataModule(root=str(splits), seq_len=3, batch_size=8, data_on_device=on_device)
    dm.trainer = trainer
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("shuffle", [True, False])
def test_data_on_device_moves_the_panel_and_gathers_there(splits, shuffle):
    meta = torch.device("meta")  # a device that is not the CPU, available everywhere
    dm = _datamodule(splits, _fake_trainer(meta), on_device=True)
    panel = dm.panel("train")
    for name in ("features", "label", "fwd_return", "weight", "symbol", "time"):
        assert getattr(panel, name).device == meta, name
    assert dm.ends["train"].device == meta
    loader = dm.train_dataloader() if shuffle else dm.val_dataloader()
    batch = next(iter(loader))
    assert all(v.device == meta for v in batch.values()), {k: v.device for k, v in batch.items()}
    assert batch["x"].shape == (8, 3, 4)  # gathered there: shape known, no host round trip possible


def test_without_data_on_device_the_panel_stays_on_the_host(splits):
    dm = _datamodule(splits, _fake_trainer(torch.device("meta")), on_device=False)
    batch = next(iter(dm.train_dataloader()))
    assert dm.panel("train").features.device.type == "cpu"
    assert all(v.device.type == "cpu" for v in batch.values())


@cuda
def test_data_on_device_on_a_real_gpu(splits):
    dm = _datamodule(splits, _fake_trainer(torch.device("cuda", 0)), on_device=True)
    batch = next(iter(dm.train_dataloader()))
    assert dm.panel("train").features.is_cuda and all(v.is_cuda for v in batch.values())
    host = WindowDataModule(root=str(splits), seq_len=3, batch_size=8)
    host.setup("fit")
    rows = batch["row"].cpu()
    torch.testing.assert_close(batch["x"].cpu(), host.panel("train").features[rows.unsqueeze(1) + torch.arange(-2, 1)])


@pytest.fixture
def output_dtypes():
    """Dtypes of every TransformerNet forward output in training, in this process, while the fixture is active."""
    seen: list[torch.dtype] = []

    def hook(module, args, output):
        if type(module).__name__ == "TransformerNet" and module.training:
            seen.append(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    yield seen
    handle.remove()


@pytest.mark.parametrize(("precision", "dtype"), [("bf16-mixed", torch.bfloat16), ("32-true", torch.float32)])
def test_precision_reaches_the_forward_pass(tmp_path, fit_args, output_dtypes, precision, dtype):
    # The transformer, not the LSTM: oneDNN has no bf16 LSTM kernel on CPUs without AVX-512 (this one),
    # so a bf16 LSTM fails there with "could not create a primitive descriptor" (tests/test_ddp.py's case).
    net = "--model.init_args.net.init_args."
    small = [f"{net}d_model", "16", f"{net}dim_feedforward", "32", f"{net}num_layers", "1"]
    assert main(["fit", *fit_args("configs/transformer.yaml", epochs=1), *small, "--trainer.precision", precision]) == 0
    assert output_dtypes and set(output_dtypes) == {dtype}, set(output_dtypes)
    metrics = json.loads((tmp_path / "runs/transformer_h5/version_0/metrics.json").read_text())
    assert 0.0 < metrics["test/log_loss"] < 5.0  # the loss and metrics stay float32 and finite
