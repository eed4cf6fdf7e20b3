"""Catalog commands: ``blocks``, ``families``, ``models``, ``describe`` and ``match``.

``blocks``/``families``/``models`` list the registries (plugins included); ``models`` uses the
fast analytic counter. ``describe`` traces one model with fvcore and cross-checks it against
the analytic count (its code: :mod:`archbench.cli.describe`); ``match`` solves a family's
width (or depth) for a params/MACs budget.

Every command takes ``--json``; the JSON always carries a ``"schema"`` key and keeps its keys
within a schema version (new keys may be added; none renamed or removed):

``archbench.blocks/1``::

    {"schema", "blocks": [{"name", "family", "description", "source"}]}

``archbench.families/1``::

    {"schema", "families": [{"name", "description", "depth_rule", "default_depth",
      "default_width", "width_step", "width_meaning", "params_doc", "num_classes",
      "in_channels", "input_size", "source"}]}

``archbench.models/1`` (counts: analytic, eval mode, batch 1, at the preset's own input)::

    {"schema", "counter", "models": [{"name", "description", "params", "macs", "flops",
      "input_size", "in_channels", "num_classes", "spec_hash",
      "reference": {"params", "source", "detail"} | null}], "generic_names": [str]}

``archbench.describe/1``::

    {"schema", "name", "complexity": {archbench.complexity/1, see Complexity.to_dict},
     "analytic": {"params", "trainable_params", "macs", "flops", "acts", ...},
     "analytic_agrees": bool, "spec": {NetSpec.to_dict}}

``archbench.match/1``::

    {"schema", "match": {archbench.budget_match/1, see BudgetMatch.to_dict}}

MACs count one fused multiply-add (fvcore's "flop"); FLOPs are always ``2 * macs``.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

from archbench.cli.args import number_in, positive_int
from archbench.cli.describe import cmd_describe
from archbench.cli.format import (
    Column,
    emit,
    human_count,
    int_count,
    render_kv,
    render_table,
    signed_percent,
    to_json,
)
from archbench.errors import SpecError
from archbench.registry import BLOCKS, FAMILIES, PRESETS

if TYPE_CHECKING:
    from archbench.models.net import NetSpec

# The model stack (torch) is imported inside the commands that need it: every `archbench`
# command builds this module's parsers, and `results`/`stats`/`plot`/`report` need no torch.

log = logging.getLogger(__name__)

# Reference counts a preset may carry in its metadata, most authoritative (exact) first.
REFERENCE_KEYS = (
    ("torchvision_params", "torchvision"),
    ("timm_params", "timm"),
    ("paper_params", "paper"),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("blocks", help="list registered blocks")
    _json_flag(p)
    p.set_defaults(func=cmd_blocks)

    p = sub.add_parser("families", help="list model families (what 'match' can solve)")
    _json_flag(p)
    p.set_defaults(func=cmd_families)

    p = sub.add_parser("models", help="list model presets with params and MACs")
    _json_flag(p)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser(
        "describe",
        help="params, MACs, FLOPs, activations and op coverage of one model",
        description="Trace one model with fvcore (eval mode, batch 1) and cross-check it "
        "against the analytic count. NAME: a preset (archbench models), a generic name "
        "(e.g. resnet<6n+2>, wrn_<d>_<k>), a family (its default depth and width) or a "
        "NetSpec JSON file (as for 'archbench train'; describe/train --json output works too).",
    )
    p.add_argument("name", help="preset, generic name, family or spec.json")
    _shape_flags(p)
    _json_flag(p)
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser(
        "match",
        help="solve a family's width (or depth) for a params or MACs budget",
        description="Find the width (a multiple of the family's width step) or depth whose "
        "params/MACs are closest to the target; fail if that is outside the tolerance.",
    )
    p.add_argument("family", help="family name (archbench families)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--params", metavar="N", help="parameter budget, e.g. 1.7M or 270000")
    target.add_argument("--macs", metavar="N", help="MAC budget (batch 1), e.g. 250M or 4.1G")
    p.add_argument(
        "--vary",
        choices=("width", "depth"),
        default="width",
        help="what to solve for (default: width)",
    )
    p.add_argument("--depth", type=positive_int, help="fixed depth when solving the width")
    p.add_argument("--width", type=positive_int, help="fixed width when solving the depth")
    p.add_argument(
        "--tolerance",
        type=number_in(0, 1),
        default=0.01,
        help="largest allowed |achieved - target| / target (default 0.01)",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="K=V",
        help="family param (repeatable), e.g. --param shortcut=B",
    )
    _shape_flags(p)
    _json_flag(p)
    p.set_defaults(func=cmd_match)


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON (schema in the 'schema' key)")


def _shape_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input-size", type=positive_int, metavar="N", help="input height = width")
    p.add_argument("--num-classes", type=positive_int, metavar="K", help="number of classes")
    p.add_argument("--in-channels", type=positive_int, metavar="C", help="input channels")


# -- blocks / families ------------------------------------------------------------------------


def cmd_blocks(args: argparse.Namespace) -> int:
    rows = [
        {
            "name": e.name,
            "family": e.meta.get("family", ""),
            "description": e.description,
            "source": e.source,
        }
        for e in BLOCKS.entries()
    ]
    if args.json:
        emit(to_json("archbench.blocks/1", {"blocks": rows}))
        return 0
    columns = [
        Column("name", "block"),
        Column("family", "family"),
        Column("source", "source"),
        Column("description", "description"),
    ]
    emit(render_table(rows, columns))
    return 0


def _family_row(name: str) -> dict[str, Any]:
    from archbench.models.budget import data_shape
    from archbench.models.presets import get_family

    fam = get_family(name)
    try:
        shape: dict[str, Any] = data_shape(fam)
        step: int | None = fam.width_step({})
    except Exception as exc:  # a broken plugin family must not hide the others
        log.warning("family %r: cannot build its default spec: %s", name, exc)
        shape = {"num_classes": None, "in_channels": None, "input_size": None}
        step = None
    return {
        "name": fam.name,
        "description": fam.description,
        "depth_rule": fam.depth.rule,
        "default_depth": fam.default_depth,
        "default_width": fam.default_width,
        "width_step": step,
        "width_meaning": fam.width_meaning,
        "params_doc": fam.params_doc,
        **shape,
        "source": FAMILIES.entry(name).source,
    }


def cmd_families(args: argparse.Namespace) -> int:
    rows = [_family_row(name) for name in FAMILIES.names()]
    if args.json:
        emit(to_json("archbench.families/1", {"families": rows}))
        return 0
    for row in rows:
        row["default"] = f"{row['default_depth']}/{row['default_width']}"
        row["data"] = f"{row['in_channels']}x{row['input_size']}, {row['num_classes']} cls"
    columns = [
        Column("name", "family"),
        Column("depth_rule", "depth"),
        Column("default", "depth/width"),
        Column("width_step", "step", ">"),
        Column("data", "default data"),
        Column("source", "package"),
        Column("description", "description"),
    ]
    emit(render_table(rows, columns))
    emit("\nwidth means:\n" + render_kv([(r["name"], r["width_meaning"]) for r in rows], indent=2))
    with_params = [r for r in rows if r["params_doc"]]
    if with_params:
        emit("\nparams (match --param K=V):")
        emit(render_kv([(r["name"], r["params_doc"]) for r in with_params], indent=2))
    return 0


# -- models -----------------------------------------------------------------------------------


def reference(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The preset's published parameter count, if its metadata carries one."""
    for key, source in REFERENCE_KEYS:
        if meta.get(key) is not None:
            detail = str(meta.get(source) or "")
            excludes = meta.get(f"{key}_excludes")
            if excludes:
                detail += f" (excludes {', '.join(map(str, excludes))})"
            value = meta[key]
            return {
                "params": int(value) if float(value).is_integer() else value,
                "source": source,
                "detail": detail.strip(),
            }
    return None


def _reference_text(ref: dict[str, Any] | None) -> str:
    if ref is None:
        return ""
    if ref["source"] == "paper":
        return f"{_paper_count(ref['params'])} (paper)"
    return f"{int_count(int(ref['params']))} ({ref['source']})"


def _paper_count(value: float) -> str:
    """A paper count at the paper's precision: 1.7e6 -> 1.7M, 270000 -> 0.27M."""
    millions = value / 1e6
    digits = f"{millions:.6f}".rstrip("0").rstrip(".")
    return f"{digits}M"


def cmd_models(args: argparse.Namespace) -> int:
    from archbench.models.complexity import ANALYTIC_NOTE, analytic
    from archbench.models.presets import pattern_examples

    rows = []
    for entry in PRESETS.entries():
        spec: NetSpec = entry.obj
        counts = analytic(spec)
        rows.append(
            {
                "name": entry.name,
                "description": entry.description,
                "params": counts.params,
                "macs": counts.macs,
                "flops": counts.flops,
                "input_size": spec.input_size,
                "in_channels": spec.in_channels,
                "num_classes": spec.num_classes,
                "spec_hash": spec.spec_hash(),
                "reference": reference(entry.meta),
            }
        )
    if args.json:
        payload = {"counter": ANALYTIC_NOTE, "models": rows, "generic_names": pattern_examples()}
        emit(to_json("archbench.models/1", payload))
        return 0
    for row in rows:
        row["input"] = f"{row['in_channels']}x{row['input_size']}"
    columns = [
        Column("name", "model"),
        Column("params", "params", ">", int_count),
        Column("macs", "MACs", ">", human_count),
        Column("input", "input", ">"),
        Column("num_classes", "classes", ">"),
        Column("reference", "reference params", "<", _reference_text),
        Column("description", "description"),
    ]
    emit(render_table(rows, columns))
    emit(
        "\nMACs: multiply-adds at batch 1, eval mode, at the model's own input (FLOPs = 2 x MACs)."
        "\nGeneric names: " + ", ".join(pattern_examples())
    )
    return 0


# -- match ------------------------------------------------------------------------------------


def parse_param(text: str) -> tuple[str, Any]:
    """``"k=v"`` with ``v`` read as bool (true/false), int, float, or else a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpecError(f"--param must look like key=value (e.g. shortcut=B), got {text!r}")
    raw = raw.strip()
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return key, lowered == "true"
    for cast in (int, float):
        try:
            return key, cast(raw)
        except ValueError:
            continue
    return key, raw


def cmd_match(args: argparse.Namespace) -> int:
    from archbench.models.budget import parse_count, solve

    params = dict(parse_param(p) for p in args.param)
    metric = "params" if args.params is not None else "macs"
    target = parse_count(args.params if args.params is not None else args.macs)
    shape = {
        "num_classes": args.num_classes,
        "in_channels": args.in_channels,
        "input_size": args.input_size,
    }
    if args.vary == "width" and args.width is not None:
        raise SpecError("--width fixes the width: use it with --vary depth")
    if args.vary == "depth" and args.depth is not None:
        raise SpecError("--depth fixes the depth: use it with --vary width (the default)")
    match = solve(
        args.family,
        target,
        vary=args.vary,
        metric=metric,
        depth=args.depth,
        width=args.width,
        tolerance=args.tolerance,
        params=params,
        **shape,
    )
    if args.json:
        emit(to_json("archbench.match/1", {"match": match.to_dict()}))
        return 0
    spec = match.spec
    pairs = [
        ("family", match.family + (f"  {match.params}" if match.params else "")),
        ("solved", f"{match.vary} = {getattr(match, match.vary)}"),
        ("depth / width", f"{match.depth} / {match.width}"),
        ("target", f"{int_count(match.target)} {match.metric}  ({human_count(match.target)})"),
        (
            "achieved",
            f"{int_count(match.achieved)} {match.metric}  ({signed_percent(match.rel_error)}; "
            f"tolerance {match.tolerance:.2%})",
        ),
        ("data", f"{spec.in_channels}x{spec.input_size}, {spec.num_classes} classes"),
        ("spec", f"{spec.name}  (hash {spec.spec_hash()})"),
    ]
    emit(render_kv(pairs))
    return 0
