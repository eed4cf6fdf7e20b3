"""archbench: a benchmarking suite for residual-network architecture variants.

The public Python API, imported lazily (``import archbench`` loads neither torch nor Optuna;
each name loads its module on first use):

- build a net: :class:`NetSpec`, :func:`get_preset` (a named spec), :func:`build_net`;
- count it: :func:`measure` (fvcore trace), :func:`analytic` (meta device, fast);
- match a budget: :func:`solve` (the width or depth that meets a params/MACs target);
- run a spec: :func:`load_spec`, :func:`run_spec` (train every trial in this process);
- load results as DataFrames: :class:`ResultsStore` (``runs()``, ``epochs()``, ...) and
  :func:`load_experiment` (one experiment's runs, ready for the analysis).

Everything else is importable from its module (``archbench.models``, ``archbench.runner``,
``archbench.store``, ``archbench.analysis``) but is not promised to stay put.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> the module that defines it
_API = {
    "NetSpec": "archbench.models.net",
    "build_net": "archbench.models.net",
    "get_preset": "archbench.models.presets",
    "measure": "archbench.models.complexity",
    "analytic": "archbench.models.complexity",
    "solve": "archbench.models.budget",
    "load_spec": "archbench.runner.spec",
    "run_spec": "archbench.runner.run",
    "ResultsStore": "archbench.store",
    "load_experiment": "archbench.analysis.data",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'archbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup skips this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
