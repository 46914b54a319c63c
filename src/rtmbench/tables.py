"""The one table renderer: GitHub-flavoured Markdown tables, for reports, the README, the gate's
rows, the plan and the complexity command.

A helper of its own rather than a library (tabulate's "github" format, for one, writes a cell's
``|`` as is and breaks the row): every cell here is escaped the same way (``|`` as ``\\|``, a
line break as a space), so a reason or a verdict that holds one cannot split a table; ``pad``
aligns the columns for a terminal, and ``align`` right-aligns numbers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def cell(value: Any) -> str:
    """A value as one table cell: ``|`` escaped, line breaks folded into spaces."""
    return " ".join(str(value).split("\n")).replace("|", "\\|")


def markdown_table(head: Sequence[Any], rows: Sequence[Sequence[Any]], *,
                   align: Sequence[str] | None = None, pad: bool = False) -> str:
    """``head`` and ``rows`` as a Markdown table. ``align``: per column "left" (default) or
    "right"; ``pad``: columns padded to their widest cell (for reading in a terminal)."""
    table = [[cell(c) for c in head]] + [[cell(c) for c in row] for row in rows]
    for number, row in enumerate(table):
        if len(row) != len(table[0]):
            raise ValueError(f"row {number} has {len(row)} cells, the head {len(table[0])}")
    align = list(align or ["left"] * len(head))
    widths = [max(len(row[i]) for row in table) if pad else 3 for i in range(len(head))]

    def line(row: list[str]) -> str:
        cells = [c.rjust(w) if a == "right" else c.ljust(w)
                 for c, w, a in zip(row, widths, align, strict=True)] if pad else row
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join((("-" * (w + 1)) + ":" if a == "right" else "-" * (w + 2))
                          if pad else ("---:" if a == "right" else "---")
                          for w, a in zip(widths, align, strict=True)) + "|"
    return "\n".join([line(table[0]), rule, *(line(r) for r in table[1:])])
