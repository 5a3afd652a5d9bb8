"""The tree view's columns: each column's title (with its units) and how a cell is made from a
layer record, the default column lists, and the check of a chosen list. A container row's cells
aggregate its subtree (:func:`subtree_macs`, :func:`subtree_activations`); :mod:`netsummary._reporting.table`
lays the rows out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import InputSpecError, InputTypeError
from .render import format_tree, param_text, shown_shape
from .sharding import local_params_cell, shard_cell

if TYPE_CHECKING:
    from .._summary import LayerRecord, Summary


@dataclass(frozen=True, slots=True)
class Column:
    """A table column: its title (with units) and how a cell is made from a record."""

    title: str
    cell: Callable[[LayerRecord, Summary, dict[int, int | None]], str]
    align: str = "right"


def _shape(tree: Any, axes: tuple) -> str:
    return "--" if tree is None else format_tree(shown_shape(tree, axes))


def _single(tree: Any) -> Any:
    """A call's inputs are a list of arguments; one argument is shown on its own."""
    return tree[0] if isinstance(tree, list) and len(tree) == 1 else tree


def _params(r: LayerRecord, s: Summary, macs: dict) -> str:
    cell = param_text(r.params, r.quant_unknown)
    if r.quant_dtype:  # quantized weights: the logical count, marked with how they are stored
        cell += f" ({r.quant_dtype})"
    if r.call_index > 1 and r.params:
        cell += " (repeat)"
    elif r.shared_params:
        cell += " (tied)" if r.shared_params == r.params else f" ({r.shared_params:,} tied)"
    return cell


def _trainable_text(params: int, trainable: int) -> str:
    if trainable == params:
        return "yes"
    return "no" if not trainable else f"partial ({trainable:,})"


def _trainable(r: LayerRecord, s: Summary, macs: dict) -> str:
    return "--" if not r.params else _trainable_text(r.params, r.trainable_params)


def _macs(r: LayerRecord, s: Summary, macs: dict) -> str:
    value, unknown = macs.get(r.index, (None, False))
    if value is None:
        return "--"
    return f"{value:,}" + (" + ?" if unknown else "")  # "+ ?": an operator without a formula ran


def _quantized(r: LayerRecord, s: Summary, macs: dict) -> str:
    """``int4 packed: 1,024 B + 72 B state``: stored bytes of the quantized weights and of their state."""
    if not (r.quant_bytes or r.quant_unknown):
        return "--"
    return f"{r.quant_dtype or 'unknown'}: {r.quant_bytes:,} B + {r.quant_state_bytes:,} B state"


def _formula(r: LayerRecord, s: Summary, macs: dict) -> str:
    if r.formula is None:
        return "--"
    text = r.formula if r.formula in ("0", "uninitialized") else f"{r.formula} = {r.params:,}"
    return text


COLUMNS: dict[str, Column] = {
    "input_shape": Column("Input shape", lambda r, s, m: _shape(_single(r.input_shapes), r.input_batch_axes)),
    "output_shape": Column("Output shape", lambda r, s, m: _shape(r.output_shapes, r.output_batch_axes)),
    "params": Column("Params", _params),
    "params_percent": Column(
        "Params (%)", lambda r, s, m: f"{100 * r.params / s.total_params:.2f}%" if s.total_params else "--"
    ),
    "kernel_shape": Column("Kernel shape", lambda r, s, m: "--" if r.kernel_shape is None else format_tree(r.kernel_shape)),
    "trainable": Column("Trainable", _trainable),
    "macs": Column("MACs", _macs),
    "output_bytes": Column("Output (bytes)", lambda r, s, m: f"{r.output_bytes:,}" if r.completed else "--"),
    "formula": Column("Params formula (elements)", _formula, align="left"),
    "param_bytes": Column("Params (bytes)", lambda r, s, m: f"{r.param_bytes:,}"),
    "quantized": Column("Quantized (stored + state)", _quantized),
    "local_params": Column("Local params", lambda r, s, m: local_params_cell(r)),
    "shard": Column("Shard (global → local)", lambda r, s, m: shard_cell(r), align="left"),
    "activations": Column("Saved activations (bytes)", lambda r, s, m: _activations(r, s)),
}
SHARD_COLUMNS = ("local_params", "shard")  # added after "params" by default for a sharded model


_activations_cache: tuple = (None, {})  # (the summary, its subtree figures), replaced as one object


def subtree_activations(s: Summary) -> dict[int, int]:
    """Each call's saved-activation bytes (``s.memory``'s per-call figures, matched by qualified
    name and call index) including the calls inside it."""
    global _activations_cache
    cached = _activations_cache  # one read: another thread may replace it meanwhile
    if cached[0] is s:
        return cached[1]
    own = {(m.name, m.call_index): m.saved_bytes for m in s.memory.layers} if s.memory is not None else {}
    total = {r.index: own.get((r.name, r.call_index), 0) for r in s.layers}
    for r in reversed(s.layers):
        if r.parent is not None:
            total[r.parent] += total[r.index]
    _activations_cache = (s, total)
    return total


def _activations(r: LayerRecord, s: Summary) -> str:
    return "--" if s.memory is None else f"{subtree_activations(s)[r.index]:,}"
DEFAULT_COLUMNS = ("output_shape", "params", "macs")
NO_FORWARD_COLUMNS = ("params", "trainable", "param_bytes")  # the default when no forward ran


def check_columns(columns: Any) -> tuple[str, ...]:
    """Validate a column list (names from :data:`COLUMNS`); ``None`` means the defaults."""
    if columns is None:
        return DEFAULT_COLUMNS
    if isinstance(columns, str) or not isinstance(columns, Sequence):
        raise InputTypeError(f"columns: expected a list of column names such as {list(DEFAULT_COLUMNS)!r}, got {columns!r}", columns)
    unknown = [c for c in columns if not isinstance(c, str) or c not in COLUMNS]
    if unknown:
        raise InputSpecError(f"columns: unknown column(s) {unknown!r}; valid columns are {', '.join(COLUMNS)}", columns)
    if not columns:
        raise InputSpecError(f"columns: expected at least one column; valid columns are {', '.join(COLUMNS)}", columns)
    twice = sorted({c for c in columns if list(columns).count(c) > 1})
    if twice:
        raise InputSpecError(f"columns: {twice[0]!r} is listed twice", columns)
    return tuple(columns)


def subtree_macs(s: Summary) -> dict[int, tuple[int | None, bool]]:
    """Each call's MACs including the calls inside it, and whether any part had an operator
    without a formula (the figure is then a lower bound)."""
    total: dict[int, tuple[int | None, bool]] = {r.index: (r.macs, bool(r.unknown_ops)) for r in s.layers}
    for r in reversed(s.layers):
        if r.parent is not None:
            (a, ua), (b, ub) = total[r.parent], total[r.index]
            total[r.parent] = (None if a is None or b is None else a + b, ua or ub)
    return total
