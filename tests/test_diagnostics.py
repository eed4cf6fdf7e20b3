"""Per-block diagnostics: gradient norms, branch ratios, and that measuring changes nothing."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from archbench.data import LoadedData, load_dataset
from archbench.models.blocks.base import ResidualAdd
from archbench.models.net import HeadSpec, NetSpec, StageSpec, StemSpec, build_net
from archbench.training.diagnostics import BlockDiagnostics, block_diagnostics
from archbench.training.train import Recipe, seed_everything, train


@pytest.fixture(scope="module")
def data() -> LoadedData:
    return load_dataset("digits", train_subset=192, test_subset=64, val_size=0)


def net_of(block: str, depth: int = 2, dropout: float = 0.0) -> nn.Module:
    spec = NetSpec(
        stem=StemSpec("cifar", 8),
        stages=(StageSpec(block, depth, 8), StageSpec(block, depth, 16, stride=2)),
        head=HeadSpec("linear", {"dropout": dropout} if dropout else {}),
        num_classes=10,
        in_channels=1,
        input_size=8,
    )
    seed_everything(0)
    return build_net(spec)


def batch(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 8, 8, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def test_residual_blocks_have_ratios_plain_blocks_do_not() -> None:
    x, y = batch()
    residual = block_diagnostics(net_of("basic"), x, y, epoch=0)
    plain = block_diagnostics(net_of("plain_basic"), x, y, epoch=0)
    names = ["stages.0.0", "stages.0.1", "stages.1.0", "stages.1.1"]
    assert [d.block for d in residual] == names and [d.index for d in residual] == [0, 1, 2, 3]
    assert all(d.branch_ratio is not None and 0 < d.branch_ratio < math.inf for d in residual)
    assert [d.block for d in plain] == names
    assert all(d.branch_ratio is None for d in plain)


def test_early_blocks_get_nonzero_gradients() -> None:
    x, y = batch()
    for block in ("basic", "plain_basic"):
        diags = block_diagnostics(net_of(block), x, y, epoch=0)
        assert all(d.grad_norm > 0 and math.isfinite(d.grad_norm) for d in diags), block
        assert diags[0].grad_norm > 1e-6


def test_grad_norm_matches_a_manual_backward() -> None:
    net = net_of("basic", depth=1)
    x, y = batch()
    diags = block_diagnostics(net, x, y, epoch=3)
    ref = copy.deepcopy(net).train()
    nn.functional.cross_entropy(ref(x), y).backward()
    for d, (_, block) in zip(diags, ref.blocks()):
        expected = torch.sqrt(sum(p.grad.pow(2).sum() for p in block.parameters()))
        assert d.epoch == 3 and d.grad_norm == pytest.approx(float(expected), rel=1e-5)


class ScaledBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.add = ResidualAdd(shortcut_scale=2.0, branch_scale=0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.add(x, self.conv(x))


class TwoBlockNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = ScaledBlock()
        self.second = nn.Conv2d(2, 2, 1)  # a "block" without ResidualAdd
        self.fc = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.second(self.first(x)).mean((2, 3)))

    def blocks(self):
        yield "stages.0.0", self.first
        yield "stages.0.1", self.second


def test_branch_ratio_uses_the_scales() -> None:
    torch.manual_seed(0)
    net = TwoBlockNet()
    x, y = torch.randn(4, 2, 5, 5), torch.tensor([0, 1, 2, 0])
    first, second = block_diagnostics(net, x, y, epoch=0)
    with torch.no_grad():
        expected = 0.5 * net.first.conv(x).norm() / (2.0 * x.norm())
    assert first.branch_ratio == pytest.approx(float(expected), rel=1e-5)
    assert second.branch_ratio is None and second.grad_norm > 0


def test_modules_without_blocks_give_no_diagnostics() -> None:
    assert (
        block_diagnostics(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), *batch(), epoch=0) == []
    )


def test_measuring_changes_no_model_state_and_no_random_state() -> None:
    net = net_of("basic", dropout=0.5).eval()
    before = copy.deepcopy(net.state_dict())
    torch.manual_seed(7)
    rng = torch.get_rng_state()
    block_diagnostics(net, *batch(), epoch=0)
    assert not net.training  # mode kept
    assert all(p.grad is None for p in net.parameters())
    for key, value in net.state_dict().items():  # BN running stats included
        assert torch.equal(value, before[key]), key
    assert torch.equal(torch.get_rng_state(), rng)


def test_enabling_diagnostics_does_not_change_training(data: LoadedData) -> None:
    recipe = Recipe(epochs=2, batch_size=32, lr=0.05)
    nets, results = [], []
    for every in (1, 0):
        net = net_of("basic", depth=1, dropout=0.3)
        results.append(train(net, data, recipe, diagnostics_every=every, progress=False))
        nets.append(net)
    for key, value in nets[0].state_dict().items():
        assert torch.equal(value, nets[1].state_dict()[key]), key
    on, off = results
    assert [m.test_loss for m in on.epochs] == [m.test_loss for m in off.epochs]
    assert off.diagnostics == []
    # At initialisation (epoch 0) and after each epoch, for both blocks.
    assert [(d.epoch, d.block) for d in on.diagnostics] == [
        (e, b) for e in (0, 1, 2) for b in ("stages.0.0", "stages.1.0")
    ]
    assert all(isinstance(d, BlockDiagnostics) for d in on.diagnostics)
