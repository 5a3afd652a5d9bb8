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
      "forward_ran": false (only when no forward was run: a parameter-only summary),
      "expert_params": ..., "active_params": ... | null, "active_params_method": "measured" |
          "top-k" | "config" | null (only for a mixture-of-experts model),
      "adapters": [{"name": "default", "params": ..., "trainable_params": ..., "param_bytes": ...,
                    "active": true, "peft_type": "LORA",
                    "disabled": true (only when peft has it switched off)}, ...] (only for a PEFT model),
      "quantized_params": ..., "quantized_bytes": ..., "quant_state_bytes": ...,
      "quant_unknown": ["name (Type)", ...], "quant_dtypes": ["int4 packed", ...]
          (these five only for a model with quantized weights, see netsummary._analysis.quantized),
      sharded models only (DTensor, ZeRO-3 parameters; see Summary.local_params):
      "local_params": 404, "local_trainable_params": 404, "local_param_bytes": 1616,
      "rank": 0 | null, "world_size": 2 | null, "mesh_shapes": [[2]],
      "local_buffer_count": ..., "local_buffer_bytes": ... (only when a buffer is a DTensor),
      "ranks": [{"rank": 0, "local_params": ..., "local_trainable_params": ...,
                 "local_param_bytes": ...}, ...] (only with all_ranks=True),
      "memory": {...} (only with summary(..., estimate=...): every category's bytes and method,
                 see netsummary._reporting.memory.memory_to_dict),
      "layers": [{"index": 0, "name": "", "type": "...", "call_index": 1, "depth": 0,
                  "parent": null, "is_leaf": false, "input_shapes": <shape>,
                  "output_shapes": <shape>, "input_dtypes": [...], "output_dtypes": [...],
                  "output_bytes": ..., "params": ..., "trainable_params": ...,
                  "param_bytes": ..., "shared_params": ..., "completed": true,
                  "macs": ... | null, "unknown_ops": [...], "kernel_shape": [4, 4] | null,
                  "formula": "..." | null, "created": true (only when true),
                  "quant_params": ..., "quant_bytes": ..., "quant_state_bytes": ...,
                  "quant_unknown": ..., "quant_dtype": "int8" (only when set)}, ...],
                  sharded models only: "local_params": ..., "local_param_bytes": ...,
                  "shards": [{"name": "weight", "shape": [32, 16], "local_shape": [16, 16],
                              "placements": ["Shard(0)"], "mesh_shape": [2]}, ...]}, ...],
      "other_params": [{"name": "", "type": "...", "params": ..., "trainable_params": ...,
                        "param_bytes": ..., "called": true, "formula": ... | null}, ...]
    }

``<shape>`` encodes a shape tree without ambiguity: a tensor's shape is a list of ints
(``[2, 3]``, ``[]`` for 0-dim); a list/tuple is ``{"seq": [<shape>, ...]}``; a dict-like value is
``{"map": {"key": <shape>}}``; any other value is ``{"type": "NoneType"}``; a call that raised has
``null``. Layer ``shape`` fields are as the forward ran (batch ``run_batch_size``).

:func:`~netsummary._reporting.load.from_dict` and :func:`~netsummary._reporting.load.from_json`
read it back.

>>> from torch import nn
>>> from netsummary import summary
>>> s = summary(nn.Linear(6, 3), (6,), verbose=0)
>>> d = to_dict(s)
>>> d["schema_version"], d["total_params"], d["layers"][0]["output_shapes"]
(1, 21, [2, 3])
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from typing import Any

from .._tracing.structure import ShapeTree
from .._summary import LayerRecord, Summary

SCHEMA_VERSION = 1

_SHAPE_FIELDS = {"input_shapes", "output_shapes"}


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
    """The inverse of :func:`encode_shape`, for data that :func:`encode_shape` made; loaded data
    goes through :func:`from_dict`, which checks it."""
    if data is None:
        return None
    if isinstance(data, list):
        return tuple(data)
    if "seq" in data:
        return [decode_shape(t) for t in data["seq"]]
    if "map" in data:
        return {k: decode_shape(v) for k, v in data["map"].items()}
    return data["type"]


_IF_TRUE = ("created", "disabled")  # written only when true: data without it reads as false (the default)
# quantized weights (netsummary._analysis.quantized): written only when set (non-zero, non-empty),
# so a model without quantized weights gives the same JSON and CSV as before they existed
_QUANT_LAYER = ("quant_params", "quant_bytes", "quant_state_bytes", "quant_unknown", "quant_dtype")
_QUANT_SUMMARY = ("quantized_params", "quantized_bytes", "quant_state_bytes", "quant_unknown", "quant_dtypes")
_IF_NONZERO = frozenset(_QUANT_LAYER) | frozenset(_QUANT_SUMMARY)
_IF_FALSE = ("forward_ran",)  # written only when false: data without it reads as true (the default)
# written only when set, None and () left out (a mixture-of-experts model, a PEFT model, a
# sharded model): data without them reads as unset (the defaults)
_IF_SET = ("expert_params", "active_params", "active_params_method", "adapters",
           "local_params", "local_trainable_params", "local_param_bytes", "rank", "world_size", "mesh_shapes",
           "ranks", "shards", "local_buffer_count", "local_buffer_bytes", "memory")
_NESTED = {"layers", "other_params", "ranks", "adapters", "shards"}  # tuples of records


def _left_out(name: str, value: Any) -> bool:
    """A field written only when it differs from its default (the sets above), so data written
    before the field existed reads the same."""
    if name in _IF_TRUE or name in _IF_NONZERO:
        return not value
    if name in _IF_FALSE:
        return bool(value)
    return name in _IF_SET and (value is None or value == ())


def _record_to_dict(obj: Any) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if _left_out(f.name, value):
            continue
        if f.name in _NESTED:
            value = [_record_to_dict(x) for x in value]
        elif f.name in _SHAPE_FIELDS:
            value = encode_shape(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def to_dict(s: Summary) -> dict[str, Any]:
    """The summary as plain data (JSON schema version 1); :func:`from_dict` reverses it."""
    out: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    for f in dataclasses.fields(s):
        value = getattr(s, f.name)
        if f.name.startswith("_") or _left_out(f.name, value):
            continue
        if f.name == "memory":
            from .memory import memory_to_dict

            value = memory_to_dict(value)
        elif f.name == "mesh_shapes":
            value = [list(m) for m in value]
        elif f.name in _NESTED:
            value = [_record_to_dict(r) for r in value]
        elif f.name == "input_shapes":
            value = encode_shape(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def to_json(s: Summary) -> str:
    """Deterministic JSON text (same summary, same bytes), indented, ending in a newline."""
    return json.dumps(to_dict(s), indent=2, ensure_ascii=False) + "\n"


# "created" is not a column: such a row's type says so ("Linear (created in forward)"); the
# quantized-weight and sharding columns come after these, only for a model with quantized
# weights / sharded parameters
SHARD_CSV_COLUMNS = ["local_params", "local_param_bytes", "shards"]
CSV_COLUMNS = [f.name for f in dataclasses.fields(LayerRecord)
               if f.name not in _IF_TRUE and f.name not in _IF_NONZERO and f.name not in SHARD_CSV_COLUMNS]


def to_csv(s: Summary) -> str:
    """One row per layer call with a header row; numbers unformatted, shapes as compact JSON.
    A quantized model's rows end in the ``quant_*`` fields (see :class:`~netsummary.LayerRecord`)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    columns = CSV_COLUMNS + (list(_QUANT_LAYER) if s.quantized else []) + (SHARD_CSV_COLUMNS if s.sharded else [])
    writer.writerow(columns)
    for r in s.layers:
        row = []
        data = _record_to_dict(r)
        for name in columns:  # a field left out of the dict is at its default
            value = data.get(name, getattr(r, name))
            value = list(value) if isinstance(value, tuple) else value
            if isinstance(value, (list, dict)) or (name in _SHAPE_FIELDS and value is not None):
                value = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
            row.append("" if value is None else value)
        writer.writerow(row)
    return buf.getvalue()
