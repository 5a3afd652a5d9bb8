"""Read checkpoint files into tensor entries, without model code and without executing pickles.

- safetensors: only the header, through the ``safetensors`` library (no tensor data is read);
- PyTorch files: ``torch.load(weights_only=True, mmap=True)`` (zip format; legacy files without
  mmap); a pickle that is not weights-only is refused, never executed;
- wrapped training checkpoints (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped and
  nested dicts flattened with dotted names; tensors sharing storage (tied weights saved twice)
  are marked, so they count once.

:mod:`netsummary._inspect` turns the entries into a :class:`~netsummary._inspect.CheckpointSummary`.
"""

from __future__ import annotations

import math
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ._errors import CheckpointError, MissingDependencyError

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
# The buffers of torch.nn's normalization layers: tensors with these last name components are
# counted apart from parameters (see the module docstring).

BUFFER_NAMES = ("running_mean", "running_var", "num_batches_tracked")


def is_buffer_name(name: str) -> bool:
    """``bn1.running_mean`` -> True: a normalization layer's buffer, not a parameter."""
    return name.rpartition(".")[2] in BUFFER_NAMES


@dataclass(frozen=True, slots=True)
class TensorEntry:
    """One tensor of a checkpoint, e.g. ``fc.weight`` of shape (8, 16) float32: 128 elements, 512 bytes."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # torch's name without the prefix: "float32", "bfloat16"
    numel: int  # elements
    nbytes: int  # bytes: numel x itemsize
    tied_to: str | None = None  # name of an earlier tensor with the same storage; counted once

    @property
    def is_buffer(self) -> bool:
        """A normalization buffer (``running_mean``, ``running_var``, ``num_batches_tracked``)."""
        return is_buffer_name(self.name)


def read_safetensors(path: str) -> tuple[list[TensorEntry], dict[str, str]]:
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
    for key, shape, code in sorted(raw_entries, key=lambda item: natural_key(item[0])):
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


def read_pytorch(path: str, head: bytes) -> tuple[list[TensorEntry], str | None, tuple[str, ...]]:
    is_zip = zipfile.is_zipfile(path)
    try:  # only the zip format can be memory-mapped; the legacy format is read into memory
        with warnings.catch_warnings():  # a plain pickle makes torch warn about its protocol, then refuse it
            warnings.filterwarnings("ignore", message=r"Detected pickle protocol", category=UserWarning)
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
    obj, key, ignored = _unwrap(obj)
    seen: dict[tuple[Any, ...], str] = {}
    entries = []
    for name, tensor in _flatten(obj):
        identity = _storage_identity(tensor)
        tied_to = seen.setdefault(identity, name) if identity is not None else name
        numel = tensor.numel()
        entries.append(TensorEntry(name, tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."),
                                   numel, numel * tensor.dtype.itemsize, None if tied_to == name else tied_to))
    return entries, key, ignored


def _unwrap(obj: Any) -> tuple[Any, str | None, tuple[str, ...]]:
    """Descend through wrapper keys (``state_dict``, ``model``, ...) of a training checkpoint; also
    return the dotted path taken and the entries left beside it (``optimizer``, ``epoch``)."""
    keys: list[str] = []
    ignored: list[str] = []
    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        key = next((k for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping) and _flatten(obj[k])), None)
        if key is None:
            break
        ignored += [".".join([*keys, str(k)]) for k in obj if k != key]
        keys.append(key)
        obj = obj[key]
    return obj, ".".join(keys) or None, tuple(ignored)


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


def natural_key(name: str) -> list[tuple[int, int | str]]:
    """Sort ``layer.2`` before ``layer.10``: numeric name parts compare as numbers."""
    return [(0, int(part)) if part.isascii() and part.isdigit() else (1, part) for part in name.split(".")]
