"""fvcore counts of a whole net (:func:`measure`): which pieces to trace, how they add up.

See the package docstring: a Net is sequential, so the stem, each distinct block and the head
are traced one after the other on their real inputs, and repeated blocks are multiplied out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from archbench.errors import SpecError
from archbench.models.complexity.counts import (
    Complexity,
    StageCount,
    check_input_size,
    top_level_parts,
)
from archbench.models.complexity.fvcore_trace import Traced, fvcore_trace
from archbench.models.net import Net, NetSpec, build_net

log = logging.getLogger(__name__)


def measure(
    spec_or_net: NetSpec | Net, input_size: int | None = None, *, full_trace: bool = False
) -> Complexity:
    """Count params, MACs and activations of a spec or a built :class:`Net` with fvcore.

    The count is made in ``eval()`` mode (fvcore's BatchNorm count depends on it; a given
    net's mode is restored afterwards) on one ``(1, in_channels, S, S)`` image, ``S`` being
    ``input_size`` or the spec's own.

    By default the net is traced piece by piece (module docstring): a spec is built on CPU
    with at most two blocks per stage, and the repeated block's counts are multiplied out; a
    given net has each distinct block traced once. ``full_trace=True`` traces the whole net in
    one go instead (what fvcore does on its own; slow for deep nets). Both give identical
    results; the tests check it. The traces run on one intra-op thread (:class:`_ThreadPin`);
    the thread count is restored afterwards.
    """
    net: Net | None
    if isinstance(spec_or_net, NetSpec):
        spec = spec_or_net if input_size is None else spec_or_net.replace(input_size=input_size)
        net = None
    elif isinstance(spec_or_net, Net):
        net = spec_or_net
        spec = net.spec if input_size is None else net.spec.replace(input_size=input_size)
        first = next(net.parameters(), None)
        if first is not None and first.device.type == "meta":
            net = None  # a meta model cannot run; an identical real one can
    else:
        raise SpecError(f"measure() takes a NetSpec or a Net, got {type(spec_or_net).__name__}")
    check_input_size(spec.input_size)
    with _single_thread():
        return _measure(spec, net, full_trace)


class _ThreadPin:
    """One intra-op thread while any :func:`measure` runs, then the previous count back.

    fvcore traces at batch 1: many small ops, each a parallel region. Extra threads buy
    little there and cost much when the cores are shared (on 2 busy cores, 2 threads made a
    ResNet-20 count 10x slower: 0.3 s vs 0.03 s). Counted under a lock, so overlapping calls
    from several threads restore the count once, when the last one leaves.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved = 1

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                self._saved = torch.get_num_threads()
                torch.set_num_threads(1)
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    torch.set_num_threads(self._saved)


_single_thread = _ThreadPin()


def _measure(spec: NetSpec, net: Net | None, full_trace: bool) -> Complexity:
    if full_trace or (net is not None and type(net).forward is not Net.forward):
        # A Net subclass with its own forward may compute between the parts: trace it whole.
        return _measure_whole(spec, net if net is not None else build_net(spec))
    if net is not None:
        return _measure_net(spec, net)
    short = spec.replace(
        stages=tuple(dataclasses.replace(s, depth=min(s.depth, 2)) for s in spec.stages)
    )
    try:
        return _measure_built(spec, build_net(short), repeat_second=True)
    except _Reshaped as exc:
        log.debug("%s: a repeated block changes its input's shape; tracing every block", exc)
        return _measure_net(spec, build_net(spec))


def _input(spec: NetSpec, net: nn.Module) -> torch.Tensor:
    first = next(net.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    return torch.zeros(1, spec.in_channels, spec.input_size, spec.input_size, device=device)


def _measure_whole(spec: NetSpec, net: Net) -> Complexity:
    """fvcore on the whole net in one trace (``measure(..., full_trace=True)``)."""
    x = _input(spec, net)
    parts = top_level_parts(net)
    shapes: dict[str, tuple[int, ...]] = {}
    handles = [
        module.register_forward_hook(
            lambda _m, _i, out, key=name: shapes.__setitem__(key, tuple(int(d) for d in out.shape))
        )
        for name, module in parts
    ]
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            traced = fvcore_trace(net, x, [name for name, _ in parts])
    finally:
        net.train(was_training)
        for handle in handles:
            handle.remove()
    stages = tuple(
        StageCount(
            name,
            sum(p.numel() for p in module.parameters()),
            sum(traced.macs[name].values()),
            sum(traced.acts[name].values()),
            shapes.get(name, ()),
        )
        for name, module in parts
    )
    return _complexity(
        spec,
        params=sum(p.numel() for p in net.parameters()),
        trainable=sum(p.numel() for p in net.parameters() if p.requires_grad),
        macs=traced.macs[""],
        acts=traced.acts[""],
        uncounted=Counter(traced.uncounted),
        stages=stages,
    )


# -- piece-wise tracing ---------------------------------------------------------------------


class _Reshaped(Exception):
    """A block counted for several copies changes its input's shape: its copies differ."""


@dataclass(frozen=True)
class _Piece:
    """A module traced on its own; ``times`` identical copies of it run in the net."""

    part: str  # "stem", "stages.<i>" or "head": where its counts go
    module: nn.Module
    times: int = 1


_PLAIN = (bool, int, float, str, type(None))


def _plain(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    return isinstance(value, _PLAIN) or (
        dataclasses.is_dataclass(value) and not isinstance(value, type)
    )


def _signature(module: nn.Module) -> str:
    """What fixes a module's traced counts besides its input: for it and every submodule,
    the class, the plain attributes (widths, strides, flags, scales, params dataclass),
    ``extra_repr`` and mode, and every parameter and buffer shape. Copies of a block built
    from the same arguments share it; a block edited after building does not."""
    rows: list[Any] = []
    for name, m in module.named_modules():
        attrs = sorted((k, repr(v)) for k, v in vars(m).items() if k[0] != "_" and _plain(v))
        rows.append((name, type(m).__module__, type(m).__qualname__, m.extra_repr(), attrs))
    rows += [(n, tuple(p.shape), p.dtype, p.requires_grad) for n, p in module.named_parameters()]
    rows += [(n, tuple(b.shape), b.dtype) for n, b in module.named_buffers()]
    return repr(rows)


def _trace_piece(module: nn.Module, x: torch.Tensor) -> tuple[Traced, torch.Tensor]:
    """fvcore counts of ``module`` on ``x`` and its output (caught in the same trace)."""
    outputs: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: outputs.append(out))
    try:
        traced = fvcore_trace(module, x, [])
    finally:
        handle.remove()
    if not outputs or not isinstance(outputs[-1], torch.Tensor):
        raise SpecError(f"{type(module).__name__}: expected a tensor output")
    return traced, outputs[-1].detach()


def _measure_built(spec: NetSpec, net: Net, *, repeat_second: bool) -> Complexity:
    """Trace ``net`` piece by piece: the stem, each block, the head, each on the output of
    the piece before. Blocks with the same signature (:func:`_signature`) and input shape are
    traced once. ``repeat_second``: ``net`` is ``spec`` built with at most two blocks per
    stage, and the second block of a stage stands for blocks ``1..depth-1`` of the spec."""
    pieces = [_Piece("stem", net.stem)]
    for i, stage in enumerate(net.stages):
        for j, block in enumerate(stage):
            times = spec.stages[i].depth - 1 if repeat_second and j == 1 else 1
            pieces.append(_Piece(f"stages.{i}", block, times))
    pieces.append(_Piece("head", net.head))

    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            counts = _trace_pieces(pieces, _input(spec, net))
    finally:
        net.train(was_training)
    macs, acts, uncounted, shapes = counts
    if repeat_second:
        params = {
            name: sum(p.times * _numel(p.module.parameters()) for p in pieces if p.part == name)
            for name in macs
        }
        total = sum(params.values())
        trainable = sum(
            p.times * _numel(q for q in p.module.parameters() if q.requires_grad) for p in pieces
        )
    else:
        modules = dict(top_level_parts(net))
        params = {name: _numel(modules[name].parameters()) for name in macs}
        total = _numel(net.parameters())
        trainable = _numel(p for p in net.parameters() if p.requires_grad)
    stages = tuple(
        StageCount(name, params[name], sum(m.values()), sum(acts[name].values()), shapes[name])
        for name, m in macs.items()
    )
    return _complexity(
        spec,
        params=total,
        trainable=trainable,
        macs=sum(macs.values(), Counter()),
        acts=sum(acts.values(), Counter()),
        uncounted=uncounted,
        stages=stages,
    )


def _measure_net(spec: NetSpec, net: Net) -> Complexity:
    return _measure_built(spec, net, repeat_second=False)


def _numel(params: Any) -> int:
    return sum(p.numel() for p in params)


def _trace_pieces(
    pieces: list[_Piece], x: torch.Tensor
) -> tuple[
    dict[str, Counter[str]], dict[str, Counter[str]], Counter[str], dict[str, tuple[int, ...]]
]:
    """MACs and activations by operator per part, uncounted ops, output shape per part."""
    macs: dict[str, Counter[str]] = {}
    acts: dict[str, Counter[str]] = {}
    uncounted: Counter[str] = Counter()
    shapes: dict[str, tuple[int, ...]] = {}
    seen: dict[tuple[str, tuple[int, ...], torch.dtype], tuple[Traced, torch.Tensor]] = {}
    for piece in pieces:
        key = (_signature(piece.module), tuple(x.shape), x.dtype)
        hit = seen.get(key)
        if hit is None:
            hit = seen[key] = _trace_piece(piece.module, x)
        traced, out = hit
        if piece.times > 1 and out.shape != x.shape:
            raise _Reshaped(piece.part)
        for total, counts in ((macs, traced.macs[""]), (acts, traced.acts[""])):
            part = total.setdefault(piece.part, Counter())
            part.update({k: v * piece.times for k, v in counts.items()})
        uncounted.update({k: v * piece.times for k, v in traced.uncounted.items()})
        shapes[piece.part] = tuple(int(d) for d in out.shape)
        x = out
    return macs, acts, uncounted, shapes


def _complexity(
    spec: NetSpec,
    *,
    params: int,
    trainable: int,
    macs: Counter[str],
    acts: Counter[str],
    uncounted: Counter[str],
    stages: tuple[StageCount, ...],
) -> Complexity:
    return Complexity(
        name=spec.name,
        spec_hash=spec.spec_hash(),
        params=params,
        trainable_params=trainable,
        macs=sum(macs.values()),
        acts=sum(acts.values()),
        input_size=spec.input_size,
        in_channels=spec.in_channels,
        num_classes=spec.num_classes,
        macs_by_operator={k: v for k, v in macs.items() if v},
        acts_by_operator={k: v for k, v in acts.items() if v},
        uncounted_ops={k: v for k, v in uncounted.items() if v},
        stages=stages,
    )
