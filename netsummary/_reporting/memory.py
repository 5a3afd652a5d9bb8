"""The memory section (``print(s.memory)``, ``s.render("memory")``) and its JSON form.

One line per category with its size (binary units, :func:`~netsummary._units.format_bytes`), a
note and the way the figure was obtained; then the peak's place, the step's MACs and what the
figures do not include. JSON holds every category in bytes with its method
(:func:`memory_to_dict`); :func:`memory_from_dict` checks loaded data field by field.

>>> from netsummary._memory.estimate import MemoryEstimate, MemoryItem
>>> est = MemoryEstimate("inference", 1, "float32", None, None, "cpu", "measured on real tensors",
...     *(MemoryItem(n, "counted") for n in (4096, 0, 64, 0, 0, 0)), MemoryItem(5120, "measured on real tensors"),
...     "forward", "0")
>>> print(render_memory(est).splitlines()[0])
Memory, one inference forward (batch 1, float32), measured on real tensors on cpu
>>> memory_from_dict(memory_to_dict(est)) == est
True
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tabulate import tabulate

from .._errors import InputSpecError, InputTypeError
from .._memory.estimate import KINDS, METHODS, PHASES, LayerMemory, MemoryEstimate, MemoryItem
from .._safeio import escape
from .._units import format_bytes

_LABELS = {
    "parameters": "Parameters", "buffers": "Buffers", "inputs": "Inputs", "gradients": "Gradients",
    "optimizer_state": "Optimizer state", "saved_activations": "Saved activations",
}


#: The memory section's prose lines (the parts at the peak, the notes) wrap at this many columns.
WIDTH = 100


def _wrap(line: str) -> list[str]:
    """``line`` wrapped at :data:`WIDTH` columns on spaces, continuation lines indented 4 more."""
    import textwrap

    return textwrap.wrap(line, WIDTH, subsequent_indent="    ", break_long_words=False, break_on_hyphens=False,
                         drop_whitespace=True) or [line]


def render_memory(est: MemoryEstimate) -> str:
    """The memory section as text (see the module docstring)."""
    train = est.kind == "train" and est.optimizer is not None
    what = "one training step" if est.kind == "train" else "one inference forward"
    setting = [f"batch {est.batch_size:,}", est.dtype]
    if est.autocast:
        setting.append(f"autocast {est.autocast}")
    if train:
        setting.append(est.optimizer)
    head = f"Memory, {what} ({', '.join(setting)}), {est.method} on {est.device}"
    if not est.complete:
        head += " -- PARTIAL: the step failed"
    rows = []
    for key, item in est.items[:-1]:
        if not train and key in ("gradients", "optimizer_state", "saved_activations"):
            continue
        rows.append([_LABELS[key], format_bytes(item.bytes), item.note, item.method])
    peak_label = "Peak during the step" if train else "Peak during the forward"
    where = "in optimizer.step()" if est.peak_phase == "optimizer" else f"in {est.peak_phase}"
    if est.peak_module:
        where += f", {'after' if est.peak_phase == 'backward' else 'in'} module {est.peak_module!r}"
    if est.peak_op:
        where += f" ({est.peak_op})"
    bound = "at least " if est.lower_bound else ""
    rows.append([peak_label, bound + format_bytes(est.peak.bytes), where, est.peak.method])
    table = tabulate(rows, headers=("", "", "", "method"), tablefmt="plain", colalign=("left", "right", "left", "left"),
                     disable_numparse=True)
    lines = [head, *("  " + line.rstrip() for line in table.splitlines()[1:])]
    parts = [f"{k.replace('_', ' ')} {format_bytes(n)}" for k, n in est.peak_parts if n]
    if parts:
        line = "  At the peak:"
        for i, part in enumerate(parts):  # wrapped between parts, never inside a size
            piece = " " + part + ("," if i < len(parts) - 1 else "")
            if len(line) + len(piece) > WIDTH and line.strip():
                lines.append(line)
                line = "   "
            line += piece
        lines.append(line)
    if est.forward_macs is not None:
        macs = f"  MACs: forward {est.forward_macs:,}"
        if est.backward_macs is not None:
            macs += f", backward {est.backward_macs:,}"
            if est.forward_macs:
                macs += f" ({est.backward_macs / est.forward_macs:.2f} × forward)"
        lines.append(macs + " (FLOPs = 2 × MACs)")
    for note in est.notes:
        lines.extend(_wrap(f"  Note: {note}"))
    if est.plan is not None:  # the verdict, KV cache and per-rank figures (netsummary._reporting.fit)
        lines.append(str(est.plan))
    return "\n".join(lines)


# -- JSON -------------------------------------------------------------------------------------------

def memory_to_dict(est: MemoryEstimate) -> dict[str, Any]:
    """The estimate as plain data: every size an int of bytes, each category ``{"bytes", "method",
    "note"}``, ``peak_parts`` a ``{category: bytes}`` map, ``layers`` a list of records."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(est):
        value = getattr(est, f.name)
        if f.name == "live_curve":  # one entry per allocation: for the fits= verdict, not for files
            continue
        if f.name == "plan":  # derived figures, written for readers and CI (netsummary._reporting.fit)
            if value is not None:
                from .fit import plan_to_dict

                out[f.name] = plan_to_dict(value)
            continue
        if isinstance(value, MemoryItem):
            value = dataclasses.asdict(value)
        elif f.name == "peak_parts":
            value = dict(value)
        elif f.name == "layers":
            value = [dataclasses.asdict(r) for r in value]
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 2**63 - 1


def _wrong(where: str, value: Any, expected: str) -> InputSpecError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return InputSpecError(f"{where} is {shown} ({type(value).__name__}), expected {expected}", value)


def _get(data: dict, key: str, where: str, check: Any, expected: str, default: Any = dataclasses.MISSING) -> Any:
    if key not in data:
        if default is dataclasses.MISSING:
            raise InputSpecError(f"not a complete memory estimate: {where}{key} is missing", data)
        return default
    value = data[key]
    if not check(value):
        raise _wrong(f"{where}{key}", value, expected)
    return value


def _str(v: Any) -> bool:
    return isinstance(v, str)


def _item(data: Any, where: str) -> MemoryItem:
    if not isinstance(data, dict):
        raise _wrong(where.rstrip("."), data, 'an object {"bytes": int, "method": str, "note": str}')
    method = _get(data, "method", where, lambda v: v in METHODS, f"one of {', '.join(map(repr, METHODS))}")
    return MemoryItem(_get(data, "bytes", where, _is_int, "an int >= 0"), method,
                      escape(_get(data, "note", where, _str, "a string", "")))


def memory_from_dict(data: Any, where: str = "memory.") -> MemoryEstimate:
    """Rebuild a :class:`MemoryEstimate` from :func:`memory_to_dict`'s output, checking every field.

    Raises:
        InputTypeError: ``data`` is not a dict.
        InputSpecError: a field is missing or holds the wrong kind of value; the message names
            it (``memory.peak.bytes is -1 (int), expected an int >= 0``).
    """
    if not isinstance(data, dict):
        raise InputTypeError(f"{where.rstrip('.')}: expected a memory estimate (a JSON object), got "
                             f"{type(data).__name__}", data)
    opt_str = lambda v: v is None or isinstance(v, str)  # noqa: E731
    opt_int = lambda v: v is None or _is_int(v)  # noqa: E731
    kwargs: dict[str, Any] = {
        "kind": _get(data, "kind", where, lambda v: v in KINDS, "'train' or 'inference'"),
        "batch_size": _get(data, "batch_size", where, lambda v: _is_int(v) and v >= 1, "an int >= 1"),
        "dtype": escape(_get(data, "dtype", where, _str, "a string")),
        "autocast": _get(data, "autocast", where, opt_str, "a string or null"),
        "optimizer": _get(data, "optimizer", where, opt_str, "a string or null"),
        "device": escape(_get(data, "device", where, _str, "a string")),
        "method": _get(data, "method", where, lambda v: v in METHODS, f"one of {', '.join(map(repr, METHODS))}"),
        "peak_phase": _get(data, "peak_phase", where, lambda v: v in PHASES, f"one of {', '.join(map(repr, PHASES))}"),
        "peak_module": escape(_get(data, "peak_module", where, _str, "a string")),
        "peak_op": escape(_get(data, "peak_op", where, _str, "a string", "")),
        "forward_macs": _get(data, "forward_macs", where, opt_int, "an int >= 0 or null", None),
        "backward_macs": _get(data, "backward_macs", where, opt_int, "an int >= 0 or null", None),
        "trainable_params": _get(data, "trainable_params", where, _is_int, "an int >= 0", 0),
        "lower_bound": _get(data, "lower_bound", where, lambda v: isinstance(v, bool), "true or false", False),
        "complete": _get(data, "complete", where, lambda v: isinstance(v, bool), "true or false", True),
        "notes": tuple(escape(n) for n in _get(data, "notes", where, lambda v: isinstance(v, list) and all(
            isinstance(x, str) for x in v), "a list of strings", [])),
    }
    for key in ("autocast", "optimizer"):
        if kwargs[key] is not None:
            kwargs[key] = escape(kwargs[key])
    for key in ("parameters", "buffers", "inputs", "gradients", "optimizer_state", "saved_activations", "peak"):
        if key not in data:
            raise InputSpecError(f"not a complete memory estimate: {where}{key} is missing", data)
        kwargs[key] = _item(data[key], f"{where}{key}.")
    parts = _get(data, "peak_parts", where, lambda v: isinstance(v, dict) and all(
        isinstance(k, str) and _is_int(n) for k, n in v.items()), "an object of category: bytes (ints >= 0)", {})
    kwargs["peak_parts"] = tuple((escape(k), n) for k, n in parts.items())
    layers = _get(data, "layers", where, lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
                  "a list of layer records (JSON objects)", [])
    records = []
    for i, rec in enumerate(layers):
        at = f"{where}layers[{i}]."
        records.append(LayerMemory(
            escape(_get(rec, "name", at, _str, "a string")), escape(_get(rec, "type", at, _str, "a string")),
            _get(rec, "call_index", at, lambda v: _is_int(v) and v >= 1, "an int >= 1"),
            _get(rec, "saved_bytes", at, _is_int, "an int >= 0"),
            _get(rec, "forward_macs", at, opt_int, "an int >= 0 or null", None)))
    kwargs["layers"] = tuple(records)
    return MemoryEstimate(**kwargs)
