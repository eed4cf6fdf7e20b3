"""Parameter, MAC and activation counts of a network: traced (fvcore) and analytic.

Units (see the guide): fvcore counts one fused multiply-add as one "flop", which is one MAC.
We store raw integers ``params``, ``macs`` and ``acts``; FLOPs are ``2 * macs`` and always
labelled as such. Everything is counted in ``eval()`` mode at batch size 1.

Two counters, cross-checked by the tests on every registered preset:

* :func:`measure` traces the real model with fvcore (``FlopCountAnalysis`` and
  ``ActivationCountAnalysis``) on CPU and records which operators fvcore saw but could not
  count (``uncounted_ops``, e.g. ``aten::add`` for residual additions, ``aten::pad`` for
  zero-padded shortcuts, ``aten::max_pool2d``). fvcore also treats ReLU, slicing, ``cat`` and
  dropout as free (its ignore list) without reporting them. A ``Net`` is sequential (stem ->
  blocks -> head, nothing computed between them), so fvcore's counts of the whole net are the
  sums of the counts of its pieces traced one after the other on their real inputs: the stem,
  each *distinct* block once, the head. Blocks after the first of a stage are built from the
  same arguments and see the same input shape, so a spec is built with at most two blocks per
  stage and the second one's counts (uncounted ops included) are multiplied by ``depth - 1``;
  a given net has its blocks grouped by class, attributes, submodules, parameter shapes and
  input shape (:func:`_signature`), so a block edited after building is traced on its own.
  A stage whose repeated block changes its input's shape is traced block by block; a ``Net``
  subclass with its own ``forward`` is traced whole. ``measure(..., full_trace=True)`` traces
  the whole net in one go; the tests check that both agree exactly on every preset and every
  block. Still a real forward pass of each piece on CPU (about 0.1-1.5 s per preset).
* :func:`analytic` counts on a ``meta``-device model with forward hooks: no memory, a few
  milliseconds, and it works for any plugin block built from standard layers. It applies
  fvcore's formulas module by module:

  * ``Conv1d/2d/3d`` -> ``conv``: ``out_channels * in_channels/groups * prod(kernel) *
    prod(output spatial)`` (bias ignored); ``ConvTranspose*``: ``prod(weight) * prod(input
    spatial)``;
  * ``Linear`` -> ``linear``: ``in_features * out_features`` per input row (bias ignored);
  * ``BatchNorm*`` -> ``batch_norm``: in eval mode ``2 * numel`` with affine (a scale and a
    shift per element), ``numel`` without; in train mode (or without running stats) fvcore
    counts ``5 * numel`` (4 without affine), which is why we always count in eval mode;
  * ``GroupNorm`` / ``LayerNorm`` / ``InstanceNorm*`` -> ``group_norm`` / ``layer_norm`` /
    ``instance_norm``: ``5 * numel`` with affine, ``4 * numel`` without;
  * ``AdaptiveAvgPool2d`` -> ``adaptive_avg_pool2d``: ``numel`` of the input.

  Activations (fvcore's definition) are the output elements of conv and linear layers.
  Operations done functionally (``F.conv2d``, ``F.adaptive_avg_pool2d``, ``x @ w``) are not
  seen by the hooks; the cross-check tests would show such a block as a difference.

BatchNorm: fvcore counts it (above), so ``macs`` includes it (about 1% for ResNets); a
deployment that folds BN into the preceding conv would not pay it. ``macs_by_operator`` keeps
``conv`` and ``linear`` apart for anyone who wants the fused figure (torchvision's published
"GFLOPS" are conv + linear only: resnet50 4.09 G vs 4.11 G here).

Speed: every block after the first in a stage is built with identical arguments and sees the
same input shape, so :func:`analytic` builds the net with at most two blocks per stage and
multiplies the second block's counts out (falling back to the full net if a stride-1 block
changes its input's shape). The tests check the result against fvcore on the full model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import threading
import warnings
from collections import Counter, OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from archbench.errors import SpecError
from archbench.models.net import Net, NetSpec, build_net

log = logging.getLogger(__name__)

COMPLEXITY_SCHEMA = "archbench.complexity/1"
COUNTER_NOTE = (
    "fvcore FlopCountAnalysis/ActivationCountAnalysis, eval mode, batch 1; "
    "1 MAC = 1 fused multiply-add (fvcore's 'flop'); flops = 2 * macs"
)
ANALYTIC_NOTE = (
    "analytic: forward hooks on conv/linear/norm/adaptive-pool modules of a meta-device "
    "model, fvcore's formulas, eval mode, batch 1; flops = 2 * macs"
)


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageCount:
    """Counts of one top-level part of a :class:`~archbench.models.net.Net`.

    ``name`` is ``"stem"``, ``"stages.<i>"`` or ``"head"``; ``output_shape`` includes the
    batch dimension (1).
    """

    name: str
    params: int
    macs: int
    acts: int
    output_shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": self.params,
            "macs": self.macs,
            "acts": self.acts,
            "output_shape": list(self.output_shape),
        }


@dataclass(frozen=True)
class Complexity:
    """What :func:`measure` found (fvcore, eval mode, batch 1).

    ``macs`` is fvcore's total (conv, linear, batch norm, adaptive pooling);
    ``macs_by_operator`` splits it by fvcore's operator labels; ``uncounted_ops`` maps each
    operator fvcore saw but has no formula for (``aten::add``, ``aten::pad``, ...) to how many
    times it ran, so a partial count is never mistaken for a full one.
    """

    name: str
    spec_hash: str
    params: int
    trainable_params: int
    macs: int
    acts: int
    input_size: int
    in_channels: int
    num_classes: int
    macs_by_operator: Mapping[str, int] = field(default_factory=dict, hash=False)
    acts_by_operator: Mapping[str, int] = field(default_factory=dict, hash=False)
    uncounted_ops: Mapping[str, int] = field(default_factory=dict, hash=False)
    stages: tuple[StageCount, ...] = ()
    batch_size: int = 1

    @property
    def flops(self) -> int:
        """FLOPs counted as 2 per multiply-add (``2 * macs``)."""
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, schema ``archbench.complexity/1``.

        Keys (stable; new keys may be added, none renamed or removed within ``/1``):
        ``schema``, ``name``, ``spec_hash``, ``batch_size`` (always 1), ``input_size``,
        ``in_channels``, ``num_classes``, ``params``, ``trainable_params``, ``macs``,
        ``flops`` (= 2 * macs), ``acts``, ``macs_by_operator`` {label: int},
        ``acts_by_operator`` {label: int}, ``uncounted_ops`` {aten op: times seen},
        ``stages`` [{name, params, macs, acts, output_shape}], ``counter`` (how it was counted).
        All counts are integers.
        """
        return {
            "schema": COMPLEXITY_SCHEMA,
            "name": self.name,
            "spec_hash": self.spec_hash,
            "batch_size": self.batch_size,
            "input_size": self.input_size,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "params": self.params,
            "trainable_params": self.trainable_params,
            "macs": self.macs,
            "flops": self.flops,
            "acts": self.acts,
            "macs_by_operator": dict(sorted(self.macs_by_operator.items())),
            "acts_by_operator": dict(sorted(self.acts_by_operator.items())),
            "uncounted_ops": dict(sorted(self.uncounted_ops.items())),
            "stages": [s.to_dict() for s in self.stages],
            "counter": COUNTER_NOTE,
        }


@dataclass(frozen=True)
class AnalyticCounts:
    """What :func:`analytic` found (meta device, fvcore's formulas, eval mode, batch 1)."""

    params: int
    trainable_params: int
    macs: int
    acts: int
    input_size: int
    macs_by_operator: Mapping[str, int] = field(default_factory=dict, hash=False)
    acts_by_operator: Mapping[str, int] = field(default_factory=dict, hash=False)
    stages: tuple[StageCount, ...] = ()

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "trainable_params": self.trainable_params,
            "macs": self.macs,
            "flops": self.flops,
            "acts": self.acts,
            "input_size": self.input_size,
            "macs_by_operator": dict(sorted(self.macs_by_operator.items())),
            "acts_by_operator": dict(sorted(self.acts_by_operator.items())),
            "stages": [s.to_dict() for s in self.stages],
            "counter": ANALYTIC_NOTE,
        }


# -- fvcore -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_fvcore() -> Iterator[None]:
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
class _Traced:
    macs: dict[str, Counter[str]]  # module name ("" = whole net) -> label -> MACs
    acts: dict[str, Counter[str]]
    uncounted: dict[str, int]


def _split(counter: Mapping[str, Any], prefix: str) -> Counter[str]:
    return Counter({k[len(prefix) :]: int(v) for k, v in counter.items() if k.startswith(prefix)})


def _fvcore_trace(net: nn.Module, x: torch.Tensor, parts: list[str]) -> _Traced:
    """Flop and activation counts from ONE fvcore trace (fvcore's two analyses would trace
    twice): each operator handle returns both, labelled ``mac/<op>`` and ``act/<op>``."""
    with _quiet_fvcore():
        from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis
        from fvcore.nn.jit_analysis import JitModelAnalysis

        try:  # fvcore's default handle tables (module-private; stable in the final release)
            from fvcore.nn.activation_count import _DEFAULT_SUPPORTED_OPS as act_ops
            from fvcore.nn.flop_count import _DEFAULT_SUPPORTED_OPS as flop_ops
        except ImportError:  # pragma: no cover - a future fvcore: trace twice
            return _fvcore_trace_twice(net, x, parts, FlopCountAnalysis, ActivationCountAnalysis)

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
    return _Traced(
        macs={n: _split(by_module.get(n, {}), "mac/") for n in names},
        acts={n: _split(by_module.get(n, {}), "act/") for n in names},
        uncounted=uncounted,
    )


def _silence(analysis: Any) -> None:
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")


def _fvcore_trace_twice(
    net: nn.Module, x: torch.Tensor, parts: list[str], flop_cls: Any, act_cls: Any
) -> _Traced:
    flops, acts = flop_cls(net, x), act_cls(net, x)
    for analysis in (flops, acts):
        _silence(analysis)
    fm, am = flops.by_module_and_operator(), acts.by_module_and_operator()
    names = ["", *parts]
    return _Traced(
        macs={n: Counter({k: int(v) for k, v in fm.get(n, {}).items()}) for n in names},
        acts={n: Counter({k: int(v) for k, v in am.get(n, {}).items()}) for n in names},
        uncounted={k: int(v) for k, v in flops.unsupported_ops().items()},
    )


def _top_level_parts(net: Net) -> list[tuple[str, nn.Module]]:
    parts: list[tuple[str, nn.Module]] = [("stem", net.stem)]
    parts += [(f"stages.{i}", stage) for i, stage in enumerate(net.stages)]
    parts.append(("head", net.head))
    return parts


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
    _check_size(spec.input_size)
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
    parts = _top_level_parts(net)
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
            traced = _fvcore_trace(net, x, [name for name, _ in parts])
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


def _trace_piece(module: nn.Module, x: torch.Tensor) -> tuple[_Traced, torch.Tensor]:
    """fvcore counts of ``module`` on ``x`` and its output (caught in the same trace)."""
    outputs: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: outputs.append(out))
    try:
        traced = _fvcore_trace(module, x, [])
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
        modules = dict(_top_level_parts(net))
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
    seen: dict[tuple[str, tuple[int, ...], torch.dtype], tuple[_Traced, torch.Tensor]] = {}
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


def _check_size(input_size: Any) -> None:
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
        raise SpecError(f"input size must be a positive integer, got {input_size!r}")


# -- analytic (meta device) -------------------------------------------------------------------

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def _module_cost(module: nn.Module, x: torch.Tensor, out: torch.Tensor) -> tuple[str, int, int]:
    """``(label, macs, acts)`` of one hooked module, with fvcore's formulas (see module doc)."""
    if isinstance(module, nn.modules.conv._ConvNd):
        spatial = x.shape[2:] if module.transposed else out.shape[2:]
        macs = x.shape[0] * module.weight.numel() * math.prod(spatial)
        return "conv", macs, out.numel()
    if isinstance(module, nn.Linear):
        return "linear", x.numel() * module.out_features, out.numel()
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        affine = module.weight is not None
        training = module.training or module.running_mean is None
        per_element = (5 if affine else 4) if training else (2 if affine else 1)
        return "batch_norm", x.numel() * per_element, 0
    if isinstance(module, nn.modules.instancenorm._InstanceNorm):
        return "instance_norm", x.numel() * (5 if module.affine else 4), 0
    if isinstance(module, nn.GroupNorm):
        return "group_norm", x.numel() * (5 if module.affine else 4), 0
    if isinstance(module, nn.LayerNorm):
        return "layer_norm", x.numel() * (5 if module.elementwise_affine else 4), 0
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return "adaptive_avg_pool2d", x.numel(), 0
    raise TypeError(type(module))  # only hooked types reach here


_COUNTED = (
    nn.modules.conv._ConvNd,
    nn.Linear,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.AdaptiveAvgPool2d,
)


def _part_of(name: str) -> str:
    """``stem.conv`` -> ``stem``; ``stages.1.3.conv1`` -> ``stages.1.3``; ``head.fc`` -> ``head``"""
    bits = name.split(".")
    return ".".join(bits[:3]) if bits[0] == "stages" else bits[0]


def _identity(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return x


@dataclass
class _PartCount:
    params: int = 0
    trainable: int = 0
    macs: Counter[str] = dataclasses.field(default_factory=Counter)
    acts: Counter[str] = dataclasses.field(default_factory=Counter)
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()

    def scaled(self, k: int) -> _PartCount:
        return _PartCount(
            self.params * k,
            self.trainable * k,
            Counter({op: v * k for op, v in self.macs.items()}),
            Counter({op: v * k for op, v in self.acts.items()}),
            self.in_shape,
            self.out_shape,
        )


def _count_parts(spec: NetSpec, *, forward: bool) -> dict[str, _PartCount]:
    """Counts per part (``stem``, ``stages.i.j``, ``head``) of ``spec`` built on meta."""
    net = build_net(spec, device="meta").eval()
    parts: dict[str, _PartCount] = {}
    for name, _ in _top_level_parts(net):
        if name.startswith("stages."):
            for j in range(len(net.stages[int(name.split(".")[1])])):
                parts[f"{name}.{j}"] = _PartCount()
        else:
            parts[name] = _PartCount()
    for pname, p in net.named_parameters():
        part = parts.setdefault(_part_of(pname), _PartCount())
        part.params += p.numel()
        part.trainable += p.numel() if p.requires_grad else 0
    if not forward:
        return parts

    def cost_hook(key: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            label, macs, acts = _module_cost(module, args[0], out)
            parts[key].macs[label] += macs
            parts[key].acts[label] += acts

        return hook

    def shape_hook(key: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            parts[key].in_shape = tuple(args[0].shape) if args else ()
            parts[key].out_shape = tuple(out.shape)

        return hook

    for mname, module in net.named_modules():
        if isinstance(module, _COUNTED):
            module.register_forward_hook(cost_hook(_part_of(mname)))
            if isinstance(module, _NORMS):
                # Meta-device norms run Python decompositions (slow); the shape is unchanged.
                module.forward = _identity  # type: ignore[method-assign]
        if mname in parts:
            module.register_forward_hook(shape_hook(mname))
    x = torch.empty(1, spec.in_channels, spec.input_size, spec.input_size, device="meta")
    with torch.no_grad():
        net(x)
    return parts


def _count_spec(spec: NetSpec, *, forward: bool) -> dict[str, _PartCount]:
    """Like :func:`_count_parts` on the full spec, building at most two blocks per stage."""
    if all(stage.depth <= 2 for stage in spec.stages):
        return _count_parts(spec, forward=forward)
    short = spec.replace(
        stages=tuple(dataclasses.replace(s, depth=min(s.depth, 2)) for s in spec.stages)
    )
    parts = _count_parts(short, forward=forward)
    full: dict[str, _PartCount] = {}
    for key, part in parts.items():
        if not key.startswith("stages."):
            full[key] = part
            continue
        _, i, j = key.split(".")
        stage = spec.stages[int(i)]
        if j == "0":
            full[key] = part
        elif forward and part.in_shape != part.out_shape:
            # A stride-1 block that reshapes its input: its copies would differ. Count all.
            log.debug("stage %s block 1 changes shape; counting the full net", i)
            return _count_parts(spec, forward=forward)
        else:
            # Blocks 1..depth-1 have the same arguments and input shape as block 1.
            full[f"stages.{i}.1+"] = part.scaled(stage.depth - 1)
    return full


_CACHE: OrderedDict[tuple[str, bool], AnalyticCounts] = OrderedDict()
_CACHE_SIZE = 4096


def analytic(spec: NetSpec, input_size: int | None = None, *, macs: bool = True) -> AnalyticCounts:
    """Analytic counts of ``spec`` on the meta device (cached by the spec's canonical JSON).

    ``macs=False`` skips the forward pass (params only; ``macs``/``acts`` are then 0).
    """
    if input_size is not None:
        spec = spec.replace(input_size=input_size)
    _check_size(spec.input_size)
    key = (spec.canonical_json(), macs)
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    parts = _count_spec(spec, forward=macs)
    result = _summarise(spec, parts)
    _CACHE[key] = result
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return result


def _summarise(spec: NetSpec, parts: Mapping[str, _PartCount]) -> AnalyticCounts:
    macs: Counter[str] = Counter()
    acts: Counter[str] = Counter()
    for part in parts.values():
        macs.update(part.macs)
        acts.update(part.acts)
    names = ["stem", *(f"stages.{i}" for i in range(len(spec.stages))), "head"]
    stages = []
    for name in names:
        members = [p for k, p in parts.items() if k == name or k.startswith(name + ".")]
        last = members[-1].out_shape if members else ()
        stages.append(
            StageCount(
                name,
                sum(p.params for p in members),
                sum(sum(p.macs.values()) for p in members),
                sum(sum(p.acts.values()) for p in members),
                last,
            )
        )
    return AnalyticCounts(
        params=sum(p.params for p in parts.values()),
        trainable_params=sum(p.trainable for p in parts.values()),
        macs=sum(macs.values()),
        acts=sum(acts.values()),
        input_size=spec.input_size,
        macs_by_operator={k: v for k, v in macs.items() if v},
        acts_by_operator={k: v for k, v in acts.items() if v},
        stages=tuple(stages),
    )


def analytic_counts(spec: NetSpec, input_size: int | None = None) -> tuple[int, int]:
    """``(params, macs)`` of ``spec`` from the analytic counter (fast; see :func:`analytic`)."""
    counts = analytic(spec, input_size)
    return counts.params, counts.macs


def analytic_params(spec: NetSpec) -> int:
    """Parameter count of ``spec`` without running a forward pass (fastest)."""
    return analytic(spec, macs=False).params


def clear_cache() -> None:
    """Forget cached analytic counts (for benchmarks)."""
    _CACHE.clear()
