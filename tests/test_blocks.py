"""Every registered block, tested with no per-block code: a new block is covered automatically.

The checks themselves live in :mod:`archbench.testing`, so a plugin author runs the same ones.
"""

from __future__ import annotations

import pytest

from archbench import testing
from archbench.registry import BLOCKS


def block_cases() -> list:
    return [
        pytest.param(name, w_in, w_out, stride, id=f"{name}-{w_in}-{w_out}-s{stride}")
        for name, w_in, w_out, stride in testing.block_cases()
    ]


@pytest.mark.parametrize(("name", "w_in", "w_out", "stride"), block_cases())
def test_block_shape_and_gradients(name: str, w_in: int, w_out: int, stride: int) -> None:
    skipped = testing.check_shapes_and_gradients(name, w_in, w_out, stride)
    if skipped:
        pytest.skip(skipped)


@pytest.mark.parametrize("name", BLOCKS.names())
def test_block_rejects_unknown_param(name: str) -> None:
    testing.check_rejects_unknown_param(name)


@pytest.mark.parametrize("name", BLOCKS.names())
def test_block_is_documented(name: str) -> None:
    testing.check_documented(name)


@pytest.mark.parametrize("name", BLOCKS.names())
def test_zero_init_last_makes_branch_silent(name: str) -> None:
    """Blocks that offer zero_init_last start as their shortcut (identity for same shape)."""
    skipped = testing.check_zero_init_last(name)
    if skipped:
        pytest.skip(skipped)


def test_the_contract_checks_can_fail() -> None:
    """A block that breaks the contract is caught, naming the block and what is wrong."""
    from archbench.models.blocks.resnet import BasicBlock

    class Undocumented(BasicBlock):
        pass

    Undocumented.__doc__ = None
    Undocumented.block_name = "undocumented_basic"  # what register_block would set
    with (
        BLOCKS.registered("undocumented_basic", Undocumented, description=""),
        pytest.raises(AssertionError, match="block undocumented_basic needs a one-line"),
    ):
        testing.check_block("undocumented_basic")

    class LosesGradient(BasicBlock):
        """Basic block whose second BN never sees the output (its grads stay None)."""

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.relu(self.bn1(self.conv1(x)))

    LosesGradient.block_name = "loses_gradient"
    with (
        BLOCKS.registered("loses_gradient", LosesGradient, family="test"),
        pytest.raises(AssertionError, match=r"loses_gradient: parameter \S+ got no gradient"),
    ):
        testing.check_shapes_and_gradients("loses_gradient", 64, 64, 1)
