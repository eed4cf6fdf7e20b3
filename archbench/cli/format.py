"""Output helpers shared by the CLI commands: aligned tables, key/value blocks, counts, JSON.

Tables: ``render_table(rows, columns)`` with ``Column(key, header, align, fmt)``; numbers are
usually right-aligned (``align=">"``). ``tabulate`` draws them, as text, Markdown or LaTeX
(booktabs): ``--format text|markdown|latex`` of ``stats`` and ``results``. JSON: ``to_json(schema, payload)`` puts a ``"schema"``
key first (``"archbench.<command>/<version>"``) so scripts can check what they parse.
Everything returns strings; the command prints them with :func:`emit`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TextIO

# One count formatter for the whole package (re-exported: the commands import it from here).
from archbench.units import human_count, int_count  # noqa: F401


def signed_percent(value: float | None, decimals: int = 2) -> str:
    """``0.0164 -> "+1.64%"``."""
    return "-" if value is None else f"{value:+.{decimals}%}"


def shape_str(shape: Sequence[int]) -> str:
    """``(1, 16, 32, 32) -> "1x16x32x32"``."""
    return "x".join(str(int(d)) for d in shape) if shape else "-"


@dataclass(frozen=True)
class Column:
    """One table column: ``key`` into each row, its ``header``, alignment, and formatter."""

    key: str
    header: str
    align: Literal["<", ">"] = "<"
    fmt: Callable[[Any], str] | None = None

    def cell(self, row: Mapping[str, Any]) -> str:
        value = row.get(self.key)
        if self.fmt is not None:
            return self.fmt(value)
        return "" if value is None else str(value)


#: ``--format`` choices of the table commands, and tabulate's name for each.
TABLE_FORMATS = {"text": "simple", "markdown": "github", "latex": "latex_booktabs"}


def tabulate_rows(
    headers: Sequence[str],
    cells: Sequence[Sequence[str]],
    aligns: Sequence[str],
    fmt: str = "text",
) -> str:
    """Preformatted cells as a table: ``text`` (aligned, a rule under the header),
    ``markdown`` (GitHub pipes) or ``latex`` (a booktabs ``tabular``: ``\\usepackage{booktabs}``;
    ``±`` becomes ``$\\pm$``). Cells are strings: nothing is re-parsed as a number."""
    import tabulate as tabulate_module

    if fmt not in TABLE_FORMATS:
        raise ValueError(f"table format {fmt!r}; allowed: {', '.join(TABLE_FORMATS)}")
    if fmt == "markdown":  # a pipe inside a cell would end it
        headers = [h.replace("|", "\\|") for h in headers]
        cells = [[c.replace("|", "\\|") for c in row] for row in cells]
    # tabulate pads header columns by MIN_PADDING (2) beyond the widest cell; the text
    # table's columns are as wide as their widest entry, two spaces apart.
    padding, tabulate_module.MIN_PADDING = tabulate_module.MIN_PADDING, 0
    try:
        text = tabulate_module.tabulate(
            [list(row) for row in cells],
            headers=list(headers),
            tablefmt=TABLE_FORMATS[fmt],
            colalign=[{"<": "left", ">": "right"}.get(a, a) for a in aligns] or None,
            disable_numparse=True,
        )
    finally:
        tabulate_module.MIN_PADDING = padding
    if fmt == "latex":
        text = text.replace("±", "$\\pm$")
    # No trailing spaces (the text table's last column is not padded).
    return "\n".join(line.rstrip() for line in text.splitlines())


def render_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    *,
    fmt: str = "text",
) -> str:
    """Rows as a table with a header (see :func:`tabulate_rows` for ``fmt``)."""
    cells = [[c.cell(row) for c in columns] for row in rows]
    return tabulate_rows([c.header for c in columns], cells, [c.align for c in columns], fmt)


def render_kv(pairs: Sequence[tuple[str, str]], *, indent: int = 0) -> str:
    """``key  value`` lines with the values aligned."""
    if not pairs:
        return ""
    width = max(len(k) for k, _ in pairs)
    pad = " " * indent
    return "\n".join(f"{pad}{k.ljust(width)}  {v}".rstrip() for k, v in pairs)


def to_json(schema: str, payload: Mapping[str, Any]) -> str:
    """``{"schema": schema, **payload}`` as indented JSON (key order kept)."""
    data = {"schema": schema, **{k: v for k, v in payload.items() if k != "schema"}}
    return json.dumps(data, indent=2, default=_jsonable)


def frame_records(frame: Any) -> list[dict[str, Any]]:
    """A DataFrame as JSON-able rows: NaN as null, numpy scalars as numbers."""
    return json.loads(frame.to_json(orient="records"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def emit(text: str, stream: TextIO | None = None) -> None:
    """Print ``text`` (with a final newline) to stdout; a closed pipe (``| head``) ends the
    command quietly instead of with a traceback."""
    out = stream or sys.stdout
    try:
        print(text, file=out)
        out.flush()
    except BrokenPipeError:
        # Python would complain again when it flushes stdout at exit: point it at devnull.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        raise SystemExit(0) from None


#: Columns of counts: thousands separators at any size, so 4,934 params line up with
#: 5,252,496 MACs (other integers, such as depths and seeds, only from 10,000).
COUNT_COLUMNS = frozenset({"params", "macs", "acts", "flops"})


def _cell(value: Any, *, count: bool = False) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        value = int(value)  # integer columns with gaps come back from pandas as floats
    elif isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int) and not isinstance(value, bool) and (count or abs(value) >= 10_000):
        return f"{value:,}"
    return str(value)


def _count_cell(value: Any) -> str:
    return _cell(value, count=True)


def rows_table(rows: list[dict[str, Any]], fmt: str = "text") -> str:
    """Dict rows as an aligned table; numeric columns (and preformatted ``... %`` and
    ``budget_error`` ones) right-aligned, counts with thousands separators."""
    if not rows:
        return "(no rows)"
    numeric = {k for k in rows[0] if all(isinstance(r.get(k), int | float) for r in rows)}
    numeric |= {k for k in rows[0] if k.endswith(" %") or k == "budget_error"}  # preformatted
    columns = [
        Column(k, k, ">" if k in numeric else "<", _count_cell if k in COUNT_COLUMNS else _cell)
        for k in rows[0]
    ]
    return render_table(rows, columns, fmt=fmt)


def frame_table(frame: Any, fmt: str = "text") -> str:
    """A pandas DataFrame as a table (numbers right-aligned); ``fmt`` as in
    :func:`tabulate_rows`."""
    rows = [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in rec.items()}
        for rec in frame.to_dict("records")
    ]
    if not rows:
        return "(no rows)"
    return rows_table(rows, fmt)
