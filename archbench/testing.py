"""The block contract as checks a plugin author can run without an archbench checkout.

Every registered block, built-in or from a plugin, must: build as ``Block(w_in, w_out,
stride)`` and give the shape ``output_size()`` promises at stride 1 and 2 and with a width
change; be finite and send a gradient to every parameter; reject an unknown param with a
message naming the block, the param and what is allowed; carry a one-line description and a
family; and, when it offers ``zero_init_last()``, start as its shortcut.

From a plugin's tests (pytest, with the plugin installed)::

    from archbench.testing import check_block

    def test_se_basic_meets_the_block_contract():
        check_block("se_basic")

Each check raises :class:`AssertionError` naming the block and what failed; ``check_block``
returns the cases it could not run (e.g. a parameter-free shortcut that cannot change width),
each with its reason. archbench's own ``tests/test_blocks.py`` runs these on every block.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch

from archbench import registry
from archbench.errors import SpecError
from archbench.registry import BLOCKS

#: (w_in, w_out, stride): same shape, downsample + widen, widen only.
CASES: tuple[tuple[int, int, int], ...] = ((64, 64, 1), (64, 128, 2), (64, 128, 1))


def _expect(condition: bool, message: str) -> None:
    if not condition:  # not `assert`: these checks must also run under python -O
        raise AssertionError(message)


def block_cases(names: list[str] | None = None) -> list[tuple[str, int, int, int]]:
    """(block, w_in, w_out, stride) for every case a block's declared strides allow."""
    out = []
    for name in BLOCKS.names() if names is None else names:
        strides = BLOCKS.get(name).strides
        out += [(name, w_in, w_out, s) for w_in, w_out, s in CASES if s in strides]
    return out


def check_shapes_and_gradients(name: str, w_in: int, w_out: int, stride: int) -> str | None:
    """Forward and backward in train mode; returns why the case was skipped, else None."""
    cls = BLOCKS.get(name)
    try:
        block = cls(w_in, w_out, stride)
    except SpecError as exc:  # e.g. a parameter-free shortcut cannot change this shape
        return f"{name} does not support {w_in}->{w_out}/s{stride}: {exc}"
    block.train()
    size = 9  # odd on purpose: output sizes must follow output_size()
    x = torch.randn(2, w_in, size, size, requires_grad=True)
    y = block(x)
    out = block.output_size(size)
    _expect(
        tuple(y.shape) == (2, w_out, out, out),
        f"{name}: output shape {tuple(y.shape)}, expected {(2, w_out, out, out)}",
    )
    _expect(bool(torch.isfinite(y).all()), f"{name}: non-finite output")
    y.square().mean().backward()
    _expect(
        x.grad is not None and bool(torch.isfinite(x.grad).all()),
        f"{name}: the input got no finite gradient",
    )
    for pname, p in block.named_parameters():
        _expect(p.grad is not None, f"{name}: parameter {pname} got no gradient")
        _expect(bool(torch.isfinite(p.grad).all()), f"{name}: parameter {pname}: non-finite grad")
    return None


def check_rejects_unknown_param(name: str) -> None:
    pattern = rf"block '{re.escape(name)}'.*unknown param 'no_such_param'.*allowed"
    try:
        BLOCKS.get(name)(16, 16, 1, no_such_param=1)
    except SpecError as exc:
        _expect(
            re.search(pattern, str(exc)) is not None,
            f"{name}: an unknown param must fail naming the block, the param and the allowed "
            f"ones; got {exc}",
        )
        return
    raise AssertionError(f"{name}: an unknown param was accepted (expected SpecError)")


def check_documented(name: str) -> None:
    entry = BLOCKS.entry(name)
    _expect(bool(entry.description), f"block {name} needs a one-line docstring")
    _expect(bool(entry.meta.get("family")), f"block {name} needs a family")


def check_zero_init_last(name: str) -> str | None:
    """Blocks that offer ``zero_init_last`` start as their shortcut (identity for the same
    shape): the branch reaching the residual add is exactly zero. Returns why skipped."""
    from archbench.models.blocks.base import ResidualAdd

    cls = BLOCKS.get(name)
    if 1 not in cls.strides:
        return "stride-changing block (reduction): no same-shape form"
    try:
        block = cls(64, 64, 1)
    except SpecError as exc:
        return f"{name} cannot map 64 -> 64 at stride 1 with default params: {exc}"
    hook = getattr(block, "zero_init_last", None)
    if not callable(hook) or not getattr(block, "residual", True):
        return "no zero_init_last hook"
    hook()
    block.eval()
    x = torch.randn(2, 64, 6, 6).relu()  # post-activation blocks end in ReLU
    hits: list[float] = []
    for m in block.modules():
        if isinstance(m, ResidualAdd):
            # A pre-hook: the merge may write its sum into the branch (see ResidualAdd).
            m.register_forward_pre_hook(lambda mod, inp: hits.append(inp[1].abs().max().item()))
    block(x)
    _expect(bool(hits), f"{name}: residual block should merge through ResidualAdd")
    _expect(max(hits) == 0.0, f"{name}: after zero_init_last the branch is {max(hits)}, not 0")
    return None


def check_block(name: str) -> list[str]:
    """Run every contract check on the registered block ``name``; returns the skip reasons."""
    _expect(name in BLOCKS, BLOCKS.unknown_message(name))
    skipped = [
        reason
        for case in block_cases([name])
        if (reason := check_shapes_and_gradients(*case)) is not None
    ]
    _expect(len(skipped) < len(block_cases([name])), f"{name}: no shape case could be built at all")
    check_rejects_unknown_param(name)
    check_documented(name)
    reason = check_zero_init_last(name)
    if reason is not None:
        skipped.append(reason)
    return skipped


@contextlib.contextmanager
def registries_restored() -> Iterator[None]:
    """Every registry (blocks, stems, heads, families, presets, datasets, plot kinds) exactly as
    it was on entry, once the block exits: entries added, removed or replaced inside are
    undone, plugins installed in the environment stay registered."""
    registries = [r for r in vars(registry).values() if isinstance(r, registry.Registry)]
    for reg in registries:  # loaded first: a built-in module registers only on first import
        reg._ensure_loaded()
    saved = [(reg, dict(reg._entries)) for reg in registries]
    try:
        yield
    finally:
        for reg, entries in saved:
            reg._entries.clear()
            reg._entries.update(entries)
            reg._loaded = True
