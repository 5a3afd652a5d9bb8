"""Summaries as standard data: a versioned dict/JSON schema that round-trips, and CSV.

JSON schema, version 1 (``SCHEMA_VERSION``) — every number in base units (elements, bytes,
MACs), no pre-formatted strings::

    {
      "schema_version": 1,
      "model_type": "discriminator",
      "total_params": 11038081, "trainable_params": ..., "non_trainable_params": ...,
      "param_bytes": ..., "buffer_count": ..., "buffer_bytes": ..., "input_bytes": ...,
      "output_bytes": ..., "total_macs": ... | null, "unknown_ops": [...],
      "input_shapes": <shape>, "input_dtypes": ["float32"],
      "batch_size": -1, "run_batch_size": 2, "device": "cpu", "mode": "eval",
      "complete": true, "uninitialized": [],
      "layers": [{"index": 0, "name": "", "type": "...", "call_index": 1, "depth": 0,
                  "parent": null, "is_leaf": false, "input_shapes": <shape>,
                  "output_shapes": <shape>, "input_dtypes": [...], "output_dtypes": [...],
                  "output_bytes": ..., "params": ..., "trainable_params": ...,
                  "param_bytes": ..., "shared_params": ..., "completed": true,
                  "macs": ... | null, "unknown_ops": [...], "kernel_shape": [4, 4] | null,
                  "formula": "..." | null}, ...],
      "other_params": [{"name": "", "type": "...", "params": ..., "trainable_params": ...,
                        "param_bytes": ..., "called": true, "formula": ... | null}, ...]
    }

``<shape>`` encodes a shape tree without ambiguity: a tensor's shape is a list of ints
(``[2, 3]``, ``[]`` for 0-dim); a list/tuple is ``{"seq": [<shape>, ...]}``; a dict-like value is
``{"map": {"key": <shape>}}``; any other value is ``{"type": "NoneType"}``; a call that raised has
``null``. Layer ``shape`` fields are as the forward ran (batch ``run_batch_size``).

>>> from torch import nn
>>> from netsummary import summary
>>> s = summary(nn.Linear(6, 3), (6,), verbose=0)
>>> d = to_dict(s)
>>> d["schema_version"], d["total_params"], d["layers"][0]["output_shapes"]
(1, 21, [2, 3])
>>> from_dict(d) == s
True
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from typing import Any

from ._errors import InputSpecError
from ._structure import ShapeTree
from ._summary import LayerRecord, ParamGroup, Summary

SCHEMA_VERSION = 1

_SHAPE_FIELDS = {"input_shapes", "output_shapes"}
_TUPLE_FIELDS = {"input_dtypes", "output_dtypes", "unknown_ops", "uninitialized", "kernel_shape",
                 "input_batch_axes", "output_batch_axes"}


def encode_shape(tree: ShapeTree) -> Any:
    """A shape tree as JSON-ready data (see the module docstring)."""
    if tree is None:
        return None
    if isinstance(tree, tuple):
        return list(tree)
    if isinstance(tree, list):
        return {"seq": [encode_shape(t) for t in tree]}
    if isinstance(tree, dict):
        return {"map": {k: encode_shape(v) for k, v in tree.items()}}
    return {"type": tree}


def decode_shape(data: Any) -> ShapeTree:
    """The inverse of :func:`encode_shape`."""
    if data is None:
        return None
    if isinstance(data, list):
        return tuple(data)
    if "seq" in data:
        return [decode_shape(t) for t in data["seq"]]
    if "map" in data:
        return {k: decode_shape(v) for k, v in data["map"].items()}
    return data["type"]


def _record_to_dict(obj: Any) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name in _SHAPE_FIELDS:
            value = encode_shape(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def _record_from_dict(cls: type, data: dict[str, Any]) -> Any:
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue  # a field added after the file was written keeps its default
        value = data[f.name]
        if f.name in _SHAPE_FIELDS:
            value = decode_shape(value)
        elif f.name in _TUPLE_FIELDS and value is not None:
            value = tuple(value)
        kwargs[f.name] = value
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise InputSpecError(f"not a complete netsummary {cls.__name__} record: {err}", data) from None


def to_dict(s: Summary) -> dict[str, Any]:
    """The summary as plain data (JSON schema version 1); :func:`from_dict` reverses it."""
    out: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    for f in dataclasses.fields(s):
        if f.name.startswith("_"):
            continue
        value = getattr(s, f.name)
        if f.name == "layers" or f.name == "other_params":
            value = [_record_to_dict(r) for r in value]
        elif f.name == "input_shapes":
            value = encode_shape(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def from_dict(data: dict[str, Any]) -> Summary:
    """Rebuild a :class:`Summary` from :func:`to_dict`'s output (or loaded JSON).

    Raises:
        InputSpecError: the data is not a netsummary summary of a known schema version.
    """
    if not isinstance(data, dict) or "schema_version" not in data:
        raise InputSpecError("expected a netsummary summary (a dict with 'schema_version'), got "
                             f"{type(data).__name__}", data)
    if data["schema_version"] != SCHEMA_VERSION:
        raise InputSpecError(f"unsupported summary schema_version {data['schema_version']!r}; this "
                             f"netsummary reads version {SCHEMA_VERSION}", data["schema_version"])
    kwargs = {}
    for f in dataclasses.fields(Summary):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name == "layers":
            value = tuple(_record_from_dict(LayerRecord, r) for r in value)
        elif f.name == "other_params":
            value = tuple(_record_from_dict(ParamGroup, g) for g in value)
        elif f.name == "input_shapes":
            value = decode_shape(value)
        elif f.name in _TUPLE_FIELDS:
            value = tuple(value)
        kwargs[f.name] = value
    try:
        return Summary(**kwargs)
    except TypeError as err:  # a required field missing
        raise InputSpecError(f"not a complete netsummary summary: {err}", data) from None


def to_json(s: Summary) -> str:
    """Deterministic JSON text (same summary, same bytes), indented, ending in a newline."""
    return json.dumps(to_dict(s), indent=2, ensure_ascii=False) + "\n"


def from_json(text: str) -> Summary:
    """Parse :func:`to_json`'s output back into an equal :class:`Summary`."""
    return from_dict(json.loads(text))


CSV_COLUMNS = [f.name for f in dataclasses.fields(LayerRecord)]


def to_csv(s: Summary) -> str:
    """One row per layer call with a header row; numbers unformatted, shapes as compact JSON."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in s.layers:
        row = []
        for name, value in _record_to_dict(r).items():
            if isinstance(value, (list, dict)) or (name in _SHAPE_FIELDS and value is not None):
                value = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
            row.append("" if value is None else value)
        writer.writerow(row)
    return buf.getvalue()
