"""The registry of output formats: one plain function per format name.

``classic`` is torchsummary's table; ``tree``, ``markdown`` and ``html`` are the tree view in a
tabulate format (``simple``, ``github``, ``html``); ``json`` and ``csv`` come from
:mod:`netsummary._export` and always hold every layer (``depth`` and ``columns`` do not apply).
A new format is one entry in :data:`FORMATS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import InputSpecError
from ._export import to_csv, to_json
from ._render import render_classic
from ._table import check_columns, check_depth, render_table

if TYPE_CHECKING:
    from ._summary import Summary

Renderer = Callable[["Summary", "int | None", "Sequence[str] | None"], str]

FORMATS: dict[str, Renderer] = {
    "classic": lambda s, depth, columns: render_classic(s),
    "tree": lambda s, depth, columns: render_table(s, "simple", depth, columns),
    "markdown": lambda s, depth, columns: render_table(s, "github", depth, columns),
    "html": lambda s, depth, columns: render_table(s, "html", depth, columns),
    "json": lambda s, depth, columns: to_json(s),
    "csv": lambda s, depth, columns: to_csv(s),
}


def resolve_format(format: Any, depth: Any, columns: Any) -> str:
    """The format to use: ``None`` means ``"classic"``, or ``"tree"`` when depth/columns are given.

    Raises:
        InputSpecError: unknown format, a bad depth or column list, or depth/columns with the
            classic layout (whose columns are fixed).
    """
    check_depth(depth)
    if columns is not None:
        check_columns(columns)
    if format is None:
        return "tree" if depth is not None or columns is not None else "classic"
    if not isinstance(format, str) or format not in FORMATS:
        raise InputSpecError(f"format: unknown format {format!r}; valid formats are {', '.join(FORMATS)}", format)
    if format == "classic" and (depth is not None or columns is not None):
        raise InputSpecError("depth and columns apply to the tree formats (tree, markdown, html), not to "
                             "format='classic', whose columns are torchsummary's", format)
    return format


def render(s: Summary, format: str | None = None, depth: int | None = None, columns: Sequence[str] | None = None) -> str:
    """Render ``s`` in ``format`` (see :data:`FORMATS`)."""
    name = resolve_format(format, depth, columns)
    return FORMATS[name](s, depth, columns)
