"""Write tests/golden_complexity.json: params and MACs of every registered preset.

Counts are the analytic ones (meta device, eval mode, batch 1, at each preset's own input
size; cross-checked against fvcore by tests/test_complexity.py). Re-run after adding or
changing a preset and commit the diff: tests/test_complexity.py fails while the file and the
live counts disagree, so an unintended architecture change shows up as a diff here.

Usage: python scripts/make_golden_complexity.py [--output PATH] [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from archbench.models.complexity import ANALYTIC_NOTE, analytic
from archbench.models.presets import get_preset
from archbench.registry import BUILTIN_SOURCE, PRESETS

GOLDEN_SCHEMA = "archbench.golden_complexity/1"
DEFAULT_PATH = Path(__file__).resolve().parents[1] / "tests" / "golden_complexity.json"


def golden_entry(name: str) -> dict[str, int]:
    spec = get_preset(name)
    counts = analytic(spec)
    return {"params": counts.params, "macs": counts.macs, "input_size": spec.input_size}


def golden_table() -> dict[str, Any]:
    return {
        "schema": GOLDEN_SCHEMA,
        "counter": ANALYTIC_NOTE,
        "regenerate": "python scripts/make_golden_complexity.py",
        # archbench's own presets: an installed plugin's are not part of archbench's table
        "presets": {
            e.name: golden_entry(e.name) for e in PRESETS.entries() if e.source == BUILTIN_SOURCE
        },
    }


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    before, after = old.get("presets", {}), new["presets"]
    lines = [f"+ {n}" for n in sorted(set(after) - set(before))]
    lines += [f"- {n}" for n in sorted(set(before) - set(after))]
    lines += [
        f"~ {n}: {before[n]} -> {after[n]}"
        for n in sorted(set(before) & set(after))
        if before[n] != after[n]
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_PATH)
    parser.add_argument(
        "--check", action="store_true", help="only report differences; exit 1 if any"
    )
    args = parser.parse_args(argv)
    table = golden_table()
    old = json.loads(args.output.read_text()) if args.output.exists() else {}
    changes = diff(old, table)
    for line in changes:
        print(line)
    if args.check:
        print(f"{len(changes)} difference(s) against {args.output}")
        return 1 if changes else 0
    args.output.write_text(json.dumps(table, indent=2, sort_keys=False) + "\n")
    print(f"wrote {len(table['presets'])} presets to {args.output} ({len(changes)} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
