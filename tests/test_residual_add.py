"""ResidualAdd's in-place merge: used exactly where it cannot be told apart from ``a + b``."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from archbench.errors import SpecError
from archbench.models.blocks.base import ResidualAdd
from archbench.registry import BLOCKS

# Blocks whose branch ends in a BN or a conv: the merge must go in place (the speed-up).
IN_PLACE_BLOCKS = (
    "basic",
    "bottleneck",
    "resnext",
    "wide",
    "preact_basic",
    "preact_bottleneck",
    "basic_relu_preact",
    "basic_bn_after_add",
    "basic_scaled",
    "inception_resnet_a",
)
# Branch ends in a ReLU, whose backward reads its output: must stay out of place.
OUT_OF_PLACE_BLOCKS = ("basic_relu_before_add", "bottleneck_relu_before_add")


def _merges(block: nn.Module) -> list[ResidualAdd]:
    return [m for m in block.modules() if type(m) is ResidualAdd]


def _spy(add: ResidualAdd, log: list[bool]) -> None:
    """Record, per call, whether the merge went in place."""
    decide = add._can_add_into

    def spy(shortcut: torch.Tensor, branch: torch.Tensor) -> bool:
        log.append(decide(shortcut, branch))
        return log[-1]

    add._can_add_into = spy  # type: ignore[method-assign]


def _block(name: str) -> nn.Module | None:
    try:
        return BLOCKS.get(name)(64, 64, 1)
    except SpecError:
        return None


@pytest.mark.parametrize("name", BLOCKS.names())
def test_in_place_merge_changes_nothing(name: str) -> None:
    """Train-mode forward and backward: bitwise the same outputs, input gradients and
    parameter gradients as with ``inplace=False``, and the block's input left intact."""
    cls = BLOCKS.get(name)
    stride = 1 if 1 in cls.strides else 2
    try:
        block = cls(64, 64 if stride == 1 else 128, stride)
    except SpecError as exc:
        pytest.skip(f"{name}: {exc}")
    reference = copy.deepcopy(block)
    for add in _merges(reference):
        add.inplace = False
    block.train()
    reference.train()
    x = torch.randn(4, 64, 8, 8)
    results = []
    for net in (block, reference):
        torch.manual_seed(1)  # same dropout masks
        xi = x.clone().requires_grad_(True)
        out = net(xi)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        assert torch.equal(xi.detach(), x), f"{name}: the block modified its input"
        results.append((out.detach(), xi.grad, [p.grad for p in net.parameters()]))
    (out_a, gx_a, gp_a), (out_b, gx_b, gp_b) = results
    assert torch.equal(out_a, out_b)
    assert torch.equal(gx_a, gx_b)
    assert all(torch.equal(a, b) for a, b in zip(gp_a, gp_b, strict=True))


@pytest.mark.parametrize("name", IN_PLACE_BLOCKS + OUT_OF_PLACE_BLOCKS)
def test_which_blocks_merge_in_place(name: str) -> None:
    block = _block(name)
    assert block is not None
    log: list[bool] = []
    for add in _merges(block):
        _spy(add, log)
    block.train()(torch.randn(2, 64, 8, 8)).sum().backward()
    assert log, name
    assert all(log) if name in IN_PLACE_BLOCKS else not any(log), (name, log)


def _bn_branch(n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    bn = nn.BatchNorm2d(3)
    shortcut = torch.randn(n, 3, 4, 4, requires_grad=True)
    return shortcut, bn(torch.randn(n, 3, 4, 4))


def test_in_place_only_where_autograd_allows_it() -> None:
    add = ResidualAdd()
    shortcut, branch = _bn_branch()
    assert type(branch.grad_fn).__name__ == "NativeBatchNormBackward0"
    expected = shortcut.detach() + branch.detach()
    out = add(shortcut, branch)
    assert out is branch and torch.equal(out.detach(), expected)  # in place: torchvision's +=

    # The branch's last op reads its output in backward (ReLU, sigmoid): out of place.
    for act in (torch.relu, torch.sigmoid, torch.tanh):
        shortcut, branch = _bn_branch()
        branch = act(branch)
        kept = branch.detach().clone()
        assert add(shortcut, branch) is not branch and torch.equal(branch.detach(), kept)
    # A view, a broadcast, another dtype, the same tensor twice, no autograd: out of place.
    shortcut, branch = _bn_branch()
    assert add(shortcut[:1], branch[:1]) is not branch
    shortcut, _ = _bn_branch()
    branch = nn.BatchNorm2d(3)(torch.randn(2, 3, 1, 4))
    assert add(shortcut, branch).shape == shortcut.shape
    shortcut, branch = _bn_branch()
    assert add(shortcut.double(), branch).dtype == torch.float64
    shortcut, branch = _bn_branch()
    assert add(branch, branch) is not branch
    shortcut, branch = _bn_branch()
    with torch.no_grad():
        branch = branch.detach()
        assert add(shortcut, branch) is not branch
    # Switched off.
    shortcut, branch = _bn_branch()
    assert ResidualAdd(inplace=False)(shortcut, branch) is not branch
    assert "inplace=False" in repr(ResidualAdd(inplace=False))


def test_hooks_see_the_inputs() -> None:
    add = ResidualAdd()
    shortcut, branch = _bn_branch()
    kept = branch.detach().clone()
    seen: list[torch.Tensor] = []
    # A forward hook reads inputs after the call: the merge must leave them intact for it.
    handle = add.register_forward_hook(lambda _m, inp, _o: seen.append(inp[1].detach().clone()))
    assert add(shortcut, branch) is not branch
    handle.remove()
    assert torch.equal(seen[-1], kept)
    # A forward pre-hook reads them before: the merge may then go in place.
    shortcut, branch = _bn_branch()
    kept = branch.detach().clone()
    add.register_forward_pre_hook(lambda _m, inp: seen.append(inp[1].detach().clone()))
    assert add(shortcut, branch) is branch
    assert torch.equal(seen[-1], kept)


def test_scaled_merge_adds_into_the_scaled_copy() -> None:
    add = ResidualAdd(shortcut_scale=0.5, branch_scale=0.2)
    shortcut, branch = _bn_branch()
    kept = branch.detach().clone()
    out = add(shortcut, branch)
    assert torch.equal(branch.detach(), kept)
    assert torch.allclose(out.detach(), 0.5 * shortcut.detach() + 0.2 * kept)


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::torch.jit.TracerWarning")
def test_traced_merge_is_out_of_place() -> None:
    # fvcore traces with torch.jit: keep the graph's op an aten::add, as counted and reported.
    bn = nn.BatchNorm2d(3)

    class Merge(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn, self.add = bn, ResidualAdd()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.add(x, self.bn(x))

    merge, x = Merge().eval(), torch.randn(2, 3, 4, 4)  # eval: no num_batches_tracked.add_
    branch = bn(x)
    assert merge.add(x, branch) is branch  # untraced, this merge goes in place
    graph = torch.jit.trace(merge, x, check_trace=False).inlined_graph
    kinds = {node.kind() for node in graph.nodes()}
    assert "aten::add" in kinds and "aten::add_" not in kinds
