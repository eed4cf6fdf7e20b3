"""One fvcore trace of one module: MACs and activations by operator, and the uncounted ops.

fvcore's two analyses would trace twice; :func:`fvcore_trace` gets both from one trace (each
operator handle returns both). Its import and trace noise is silenced here too.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@contextlib.contextmanager
def quiet_fvcore() -> Iterator[None]:
    """Silence fvcore's import/trace noise: torch>=2.14 deprecates ``torch.jit.*``
    (FutureWarning), the tracer warns about Python values, fvcore logs skipped operators."""
    fv_logger = logging.getLogger("fvcore")
    level = fv_logger.level
    fv_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            yield
    finally:
        fv_logger.setLevel(level)


@dataclass(frozen=True)
class Traced:
    macs: dict[str, Counter[str]]  # module name ("" = whole net) -> label -> MACs
    acts: dict[str, Counter[str]]
    uncounted: dict[str, int]


def _split(counter: Mapping[str, Any], prefix: str) -> Counter[str]:
    return Counter({k[len(prefix) :]: int(v) for k, v in counter.items() if k.startswith(prefix)})


def fvcore_trace(net: nn.Module, x: torch.Tensor, parts: list[str]) -> Traced:
    """Flop and activation counts from ONE fvcore trace (fvcore's two analyses would trace
    twice): each operator handle returns both, labelled ``mac/<op>`` and ``act/<op>``."""
    with quiet_fvcore():
        from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis
        from fvcore.nn.jit_analysis import JitModelAnalysis

        try:  # fvcore's default handle tables (module-private; stable in the final release)
            from fvcore.nn.activation_count import _DEFAULT_SUPPORTED_OPS as act_ops
            from fvcore.nn.flop_count import _DEFAULT_SUPPORTED_OPS as flop_ops
        except ImportError:  # pragma: no cover - a future fvcore: trace twice
            return fvcore_trace_twice(net, x, parts, FlopCountAnalysis, ActivationCountAnalysis)

        def both(kind: str) -> Any:
            label = kind.split("::", 1)[-1]

            def handle(inputs: list[Any], outputs: list[Any]) -> Counter[str]:
                result: Counter[str] = Counter()
                for prefix, table in (("mac/", flop_ops), ("act/", act_ops)):
                    if kind in table:
                        value = table[kind](inputs, outputs)
                        named = value if isinstance(value, Counter) else {label: value}
                        result.update({prefix + k: v for k, v in named.items()})
                return result

            return handle

        analysis = JitModelAnalysis(net, x)
        analysis.set_op_handle(**{kind: both(kind) for kind in set(flop_ops) | set(act_ops)})
        _silence(analysis)
        by_module = analysis.by_module_and_operator()
        uncounted = {k: int(v) for k, v in analysis.unsupported_ops().items()}
    names = ["", *parts]
    return Traced(
        macs={n: _split(by_module.get(n, {}), "mac/") for n in names},
        acts={n: _split(by_module.get(n, {}), "act/") for n in names},
        uncounted=uncounted,
    )


def _silence(analysis: Any) -> None:
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")


def fvcore_trace_twice(
    net: nn.Module, x: torch.Tensor, parts: list[str], flop_cls: Any, act_cls: Any
) -> Traced:
    flops, acts = flop_cls(net, x), act_cls(net, x)
    for analysis in (flops, acts):
        _silence(analysis)
    fm, am = flops.by_module_and_operator(), acts.by_module_and_operator()
    names = ["", *parts]
    return Traced(
        macs={n: Counter({k: int(v) for k, v in fm.get(n, {}).items()}) for n in names},
        acts={n: Counter({k: int(v) for k, v in am.get(n, {}).items()}) for n in names},
        uncounted={k: int(v) for k, v in flops.unsupported_ops().items()},
    )
