"""Read checkpoint files into tensor entries, without model code and without executing pickles.

- safetensors: only the header (no tensor data is read), parsed here without torch; a header
  this reader does not vouch for (invalid, or valid in an unusual way) goes to the ``safetensors``
  library, which decides and words the error;
- PyTorch files: ``torch.load(weights_only=True, mmap=True)`` (zip format; legacy files without
  mmap); a pickle that is not weights-only is refused, never executed;
- wrapped training checkpoints (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped and
  nested dicts flattened with dotted names; tensors sharing storage (tied weights saved twice)
  are marked, so they count once.

The work is bounded by the file: unwrapping and flattening visit each container once (linear in
the loaded object), containers nested more than :data:`MAX_NESTING` deep and flattened names
of more than :data:`MAX_NAME_CHARS` characters in all are a :class:`CheckpointError`, a
safetensors header must fit its file and :data:`MAX_SAFETENSORS_HEADER` bytes, and a zip
archive's compressed pickle must not expand past the file's size and :data:`MAX_PICKLE_BYTES`.

Only PyTorch files import torch (in :func:`read_pytorch` and the functions it calls): importing
this module and reading a safetensors header do not.

:mod:`netsummary._checkpoints.inspect` turns the entries into a :class:`~netsummary._checkpoints.inspect.CheckpointSummary`.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pickle
import re
import reprlib
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import CheckpointError, MissingDependencyError
from .._safeio import read_head, shown

if TYPE_CHECKING:
    import torch

# Every dtype of the safetensors format (the 22 of safetensors 0.8) -> (the name netsummary shows,
# torch's dtype name where torch has one; bits per element, which give the bytes without torch:
# ``(numel * bits + 7) // 8``, the same as torch's ``itemsize`` where torch has the dtype).
_SAFETENSORS_DTYPES: dict[str, tuple[str, int]] = {
    "BOOL": ("bool", 8), "U8": ("uint8", 8), "I8": ("int8", 8), "U16": ("uint16", 16),
    "I16": ("int16", 16), "U32": ("uint32", 32), "I32": ("int32", 32), "U64": ("uint64", 64),
    "I64": ("int64", 64), "F16": ("float16", 16), "BF16": ("bfloat16", 16), "F32": ("float32", 32),
    "F64": ("float64", 64), "C64": ("complex64", 64), "F8_E4M3": ("float8_e4m3fn", 8),
    "F8_E5M2": ("float8_e5m2", 8), "F8_E4M3FNUZ": ("float8_e4m3fnuz", 8),
    "F8_E5M2FNUZ": ("float8_e5m2fnuz", 8), "F8_E8M0": ("float8_e8m0fnu", 8),
    "F6_E2M3": ("float6_e2m3fn", 6), "F6_E3M2": ("float6_e3m2fn", 6), "F4": ("float4_e2m1fn", 4),
}
MAX_NESTING = 100  # containers (dicts, lists, tuples) inside one another in a PyTorch checkpoint
MAX_NAME_CHARS = 2**26  # characters of all the dotted names that flattening a checkpoint builds
MAX_SAFETENSORS_HEADER = 100_000_000  # bytes: the safetensors library's own limit
MAX_PICKLE_BYTES = 64 * 2**20  # a zip archive's compressed pickle may expand to this, or to the file's size
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


def read_safetensors(path: str, head: bytes | None = None, size: int | None = None
                     ) -> tuple[list[TensorEntry], dict[str, str]]:
    """The tensors of a safetensors file, from its header alone; ``head`` (its first 8 bytes or
    more) and ``size`` (of the file) when the caller has read them already.

    The header is parsed here, without torch, when it is one the ``safetensors`` library would
    accept as it is (see :func:`_parse_header`); any other header, and a call without ``head``
    and ``size``, goes to the library, whose error message is reported.

    Raises:
        CheckpointError: the header length field does not fit the file or is over
            :data:`MAX_SAFETENSORS_HEADER`, the header is invalid, or a dtype is unknown.
        MissingDependencyError: the ``safetensors`` package is not installed.
    """
    try:
        from safetensors import safe_open
    except ImportError as err:
        raise MissingDependencyError(
            f"cannot inspect {path!r}: reading safetensors files needs the safetensors package; "
            "install it with `pip install safetensors` (or `pip install 'netsummary[safetensors]'`)"
        ) from err
    parsed = None
    if head is not None and size is not None:
        _check_header_length(path, head, size)
        parsed = _read_header(path, int.from_bytes(head[:8], "little"), size)
    raw_entries, metadata = parsed if parsed is not None else _read_header_with_library(path, safe_open)
    entries = []
    for key, shape, code in sorted(raw_entries, key=lambda item: natural_key(item[0])):
        if code not in _SAFETENSORS_DTYPES:
            raise CheckpointError(f"cannot inspect checkpoint {path!r}: tensor {_short(key)} has unknown "
                                  f"safetensors dtype {_short(code)}", path)
        dtype, bits = _SAFETENSORS_DTYPES[code]
        numel = math.prod(shape)
        entries.append(TensorEntry(key, shape, dtype, numel, (numel * bits + 7) // 8))
    return entries, metadata


_RawEntries = tuple[list[tuple[str, tuple[int, ...], str]], dict[str, str]]


def _read_header_with_library(path: str, safe_open: Any) -> _RawEntries:
    """The header as the ``safetensors`` library reads it; its error, reworded, for an invalid one.
    The framework only matters for tensors, which are never made: numpy when it is installed (a
    tenth of a second to import), else torch."""
    framework = "numpy" if importlib.util.find_spec("numpy") is not None else "pt"
    try:
        with safe_open(path, framework=framework) as handle:  # parses the header only
            metadata = dict(handle.metadata() or {})
            raw = [(key, handle.get_slice(key)) for key in handle.keys()]
            return [(key, tuple(view.get_shape()), view.get_dtype()) for key, view in raw], metadata
    except BaseException as err:  # SafetensorError, OSError, ... and a Rust panic (a BaseException)
        if isinstance(err, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        raise CheckpointError(f"cannot inspect checkpoint {path!r}: not a valid safetensors file "
                              f"({shown(str(err), 300)})", path) from err


_U64 = 2**64 - 1  # usize: the library's offsets, dimensions, element and bit counts
_SURROGATE = re.compile("[\ud800-\udfff]")  # a lone surrogate, which serde_json refuses
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # how one can get into a decoded header
_MINUS = re.compile(r"[\[,:]\s*-")  # a negative number (or text that looks like one): none is valid
_TENSOR_KEYS = {"dtype", "shape", "data_offsets"}


class _Unusual(Exception):
    """A header :func:`_parse_header` does not vouch for: the library decides."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict, refusing a repeated name (the library checks every copy)."""
    value = dict(pairs)
    if len(value) != len(pairs):
        raise _Unusual
    return value


def _refuse_number(text: str) -> Any:
    raise _Unusual  # a float, NaN or Infinity: never valid where this reader accepts a number


def _is_u64_list(value: Any) -> bool:
    return isinstance(value, list) and all(type(v) is int and v <= _U64 for v in value)  # bool is no int here


def _read_header(path: str, length: int, size: int) -> _RawEntries | None:
    """The header of a regular file of ``size`` bytes whose length field says ``length`` (already
    checked to fit), parsed in Python; ``None`` when the bytes read are not as expected (the file
    changed meanwhile) or :func:`_parse_header` does not vouch for it.

    Raises:
        CheckpointError: the path is no longer a regular file (it is not opened then).
    """

    def refuse(why: str) -> CheckpointError:
        return CheckpointError(f"cannot inspect checkpoint {path!r}: {why}", path)

    try:
        data, now = read_head(path, 8 + length, "a checkpoint", refuse)
    except OSError:
        return None  # the library tries, and says what is wrong
    if now != size or len(data) != 8 + length:
        return None
    return _parse_header(data[8:], length, size)


def _parse_header(blob: bytes, length: int, size: int) -> _RawEntries | None:
    """Parse a safetensors header (the ``length`` bytes after its length field, in a file of
    ``size`` bytes) as the safetensors library (0.8) does, without torch; ``None`` for a header it
    does not vouch for.

    What it accepts the library accepts (``tests/test_inspect_torch_free.py`` holds it to that), with the same tensors, shapes, dtypes and metadata; the
    checks are the library's: UTF-8 JSON, an object whose ``__metadata__`` (optional) maps strings
    to strings and whose other entries are tensors; each tensor a dtype of the format, a shape and
    ``data_offsets`` ``[begin, end]`` of 64-bit unsigned integers; sorted by offsets, the tensors
    tile the data from 0 without gaps or overlaps, each spanning exactly its elements' bytes
    (whole bytes: sub-byte dtypes included) with no overflow past 64 bits, and the last ends at the
    end of the file. Anything else, and anything unusual the library would still accept (a header
    not starting with ``{``, a repeated name, extra fields, a tensor written as a list), is left
    to the library: ``None``.

    >>> blob = b'{"w": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]}}'
    >>> _parse_header(blob, len(blob), 8 + len(blob) + 12)
    ([('w', (2, 3), 'BF16')], {})
    >>> _parse_header(blob, len(blob), 8 + len(blob) + 13) is None   # a byte past the last tensor
    True
    """
    try:
        text = blob.decode("utf-8")
        if not text.startswith("{") or _MINUS.search(text):  # json reads "-0" as 0, serde_json as a float
            return None
        header = json.loads(text, object_pairs_hook=_unique, parse_float=_refuse_number,
                            parse_constant=_refuse_number)
    except Exception:  # not UTF-8 or JSON, _Unusual, nested too deeply (RecursionError), ...
        return None
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        return None
    if _SURROGATE_ESCAPE.search(text) and any(_SURROGATE.search(t) for t in (*header, *metadata.keys(),
                                                                             *metadata.values())):
        return None
    tensors = []
    for name, info in header.items():
        if not isinstance(info, dict) or info.keys() != _TENSOR_KEYS:
            return None
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(code, str) or code not in _SAFETENSORS_DTYPES or not _is_u64_list(shape):
            return None
        if not _is_u64_list(offsets) or len(offsets) != 2:
            return None
        tensors.append(((offsets[0], offsets[1]), name, tuple(shape), code))
    end = 0
    for (begin, stop), _, shape, code in sorted(tensors, key=lambda t: t[0]):
        if begin != end or stop < begin:
            return None
        end = stop
        elements = 1
        for dim in shape:  # in order, as the library multiplies: an overflow before a 0 counts
            elements *= dim
            if elements > _U64:
                return None
        bits = elements * _SAFETENSORS_DTYPES[code][1]
        if bits > _U64 or bits % 8 or stop - begin != bits // 8:
            return None
    if end + 8 + length != size:
        return None
    return [(name, shape, code) for _, name, shape, code in tensors], dict(metadata)


def _check_header_length(path: str, head: bytes, size: int) -> None:
    """The first 8 bytes of a safetensors file are the header's length (little-endian u64): it
    must be at least 2 (``{}``), fit in the file and stay under the library's limit."""
    if len(head) < 8:
        raise CheckpointError(f"cannot inspect checkpoint {path!r}: not a valid safetensors file (it is "
                              f"{size:,} bytes; the 8-byte header length alone needs 8)", path)
    length = int.from_bytes(head[:8], "little")
    if length > MAX_SAFETENSORS_HEADER:
        raise CheckpointError(
            f"cannot inspect checkpoint {path!r}: not a valid safetensors file (its header length field "
            f"says {length:,} bytes, over the limit of {MAX_SAFETENSORS_HEADER:,} bytes)", path)
    if length < 2:
        raise CheckpointError(
            f"cannot inspect checkpoint {path!r}: not a valid safetensors file (its header length field "
            f"says {length:,} bytes, too few for a JSON header)", path)
    if length > size - 8:
        raise CheckpointError(
            f"cannot inspect checkpoint {path!r}: not a valid safetensors file (its header length field "
            f"says {length:,} bytes, but {size - 8:,} bytes follow it: truncated, or not safetensors)", path)


def read_pytorch(path: str, head: bytes) -> tuple[list[TensorEntry], str | None, tuple[str, ...]]:
    import torch  # only PyTorch files need it (several seconds to import)

    try:
        is_zip = zipfile.is_zipfile(path)
    except (zipfile.BadZipFile, ValueError):  # an end record that claims several disks, ...: damaged
        is_zip = False
    if is_zip:
        _check_pickle_sizes(path)
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
                f"would import and run the Python object {shown(culprit[1], 200)!r}, and netsummary never "
                "executes pickled code. Re-save the weights with torch.save(model.state_dict(), ...) or as "
                "safetensors", path) from err
        raise CheckpointError(
            f"cannot inspect checkpoint {path!r}: not a valid weights-only PyTorch checkpoint "
            f"({shown(reason, 300)}); netsummary never executes pickled code", path) from err
    except Exception as err:  # RuntimeError, EOFError, KeyError, ... for files that are not checkpoints
        detail = (str(err).strip().splitlines() or [""])[0]
        what = ("a zip archive torch.load cannot read" if is_zip else "a damaged or truncated zip archive"
                if head[:2] == b"PK" else "a damaged pickle" if head[:1] == b"\x80"
                else "neither a torch.save zip archive nor a pickle")
        raise CheckpointError(f"cannot inspect checkpoint {path!r}: not a valid PyTorch checkpoint ({what}; "
                              f"{type(err).__name__}: {shown(detail, 300)})", path) from err
    return tensor_entries(obj, path)


def _check_pickle_sizes(path: str) -> None:
    """torch.load decompresses an archive's pickle into memory (torch.save stores it uncompressed):
    refuse a compressed pickle that would expand past the archive's own size and 64 MiB, a zip
    bomb, before torch reads it. A damaged archive is left for torch.load to report."""
    try:
        size = os.path.getsize(path)
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except Exception:  # BadZipFile, EOFError, OSError, ... : torch.load says what is wrong
        return
    for info in infos:
        if info.filename.endswith(".pkl") and info.file_size > max(size, MAX_PICKLE_BYTES):
            raise CheckpointError(
                f"cannot inspect checkpoint {path!r}: its entry {_short(info.filename)} is a pickle compressed from "
                f"{info.file_size:,} to {info.compress_size:,} bytes; loading it would take more memory than the "
                f"file's {size:,} bytes and the limit of {MAX_PICKLE_BYTES:,} (torch.save never compresses)", path)


def tensor_entries(obj: Any, path: str) -> tuple[list[TensorEntry], str | None, tuple[str, ...]]:
    """The tensors of a loaded checkpoint object (unwrapped, flattened, shared storage marked);
    the dotted path of the state dict it was found under; the entries ignored beside it.

    Each container is visited a bounded number of times: the work is linear in the object.

    Raises:
        CheckpointError: containers nested more than :data:`MAX_NESTING` deep, or flattened
            names longer than :data:`MAX_NAME_CHARS` characters in all.
    """
    obj, key, ignored = _unwrap(obj, path)
    seen: dict[tuple[Any, ...], str] = {}
    entries = []
    for name, tensor in _flatten(obj, path):
        identity = _storage_identity(tensor)
        tied_to = seen.setdefault(identity, name) if identity is not None else name
        numel = tensor.numel()
        entries.append(TensorEntry(name, tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."),
                                   numel, numel * tensor.dtype.itemsize, None if tied_to == name else tied_to))
    return entries, key, ignored


def _children(item: Any) -> list[tuple[Any, Any]] | None:
    """A container's ``(key, value)`` pairs; ``None`` for anything else (a tensor, a number)."""
    import torch

    if isinstance(item, Mapping):
        return list(item.items())
    if isinstance(item, (list, tuple)) and not isinstance(item, torch.Size):
        return list(enumerate(item))
    return None


def _too_deep(path: str) -> CheckpointError:
    return CheckpointError(
        f"cannot inspect checkpoint {path!r}: its dicts and lists are nested more than {MAX_NESTING} levels "
        "deep; a state dict maps names to tensors, a training checkpoint wraps it a few levels deep", path)


def _holding_tensors(root: Any, path: str) -> set[int]:
    """The ids of the containers under ``root`` that hold a tensor at any depth: one post-order
    walk, each container expanded once (a container inside its own subtree, a cycle, counts as
    holding nothing through that edge)."""
    import torch

    holding: set[int] = set()
    expanded: set[int] = set()
    stack: list[tuple[Any, list[tuple[Any, Any]] | None, int]] = [(root, None, 0)]
    while stack:  # iterative: a hostile file cannot exhaust the recursion limit
        item, children, level = stack.pop()
        if children is not None:  # every child is done: does any of them hold a tensor?
            if any(isinstance(v, torch.Tensor) or id(v) in holding for _, v in children):
                holding.add(id(item))
            continue
        if id(item) in expanded:
            continue
        children = _children(item)
        if children is None:
            continue
        if level >= MAX_NESTING:
            raise _too_deep(path)
        expanded.add(id(item))
        stack.append((item, children, level))
        stack.extend((v, None, level + 1) for _, v in children if not isinstance(v, torch.Tensor))
    return holding


def _unwrap(obj: Any, path: str = "") -> tuple[Any, str | None, tuple[str, ...]]:
    """Descend through wrapper keys (``state_dict``, ``model``, ...) of a training checkpoint; also
    return the dotted path taken and the entries left beside it (``optimizer``, ``epoch``)."""
    import torch

    holding = _holding_tensors(obj, path)
    keys: list[str] = []
    ignored: list[str] = []
    visited = {id(obj)}
    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        key = next((k for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping) and id(obj[k]) in holding), None)
        if key is None or id(obj[key]) in visited:  # nothing to descend into, or a cycle
            break
        where = ".".join(keys)
        ignored += [f"{where}.{_key_text(k)}" if where else _key_text(k) for k in obj if k != key]
        keys.append(key)
        obj = obj[key]
        visited.add(id(obj))
    return obj, ".".join(keys) or None, tuple(ignored)


def _flatten(obj: Any, path: str = "") -> list[tuple[str, torch.Tensor]]:
    """Tensors in nested dicts/lists/tuples, in order, with dotted names; other leaves are ignored.

    Each container is expanded once (a pickle can hold cycles, ``d["self"] = d``, and share one
    container many times); the names built are bounded by :data:`MAX_NAME_CHARS` in all.
    """
    import torch

    found: list[tuple[str, torch.Tensor]] = []
    stack: list[tuple[str, Any, int]] = [("", obj, 0)]
    visited: set[int] = set()
    chars = 0
    while stack:  # iterative: a hostile file cannot exhaust the recursion limit
        prefix, item, level = stack.pop()
        if isinstance(item, torch.Tensor):
            found.append((prefix or "tensor", item))
            continue
        if id(item) in visited:
            continue
        visited.add(id(item))
        children = _children(item)
        if children is None:
            continue
        if level >= MAX_NESTING:
            raise _too_deep(path)
        named = [(f"{prefix}.{_key_text(k)}" if prefix else _key_text(k), v) for k, v in children]
        chars += sum(len(name) for name, _ in named)
        if chars > MAX_NAME_CHARS:
            raise CheckpointError(
                f"cannot inspect checkpoint {path!r}: its tensor names, nested keys joined with dots, come to "
                f"more than {MAX_NAME_CHARS:,} characters in all; a state dict's names are short", path)
        stack.extend((name, v, level + 1) for name, v in reversed(named))
    return found


_KEY_REPR = reprlib.Repr()
_KEY_REPR.maxlevel, _KEY_REPR.maxtuple, _KEY_REPR.maxstring, _KEY_REPR.maxother = 4, 8, 60, 60


def _key_text(key: Any) -> str:
    """A container key as a name part: strings as they are, ints in decimal, anything else
    (tuples, huge ints) as a bounded repr, so a hostile key cannot make a huge name."""
    if isinstance(key, str):
        return key
    if isinstance(key, int) and key.bit_length() <= 128:
        return str(key)
    if isinstance(key, int):
        return f"<int of {key.bit_length():,} bits>"
    try:
        return _KEY_REPR.repr(key)
    except Exception:  # a repr that fails on a hostile value
        return f"<{type(key).__name__}>"


def _short(text: str) -> str:
    """A name for an error message: quoted, escaped, at most 200 characters."""
    return repr(shown(text, 200)) if isinstance(text, str) else _KEY_REPR.repr(text)


def _storage_identity(tensor: torch.Tensor) -> tuple[Any, ...] | None:
    """What makes two loaded tensors the same bytes; ``None`` when it cannot be told (or is empty)."""
    import torch

    if tensor.numel() == 0 or tensor.layout != torch.strided or tensor.device.type != "cpu":
        return None
    pointer = tensor.untyped_storage().data_ptr()
    if not pointer:
        return None
    return (pointer, tensor.storage_offset(), tuple(tensor.shape), tensor.stride(), tensor.dtype)


def natural_key(name: str) -> list[tuple[int, int, str]]:
    """Sort ``layer.2`` before ``layer.10``: numeric name parts compare as numbers (by their
    digits, so a part of thousands of digits costs no int conversion).

    >>> sorted(["layer.10", "layer.2", "layer.02.b", "head"], key=natural_key)
    ['head', 'layer.2', 'layer.02.b', 'layer.10']
    """
    key = []
    for part in name.split("."):
        if part.isascii() and part.isdigit():
            digits = part.lstrip("0")
            key.append((0, len(digits), digits))
        else:
            key.append((1, 0, part))
    return key
