"""Render a :class:`~netsummary.Summary` as text. The only module that makes strings and "MB".

The classic layout is torchsummary's, byte for byte for models torchsummary handles: right-aligned
columns at least 20, 25 and 15 characters wide (wider when a cell needs it, so long names and
nested shapes never break alignment), then the totals and four size lines in MB, where
**MB means MiB, 2**20 bytes**, as torchsummary prints it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._structure import ShapeTree, map_shapes

if TYPE_CHECKING:
    from ._summary import LayerRecord, Summary

MIB = 2**20  # bytes in the "MB" that torchsummary (and the classic table) prints


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


def _param_cell(r: LayerRecord) -> str:
    cell = f"{r.params:,}"
    if r.shared_params:
        if r.call_index > 1:
            cell += " (repeat)"
        elif r.shared_params == r.params:
            cell += " (tied)"
        else:
            cell += f" ({r.shared_params:,} tied)"
    return cell


def classic_rows(s: Summary) -> list[tuple[str, str, str]]:
    """(label, output shape, params) cells of the classic table, in call order."""
    rows = []
    for i, r in enumerate(s.leaf_layers, 1):
        shape = format_tree(shown_shape(r.output_shapes, r.output_batch_axes)) if r.completed else "(failed here)"
        rows.append((f"{r.type}-{i}", shape, _param_cell(r)))
    for g in s.other_params:
        where = "own params" if g.called else "not called"
        rows.append((f"{g.type} ({g.name or 'root'}: {where})", "--", f"{g.params:,}"))
    return rows


def render_classic(s: Summary) -> str:
    """The torchsummary table. For the seed discriminator this is exactly torchsummary's output."""
    head = ("Layer (type)", "Output Shape", "Param #")
    rows = classic_rows(s)
    w1, w2, w3 = (max([w, *(len(r[i]) for r in rows)]) for i, w in enumerate((20, 25, 15)))
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
    if s.shared_params:
        out.append(f"Shared params shown in several rows, counted once: {s.shared_params:,}")
    out += [
        rule,
        f"Input size (MB): {s.input_bytes / MIB:0.2f}",
        f"Forward/backward pass size (MB): {2 * s.output_bytes / MIB:0.2f}",
        f"Params size (MB): {s.param_bytes / MIB:0.2f}",
        f"Estimated Total Size (MB): {s.estimated_total_bytes / MIB:0.2f}",
        rule,
    ]
    return "\n".join(out)

