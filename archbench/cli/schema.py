"""``archbench schema``: print the experiment spec's JSON Schema (for editors)."""

from __future__ import annotations

import argparse
import json

from archbench.cli.format import emit


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "schema",
        help="print the JSON Schema of experiment spec files (for editors)",
        description="The JSON Schema (draft 2020-12) of experiment YAML, generated from "
        "archbench's spec definitions; docs/spec.schema.json is this output.",
    )
    p.set_defaults(func=cmd_schema)


def render() -> str:
    """The schema as the committed ``docs/spec.schema.json`` holds it."""
    from archbench.runner.schema import spec_schema

    return json.dumps(spec_schema(), indent=2, ensure_ascii=False)


def cmd_schema(args: argparse.Namespace) -> int:
    emit(render())
    return 0
