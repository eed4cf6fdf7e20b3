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

The package keeps one job per module: :mod:`.counts` (the result types and their JSON),
:mod:`.fvcore_trace` (one fvcore trace of one module), :mod:`.tracing` (:func:`measure`:
which pieces of a net to trace and how their counts add up) and :mod:`.meta` (:func:`analytic`
on the meta device). Import the public names from here.
"""

from __future__ import annotations

from archbench.models.complexity.counts import (
    ANALYTIC_NOTE,
    COMPLEXITY_SCHEMA,
    COUNTER_NOTE,
    AnalyticCounts,
    Complexity,
    StageCount,
)
from archbench.models.complexity.meta import (
    analytic,
    analytic_counts,
    analytic_params,
    clear_cache,
)
from archbench.models.complexity.tracing import measure

__all__ = [
    "ANALYTIC_NOTE",
    "COMPLEXITY_SCHEMA",
    "COUNTER_NOTE",
    "AnalyticCounts",
    "Complexity",
    "StageCount",
    "analytic",
    "analytic_counts",
    "analytic_params",
    "clear_cache",
    "measure",
]
