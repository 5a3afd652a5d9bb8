"""Compare two summaries (a saved baseline and a new one): total and per-layer deltas of params and MACs.

Layers are matched by ``(name, call_index)``. The rows compared are the leaf calls (the classic
table's rows), container calls whose own code ran operators with MACs (attention's matmuls in a
custom ``forward``), and parameters outside every leaf (``(own params)`` rows). A row is
*added*, *removed*, *changed* (type, params or MACs differ) or unchanged. MACs are compared only
when both summaries counted them. A diff renders as aligned text for a log or as a GitHub
Markdown table ready for a pull-request comment.

>>> from torch import nn
>>> from netsummary import summary
>>> base = summary(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), (4,), verbose=0)
>>> new = summary(nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2)), (4,), verbose=0)
>>> d = diff_summaries(base, new)
>>> [(x.label, x.status, x.params_base, x.params_new) for x in d.layers if x.status != "unchanged"]
[('0', 'changed', 40, 80), ('2', 'added', None, 34)]
>>> [g.message for g in growth_checks(d, 0.5, "mlp")]       # 40 -> 80 + 34 = 114: +185%
['mlp: total params 40 -> 114 (+185.0%) > max growth 50%']
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from tabulate import tabulate

from ._budget import show_bytes
from ._errors import InputSpecError
from ._summary import Summary

DIFF_FORMATS = ("text", "markdown")
_Row = tuple[str, "int | None", "int | None"]  # (type, params, MACs)


@dataclass(frozen=True, slots=True)
class LayerDelta:
    """One compared row. ``call_index`` 0 marks parameters outside every leaf (``(own params)``).
    ``None`` on a side: the row is absent there, or (params) a container row, or (MACs) unknown."""

    name: str
    call_index: int
    label: str
    type_base: str | None
    type_new: str | None
    params_base: int | None
    params_new: int | None
    macs_base: int | None
    macs_new: int | None

    @property
    def status(self) -> str:
        """``"added"``, ``"removed"``, ``"changed"`` or ``"unchanged"``."""
        if self.type_base is None:
            return "added"
        if self.type_new is None:
            return "removed"
        same = (self.type_base, self.params_base, self.macs_base) == (self.type_new, self.params_new, self.macs_new)
        return "unchanged" if same else "changed"


@dataclass(frozen=True, slots=True)
class SummaryDiff:
    """Totals ``(quantity, base, new)`` (params, trainable params, param bytes, MACs when both
    have them) and every compared row, in the new summary's order, then removed rows."""

    totals: tuple[tuple[str, int, int], ...]
    layers: tuple[LayerDelta, ...]
    macs_compared: bool

    def count(self, status: str) -> int:
        """How many rows have ``status``."""
        return sum(1 for d in self.layers if d.status == status)


@dataclass(frozen=True, slots=True)
class Growth:
    """A total held to a maximum growth over its baseline; ``max_growth`` is a fraction (0.02)."""

    quantity: str
    base: int
    new: int
    max_growth: float
    name: str | None = None

    @property
    def ok(self) -> bool:
        """``new <= base * (1 + max_growth)``, exactly (a zero baseline allows no growth)."""
        return self.new - self.base <= self.base * Fraction(str(self.max_growth))

    @property
    def message(self) -> str:
        """``gan: total params 11,038,081 -> 11,300,225 (+2.4%) > max growth 2%``."""
        prefix = f"{self.name}: " if self.name else ""
        return (f"{prefix}{self.quantity} {self.base:,} -> {self.new:,} ({_percent(self.base, self.new)}) "
                f"{'<=' if self.ok else '>'} max growth {100 * self.max_growth:g}%")


def _percent(base: int, new: int) -> str:
    if base == 0:
        return "+0.0%" if new == 0 else "new"
    change = 100 * (new / base - 1)
    if new != base and abs(change) < 0.05:  # would round to 0.0%
        return "+<0.1%" if new > base else "-<0.1%"
    return f"{change:+.1f}%"


def load_summary(path: str) -> Summary:
    """Read a summary saved with ``--format json`` (``Summary.to_json()``).

    Every number the diff and the budgets read is checked: the totals and each layer's counts
    must be ints (``total_macs`` and a layer's ``macs`` may be ``null``), names and types strings.

    Raises:
        InputSpecError: the file is missing, not UTF-8 JSON, or not a netsummary summary (a field
            of the wrong type included: ``total_params is 'lots' (str), expected an int``).
    """
    hint = "save one with: netsummary TARGET --input-size ... --format json --output FILE"
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise InputSpecError(f"{path}: no such file; {hint}", path) from None
    except OSError as err:
        raise InputSpecError(f"{path}: cannot read it ({err})", path) from None
    except UnicodeDecodeError as err:
        raise InputSpecError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); "
                             f"expected a JSON summary ({hint})", path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputSpecError(f"{path}: not JSON ({err}); expected a summary ({hint})", path) from None
    try:
        summary = Summary.from_dict(data)
    except (InputSpecError, TypeError, KeyError, ValueError, AttributeError) as err:
        raise InputSpecError(f"{path}: not a netsummary summary ({err}); {hint}", path) from None
    problem = _wrong_field(summary)
    if problem:
        raise InputSpecError(f"{path}: not a netsummary summary ({problem}); {hint}", path)
    return summary


# field type (as annotated) -> (check, what the message says was expected)
_FIELD_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an int"),
    "int | None": (lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)), "an int or null"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "str | None": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
}


def _wrong_field(s: Summary) -> str | None:
    """``"layers[2].params is '8' (str), expected an int"``: the first field of a loaded summary
    (its totals, every layer record and parameter group) whose value has the wrong type."""
    records: list[tuple[str, Any]] = [("", s)]
    records += [(f"layers[{i}].", r) for i, r in enumerate(s.layers)]
    records += [(f"other_params[{i}].", g) for i, g in enumerate(s.other_params)]
    for where, record in records:
        if not dataclasses.is_dataclass(record):
            return f"{where.rstrip('.')} is {type(record).__name__}, expected a record"
        for f in dataclasses.fields(record):
            annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", None) or str(f.type)
            check = _FIELD_CHECKS.get(annotation)
            value = getattr(record, f.name)
            if check is not None and not f.name.startswith("_") and not check[0](value):
                return f"{where}{f.name} is {value!r} ({type(value).__name__}), expected {check[1]}"
    return None


def _rows(s: Summary) -> dict[tuple[str, int], _Row]:
    rows: dict[tuple[str, int], _Row] = {}
    for r in s.layers:
        if r.is_leaf or r.macs or r.unknown_ops:
            rows[(r.name, r.call_index)] = (r.type, r.params if r.is_leaf else None, r.macs)
    for g in s.other_params:
        rows[(g.name, 0)] = (g.type, g.params, None)
    return rows


def _label(name: str, call_index: int) -> str:
    shown = name or "(root)"
    return f"{shown} (own params)" if call_index == 0 else f"{shown} #{call_index}" if call_index > 1 else shown


def diff_summaries(base: Summary, new: Summary) -> SummaryDiff:
    """Compare ``new`` with ``base`` (see the module docstring)."""
    macs = base.total_macs is not None and new.total_macs is not None
    old_rows, new_rows = _rows(base), _rows(new)
    layers = []
    for key in [*new_rows, *(k for k in old_rows if k not in new_rows)]:
        b, n = old_rows.get(key), new_rows.get(key)
        layers.append(LayerDelta(
            key[0], key[1], _label(*key), b and b[0], n and n[0], b and b[1], n and n[1],
            b[2] if b and macs else None, n[2] if n and macs else None))
    totals = [("total params", base.total_params, new.total_params),
              ("trainable params", base.trainable_params, new.trainable_params),
              ("param bytes", base.param_bytes, new.param_bytes)]
    if macs:
        totals.append(("MACs", base.total_macs, new.total_macs))  # type: ignore[arg-type]
    return SummaryDiff(tuple(totals), tuple(layers), macs)


def growth_checks(diff: SummaryDiff, max_growth: float, name: str | None = None) -> list[Growth]:
    """Total params (and MACs, when both summaries have them) held to ``max_growth`` (a fraction)."""
    return [Growth(q, b, n, max_growth, name) for q, b, n in diff.totals if q in ("total params", "MACs")]


def _delta(base: int | None, new: int | None) -> str:
    if base is None or new is None:
        return "--"
    if base == new:
        return "0"
    pct = f" ({_percent(base, new)})" if base else ""
    return f"{new - base:+,}{pct}"


def _n(value: int | None) -> str:
    return "--" if value is None else f"{value:,}"


def render_diff(diff: SummaryDiff, format: str = "text", title: str = "", show_unchanged: bool = False) -> str:
    """The diff as aligned text (``"text"``) or GitHub Markdown (``"markdown"``).

    Raises:
        InputSpecError: an unknown format.
    """
    if format not in DIFF_FORMATS:
        raise InputSpecError(f"diff format: unknown format {format!r}; valid formats are {', '.join(DIFF_FORMATS)}",
                             format)
    md = format == "markdown"
    fmt, arrow = ("pipe", "→") if md else ("simple", "->")  # pipe: GitHub Markdown with alignment colons
    totals = []
    for quantity, b, n in diff.totals:
        shown = (show_bytes(b), show_bytes(n)) if quantity == "param bytes" else (_n(b), _n(n))
        totals.append([quantity, *shown, _delta(b, n)])
    parts = []
    if title:
        parts.append(f"### netsummary diff: {title}" if md else f"netsummary diff: {title}")
    parts.append(tabulate(totals, headers=["", "base", "new", "change"], tablefmt=fmt,
                          colalign=("left", "right", "right", "right"), disable_numparse=True))
    counts = ", ".join(f"{diff.count(s)} {s}" for s in ("changed", "added", "removed"))
    line = f"Layers: {counts}, {diff.count('unchanged')} unchanged"
    if not diff.macs_compared:
        line += " (MACs not compared: a summary was made without them)"
    parts.append(f"**{line}**" if md else line)
    shown_rows = [d for d in diff.layers if show_unchanged or d.status != "unchanged"]
    if shown_rows:
        table = []
        for d in shown_rows:
            kind = d.type_new or d.type_base or ""
            if d.type_base and d.type_new and d.type_base != d.type_new:
                kind = f"{d.type_base} {arrow} {d.type_new}"
            label = f"`{d.label}`" if md else d.label
            table.append([d.status, label, kind, _n(d.params_base), _n(d.params_new),
                          _delta(d.params_base, d.params_new) if d.status == "changed" else "",
                          _n(d.macs_base), _n(d.macs_new), _delta(d.macs_base, d.macs_new) if d.status == "changed" else ""])
        headers = ["status", "layer", "type", "params base", "params new", "Δ params" if md else "params change",
                   "MACs base", "MACs new", "Δ MACs" if md else "MACs change"]
        parts.append(tabulate(table, headers=headers, tablefmt=fmt, disable_numparse=True,
                              colalign=("left", "left", "left", *["right"] * 6)))
    return "\n\n".join(parts)

