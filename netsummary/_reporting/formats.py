"""The registry of output formats: one plain function per format name.

``classic`` is torchsummary's table; ``tree``, ``markdown`` and ``html`` are the tree view in a
tabulate format (``simple``, ``github``, ``html``), where repeated blocks fold into one row unless
``fold=False``; ``json`` and ``csv`` come from :mod:`netsummary._reporting.export` and always hold every
layer; ``memory`` is the memory section of a summary made with ``estimate=`` (``depth``, ``columns`` and ``fold`` do not apply; neither is the classic table folded).
A new format is one entry in :data:`FORMATS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._errors import InputSpecError
from .export import to_csv, to_json
from .render import render_classic
from .columns import check_columns
from .table import check_depth, check_fold, render_table

if TYPE_CHECKING:
    from .._summary import Summary

Renderer = Callable[..., str]  # (summary, depth, columns, fold=True) -> text

FORMATS: dict[str, Renderer] = {
    "classic": lambda s, depth, columns, fold=True: render_classic(s),
    "tree": lambda s, depth, columns, fold=True: render_table(s, "simple", depth, columns, fold),
    "markdown": lambda s, depth, columns, fold=True: render_table(s, "github", depth, columns, fold),
    "html": lambda s, depth, columns, fold=True: render_table(s, "html", depth, columns, fold),
    "json": lambda s, depth, columns, fold=True: to_json(s),
    "csv": lambda s, depth, columns, fold=True: to_csv(s),
}
#: Sections that render one part of a summary, accepted wherever a format is.
SECTIONS: dict[str, Renderer] = {
    "memory": lambda s, depth, columns, fold=True: _memory(s),
}


def _memory(s: Summary) -> str:
    """The memory section of a summary made with ``estimate=``."""
    if s.memory is None:
        raise InputSpecError("format 'memory': this summary has no memory estimate; make it with "
                             "summary(..., estimate='train') or estimate='inference'", "memory")
    from .memory import render_memory

    return render_memory(s.memory)


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
    if not isinstance(format, str) or (format not in FORMATS and format not in SECTIONS):
        raise InputSpecError(f"format: unknown format {format!r}; valid formats are {', '.join([*FORMATS, *SECTIONS])}",
                             format)
    if format in ("classic", "memory") and (depth is not None or columns is not None):
        raise InputSpecError("depth and columns apply to the tree formats (tree, markdown, html), not to "
                             "format='classic', whose columns are torchsummary's", format)
    return format


def render(s: Summary, format: str | None = None, depth: int | None = None, columns: Sequence[str] | None = None,
           fold: bool = True) -> str:
    """Render ``s`` in ``format`` (see :data:`FORMATS`); ``fold=False`` shows every repeated
    block of the tree formats."""
    name = resolve_format(format, depth, columns)
    return {**FORMATS, **SECTIONS}[name](s, depth, columns, check_fold(fold))
