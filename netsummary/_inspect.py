"""Inspect a checkpoint file without the model's code: tensor names, shapes, dtypes and totals.

Example (elements and bytes)::

    summary = inspect_checkpoint("model.safetensors")
    summary.total_params   # 11038081 elements, storage shared by several names counted once
    summary.total_bytes    # 44152324 bytes: elements x dtype itemsize
    print(summary.render(depth=2))

* **safetensors** (by extension or by content): only the JSON header is parsed, through
  ``safetensors.safe_open``; tensor data is never read, so a multi-GB file takes milliseconds.
  Needs the optional package: ``pip install 'netsummary[safetensors]'``.
* **PyTorch** (``.pt``, ``.pth``, ``.bin``, anything else): ``torch.load(weights_only=True)``, with
  ``mmap=True`` for the zip format (storages are mapped, not read); the legacy non-zip format is read
  into memory. netsummary never executes pickled code: a pickle referencing arbitrary Python objects
  is refused, unloaded. A state dict wrapped in a training checkpoint (``{"state_dict": ...,
  "epoch": 3}``; also ``model``, ``model_state_dict``, ``module``, ``net``, ``network``, ``weights``)
  is unwrapped; nested dicts/lists of tensors are flattened with dotted keys (``a.b``, ``layers.0``).

``nbytes`` is ``numel x itemsize``. Names aliasing the same storage (same storage, offset, shape,
stride, dtype: tied weights saved twice) count once in every total and carry ``tied_to``; partial
views of one storage each count in full.

Raises :class:`CheckpointError` (a ``ValueError``) for a missing path, a directory, a file that is
not a checkpoint or holds no tensors, and a pickle that is not weights-only;
:class:`MissingDependencyError` (an ``ImportError``) for safetensors without its package.
"""

from __future__ import annotations

import inspect as _pyinspect
import math
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from tabulate import SEPARATING_LINE, tabulate

from ._errors import CheckpointError, InputSpecError, MissingDependencyError
from ._units import format_bytes, format_count

__all__ = ["CheckpointError", "CheckpointSummary", "MissingDependencyError", "PrefixRow", "TensorEntry",
           "inspect_checkpoint"]


# safetensors header dtype -> (torch dtype name, bits per element). The bits are only used where
# torch has no such dtype (the sub-byte floats); everything else takes torch's ``itemsize``.
_SAFETENSORS_DTYPES: dict[str, tuple[str, int]] = {
    "BOOL": ("bool", 8), "U8": ("uint8", 8), "I8": ("int8", 8), "U16": ("uint16", 16),
    "I16": ("int16", 16), "U32": ("uint32", 32), "I32": ("int32", 32), "U64": ("uint64", 64),
    "I64": ("int64", 64), "F16": ("float16", 16), "BF16": ("bfloat16", 16), "F32": ("float32", 32),
    "F64": ("float64", 64), "C64": ("complex64", 64), "F8_E4M3": ("float8_e4m3fn", 8),
    "F8_E5M2": ("float8_e5m2", 8), "F8_E4M3FNUZ": ("float8_e4m3fnuz", 8),
    "F8_E5M2FNUZ": ("float8_e5m2fnuz", 8), "F8_E8M0": ("float8_e8m0fnu", 8),
    "F6_E2M3": ("float6_e2m3fn", 6), "F6_E3M2": ("float6_e3m2fn", 6), "F4": ("float4_e2m1fn", 4),
}
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "weights")


@dataclass(frozen=True, slots=True)
class TensorEntry:
    """One tensor of a checkpoint, e.g. ``fc.weight`` of shape (8, 16) float32: 128 elements, 512 bytes."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # torch's name without the prefix: "float32", "bfloat16"
    numel: int  # elements
    nbytes: int  # bytes: numel x itemsize
    tied_to: str | None = None  # name of an earlier tensor with the same storage; counted once


@dataclass(frozen=True, slots=True)
class PrefixRow:
    """One node of :meth:`CheckpointSummary.tree`: all tensors whose name starts with ``name``.

    ``fc`` with ``fc.weight`` (8, 16) and ``fc.bias`` (8,) float32: params 136 elements, nbytes 544.
    """

    name: str  # full dotted prefix, e.g. "encoder.layer.0"
    depth: int  # 0 for top-level names: the indentation level of a tree view
    params: int  # elements under this prefix, shared storage counted once
    nbytes: int  # bytes under this prefix, shared storage counted once
    dtypes: dict[str, int]  # elements per dtype, largest first
    is_tensor: bool  # the prefix is itself a tensor's name


@dataclass(frozen=True, slots=True)
class CheckpointSummary:
    """What a checkpoint holds, read without the model's code; totals in elements and bytes."""

    path: str
    format: str  # "safetensors" or "pytorch"
    tensors: tuple[TensorEntry, ...]
    total_params: int  # elements over all tensors, shared storage counted once
    total_bytes: int
    dtypes: dict[str, int]  # elements per dtype, largest first
    state_dict_key: str | None = None  # where the state dict was found, e.g. "state_dict"
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors "__metadata__"

    def tree(self, depth: int | None = None) -> list[PrefixRow]:
        """Group counts by dotted name prefix, depth-first in checkpoint order (safetensors: by name).

        ``depth=1`` gives the top-level names only (``encoder``, ``decoder``); ``None`` goes down to
        the tensors. The rows of one depth add up to the total, e.g. ``[fc (136 elements, 544
        bytes), fc.weight (128, 512), fc.bias (8, 32)]``, except that storage shared by two prefixes
        (tied ``embed``/``lm_head``) counts in each. Raises InputSpecError for a negative depth.
        """
        if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
            raise InputSpecError(f"invalid depth {depth!r}: expected None or an integer >= 0, e.g. 2", depth)
        root = _Node()
        for entry in self.tensors:
            canonical = entry.tied_to or entry.name
            node = root
            parts = entry.name.split(".")
            for level, part in enumerate(parts if depth is None else parts[:depth]):
                node = node.children.setdefault(part, _Node())
                node.members[canonical] = entry
                node.is_tensor = node.is_tensor or level == len(parts) - 1
        rows: list[PrefixRow] = []
        stack = [(name, 0, child) for name, child in reversed(root.children.items())]
        while stack:
            name, level, node = stack.pop()
            members = node.members.values()
            rows.append(PrefixRow(name, level, sum(e.numel for e in members),
                                  sum(e.nbytes for e in members), _count_dtypes(members), node.is_tensor))
            stack.extend((f"{name}.{part}", level + 1, child) for part, child in reversed(node.children.items()))
        return rows

    def render(self, depth: int | None = None) -> str:
        """A tabulate table (simple format): Module, Params (elements), Bytes (binary units), Dtypes.

        Nested names are indented two spaces per level; the last line is the total.
        """
        tied = {e.name: e.tied_to for e in self.tensors if e.tied_to}
        table: list[Any] = []
        for row in self.tree(depth):
            label = "  " * row.depth + row.name.split(".")[-1]
            if row.is_tensor and row.name in tied:
                label += f" (shares storage with {tied[row.name]})"
            table.append([label, format_count(row.params), format_bytes(row.nbytes), ", ".join(row.dtypes)])
        if table:
            table.append(SEPARATING_LINE)
        table.append(["Total", format_count(self.total_params), format_bytes(self.total_bytes),
                      ", ".join(self.dtypes)])
        options: dict[str, Any] = {"headers": ["Module", "Params", "Bytes", "Dtypes"], "tablefmt": "simple",
                                   "colalign": ("left", "right", "right", "left"), "disable_numparse": True}
        return _tabulate_keeping_indent(table, options)


class _Node:
    __slots__ = ("children", "is_tensor", "members")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.members: dict[str, TensorEntry] = {}  # canonical name -> entry: dedupes shared storage
        self.is_tensor = False


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
    and ``total_bytes`` 544 as float32. Every tensor counts, buffers included (BatchNorm running
    stats), since a checkpoint does not say which tensors were parameters.

    Raises:
        CheckpointError: the path does not exist, is a directory, is empty or unreadable, is not a
            checkpoint, holds no tensors, or is a pickle that is not weights-only (refused unloaded).
        MissingDependencyError: a safetensors file without the ``safetensors`` package installed.
    """
    name = os.fspath(path)
    if not os.path.exists(name):
        raise CheckpointError(f"cannot inspect checkpoint {name!r}: no such file", name)
    if os.path.isdir(name):
        raise CheckpointError(
            f"cannot inspect checkpoint {name!r}: it is a directory; pass the checkpoint file inside it "
            "(e.g. model.safetensors or pytorch_model.bin)", name)
    try:
        with open(name, "rb") as handle:
            head = handle.read(9)
        size = os.path.getsize(name)
    except OSError as err:
        raise CheckpointError(f"cannot inspect checkpoint {name!r}: cannot read it ({err})", name) from err
    if size == 0:
        raise CheckpointError(f"cannot inspect checkpoint {name!r}: the file is empty", name)
    looks_safetensors = head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= size - 8
    if name.lower().endswith(".safetensors") or looks_safetensors:
        entries, metadata = _read_safetensors(name)
        return _summarize(name, "safetensors", entries, None, metadata)
    entries, key = _read_pytorch(name, head)
    return _summarize(name, "pytorch", entries, key, {})


def _summarize(path: str, fmt: str, entries: list[TensorEntry], key: str | None,
               metadata: dict[str, str]) -> CheckpointSummary:
    if not entries:
        where = f" under {key!r}" if key else ""
        raise CheckpointError(f"cannot inspect checkpoint {path!r}: it holds no tensors{where}", path)
    unique = [e for e in entries if e.tied_to is None]
    return CheckpointSummary(path, fmt, tuple(entries), sum(e.numel for e in unique),
                             sum(e.nbytes for e in unique), _count_dtypes(unique), key, metadata)


def _read_safetensors(path: str) -> tuple[list[TensorEntry], dict[str, str]]:
    try:
        from safetensors import safe_open
    except ImportError as err:
        raise MissingDependencyError(
            f"cannot inspect {path!r}: reading safetensors files needs the safetensors package; "
            "install it with `pip install safetensors` (or `pip install 'netsummary[safetensors]'`)"
        ) from err
    try:
        with safe_open(path, framework="pt") as handle:  # parses the header only
            metadata = dict(handle.metadata() or {})
            raw = [(key, handle.get_slice(key)) for key in handle.keys()]
            raw_entries = [(key, tuple(view.get_shape()), view.get_dtype()) for key, view in raw]
    except Exception as err:  # the library raises its own SafetensorError, OSError, ...
        raise CheckpointError(
            f"cannot inspect checkpoint {path!r}: not a valid safetensors file ({err})", path) from err
    entries = []
    for key, shape, code in sorted(raw_entries, key=lambda item: _natural_key(item[0])):
        if code not in _SAFETENSORS_DTYPES:
            raise CheckpointError(f"cannot inspect checkpoint {path!r}: tensor {key!r} has unknown "
                                  f"safetensors dtype {code!r}", path)
        dtype, bits = _SAFETENSORS_DTYPES[code]
        torch_dtype = getattr(torch, dtype, None)
        if isinstance(torch_dtype, torch.dtype):
            bits = torch_dtype.itemsize * 8
        numel = math.prod(shape)
        entries.append(TensorEntry(key, shape, dtype, numel, (numel * bits + 7) // 8))
    return entries, metadata


def _read_pytorch(path: str, head: bytes) -> tuple[list[TensorEntry], str | None]:
    is_zip = zipfile.is_zipfile(path)
    try:  # only the zip format can be memory-mapped; the legacy format is read into memory
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as err:  # torch's weights-only unpickler refused the file
        reason = (str(err.__context__ or err).strip().splitlines() or ["no reason given"])[-1]
        culprit = re.search(r"GLOBAL ([\w.]+)", f"{err.__context__} {err}")
        if culprit:
            raise CheckpointError(
                f"refusing to load checkpoint {path!r}: it is not a weights-only checkpoint; loading it "
                f"would import and run the Python object {culprit[1]!r}, and netsummary never executes "
                "pickled code. Re-save the weights with torch.save(model.state_dict(), ...) or as "
                "safetensors", path) from err
        raise CheckpointError(
            f"cannot inspect checkpoint {path!r}: not a valid weights-only PyTorch checkpoint ({reason}); "
            "netsummary never executes pickled code", path) from err
    except Exception as err:  # RuntimeError, EOFError, KeyError, ... for files that are not checkpoints
        detail = (str(err).strip().splitlines() or [""])[0]
        what = ("a zip archive torch.load cannot read" if is_zip else "a damaged or truncated zip archive"
                if head[:2] == b"PK" else "a damaged pickle" if head[:1] == b"\x80"
                else "neither a torch.save zip archive nor a pickle")
        raise CheckpointError(f"cannot inspect checkpoint {path!r}: not a valid PyTorch checkpoint ({what}; "
                              f"{type(err).__name__}: {detail})", path) from err
    obj, key = _unwrap(obj)
    seen: dict[tuple[Any, ...], str] = {}
    entries = []
    for name, tensor in _flatten(obj):
        identity = _storage_identity(tensor)
        tied_to = seen.setdefault(identity, name) if identity is not None else name
        numel = tensor.numel()
        entries.append(TensorEntry(name, tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."),
                                   numel, numel * tensor.dtype.itemsize, None if tied_to == name else tied_to))
    return entries, key


def _unwrap(obj: Any) -> tuple[Any, str | None]:
    """Descend through wrapper keys (``state_dict``, ``model``, ...) of a training checkpoint."""
    keys: list[str] = []
    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        key = next((k for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping) and _flatten(obj[k])), None)
        if key is None:
            break
        keys.append(key)
        obj = obj[key]
    return obj, ".".join(keys) or None


def _flatten(obj: Any) -> list[tuple[str, torch.Tensor]]:
    """Tensors in nested dicts/lists/tuples, in order, with dotted names; other leaves are ignored."""
    found: list[tuple[str, torch.Tensor]] = []
    stack: list[tuple[str, Any]] = [("", obj)]
    visited: set[int] = set()  # a pickle can hold cycles (d["self"] = d): expand each container once
    while stack:  # iterative: a hostile file cannot exhaust the recursion limit
        prefix, item = stack.pop()
        if isinstance(item, torch.Tensor):
            found.append((prefix or "tensor", item))
            continue
        if id(item) in visited:
            continue
        visited.add(id(item))
        if isinstance(item, Mapping):
            children = list(item.items())
        elif isinstance(item, (list, tuple)) and not isinstance(item, torch.Size):
            children = list(enumerate(item))
        else:
            continue
        stack.extend((f"{prefix}.{k}" if prefix else str(k), v) for k, v in reversed(children))
    return found


def _storage_identity(tensor: torch.Tensor) -> tuple[Any, ...] | None:
    """What makes two loaded tensors the same bytes; ``None`` when it cannot be told (or is empty)."""
    if tensor.numel() == 0 or tensor.layout != torch.strided or tensor.device.type != "cpu":
        return None
    pointer = tensor.untyped_storage().data_ptr()
    if not pointer:
        return None
    return (pointer, tensor.storage_offset(), tuple(tensor.shape), tensor.stride(), tensor.dtype)


def _natural_key(name: str) -> list[tuple[int, int | str]]:
    """Sort ``layer.2`` before ``layer.10``: numeric name parts compare as numbers."""
    return [(0, int(part)) if part.isascii() and part.isdigit() else (1, part) for part in name.split(".")]
