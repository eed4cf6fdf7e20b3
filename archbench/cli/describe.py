"""``archbench describe``: one model traced with fvcore and cross-checked against the analytic
count (its ``archbench.describe/1`` JSON is documented in :mod:`archbench.cli.catalog`).

The command is registered with the other catalog commands in :mod:`archbench.cli.catalog`;
it lives here because it is the one that builds and traces a model (and resolves a model
name, a family or a NetSpec file to a spec), where the others list registries or solve a
budget. As there, the model stack (torch) is imported inside the functions: every
``archbench`` command imports this module to build its parsers.
"""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

from archbench.cli.format import (
    Column,
    emit,
    human_count,
    int_count,
    render_kv,
    render_table,
    shape_str,
    to_json,
)
from archbench.errors import UnknownNameError
from archbench.registry import FAMILIES

if TYPE_CHECKING:
    from archbench.models.complexity import AnalyticCounts, Complexity
    from archbench.models.net import NetSpec


def resolve_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    input_size: int | None = None,
) -> NetSpec:
    """A NetSpec JSON file, a preset or generic name, or a family at its default depth and
    width; the shape arguments given override the spec's."""
    from archbench.models.budget import data_shape
    from archbench.models.net import is_spec_file, read_spec_file
    from archbench.models.presets import get_family, get_preset

    shape = {"num_classes": num_classes, "in_channels": in_channels, "input_size": input_size}
    if is_spec_file(name):
        spec = read_spec_file(name)
        return spec.replace(**{k: v for k, v in shape.items() if v is not None})
    try:
        return get_preset(
            name, num_classes=num_classes, in_channels=in_channels, input_size=input_size
        )
    except UnknownNameError as exc:
        if name not in FAMILIES:
            raise UnknownNameError(f"{exc}; or a family: {', '.join(FAMILIES.names())}") from None
    fam = get_family(name)
    spec = fam.build(**data_shape(fam, num_classes, in_channels, input_size))
    return spec.replace(name=spec.name or name)


def cmd_describe(args: argparse.Namespace) -> int:
    from archbench.models.complexity import analytic, measure

    spec = resolve_model(
        args.name,
        num_classes=args.num_classes,
        in_channels=args.in_channels,
        input_size=args.input_size,
    )
    spec.validate()  # a shape error reads better before fvcore's trace
    from archbench.runner.preflight import describe_check

    describe_check(spec)  # before allocating a net that cannot fit
    result = measure(spec)
    check = analytic(spec)
    agrees = (check.params, check.macs, check.acts) == (result.params, result.macs, result.acts)
    if args.json:
        payload = {
            "name": spec.name or args.name,
            "complexity": result.to_dict(),
            "analytic": check.to_dict(),
            "analytic_agrees": agrees,
            "spec": spec.to_dict(),
        }
        emit(to_json("archbench.describe/1", payload))
        return 0
    head = (
        f"{spec.name or args.name}  (spec {result.spec_hash}; input 1x{result.in_channels}x"
        f"{result.input_size}x{result.input_size}, {result.num_classes} classes; eval mode)"
    )
    pairs = _describe_pairs(result, check, agrees)
    emit("\n".join([head, render_kv(pairs, indent=2), "", _parts_table(result)]))
    return 0


def _describe_pairs(
    result: Complexity, check: AnalyticCounts, agrees: bool
) -> list[tuple[str, str]]:
    """The key/value block of ``describe``: totals, op coverage, the analytic cross-check."""
    counted = ", ".join(
        f"{op} {human_count(v)}"
        for op, v in sorted(result.macs_by_operator.items(), key=lambda kv: -kv[1])
    )
    uncounted = ", ".join(f"{op} x{n}" for op, n in sorted(result.uncounted_ops.items()))
    numbers = {
        "params": result.params,
        "trainable": result.trainable_params,
        "macs": result.macs,
        "flops": result.flops,
        "acts": result.acts,
    }
    width = max(len(int_count(v)) for v in numbers.values())

    def num(key: str) -> str:
        return f"{int_count(numbers[key]).rjust(width)}  {human_count(numbers[key]).rjust(6)}"

    pairs = [
        ("params", num("params")),
        ("trainable params", num("trainable")),
        ("MACs", num("macs") + "  (1 MAC = 1 multiply-add)"),
        ("FLOPs (2 x MACs)", num("flops")),
        ("activations", num("acts") + "  (conv and linear outputs)"),
        ("counted ops", counted or "-"),
        (
            "uncounted ops",
            (uncounted or "none")
            + "  (fvcore has no formula for these; ReLU, slicing, cat count as free)",
        ),
        (
            "analytic check",
            "params, MACs and activations agree with the meta-device count"
            if agrees
            else f"DIFFERS: analytic params {int_count(check.params)}, MACs "
            f"{int_count(check.macs)}, acts {int_count(check.acts)} (functional ops the "
            "module hooks cannot see?)",
        ),
    ]
    return pairs


def _parts_table(result: Complexity) -> str:
    """``describe``'s table: params, MACs (and their share) and output shape per part."""
    rows = [
        {
            "name": s.name,
            "params": s.params,
            "macs": s.macs,
            "share": s.macs / result.macs if result.macs else math.nan,
            "acts": s.acts,
            "shape": shape_str(s.output_shape),
        }
        for s in result.stages
    ]
    columns = [
        Column("name", "part"),
        Column("params", "params", ">", int_count),
        Column("macs", "MACs", ">", human_count),
        Column("share", "MACs %", ">", lambda v: f"{v:.1%}"),
        Column("acts", "acts", ">", human_count),
        Column("shape", "output", ">"),
    ]
    return render_table(rows, columns)
