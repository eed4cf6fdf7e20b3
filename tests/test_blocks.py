"""Every registered block, tested with no per-block code: a new block is covered automatically."""

from __future__ import annotations

import pytest
import torch

from archbench.errors import SpecError
from archbench.registry import BLOCKS

# (w_in, w_out, stride): same shape, downsample + widen, widen only.
CASES = [(64, 64, 1), (64, 128, 2), (64, 128, 1)]


def block_cases() -> list:
    out = []
    for name in BLOCKS.names():
        cls = BLOCKS.get(name)
        for w_in, w_out, stride in CASES:
            if stride in cls.strides:
                out.append(
                    pytest.param(name, w_in, w_out, stride, id=f"{name}-{w_in}-{w_out}-s{stride}")
                )
    return out


@pytest.mark.parametrize(("name", "w_in", "w_out", "stride"), block_cases())
def test_block_shape_and_gradients(name: str, w_in: int, w_out: int, stride: int) -> None:
    cls = BLOCKS.get(name)
    try:
        block = cls(w_in, w_out, stride)
    except SpecError as exc:  # e.g. a parameter-free shortcut cannot change this shape
        pytest.skip(f"{name} does not support {w_in}->{w_out}/s{stride}: {exc}")
    block.train()
    size = 9  # odd on purpose: output sizes must follow output_size()
    x = torch.randn(2, w_in, size, size, requires_grad=True)
    y = block(x)
    out = block.output_size(size)
    assert y.shape == (2, w_out, out, out)
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for pname, p in block.named_parameters():
        assert p.grad is not None, f"{name}: parameter {pname} got no gradient"
        assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", BLOCKS.names())
def test_block_rejects_unknown_param(name: str) -> None:
    with pytest.raises(SpecError, match=rf"block '{name}'.*unknown param 'no_such_param'.*allowed"):
        BLOCKS.get(name)(16, 16, 1, no_such_param=1)


@pytest.mark.parametrize("name", BLOCKS.names())
def test_block_is_documented(name: str) -> None:
    entry = BLOCKS.entry(name)
    assert entry.description, f"block {name} needs a one-line docstring"
    assert entry.meta.get("family"), f"block {name} needs a family"


@pytest.mark.parametrize("name", BLOCKS.names())
def test_zero_init_last_makes_branch_silent(name: str) -> None:
    """Blocks that offer zero_init_last start as their shortcut (identity for same shape)."""
    cls = BLOCKS.get(name)
    if 1 not in cls.strides:
        pytest.skip("stride-changing block (reduction): no same-shape form")
    try:
        block = cls(64, 64, 1)
    except SpecError as exc:
        pytest.skip(f"{name} cannot map 64 -> 64 at stride 1 with default params: {exc}")
    hook = getattr(block, "zero_init_last", None)
    if not callable(hook) or not getattr(block, "residual", True):
        pytest.skip("no zero_init_last hook")
    hook()
    block.eval()
    x = torch.randn(2, 64, 6, 6).relu()  # post-activation blocks end in ReLU
    hits = []
    from archbench.models.blocks.base import ResidualAdd

    for m in block.modules():
        if isinstance(m, ResidualAdd):
            # A pre-hook: the merge may write its sum into the branch (see ResidualAdd).
            m.register_forward_pre_hook(lambda mod, inp: hits.append(inp[1].abs().max().item()))
    block(x)
    assert hits, f"{name}: residual block should merge through ResidualAdd"
    assert max(hits) == 0.0
