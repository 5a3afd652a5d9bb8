"""Render a :class:`~netsummary.Summary` as text. The only module that makes strings and "MB".

The classic layout is torchsummary's, byte for byte for models torchsummary handles: right-aligned
columns at least 20, 25 and 15 characters wide (wider when a cell needs it, so long names and
nested shapes never break alignment), then the totals and four size lines in MB, where
**MB means MiB, 2**20 bytes**, as torchsummary prints it.

Width: text tables (this one and the tree view) aim at :data:`MAX_WIDTH` columns, whatever the
terminal. When a table would be wider, its *structured* shape cells (nested lists and dicts of
shapes, such as a detector's list of dicts or a ``PackedSequence``) are elided in the middle with
:data:`ELISION`, keeping the beginning and the end (see :func:`elide`); a plain shape such as
``[-1, 512, 7, 7]`` is never cut, so a table of long plain shapes or long names stays wider.
The data (``Summary``, JSON, CSV) always holds the full structure.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .._tracing.structure import ShapeTree, map_shapes

if TYPE_CHECKING:
    from .._summary import LayerRecord, ParamGroup, Summary

MIB = 2**20  # bytes in the "MB" that torchsummary (and the classic table) prints
MAX_WIDTH = 120  # text tables elide structured shape cells to stay within this many columns
ELISION = " … "  # marks the middle of an elided cell
MIN_ELIDED = 48  # an elided cell keeps at least this many characters, marker included


def shown_shape(tree: ShapeTree, axes: tuple[int | None, ...]) -> ShapeTree:
    """The shape tree as tables show it: each tensor's batch axis (``axes``, one entry per tensor
    in tree order; ``()`` marks nothing) becomes ``-1``."""
    if not axes:
        return tree
    it = iter(axes)

    def mark(shape: tuple[int, ...]) -> tuple[int, ...]:
        axis = next(it, None)
        return shape if axis is None else shape[:axis] + (-1,) + shape[axis + 1 :]

    return map_shapes(tree, mark)


def format_tree(tree: ShapeTree) -> str:
    """Compact text for a shape tree.

    >>> format_tree([(-1, 7, 10), [(1, -1, 10), (1, -1, 10)]])
    '([-1, 7, 10], ([1, -1, 10], [1, -1, 10]))'
    >>> format_tree({"logits": (-1, 3), "box": (-1, 1), "attn": "NoneType"})
    '{logits: [-1, 3], box: [-1, 1], attn: None}'
    """
    if isinstance(tree, tuple):
        return "[" + ", ".join(str(d) for d in tree) + "]"
    if isinstance(tree, list):
        return "(" + ", ".join(format_tree(t) for t in tree) + ")"
    if isinstance(tree, dict):
        return "{" + ", ".join(f"{k}: {format_tree(v)}" for k, v in tree.items()) + "}"
    if tree is None:
        return "--"
    return "None" if tree == "NoneType" else str(tree)


def is_structured(cell: str) -> bool:
    """A cell made by :func:`format_tree` from a nested structure (a list or dict of shapes),
    which may be elided; a plain shape (``[-1, 512, 7, 7]``), ``--`` or ``None`` may not."""
    return cell.startswith(("(", "{")) and cell != "(failed here)"


def _separators(text: str, inside_shapes: bool) -> list[int]:
    """Positions of the ``", "`` between items; outside plain shapes' brackets unless ``inside_shapes``."""
    points, depth = [], 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and text.startswith(", ", i) and (inside_shapes or depth == 0):
            points.append(i)
    return points


def elide(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters: its beginning, :data:`ELISION`, its end.

    The cut falls between items, never inside a plain shape when it can be helped (then between
    a shape's dimensions, and only as a last resort inside a word), so no number is cut.

    >>> elide("({boxes: [100, 4], labels: [100], masks: [100, 1, 28, 28]}, {boxes: [100, 4], "
    ...       "labels: [100], masks: [100, 1, 28, 28]})", 60)
    '({boxes: [100, 4], labels: [100] … masks: [100, 1, 28, 28]})'
    >>> elide("[1, 2, 3]", 40)                       # short enough: unchanged
    '[1, 2, 3]'
    """
    if len(text) <= width:
        return text
    room = max(width - len(ELISION), 2)
    closers = len(text) - len(text.rstrip(")}"))  # closing brackets of lists and dicts: a last-resort tail
    for inside_shapes in (False, True):
        points = _separators(text, inside_shapes)
        starts = [p + 2 for p in points] + [len(text) - closers]  # where a kept tail may begin
        best: tuple[int, int, int] | None = None
        for k, head in enumerate(points):
            if head > room - 1:
                break
            # the first tail start after head whose tail fits in the room left
            j = bisect_left(starts, len(text) - (room - head), k + 1)
            if j == len(starts):
                continue
            tail = len(text) - starts[j]
            score = head + tail + min(head, tail)  # keep much, and some of both ends
            if best is None or score > best[0]:
                best = (score, head, starts[j])
        if best is not None:
            return text[: best[1]] + ELISION.rstrip() + (" " if best[2] < len(text) - closers else "") + text[best[2] :]
    head = (room + 1) // 2
    return text[:head] + ELISION + text[len(text) - (room - head) :]


def fit_cells(rows: list[list[str]], columns: Sequence[int], floors: Sequence[int], fixed: int,
              limit: int = MAX_WIDTH) -> list[list[str]]:
    """Elide structured cells of ``columns`` so that the table is at most ``limit`` wide.

    ``fixed``: the width of every other column and separator; ``floors``: each column's least
    width (its title). A column is never narrower than its longest plain cell or
    :data:`MIN_ELIDED`; the widest columns give up characters first, to a common cap."""
    full, least = [], []
    for col, floor in zip(columns, floors):
        cells = [r[col] for r in rows]
        widest = max([floor, *map(len, cells)])
        plain = max([floor, *(len(c) for c in cells if not is_structured(c))])
        full.append(widest)
        least.append(max(plain, min(MIN_ELIDED, widest)))
    if fixed + sum(full) <= limit:
        return rows
    cap = max(full)
    while cap > 0 and fixed + sum(max(lo, min(hi, cap)) for lo, hi in zip(least, full)) > limit:
        cap -= 1
    widths = {col: max(lo, min(hi, cap)) for col, lo, hi in zip(columns, least, full)}
    return [[elide(c, widths[i]) if i in widths and is_structured(c) else c for i, c in enumerate(r)]
            for r in rows]


CREATED = " (created in forward)"  # the type suffix of a module the forward made
# under the tables of a summary made without a forward (``Summary.forward_ran`` false)
NO_FORWARD = "No forward was run (no input given, or the model defines no forward): shapes and MACs are not known"


def quant_lines(s: Summary) -> list[tuple[str, str]]:
    """(label, value) lines of a quantized model's totals (none for a model without quantized
    weights): the quantized share of the logical parameters, and the layers of unknown layout."""
    if not s.quantized:
        return []
    share = f" ({100 * s.quantized_params / s.total_params:.2f}%)" if s.total_params else ""
    stored = f", stored as {', '.join(s.quant_dtypes)}" if s.quant_dtypes else ""
    if not s.quantized_params and not s.quant_dtypes:  # only unknown layouts: a 0% share would mislead
        lines = [("Quantized params", "unknown layout")]
    else:
        lines = [("Quantized params", f"{s.quantized_params:,} of {s.total_params:,}{share}{stored}")]
    if s.quant_unknown:
        n = len(s.quant_unknown)
        lines.append((f"Params unknown ({n} quantized layer{'s' if n > 1 else ''} of unknown layout)",
                      ", ".join(s.quant_unknown)))
    return lines


def param_text(params: int, unknown: int) -> str:
    """A params cell: the count, or ``unknown`` / ``N + unknown`` where a quantized layer of an
    unknown layout adds elements no count holds."""
    if not unknown:
        return f"{params:,}"
    return "unknown" if not params else f"{params:,} + unknown"


def _own_unknown(s: Summary) -> dict[int, int]:
    """Per layer index: the quantized layers of unknown layout the module is itself (its subtree's
    ``quant_unknown`` less its children's, each child counted once): a container that holds an
    unknown layout's tensors itself reads ``unknown`` on its own-params row too."""
    if not s.quant_unknown:
        return {}
    children: dict[int, dict[str, int]] = {}
    for r in s.layers:
        if r.parent is not None:
            children.setdefault(r.parent, {}).setdefault(r.name, r.quant_unknown)
    return {i: r.quant_unknown - sum(children.get(i, {}).values()) for i, r in enumerate(s.layers) if r.quant_unknown}


def _param_cell(r: LayerRecord, params: int, shared: int, unknown: int | None = None) -> str:
    cell = param_text(params, (r.quant_unknown if r.is_leaf else 0) if unknown is None else unknown)
    if shared:
        if r.call_index > 1:
            cell += " (repeat)"
        elif shared == params:
            cell += " (tied)"
        else:
            cell += f" ({shared:,} tied)"
    return cell


def classic_entries(s: Summary) -> tuple[list[tuple[LayerRecord, int, int]], list[ParamGroup]]:
    """The classic table's rows as ``(record, params, shared)`` in call order, and the trailing
    parameter groups.

    A row is a leaf call (its subtree's parameters) or a call of a module that has children
    and holds parameters itself (a BatchNorm with an activation child, a block's layer-scale
    ``gamma``, the root's class token): that row shows the parameters the module holds itself,
    at its place in call order, before its children's rows. Only the parameters of modules that
    never ran are left for the trailing groups. ``sum(params - shared)`` over the rows not
    ``created``, plus the groups, is ``total_params``.
    """
    own = {g.name: g for g in s.other_params if g.called}
    placed: set[str] = set()
    rows: list[tuple[LayerRecord, int, int]] = []
    for r in s.layers:
        if r.is_leaf:
            rows.append((r, r.params, r.shared_params))
        elif not r.created and (g := own.get(r.name)) is not None:
            if r.call_index == 1 and r.name not in placed:
                placed.add(r.name)
                rows.append((r, g.params, 0))
            elif r.name in placed:
                rows.append((r, g.params, g.params))  # a later call: shown again, counted once
    return rows, [g for g in s.other_params if g.name not in placed]


def created_note(s: Summary) -> str | None:
    """The line saying that modules made during the forward are outside the totals, or ``None``."""
    made = [r for r in s.layers if r.created and r.call_index == 1]
    if not made:
        return None
    # their parameters: those of the outermost made calls (a made container includes its parts)
    params = sum(r.params for r in made if r.parent is None or not s.layers[r.parent].created)
    n = len(made)
    one = n == 1
    return (f"{n} module{'' if one else 's'} created during the forward ({params:,} params) "
            f"{'is' if one else 'are'} not in the totals: {'it was' if one else 'they were'} "
            f"not part of the model before the forward")


def _label(r: LayerRecord, i: int) -> str:
    if r.created:
        return f"{r.type.removesuffix(CREATED)}-{i}{CREATED}"
    return f"{r.type}-{i}"


def classic_rows(s: Summary) -> list[tuple[str, str, str]]:
    """(label, output shape, params) cells of the classic table, in call order."""
    entries, groups = classic_entries(s)
    own_unknown = _own_unknown(s)
    index = {id(r): i for i, r in enumerate(s.layers)} if own_unknown else {}
    rows = []
    for i, (r, params, shared) in enumerate(entries, 1):
        shape = format_tree(shown_shape(r.output_shapes, r.output_batch_axes)) if r.completed else "(failed here)"
        unknown = None if r.is_leaf or not own_unknown else own_unknown.get(index[id(r)], 0)
        rows.append((_label(r, i), shape, _param_cell(r, params, shared, unknown)))
    for g in groups:
        where = "own params" if g.called else "not called"
        rows.append((f"{g.type} ({g.name or 'root'}: {where})", "--", f"{g.params:,}"))
    return rows


def render_classic(s: Summary) -> str:
    """The torchsummary table. For the seed discriminator this is exactly torchsummary's output.
    Structured output shapes are elided to keep the rules within :data:`MAX_WIDTH`.

    A summary without a forward (``forward_ran`` false) has a row per leaf module with ``--`` as
    its output shape, the line :data:`NO_FORWARD` under the totals, and ``--`` for the input,
    forward/backward and estimated total sizes (only the params size is known)."""
    head = ("Layer (type)", "Output Shape", "Param #")
    rows = [list(r) for r in classic_rows(s)]
    w1, w3 = max([20, *(len(r[0]) for r in rows)]), max([15, *(len(r[2]) for r in rows)])
    rows = fit_cells(rows, [1], [25], w1 + w3 + 4)  # the rules are w1 + w2 + w3 + 4 wide
    w2 = max([25, *(len(r[1]) for r in rows)])
    rule = "-" * (w1 + w2 + w3 + 4)
    double = "=" * (w1 + w2 + w3 + 4)

    def line(a: str, b: str, c: str) -> str:
        return f"{a:>{w1}}  {b:>{w2}} {c:>{w3}}"

    out = [rule, line(*head), double, *(line(*r) for r in rows), double]
    out += [
        f"Total params: {s.total_params:,}",
        f"Trainable params: {s.trainable_params:,}",
        f"Non-trainable params: {s.non_trainable_params:,}",
    ]
    from .extras import extra_lines  # mixture of experts, PEFT adapters: only for such models

    out += extra_lines(s)
    out += [f"{label}: {value}" for label, value in quant_lines(s)]
    shared = sum(sh for r, _, sh in classic_entries(s)[0] if not r.created)
    if shared:
        out.append(f"Shared params shown in several rows, counted once: {shared:,}")
    note = created_note(s)
    if note:
        out.append(note)
    ran = s.forward_ran  # without a forward the input and activation sizes are unknown: "--"
    if not ran:
        out.append(NO_FORWARD)
    out += [
        rule,
        f"Input size (MB): {s.input_bytes / MIB:0.2f}" if ran else "Input size (MB): --",
        f"Forward/backward pass size (MB): {2 * s.output_bytes / MIB:0.2f}" if ran else "Forward/backward pass size (MB): --",
        f"Params size (MB): {s.param_bytes / MIB:0.2f}",
        *([f"Quantization state size (MB): {s.quant_state_bytes / MIB:0.2f}"] if s.quantized else []),
        f"Estimated Total Size (MB): {s.estimated_total_bytes / MIB:0.2f}" if ran else "Estimated Total Size (MB): --",
        rule,
    ]
    if s.ranks:  # asked for with all_ranks=True: after torchsummary's layout, which stays as it is
        from .sharding import ranks_table

        out.append(ranks_table(s))
    return "\n".join(out)

