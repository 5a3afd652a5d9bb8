"""What a checkpoint holds, as data and as a table: :class:`CheckpointSummary` (totals in elements
and bytes), its prefix tree of :class:`PrefixRow` rows to a chosen depth, and the text
:meth:`CheckpointSummary.render` prints. :func:`netsummary._checkpoints.inspect.inspect_checkpoint`
reads a file into one; its docstring says how parameters, buffers and packed layers are counted.
"""

from __future__ import annotations

import inspect as _pyinspect
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tabulate import SEPARATING_LINE, tabulate

from .._errors import InputSpecError
from .entries import TensorEntry
from .packed import PackedCheckpoint
from .._safeio import escape, shorten, shown
from .._units import format_bytes, format_count

MAX_TREE_DEPTH = 16  # levels of the prefix tree; a deeper name's remaining parts fold into one row
MAX_ROWS = 10_000  # rows render() prints by default; the Total still counts every tensor
MAX_LABEL = 100  # characters of a name part (or a tied-to name) render() prints, cut in the middle


@dataclass(frozen=True, slots=True)
class PrefixRow:
    """One node of :meth:`CheckpointSummary.tree`: all tensors whose name starts with ``name``.

    ``fc`` with ``fc.weight`` (8, 16) and ``fc.bias`` (8,) float32: params 136 elements, nbytes 544.
    """

    name: str  # full dotted prefix, e.g. "encoder.layer.0"
    depth: int  # 0 for top-level names: the indentation level of a tree view
    params: int  # parameter elements under this prefix (buffers not included), shared storage counted once
    nbytes: int  # bytes of every tensor under this prefix (buffers included), shared storage counted once
    dtypes: dict[str, int]  # elements per dtype, largest first
    is_tensor: bool  # the prefix is itself a tensor's name
    buffers: int = 0  # buffer elements under this prefix (running_mean, running_var, num_batches_tracked)
    folded: int = 0  # levels beyond MAX_TREE_DEPTH folded into this row (its last part holds the dots)


@dataclass(frozen=True, slots=True)
class CheckpointSummary:
    """What a checkpoint holds, read without the model's code; totals in elements and bytes."""

    path: str
    format: str  # "safetensors" or "pytorch"
    tensors: tuple[TensorEntry, ...]
    total_params: int  # parameter elements (every tensor but the buffers), shared storage counted once
    total_bytes: int  # bytes of every tensor, buffers included
    dtypes: dict[str, int]  # elements per dtype over every tensor, largest first
    state_dict_key: str | None = None  # where the state dict was found, e.g. "state_dict"
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors "__metadata__"
    buffer_elements: int = 0  # running_mean / running_var / num_batches_tracked elements
    buffer_bytes: int = 0
    ignored: tuple[str, ...] = ()  # entries of a training checkpoint beside the state dict ("optimizer")
    shards: tuple[str, ...] = ()  # a sharded checkpoint's files, as its index names them
    # GPTQ/AWQ packed layers (see netsummary._checkpoints.packed): total_params counts a qweight's
    # logical elements; qzeros/scales/g_idx are quantization state, in total_bytes, not params
    quantized_params: int = 0  # logical elements of the packed weights (part of total_params)
    quant_state_bytes: int = 0  # bytes of qzeros, scales, g_idx
    packed: PackedCheckpoint | None = None

    @property
    def param_bytes(self) -> int:
        """Bytes of the parameters: ``total_bytes - buffer_bytes`` (and, for a GPTQ/AWQ
        checkpoint, ``- quant_state_bytes``: the packed ``qweight`` words are the parameters'
        stored bytes)."""
        return self.total_bytes - self.buffer_bytes - self.quant_state_bytes

    def tree(self, depth: int | None = None) -> list[PrefixRow]:
        """Group counts by dotted name prefix, depth-first in checkpoint order (safetensors: by name).

        ``depth=1`` gives the top-level names only (``encoder``, ``decoder``); ``None`` goes down to
        the tensors. The rows of one depth add up to the total, e.g. ``[fc (136 elements, 544
        bytes), fc.weight (128, 512), fc.bias (8, 32)]``, except that storage shared by two prefixes
        (tied ``embed``/``lm_head``) counts in each. Raises InputSpecError for a negative depth.

        The tree is at most :data:`MAX_TREE_DEPTH` levels deep: a tensor name of more parts gets
        one row at the last level for the rest of its name (``PrefixRow.folded`` says how many
        levels it folds), so the rows cost at most ``MAX_TREE_DEPTH`` times the names' length.
        """
        return [_row(name, level, node, self._counts) for name, level, node in self._nodes(depth)]

    @property
    def _counts(self) -> dict[str, int] | None:
        """Parameter elements per tensor name where they differ from its elements (packed layers)."""
        return None if self.packed is None else self.packed.params

    def _nodes(self, depth: int | None) -> Iterator[tuple[str, int, _Node]]:
        """The prefix tree's nodes, depth-first: ``(dotted prefix, level, node)``."""
        if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
            raise InputSpecError(f"invalid depth {depth!r}: expected None or an integer >= 0, e.g. 2", depth)
        limit = MAX_TREE_DEPTH if depth is None else min(depth, MAX_TREE_DEPTH)
        fold = depth is None or depth > MAX_TREE_DEPTH
        root = _Node()
        for entry in self.tensors:
            canonical = entry.tied_to or entry.name
            node = root
            parts = entry.name.split(".", limit)  # at most limit + 1 parts: the last holds the rest
            folded = 0
            if fold and len(parts) > limit:  # deeper than the tree: the rest of the name is one row
                rest = f"{parts[limit - 1]}.{parts[limit]}"
                parts = [*parts[: limit - 1], rest]
                folded = rest.count(".")
            whole = len(parts) <= limit  # every part of the name is a level of the tree
            for level, part in enumerate(parts[:limit]):
                node = node.children.setdefault(part, _Node())
                node.members[canonical] = entry
                if whole and level == len(parts) - 1:
                    node.is_tensor = True
                    node.folded = max(node.folded, folded)
        stack = [(name, 0, child) for name, child in reversed(root.children.items())]
        while stack:
            name, level, node = stack.pop()
            yield name, level, node
            stack.extend((f"{name}.{part}", level + 1, child) for part, child in reversed(node.children.items()))

    def render(self, depth: int | None = None, max_rows: int | None = MAX_ROWS) -> str:
        """A tabulate table (simple format): Module, Params (elements), Bytes (binary units), Dtypes;
        with a Buffers column (elements) when the checkpoint has normalization buffers.

        Nested names are indented two spaces per level; the last row is the total. Lines after the
        table say what the table leaves out (rows past ``max_rows``, ``None`` for all; levels folded
        past :data:`MAX_TREE_DEPTH`; names cut to :data:`MAX_LABEL` characters; control characters
        shown escaped), then what was counted apart or left out: buffers, the entry a state dict was
        found under and the entries ignored beside it, the shards of a sharded checkpoint.
        """
        tied = {e.name: e.tied_to for e in self.tensors if e.tied_to}
        has_buffers = any(e.is_buffer for e in self.tensors)
        nodes = self._nodes(depth)
        counts = self._counts
        rows = [_row(*node, counts) for node in (nodes if max_rows is None else itertools.islice(nodes, max_rows))]
        hidden = sum(1 for _ in nodes)  # the rows past max_rows are counted, not built
        folded = cut = escaped = 0
        table: list[Any] = []
        for row in rows:
            part = row.name.split(".", row.depth)[-1]  # this level's part (a folded row: the rest of the name)
            text = escape(part)
            escaped += text != part
            cut += len(text) > MAX_LABEL
            label = "  " * row.depth + shorten(text, MAX_LABEL)
            if row.folded:
                folded += 1
                label += f" (+{row.folded:,} levels)"
            if row.is_tensor and row.name in tied:
                label += f" (shares storage with {shown(tied[row.name], MAX_LABEL)})"
            if row.is_tensor and self.packed is not None and row.name in self.packed.params:
                label += " (quantization state)" if row.name in self.packed.state else (
                    " (packed: logical count unknown)" if not row.params else " (packed)")
            buffers = [format_count(row.buffers)] if has_buffers else []
            table.append([label, format_count(row.params), *buffers, format_bytes(row.nbytes), ", ".join(row.dtypes)])
        if table:
            table.append(SEPARATING_LINE)
        buffers = [format_count(self.buffer_elements)] if has_buffers else []
        table.append(["Total", format_count(self.total_params), *buffers, format_bytes(self.total_bytes),
                      ", ".join(self.dtypes)])
        headers = ["Module", "Params", *(["Buffers"] if has_buffers else []), "Bytes", "Dtypes"]
        options: dict[str, Any] = {"headers": headers, "tablefmt": "simple", "disable_numparse": True,
                                   "colalign": ("left", "right", *(["right"] if has_buffers else []), "right", "left")}
        view = []
        if hidden:
            view.append(f"{hidden:,} more rows not shown: the table stops at {max_rows:,} rows; the Total counts "
                        "every tensor (--depth N shows fewer levels)")
        if folded:
            view.append(f"{folded:,} {'rows fold names' if folded > 1 else 'row folds a name'} deeper than "
                        f"{MAX_TREE_DEPTH} levels: the rest of the name is one row, (+N levels) says how many it folds")
        if cut:
            view.append(f"Names longer than {MAX_LABEL} characters are cut in the middle (…)")
        if escaped:
            view.append("Control characters in names are shown escaped (\\n, \\x1b, \\u2028)")
        return "\n".join([_tabulate_keeping_indent(table, options), *view, *self.notes()])

    def notes(self) -> list[str]:
        """The lines :meth:`render` prints under the table about the checkpoint itself (none for a
        plain state dict); names from the file are escaped and shortened, lists cut at 8."""
        lines = []
        if self.buffer_elements or any(e.is_buffer for e in self.tensors):
            lines.append(f"Params {format_count(self.total_params)} ({format_bytes(self.param_bytes)}) leave out "
                         f"{format_count(self.buffer_elements)} buffer elements ({format_bytes(self.buffer_bytes)}): "
                         "tensors named running_mean, running_var or num_batches_tracked; Bytes include them")
        if self.state_dict_key:
            ignored = ""
            if self.ignored:
                ignored = f"; other entries ignored: {_listed(self.ignored)}"
            lines.append(f"Tensors read from the {shown(self.state_dict_key, MAX_LABEL)!r} entry{ignored}")
        if self.shards:
            lines.append(f"Summed over {len(self.shards)} shards: {_listed(self.shards)}")
        p = self.packed
        if p is not None:
            layers = ", ".join(f"{n:,} {kind}" for kind, n in sorted(p.layouts.items())) or "no"
            bits = "/".join(map(str, p.bits))
            where = f"; bits from {p.bits_from}" if p.bits_from else ""
            per_word = f" ({', '.join(f'{32 // b if 32 % b == 0 else 32 / b:g}' for b in p.bits)} per int32 word)" if p.bits else ""
            lines.append(f"Quantized: {layers} packed layer{'s' if sum(p.layouts.values()) != 1 else ''}"
                         f"{f' of {bits} bits' if bits else ''}{where}: Params count each qweight's logical "
                         f"elements{per_word}, {format_count(self.quantized_params)} in all; qzeros, scales and g_idx "
                         f"are quantization state ({format_bytes(self.quant_state_bytes)}), not params; Bytes include them")
            for c in p.conflicts:
                lines.append(f"Note: bits contradict the shapes for {c}: counted at the shapes' bits")
            if p.unknown:
                lines.append(f"Logical params unknown for {len(p.unknown):,} packed layer"
                             f"{'s' if len(p.unknown) > 1 else ''} (bits neither in a quantize_config.json / config.json "
                             f"nor inferable from qzeros and scales): {_listed(p.unknown)}; their bytes are counted, "
                             "their params are not")
        return lines


def _row(name: str, level: int, node: _Node, counts: dict[str, int] | None = None) -> PrefixRow:
    members = node.members.values()
    buffers = sum(e.numel for e in members if e.is_buffer)
    params = sum(e.numel for e in members) if counts is None else sum(counts.get(e.name, e.numel) for e in members)
    return PrefixRow(name, level, params - buffers, sum(e.nbytes for e in members),
                     _count_dtypes(members), node.is_tensor, buffers, node.folded)


def _listed(names: tuple[str, ...], most: int = 8) -> str:
    """``a, b, c, ... (12 in all)``: at most ``most`` names, each escaped and shortened."""
    more = f", ... ({len(names)} in all)" if len(names) > most else ""
    return ", ".join(shown(n, MAX_LABEL) for n in names[:most]) + more


class _Node:
    __slots__ = ("children", "folded", "is_tensor", "members")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.members: dict[str, TensorEntry] = {}  # canonical name -> entry: dedupes shared storage
        self.is_tensor = False
        self.folded = 0


def _count_dtypes(entries: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.dtype] = counts.get(entry.dtype, 0) + entry.numel
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _tabulate_keeping_indent(table: list[Any], options: dict[str, Any]) -> str:
    # tabulate strips leading spaces unless asked not to; the keyword exists from tabulate 0.10.
    if "preserve_whitespace" in _pyinspect.signature(tabulate).parameters:
        return tabulate(table, preserve_whitespace=True, **options)
    import tabulate as module  # pragma: no cover - tabulate 0.9 only has the module-wide switch

    saved, module.PRESERVE_WHITESPACE = module.PRESERVE_WHITESPACE, True  # pragma: no cover
    try:  # pragma: no cover
        return tabulate(table, **options)
    finally:  # pragma: no cover
        module.PRESERVE_WHITESPACE = saved
