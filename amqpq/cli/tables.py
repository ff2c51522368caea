"""Terminal tables that never cut a name short.

rich ends a cell that does not fit in ``…`` by default; on an 80-column terminal or
in a pipe that turned ``accounting.delivery`` into ``acc.de…``, which cannot be
copied into the next command. These tables fold instead: a long name continues on
the next line of its cell. Scripts read ``--json``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from rich.table import Table

__all__ = ["folding_table"]


def folding_table(title: str, columns: Sequence[str], *, right: Collection[str] = ()) -> Table:
    """A table with these column headers; the ``right`` ones (figures) are right-justified."""
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left", overflow="fold")
    return table
