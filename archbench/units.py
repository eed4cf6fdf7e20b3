"""Counts as text, one way everywhere: the CLI tables, the budget errors, the analysis tables
and the plots' count axes all format parameter and MAC counts through these two functions.

``human_count`` is short (``"270K"``, ``"1.73M"``: powers of 1000, counts, not bytes);
``int_count`` is exact (``"269,722"``). No third-party imports: the analysis and the CLI use
it without loading torch.
"""

from __future__ import annotations

_UNITS = ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K"))


def human_count(value: int | float | None, digits: int = 3, *, trim: bool = False) -> str:
    """``1_727_962 -> "1.73M"``, ``269_722 -> "270K"``, ``4_111_512_576 -> "4.11G"``, ``640``.

    ``digits`` significant digits (at least as many as the integer part needs); ``None`` is
    ``"-"``. Units are powers of 1000 (K, M, G, T): counts, not bytes. ``trim`` drops trailing
    zeros (``75_000 -> "75K"`` rather than ``"75.0K"``): for round numbers such as budget
    targets and axis ticks.
    """
    if value is None:
        return "-"
    sign = "-" if value < 0 else ""
    value = abs(value)
    for i, (scale, unit) in enumerate(_UNITS):
        if value >= scale:
            text = _significant(value / scale, digits, trim)
            if float(text) >= 1000 and i > 0:  # 999_999.6 -> "1000K": use the next unit
                scale, unit = _UNITS[i - 1]
                text = _significant(value / scale, digits, trim)
            return f"{sign}{text}{unit}"
    if isinstance(value, float) and not value.is_integer():
        return f"{sign}{_significant(value, digits, trim)}"
    return f"{sign}{int(value)}"


def _significant(value: float, digits: int, trim: bool = False) -> str:
    whole = len(str(int(value))) if value >= 1 else 1
    decimals = max(digits - whole, 0)
    text = f"{value:.{decimals}f}"
    if trim and "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def int_count(value: int | None) -> str:
    """``1727962 -> "1,727,962"``; ``None`` is ``"-"``."""
    return "-" if value is None else f"{value:,}"
