"""Inspect a checkpoint file without the model's code: tensor names, shapes, dtypes and totals.

Example (elements and bytes)::

    summary = inspect_checkpoint("model.safetensors")
    summary.total_params   # 11038081 elements, storage shared by several names counted once
    summary.param_bytes    # 44152324 bytes: elements x dtype itemsize
    print(summary.render(depth=2))

**Parameters and buffers.** A checkpoint does not say which tensors were parameters. Tensors whose
last name component is ``running_mean``, ``running_var`` or ``num_batches_tracked`` (the buffers
of PyTorch's normalization layers: BatchNorm, InstanceNorm, SyncBatchNorm) are counted as buffers,
apart (``buffer_elements``, ``buffer_bytes``); every other tensor counts as a parameter
(``total_params``, ``param_bytes``, the Params column, ``--max-params``), so a saved torchvision
resnet18 gives ``sum(p.numel() for p in model.parameters())`` = 11,689,512. Other buffers (a
registered ``mask``, a rotary ``inv_freq``) cannot be told apart and count as parameters.

* **safetensors** (by extension or by content): only the JSON header is parsed, without torch
  (``safetensors.safe_open`` judges a header that is invalid or unusual); tensor data is never
  read, so a multi-GB file takes milliseconds. Needs the optional package: ``pip install
  'netsummary[safetensors]'``.
* **PyTorch** (``.pt``, ``.pth``, ``.bin``, anything else): ``torch.load(weights_only=True)``, with
  ``mmap=True`` for the zip format (storages are mapped, not read); the legacy non-zip format is read
  into memory. netsummary never executes pickled code: a pickle referencing arbitrary Python objects
  is refused, unloaded. A state dict wrapped in a training checkpoint (``{"state_dict": ...,
  "epoch": 3}``; also ``model``, ``model_state_dict``, ``module``, ``net``, ``network``, ``weights``)
  is unwrapped, and its other entries (optimizer state, epoch, ...) are ignored and listed in
  ``ignored``; nested dicts/lists of tensors are flattened with dotted keys (``a.b``, ``layers.0``).
* **Sharded** checkpoints (``model.safetensors.index.json``, ``pytorch_model.bin.index.json``):
  the index's ``weight_map`` names the shard files; every shard, which must lie next to the index,
  is inspected and the totals are summed (``shards`` lists them).

``nbytes`` is ``numel x itemsize``. Names aliasing the same storage (same storage, offset, shape,
stride, dtype: tied weights saved twice) count once in every total and carry ``tied_to``; partial
views of one storage each count in full.

**Hostile files.** Only regular files are read: a FIFO or a device is refused without being opened.
Loading is linear in the file (see :mod:`netsummary._checkpoints.safetensors_header` and
:mod:`netsummary._checkpoints.pytorch_file` for its bounds), and so is the tree: names deeper than
:data:`MAX_TREE_DEPTH` levels fold the rest of the name into one row.
:meth:`CheckpointSummary.render` prints at most :data:`MAX_ROWS` rows and labels of at most
:data:`MAX_LABEL` characters, shows control characters in names escaped (``\\n``, ``\\x1b``) and
says under the table what it left out.

Raises :class:`CheckpointError` (a ``ValueError``) for a missing path, a directory, a FIFO or
device, a file that is not a checkpoint or holds no tensors, and a pickle that is not weights-only;
:class:`MissingDependencyError` (an ``ImportError``) for safetensors without its package.
"""

from __future__ import annotations

import inspect as _pyinspect
import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tabulate import SEPARATING_LINE, tabulate

from .._errors import CheckpointError, InputSpecError, MissingDependencyError
from .packed import PackedCheckpoint, find_packed
from .entries import TensorEntry, natural_key
from .pytorch_file import read_pytorch
from .safetensors_header import read_safetensors
from .._safeio import MAX_JSON_BYTES, escape, read_head, read_regular, shorten, shown
from .._units import format_bytes, format_count

__all__ = ["CheckpointError", "CheckpointSummary", "MissingDependencyError", "PrefixRow", "TensorEntry",
           "inspect_checkpoint"]

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


def inspect_checkpoint(path: str | os.PathLike[str]) -> CheckpointSummary:
    """Summarize a safetensors or PyTorch checkpoint without the model's code or its tensor data.

    A saved ``Linear(16, 8)`` state dict gives ``total_params`` 136 elements (128 weight + 8 bias)
    and ``total_bytes`` 544 as float32. Normalization buffers (``running_mean``, ``running_var``,
    ``num_batches_tracked``) are counted apart from the parameters; see the module docstring. A
    sharded checkpoint's index (``*.index.json``) sums the shards listed in its ``weight_map``.

    Raises:
        CheckpointError: the path does not exist, is a directory, is empty or unreadable, is not a
            checkpoint, holds no tensors, or is a pickle that is not weights-only (refused unloaded);
            an index whose shards are not all next to it.
        MissingDependencyError: a safetensors file without the ``safetensors`` package installed.
    """
    name = os.fspath(path)

    def refuse(why: str) -> CheckpointError:
        return CheckpointError(f"cannot inspect checkpoint {name!r}: {why}", name)

    if not os.path.exists(name):
        raise CheckpointError(f"cannot inspect checkpoint {name!r}: no such file", name)
    if os.path.isdir(name):
        raise CheckpointError(
            f"cannot inspect checkpoint {name!r}: it is a directory; pass the checkpoint file inside it "
            "(e.g. model.safetensors or pytorch_model.bin)", name)
    try:  # a FIFO or a device is refused before it is opened: it could block or never end
        head, size = read_head(name, 9, "a checkpoint", refuse)
    except (OSError, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"cannot inspect checkpoint {name!r}: cannot read it ({err})", name) from err
    if size == 0:
        raise CheckpointError(f"cannot inspect checkpoint {name!r}: the file is empty", name)
    if name.lower().endswith(".json"):
        return _inspect_index(name)
    looks_safetensors = head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= size - 8
    if name.lower().endswith(".safetensors") or looks_safetensors:
        entries, metadata = read_safetensors(name, head, size)
        return _summarize(name, "safetensors", entries, None, metadata)
    entries, key, ignored = read_pytorch(name, head)
    return _summarize(name, "pytorch", entries, key, {}, ignored)


def _summarize(path: str, fmt: str, entries: list[TensorEntry], key: str | None, metadata: dict[str, str],
               ignored: tuple[str, ...] = (), shards: tuple[str, ...] = ()) -> CheckpointSummary:
    if not entries:
        where = f" under {key!r}" if key else ""
        raise CheckpointError(f"cannot inspect checkpoint {path!r}: it holds no tensors{where}", path)
    unique = [e for e in entries if e.tied_to is None]
    buffers = [e for e in unique if e.is_buffer]
    packed = find_packed(unique, os.path.dirname(path))  # GPTQ/AWQ qweight: logical counts, state apart
    counts = {} if packed is None else packed.params
    quant = {} if packed is None else dict(
        quantized_params=sum(counts[e.name] for e in unique if e.name in counts and e.name not in packed.state),
        quant_state_bytes=sum(e.nbytes for e in unique if e.name in packed.state), packed=packed)
    return CheckpointSummary(path, fmt, tuple(entries), sum(counts.get(e.name, e.numel) for e in unique if not e.is_buffer),
                             sum(e.nbytes for e in unique), _count_dtypes(unique), key, metadata,
                             sum(e.numel for e in buffers), sum(e.nbytes for e in buffers), ignored, shards, **quant)


def _inspect_index(path: str) -> CheckpointSummary:
    """A sharded checkpoint's index (``model.safetensors.index.json``): every shard its
    ``weight_map`` names, read from the index's directory, summed into one summary."""
    expected = ("expected a sharded checkpoint index such as model.safetensors.index.json, a JSON object whose "
                '"weight_map" maps tensor names to shard files')

    def refuse(why: str) -> CheckpointError:
        return CheckpointError(f"cannot inspect checkpoint {path!r}: {why}", path)

    try:
        data = json.loads(read_regular(path, MAX_JSON_BYTES, "a sharded checkpoint index", refuse).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
        if isinstance(err, CheckpointError):
            raise
        why = "nested too deeply" if isinstance(err, RecursionError) else shown(str(err), 300)
        raise CheckpointError(f"cannot inspect checkpoint {path!r}: a .json file that cannot be read as JSON "
                              f"({why}); {expected}", path) from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map or not all(
            isinstance(v, str) and v for v in weight_map.values()):
        raise CheckpointError(f"cannot inspect checkpoint {path!r}: not a checkpoint; {expected}", path)
    shards = tuple(dict.fromkeys(weight_map.values()))
    listed = _listed(shards, 4)
    folder = os.path.dirname(path)
    for shard in shards:
        if os.path.basename(shard) != shard or shard.lower().endswith(".json") or "\0" in shard:
            raise CheckpointError(f"cannot inspect checkpoint {path!r}: its weight_map names "
                                  f"{shown(shard, MAX_LABEL)!r}; expected shard file names next to the index "
                                  "(model-00001-of-00002.safetensors)", path)
        if not os.path.isfile(os.path.join(folder, shard)):
            raise CheckpointError(
                f"cannot inspect checkpoint {path!r}: it is the index of a sharded checkpoint ({len(shards)} shard "
                f"files: {listed}) and shard {shown(shard, MAX_LABEL)!r} is not next to it in {folder or '.'}; "
                "download every shard there, or inspect each shard file on its own", path)
    parts = [inspect_checkpoint(os.path.join(folder, shard)) for shard in shards]
    entries = [e for part in parts for e in part.tensors]
    formats = sorted({part.format for part in parts})
    if formats == ["safetensors"]:
        entries.sort(key=lambda e: natural_key(e.name))
    ignored = tuple(f"{shard}: {name}" for shard, part in zip(shards, parts) for name in part.ignored)
    return _summarize(path, "+".join(formats), entries, None, {}, ignored, shards)


