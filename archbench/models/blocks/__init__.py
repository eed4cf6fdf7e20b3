"""Built-in blocks, stems and heads. Importing this package registers them all.

One module per family; add a new module to ``_FAMILY_MODULES`` (or ship it as a plugin through
the ``archbench.blocks`` entry-point group).
"""

from __future__ import annotations

import importlib

from archbench.models.blocks.base import Block, Component, Head, ResidualAdd, Stem

_FAMILY_MODULES = [
    "stems",
    "resnet",
    "inception_resnet",
    "vgg",
    "preact",
    "gating",
    "wide",
    "resnext",
]

for _module in _FAMILY_MODULES:
    importlib.import_module(f"archbench.models.blocks.{_module}")

__all__ = ["Block", "Component", "Head", "ResidualAdd", "Stem"]
