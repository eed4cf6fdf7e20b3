from __future__ import annotations

import pytest

from archbench.errors import ArchbenchError, SpecError, UnknownNameError
from archbench.registry import BLOCKS, Registry


def test_duplicate_name_raises() -> None:
    reg: Registry[int] = Registry("thing")
    reg.add("a", 1)
    with pytest.raises(ArchbenchError, match="'a' is already registered"):
        reg.add("a", 2)


def test_unknown_name_suggests_closest() -> None:
    with pytest.raises(
        UnknownNameError, match=r"unknown block 'bottlenek'; did you mean 'bottleneck'"
    ):
        BLOCKS.get("bottlenek")


def test_duplicate_builtin_block_rejected() -> None:
    with pytest.raises(ArchbenchError, match="already registered"):
        BLOCKS.add("basic", object)


def test_param_type_errors_name_block_param_and_allowed() -> None:
    cls = BLOCKS.get("bottleneck")
    with pytest.raises(SpecError, match=r"block 'bottleneck': param 'groups' must be int"):
        cls(64, 256, 1, groups="8")
    with pytest.raises(SpecError, match=r"param 'shortcut' must be one of 'A', 'B', 'C'"):
        cls(64, 256, 1, shortcut="D")
    with pytest.raises(SpecError, match="w_out 250 must be divisible by expansion 4"):
        cls(64, 250, 1)
