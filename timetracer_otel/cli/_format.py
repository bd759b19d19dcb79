"""Plain-text tables: aligned columns, no dependencies beyond click."""

from __future__ import annotations

from collections.abc import Collection, Sequence

__all__ = ["safe", "table"]

_GAP = "  "


def safe(text: str) -> str:
    """Escape control characters: cassette contents must not move the cursor or recolour the terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = ()) -> list[str]:
    """Lines of a table; columns whose index is in ``right`` are right-aligned (numbers)."""
    cells = [[safe(cell) for cell in row] for row in [header, *rows]]
    widths = [max(len(row[n]) for row in cells) for n in range(len(header))]
    last = len(header) - 1
    lines = []
    for row in cells:
        parts = []
        for n, cell in enumerate(row):
            if n in right:
                parts.append(cell.rjust(widths[n]))
            elif n == last:
                parts.append(cell)  # no padding after the last column: no trailing spaces
            else:
                parts.append(cell.ljust(widths[n]))
        lines.append(_GAP.join(parts).rstrip())
    return lines
