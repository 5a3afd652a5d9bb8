"""Read a safetensors file into tensor entries from its header alone, without torch.

Only the header (no tensor data is read) is parsed, here without torch; a header this reader
does not vouch for (invalid, or valid in an unusual way) goes to the ``safetensors`` library,
which decides and words the error. A header must fit its file and :data:`MAX_SAFETENSORS_HEADER`
bytes.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from typing import Any

from .._errors import CheckpointError, MissingDependencyError
from .._safeio import read_head, shown
from .entries import TensorEntry, _short, natural_key

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
MAX_SAFETENSORS_HEADER = 100_000_000  # bytes: the safetensors library's own limit


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
