"""The tree view: the module tree to a chosen depth, with chosen columns, in any tabulate format.

Rows are module calls in call order, indented by depth and named by qualified name. A container
row aggregates its subtree: its params are its subtree's unique parameters and its MACs are the
sum over the calls inside it; rows below ``depth`` are aggregated into their ancestor at ``depth``.
Runs of identical consecutive sibling blocks fold into one row (``layers.0–79 (Block) × 80``, its
figures ``80 × per block = total``, the first block's rows under it; see :mod:`netsummary._reporting.fold`)
unless ``fold=False``.
Parameters no call accounts for (a module's own ``nn.Parameter``, a module never called) get a
row right under their module. Column titles carry their units. In text tables a layer label
longer than :data:`NAME_WIDTH` keeps its last characters (the most specific part of the
qualified name), and structured shape cells (nested lists and dicts of shapes) are elided in the
middle so that the table stays within :data:`~netsummary._reporting.render.MAX_WIDTH` columns; plain shapes
are never cut. Markdown and HTML keep every cell whole (their viewers wrap) and indent with ``·``
marks, since both drop leading spaces.

The totals' byte sizes carry their unit in the value, the largest binary unit in which the value
is at least 1 (B, KiB, MiB, GiB, TiB; 1 KiB = 2**10 bytes) with two decimals: ``Params size
256.96 GiB``, ``Buffers size 0 B`` (see :func:`~netsummary._units.format_bytes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tabulate import tabulate

from .._errors import InputSpecError, InputTypeError
from .columns import (COLUMNS, DEFAULT_COLUMNS, NO_FORWARD_COLUMNS, SHARD_COLUMNS, _quantized, _trainable_text,
                      check_columns, subtree_activations, subtree_macs)
from .fold import find_runs, folded_away
from .render import MAX_WIDTH, NO_FORWARD, fit_cells, param_text, quant_lines
from .sharding import footer_lines, ranks_table
from .._safeio import markdown_cell
from .._units import format_bytes

if TYPE_CHECKING:
    from .._summary import LayerRecord, ParamGroup, Summary

NAME_WIDTH = 48  # a text table too wide cuts longer layer labels to their last characters


def check_depth(depth: Any) -> int | None:
    """Validate a tree depth: ``None`` (all levels) or an int >= 0."""
    if depth is None:
        return None
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise InputTypeError(f"depth: expected a non-negative int or None (all levels), got {depth!r}", depth)
    if depth < 0:
        raise InputSpecError(f"depth: expected a non-negative int or None (all levels), got {depth}", depth)
    return depth


def check_fold(fold: Any) -> bool:
    """Validate ``fold``: ``True`` (repeated blocks as one row) or ``False`` (every row)."""
    if not isinstance(fold, bool):
        raise InputTypeError(f"fold: expected True (repeated blocks as one row) or False (every row), got {fold!r}", fold)
    return fold


_INDENT = {"simple": "  ", "github": "· ", "html": "· "}  # markdown and HTML drop leading spaces


def _label(text: str, depth: int, tablefmt: str) -> str:
    """Indented layer label, whole (text tables cut long ones only when too wide: :func:`_cut_labels`)."""
    return _INDENT.get(tablefmt, "  ") * depth + text


def _cut_label(label: str, width: int) -> str:
    """``label`` in at most ``width`` characters: its indent, ``…`` and the tail of the name."""
    if len(label) <= width:
        return label
    indent = len(label) - len(label.lstrip(" "))
    keep = max(width - indent - 1, 1)
    return label[:indent] + "…" + label[len(label) - keep :]


def _column_widths(rows: list[list[str]], headers: Sequence[str]) -> list[int]:
    """The "simple" format's column widths: tabulate pads each header by 2 (its MIN_PADDING)."""
    return [max([len(h) + 2, *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]


def _table_width(rows: list[list[str]], headers: Sequence[str]) -> int:
    return sum(_column_widths(rows, headers)) + 2 * (len(headers) - 1)


def _cut_labels(rows: list[list[str]], headers: Sequence[str], elidable: Sequence[int]) -> list[list[str]]:
    """A "simple" table at most MAX_WIDTH wide: labels whole when the table fits; else labels cut
    to NAME_WIDTH and shape cells elided (:func:`_fit`), then labels given back what room is left."""
    if _table_width(rows, headers) <= MAX_WIDTH:
        return rows
    cut = _fit([[_cut_label(r[0], NAME_WIDTH), *r[1:]] for r in rows], headers, elidable)
    room = NAME_WIDTH + max(MAX_WIDTH - _table_width(cut, headers), 0)
    return [[_cut_label(full[0], room), *r[1:]] for full, r in zip(rows, cut)]


def _group_row(g: ParamGroup, s: Summary, columns: Sequence[str], depth: int, tablefmt: str) -> list[str]:
    where = "own params" if g.called else "not called"
    unknown = int(f"{g.name or '(root)'} ({g.type})" in s.quant_unknown)  # the module is itself an unknown layout
    cells = {
        "params": param_text(g.params, unknown),
        "params_percent": f"{100 * g.params / s.total_params:.2f}%" if s.total_params else "--",
        "trainable": _trainable_text(g.params, g.trainable_params),
        "param_bytes": f"{g.param_bytes:,}",
        "formula": g.formula or "--",
    }
    label = _label(f"{g.name or '(root)'} ({g.type}, {where})", depth, tablefmt)
    return [label, *(cells.get(c, "") for c in columns)]


def _times(n: int, per: int, suffix: str = "") -> str:
    """A folded row's figure: ``12 × 72 = 864`` (per block, then the run's total)."""
    return "0" if per == 0 and not suffix else f"{n} × {per:,} = {n * per:,}{suffix}"


def _folded_cells(r: LayerRecord, s: Summary, macs: dict, n: int, columns: Sequence[str]) -> list[str]:
    """The cells of a run of ``n`` identical blocks whose first block is ``r``: figures that add
    up (params, params_percent, macs, output_bytes) as ``n × per block = total``, shapes per block."""
    cells = []
    for c in columns:
        if c == "params":
            cell = _times(n, r.params)
        elif c == "params_percent":
            per = 100 * r.params / s.total_params if s.total_params else None
            cell = "--" if per is None else "0.00%" if not per else f"{n} × {per:.2f}% = {n * per:.2f}%"
        elif c == "macs":
            value, unknown = macs.get(r.index, (None, False))
            cell = "--" if value is None else _times(n, value, " + ?" if unknown else "")
        elif c == "output_bytes":
            cell = _times(n, r.output_bytes)
        elif c == "param_bytes":
            cell = _times(n, r.param_bytes)
        elif c == "quantized" and (r.quant_bytes or r.quant_unknown):
            cell = f"{n} × ({_quantized(r, s, macs)})"
        elif c == "local_params" and r.local_params is not None:
            cell = _times(n, r.local_params)
        elif c == "activations" and s.memory is not None:
            cell = _times(n, subtree_activations(s)[r.index])
        elif c == "trainable" and 0 < r.trainable_params < r.params:
            cell = f"partial ({_times(n, r.trainable_params)})"
        elif c == "formula" and r.formula not in (None, "0", "uninitialized"):
            cell = f"{n} × ({r.formula}) = {n * r.params:,}"
        else:
            cell = COLUMNS[c].cell(r, s, macs)
        cells.append(cell)
    return cells


def tree_rows(s: Summary, depth: int | None, columns: Sequence[str], tablefmt: str = "simple",
              fold: bool = True) -> list[list[str]]:
    """Rows of the tree view: calls to ``depth``, each module's own-params row right under it.

    With ``fold``, a run of N identical consecutive sibling blocks (see :mod:`netsummary._reporting.fold`)
    is one row ``layers.0–79 (Block) × 80`` whose figures read ``80 × per block = total``; the
    rows under it are the first block's, with per-block figures.
    """
    macs = subtree_macs(s)
    cols = [COLUMNS[c] for c in columns]
    groups = {g.name: g for g in s.other_params}
    rows = []
    runs: dict = {}
    hidden: set[int] = set()
    if fold:
        runs = find_runs(s)
        hidden = folded_away(s, runs)

    def group_depth(g: ParamGroup) -> int:
        return (g.name.count(".") + 1 if g.name else 0) + 1

    for r in s.layers:
        if r.index in hidden:  # a folded block after the first: its own-params rows go with it
            groups.pop(r.name, None)
            continue
        if depth is not None and r.depth > depth:
            continue
        run = runs.get(r.index)
        if run is not None:
            label = f"{run.label} ({r.type}) × {run.count}"
            rows.append([_label(label, r.depth, tablefmt), *_folded_cells(r, s, macs, run.count, columns)])
        else:
            label = f"{r.name or '(root)'} ({r.type})" + (f" #{r.call_index}" if r.call_index > 1 else "")
            rows.append([_label(label, r.depth, tablefmt), *(c.cell(r, s, macs) for c in cols)])
        g = groups.pop(r.name, None) if r.call_index == 1 else None
        if g is not None and (depth is None or group_depth(g) <= depth):
            rows.append(_group_row(g, s, columns, group_depth(g), tablefmt))
    for g in groups.values():  # modules never called
        if depth is None or group_depth(g) <= depth:
            rows.append(_group_row(g, s, columns, group_depth(g), tablefmt))
    return rows


def footer(s: Summary) -> list[tuple[str, str]]:
    """(label, value) pairs of the totals, with units: byte sizes in the value (``256.96 GiB``);
    without a forward the input, forward/backward and estimated total sizes are ``--``."""
    ran = s.forward_ran
    lines = [
        ("Total params", f"{s.total_params:,}"),
        ("Trainable params", f"{s.trainable_params:,}"),
        ("Non-trainable params", f"{s.non_trainable_params:,}"),
        ("Params size", format_bytes(s.param_bytes)),
        ("Buffers (elements)", f"{s.buffer_count:,}"),
        ("Buffers size", format_bytes(s.buffer_bytes)),
        ("Input size", format_bytes(s.input_bytes) if ran else "--"),
        ("Forward/backward pass size", format_bytes(2 * s.output_bytes) if ran else "--"),
        ("Estimated total size", format_bytes(s.estimated_total_bytes) if ran else "--"),
    ]
    from .extras import extra_rows  # mixture of experts, PEFT adapters: only for such models

    lines[3:3] = extra_rows(s)
    if s.quantized:  # the quantized share of the logical count, and the quantization state's bytes
        lines[3:3] = quant_lines(s)
        lines.insert(lines.index(("Params size", format_bytes(s.param_bytes))) + 1,
                     ("Quantization state size", format_bytes(s.quant_state_bytes)))
    if s.shared_params:
        lines.insert(3, ("Shared params shown in several rows, counted once", f"{s.shared_params:,}"))
    if s.total_macs is not None:
        if s.run_batch_size is None:
            batch = "the input_data batch"
        elif s.batch_size == -1:
            batch = "one sample"
        else:
            batch = f"batch of {s.batch_size}"
        bound = "at least " if s.unknown_ops else ""
        lines.append((f"Total MACs ({batch}; FLOPs = 2 × MACs)", f"{bound}{s.total_macs:,}"))
        if s.unknown_ops:
            lines.append(("MACs not counted (no formula) for", ", ".join(s.unknown_ops)))
    return lines + footer_lines(s)


_ELIDABLE = ("input_shape", "output_shape")  # columns whose structured cells may be elided


def _fit(rows: list[list[str]], headers: Sequence[str], elidable: Sequence[int]) -> list[list[str]]:
    """Elide structured shape cells so that a "simple" table (columns two spaces apart) is at most
    MAX_WIDTH wide."""
    if not elidable:
        return rows
    widths = _column_widths(rows, headers)
    fixed = sum(w for i, w in enumerate(widths) if i not in elidable) + 2 * (len(headers) - 1)
    return fit_cells(rows, elidable, [len(headers[i]) + 2 for i in elidable], fixed, MAX_WIDTH)


def render_table(s: Summary, tablefmt: str, depth: int | None = None, columns: Sequence[str] | None = None,
                 fold: bool = True) -> str:
    """The tree view in a tabulate format (``"simple"``, ``"github"``, ``"html"``); ``fold``
    shows runs of identical sibling blocks as one row (see :func:`tree_rows`).

    A summary without a forward (``forward_ran`` false) defaults to :data:`NO_FORWARD_COLUMNS`;
    asked-for shape and MACs columns show ``--``, and :data:`~netsummary._reporting.render.NO_FORWARD`
    follows the totals.

    Raises:
        InputTypeError: ``fold`` is not a bool.
        InputSpecError: a bad column list or depth, or a column the summary did not record
            (``macs`` without MAC counting after a forward, ``formula`` without formulas).
    """
    depth = check_depth(depth)
    check_fold(fold)
    defaulted = columns is None
    if columns is None and not s.forward_ran:
        columns = NO_FORWARD_COLUMNS
    elif columns is None:
        columns = tuple(c for c in DEFAULT_COLUMNS if c != "macs" or s.total_macs is not None)
    if defaulted and s.sharded:
        at = columns.index("params") + 1
        columns = (*columns[:at], *SHARD_COLUMNS, *columns[at:])
    columns = check_columns(columns)
    if "macs" in columns and s.total_macs is None and s.forward_ran:  # no forward: "--", not run
        raise InputSpecError("columns: 'macs' needs MACs counted: summary(..., macs=True)", columns)
    if "activations" in columns and s.memory is None:
        raise InputSpecError("columns: 'activations' needs a measured step: summary(..., estimate='train')", columns)
    if "formula" in columns and any(r.formula is None for r in s.leaf_layers if r.call_index == 1):
        raise InputSpecError("columns: 'formula' needs formulas recorded: summary(..., formulas=True)", columns)
    headers = ["Layer (type)", *(COLUMNS[c].title for c in columns)]
    align = ["left", *(COLUMNS[c].align for c in columns)]
    rows = tree_rows(s, depth, columns, tablefmt, fold)
    totals_rows: list = footer(s)
    if tablefmt == "simple" and rows:
        rows = _cut_labels(rows, headers, [i for i, c in enumerate(columns, 1) if c in _ELIDABLE])
    if tablefmt == "github":  # every cell: names, types, shape-tree keys and operator names come from the model
        rows = [[markdown_cell(c) for c in row] for row in rows]
        totals_rows = [[markdown_cell(c) for c in row] for row in totals_rows]
    body = tabulate(
        rows, headers=headers, tablefmt=tablefmt, colalign=align,
        disable_numparse=True, preserve_whitespace=True,
    )
    totals = tabulate(totals_rows, headers=("Totals", ""), tablefmt=tablefmt, colalign=("left", "right"),
                      disable_numparse=True)
    sep = "\n\n" if tablefmt != "html" else "\n"
    if not s.forward_ran:
        totals += "\n<p>" + NO_FORWARD + "</p>" if tablefmt == "html" else "\n\n" + NO_FORWARD
    if s.ranks:
        totals += sep + ranks_table(s, tablefmt)
    return body + sep + totals
