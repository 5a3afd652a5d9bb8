"""Summaries from standard data: :func:`from_dict` and :func:`from_json` rebuild a :class:`Summary`
from :mod:`netsummary._reporting.export`'s dict / JSON schema.

:func:`from_dict` and :func:`from_json` check loaded data field by field (types, counts >= 0
and at most :data:`MAX_COUNT` = 2**63 - 1, layer indices and parents, nesting depth; see :func:`from_dict`) and escape control characters
in its strings; JSON text over :data:`~netsummary._safeio.MAX_JSON_BYTES` is refused unparsed.

>>> from torch import nn
>>> from netsummary import summary
>>> from netsummary._reporting.export import to_dict
>>> s = summary(nn.Linear(6, 3), (6,), verbose=0)
>>> from_dict(to_dict(s)) == s
True
"""

from __future__ import annotations

import dataclasses
import json
import reprlib
from typing import Any

from .._errors import InputSpecError, InputTypeError
from .._safeio import MAX_JSON_BYTES, escape
from .._tracing.structure import ShapeTree
from .._summary import AdapterGroup, LayerRecord, ParamGroup, ParamShard, RankShare, Summary
from .export import SCHEMA_VERSION

MAX_NESTING = 100  # levels of a loaded shape tree; a model's outputs nest a few levels
MAX_LAYER_DEPTH = 1000  # levels of module calls inside one another in a loaded summary
# The largest int a loaded summary may hold in any field (counts, bytes, MACs, shape dimensions,
# kernel sizes): int64's maximum, as torch's own sizes are. A real model is far below it (9.2e18
# bytes is 9.2 EB), and sums and ratios of such values stay finite floats when rendered.
MAX_COUNT = 2**63 - 1


def from_dict(data: dict[str, Any]) -> Summary:
    """Rebuild a :class:`Summary` from :func:`to_dict`'s output (or loaded JSON), checking every field.

    Each field must have its type (a count is an int >= 0 and at most :data:`MAX_COUNT`, int64's
    maximum, as is every other int: shape dimensions, kernel sizes; ``true`` is no count), each
    layer's ``index`` its position and its ``parent`` an earlier layer, shape trees at most
    :data:`MAX_NESTING` levels deep; ``trainable_params + non_trainable_params`` must be
    ``total_params``. Keys this version does not know are ignored. Control characters in the
    strings (names, types, dtypes) are escaped as they are read (``\\n``, ``\\x1b``), so that
    no name can forge a table row or drive the terminal when the summary is printed.

    Raises:
        InputTypeError: ``data`` is not a dict.
        InputSpecError: the data is not a netsummary summary of a known schema version; the
            message names the field, what it holds and what was expected, e.g.
            ``layers[2].params is '8' (str), expected an int``; ``.value`` holds what it received.
    """
    if not isinstance(data, dict) or "schema_version" not in data:
        error = InputSpecError if isinstance(data, dict) else InputTypeError
        raise error(f"expected a netsummary summary (a dict with 'schema_version'), got {type(data).__name__}", data)
    version = data["schema_version"]
    if type(version) is not int or version != SCHEMA_VERSION:
        raise InputSpecError(f"unsupported summary schema_version {_shown(version)}; this "
                             f"netsummary reads version {SCHEMA_VERSION}", version)
    kwargs = _fields(Summary, data, "")
    layers: list[LayerRecord] = []
    for i, item in enumerate(kwargs.get("layers", ())):
        fields = _fields(LayerRecord, item, f"layers[{i}].")
        if "shards" in fields:
            fields["shards"] = tuple(ParamShard(**_fields(ParamShard, x, f"layers[{i}].shards[{j}]."))
                                     for j, x in enumerate(fields["shards"]))
        record = LayerRecord(**fields)
        _check_position(record, i, layers)
        layers.append(record)
    kwargs["layers"] = tuple(layers)
    kwargs["other_params"] = tuple(ParamGroup(**_fields(ParamGroup, item, f"other_params[{i}]."))
                                   for i, item in enumerate(kwargs.get("other_params", ())))
    if "adapters" in kwargs:
        kwargs["adapters"] = tuple(AdapterGroup(**_fields(AdapterGroup, item, f"adapters[{i}]."))
                                   for i, item in enumerate(kwargs["adapters"]))
    if kwargs.get("active_params_method") not in (None, "measured", "top-k", "config"):
        raise _wrong("active_params_method", kwargs["active_params_method"], "'measured', 'top-k', 'config' or null")
    if "ranks" in kwargs:
        kwargs["ranks"] = tuple(RankShare(**_fields(RankShare, item, f"ranks[{i}]."))
                                for i, item in enumerate(kwargs["ranks"]))
    summary = Summary(**kwargs)
    if summary.trainable_params + summary.non_trainable_params != summary.total_params:
        raise InputSpecError(f"trainable_params {summary.trainable_params:,} + non_trainable_params "
                             f"{summary.non_trainable_params:,} is not total_params {summary.total_params:,}",
                             summary.total_params)
    if summary.quantized_params > summary.total_params:
        raise InputSpecError(f"quantized_params {summary.quantized_params:,} is more than total_params "
                             f"{summary.total_params:,}: the quantized share is part of the total", summary.quantized_params)
    return summary


def _memory_from_dict(data: dict[str, Any]) -> Any:
    from .memory import memory_from_dict

    return memory_from_dict(data, "memory.")


class _Kind:
    """What one field holds: a check and the words for what was expected."""

    def __init__(self, expected: str, check: Any, convert: Any = None) -> None:
        self.expected, self.check, self.convert = expected, check, convert


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _too_big(v: Any) -> bool:
    """``v`` is an int, or a list of them, beyond int64 (over :data:`MAX_COUNT` or under
    ``-MAX_COUNT - 1``)."""
    if isinstance(v, (list, tuple)):
        return any(_too_big(x) for x in v)
    return _is_int(v) and not -MAX_COUNT - 1 <= v <= MAX_COUNT


def _strings(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)


def _escaped_strings(v: list[str]) -> tuple[str, ...]:
    return tuple(escape(x) for x in v)


_COUNT = _Kind("an int", _is_int)
_OPTIONAL_COUNT = _Kind("an int or null", lambda v: v is None or _is_int(v))
_STR = _Kind("a string", lambda v: isinstance(v, str), escape)
_OPTIONAL_STR = _Kind("a string or null", lambda v: v is None or isinstance(v, str),
                      lambda v: None if v is None else escape(v))
_BOOL = _Kind("true or false", lambda v: isinstance(v, bool))
_STRINGS = _Kind("a list of strings", _strings, _escaped_strings)
_AXES = _Kind("a list of ints >= 0 or nulls", lambda v: isinstance(v, (list, tuple)) and all(
    x is None or (_is_int(x) and x >= 0) for x in v), tuple)
_RECORDS = _Kind("a list of records (JSON objects)",
                 lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, dict) for x in v))
_SHAPE = _Kind("a shape tree", lambda v: True)  # checked by _shape()
_DIMS = _Kind("a list of ints >= 0", lambda v: isinstance(v, (list, tuple)) and all(_is_int(d) and d >= 0 for d in v),
              tuple)

_SCHEMA: dict[type, dict[str, _Kind]] = {
    Summary: {
        "model_type": _STR, "layers": _RECORDS, "other_params": _RECORDS,
        **dict.fromkeys(("total_params", "trainable_params", "non_trainable_params", "param_bytes", "buffer_count",
                         "buffer_bytes", "input_bytes", "output_bytes"), _COUNT),
        "input_shapes": _SHAPE, "input_dtypes": _STRINGS, "batch_size": _COUNT, "run_batch_size": _OPTIONAL_COUNT,
        "device": _STR, "mode": _STR, "complete": _BOOL, "uninitialized": _STRINGS, "total_macs": _OPTIONAL_COUNT,
        "unknown_ops": _STRINGS, "input_batch_axes": _AXES, "forward_ran": _BOOL,
        **dict.fromkeys(("local_params", "local_trainable_params", "local_param_bytes", "rank", "world_size",
                         "local_buffer_count", "local_buffer_bytes"), _OPTIONAL_COUNT),
        "mesh_shapes": _Kind("a list of mesh shapes (lists of ints >= 1)", lambda v: isinstance(v, (list, tuple)) and all(
            isinstance(m, (list, tuple)) and all(_is_int(d) and d >= 1 for d in m) for m in v),
            lambda v: tuple(tuple(m) for m in v)),
        "ranks": _RECORDS,
        **dict.fromkeys(("quantized_params", "quantized_bytes", "quant_state_bytes"), _COUNT),
        "quant_unknown": _STRINGS, "quant_dtypes": _STRINGS,
        "expert_params": _OPTIONAL_COUNT, "active_params": _OPTIONAL_COUNT, "active_params_method": _OPTIONAL_STR,
        "adapters": _RECORDS,
        "memory": _Kind("a memory estimate (a JSON object) or null", lambda v: v is None or isinstance(v, dict),
                        lambda v: None if v is None else _memory_from_dict(v)),
    },
    AdapterGroup: {
        "name": _STR, **dict.fromkeys(("params", "trainable_params", "param_bytes"), _COUNT), "active": _BOOL,
        "peft_type": _STR, "disabled": _BOOL,
    },
    LayerRecord: {
        "index": _COUNT, "name": _STR, "type": _STR, "call_index": _COUNT, "depth": _COUNT,
        "parent": _OPTIONAL_COUNT, "is_leaf": _BOOL, "input_shapes": _SHAPE, "output_shapes": _SHAPE,
        "input_dtypes": _STRINGS, "output_dtypes": _STRINGS,
        **dict.fromkeys(("output_bytes", "params", "trainable_params", "param_bytes", "shared_params"), _COUNT),
        "completed": _BOOL, "macs": _OPTIONAL_COUNT, "unknown_ops": _STRINGS,
        "kernel_shape": _Kind("a list of ints or null", lambda v: v is None or (
            isinstance(v, (list, tuple)) and all(_is_int(x) for x in v)), lambda v: None if v is None else tuple(v)),
        "formula": _OPTIONAL_STR, "input_batch_axes": _AXES, "output_batch_axes": _AXES, "created": _BOOL,
        **dict.fromkeys(("quant_params", "quant_bytes", "quant_state_bytes", "quant_unknown"), _COUNT),
        "quant_dtype": _OPTIONAL_STR,
        "local_params": _OPTIONAL_COUNT, "local_param_bytes": _OPTIONAL_COUNT, "shards": _RECORDS,
    },
    ParamShard: {
        "name": _STR, "shape": _DIMS, "local_shape": _DIMS, "placements": _STRINGS, "mesh_shape": _DIMS,
    },
    RankShare: dict.fromkeys(("rank", "local_params", "local_trainable_params", "local_param_bytes"), _COUNT),
    ParamGroup: {
        "name": _STR, "type": _STR, **dict.fromkeys(("params", "trainable_params", "param_bytes"), _COUNT),
        "called": _BOOL, "formula": _OPTIONAL_STR,
    },
}
# int fields with a range beyond "an int >= 0" (every other count): the check and its words
_RANGES: dict[str, tuple[Any, str]] = {
    "batch_size": (lambda v: v == -1 or v >= 1, "-1 (any) or an int >= 1"),
    "run_batch_size": (lambda v: v is None or v >= 1, "an int >= 1 or null"),
    "call_index": (lambda v: v >= 1, "an int >= 1"),
    "parent": (lambda v: v is None or v >= 0, "an int >= 0 or null"),
}
_AT_LEAST_ZERO = (lambda v: v is None or v >= 0, "an int >= 0")
_AT_MOST = f"an int of at most {MAX_COUNT:,} (2**63 - 1)"


def _fields(cls: type, data: dict[str, Any], where: str) -> dict[str, Any]:
    """The checked keyword arguments of ``cls`` from ``data`` (unknown keys ignored)."""
    kinds = _SCHEMA[cls]
    missing = [f.name for f in dataclasses.fields(cls) if f.name in kinds and f.name not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        what = "summary" if cls is Summary else f"{cls.__name__} record ({where.rstrip('.')})"
        raise InputSpecError(f"not a complete netsummary {what}: missing {', '.join(missing)}", data)
    kwargs = {}
    for name, kind in kinds.items():
        if name not in data:
            continue  # a field added after the file was written keeps its default
        value = data[name]
        if kind is _SHAPE:
            kwargs[name] = _shape(value, f"{where}{name}", 0)
            continue
        if not kind.check(value):
            raise _wrong(f"{where}{name}", value, kind.expected)
        if kind is _COUNT or kind is _OPTIONAL_COUNT:
            in_range, expected = _RANGES.get(name, _AT_LEAST_ZERO)
            if not in_range(value):
                raise _wrong(f"{where}{name}", value, expected)
        if _too_big(value):  # every int field, and every int in a list field
            raise _wrong(f"{where}{name}", value, _AT_MOST if _is_int(value) else f"ints {_AT_MOST.removeprefix('an int ')}")
        kwargs[name] = kind.convert(value) if kind.convert else value
    return kwargs


def _shape(data: Any, where: str, level: int) -> ShapeTree:
    """A checked shape tree (see the module docstring), its strings escaped."""
    if level > MAX_NESTING:
        raise InputSpecError(f"{where}: a shape tree nested more than {MAX_NESTING} levels deep", data)
    if data is None:
        return None
    if isinstance(data, list):
        if not all(_is_int(d) and d >= 0 for d in data):
            raise _wrong(where, data, "a tensor shape: a list of ints >= 0")
        if _too_big(data):
            raise _wrong(where, data, f"a tensor shape: a list of ints {_AT_MOST.removeprefix('an int ')}")
        return tuple(data)
    if isinstance(data, dict) and len(data) == 1:
        ((key, value),) = data.items()
        if key == "seq" and isinstance(value, list):
            return [_shape(t, f"{where}[{i}]", level + 1) for i, t in enumerate(value)]
        if key == "map" and isinstance(value, dict):
            return {escape(k): _shape(v, f"{where}[{_shown(k)}]", level + 1) for k, v in value.items()}
        if key == "type" and isinstance(value, str):
            return escape(value)
    raise _wrong(where, data, 'a shape tree: a list of ints, {"seq": [...]}, {"map": {...}}, {"type": "..."} or null')


def _check_position(record: LayerRecord, i: int, earlier: list[LayerRecord]) -> None:
    """A layer's ``index`` is its position; its ``parent`` is an earlier layer, one level up."""
    where = f"layers[{i}]."
    if record.index != i:
        raise _wrong(f"{where}index", record.index, f"{i}, its position in layers")
    if record.parent is None:
        if record.depth != 0:
            raise _wrong(f"{where}depth", record.depth, "0 for a layer without a parent")
        return
    if record.parent >= i:
        raise _wrong(f"{where}parent", record.parent, f"null or the index of an earlier layer (0 to {i - 1})"
                     if i else "null: the first layer has no parent")
    depth = earlier[record.parent].depth + 1
    if record.depth != depth:
        raise _wrong(f"{where}depth", record.depth, f"{depth}, one more than its parent's")
    if depth > MAX_LAYER_DEPTH:
        raise InputSpecError(f"{where}depth: layers nested more than {MAX_LAYER_DEPTH} levels deep", depth)


_LONG_INT_DIGITS = 30  # an int of more digits is shown shortened in a message


def _shown_int(value: int) -> str:
    """An int for a message; one of over :data:`_LONG_INT_DIGITS` digits shortened to its first
    and last digits and its digit count (``10000...00000 (401 digits)``)."""
    try:
        digits = str(abs(value))
    except ValueError:  # over sys.get_int_max_str_digits(): too long to even write out
        return f"{'-' if value < 0 else ''}an int of about {int(value.bit_length() * 0.30103):,} digits"
    if len(digits) <= _LONG_INT_DIGITS:
        return str(value)
    return f"{'-' if value < 0 else ''}{digits[:6]}...{digits[-6:]} ({len(digits):,} digits)"


class _Repr(reprlib.Repr):
    def repr_int(self, x: int, level: int) -> str:  # also inside lists: [10000...00000 (401 digits)]
        return _shown_int(x)


_REPR = _Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 60, 60, 3, 6, 4


def _shown(value: Any) -> str:
    """A received value for a message: a bounded repr, control characters escaped, long ints
    shortened (see :func:`_shown_int`)."""
    try:
        return escape(_REPR.repr(value))
    except Exception:  # a value whose repr fails
        return f"<{type(value).__name__}>"


def _wrong(where: str, value: Any, expected: str) -> InputSpecError:
    """``layers[2].params is '8' (str), expected an int``."""
    return InputSpecError(f"{where} is {_shown(value)} ({type(value).__name__}), expected {expected}", value)


def parse_json(text: str | bytes) -> Any:
    """``json.loads`` with every failure an :class:`InputSpecError` (``not JSON (...)``): bad
    syntax, numbers of too many digits, nesting deeper than the parser's recursion limit.

    Raises:
        InputTypeError: ``text`` is not a string (or bytes).
        InputSpecError: over :data:`~netsummary._safeio.MAX_JSON_BYTES`, or not JSON.
    """
    if not isinstance(text, (str, bytes, bytearray)):
        raise InputTypeError(f"expected JSON text (a str), got {type(text).__name__}", text)
    if len(text) > MAX_JSON_BYTES:
        raise InputSpecError(f"not a netsummary summary: {len(text):,} characters of JSON, over the limit of "
                             f"{MAX_JSON_BYTES:,}", len(text))
    try:
        return json.loads(text)
    except RecursionError:
        raise InputSpecError("not JSON (nested too deeply for the parser)", None) from None
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError, too many digits, bad UTF-8 in bytes
        raise InputSpecError(f"not JSON ({escape(str(err))})", None) from None


def from_json(text: str) -> Summary:
    """Parse :func:`to_json`'s output back into an equal :class:`Summary`, checked as
    :func:`from_dict` checks it.

    Raises:
        InputSpecError: not JSON, too large, or not a netsummary summary (see :func:`from_dict`).
    """
    return from_dict(parse_json(text))
