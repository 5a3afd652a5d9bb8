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

from dataclasses import dataclass
from fractions import Fraction

from tabulate import tabulate

from .._commandline.budget import show_bytes
from .._errors import InputSpecError
from .load import parse_json
from .._safeio import MAX_JSON_BYTES, escape, markdown_cell, markdown_code, read_regular
from .._summary import Summary

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
    """Read a summary saved with ``--format json`` (``Summary.to_json()``), checked as
    :meth:`Summary.from_dict` checks it (the one validator of loaded summaries): every field must
    have its type, every count be an int >= 0 (``true`` is no count), every layer's parent an
    earlier layer. Only a regular file of at most :data:`~netsummary._safeio.MAX_JSON_BYTES` is
    read: a FIFO or a device (``/dev/zero``) is refused unopened.

    Raises:
        InputSpecError: the file is missing, not a regular file, too large, not UTF-8 JSON, or not
            a netsummary summary (a field of the wrong type included: ``total_params is 'lots'
            (str), expected an int``).
    """
    hint = "save one with: netsummary TARGET --input-size ... --format json --output FILE"
    shown_path = escape(path)

    def refuse(why: str) -> InputSpecError:
        return InputSpecError(f"{shown_path}: {why}", path)

    try:
        raw = read_regular(path, MAX_JSON_BYTES, "a JSON summary", refuse)
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise InputSpecError(f"{shown_path}: no such file; {hint}", path) from None
    except OSError as err:
        raise InputSpecError(f"{shown_path}: cannot read it ({err.strerror or err})", path) from None
    except UnicodeDecodeError as err:
        raise InputSpecError(f"{shown_path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset "
                             f"{err.start}); expected a JSON summary ({hint})", path) from None
    try:
        data = parse_json(text)
    except InputSpecError as err:
        raise InputSpecError(f"{shown_path}: {err}; expected a summary ({hint})", path) from None
    try:
        return Summary.from_dict(data)
    except InputSpecError as err:
        raise InputSpecError(f"{shown_path}: not a netsummary summary ({err}); {hint}", path) from None


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


def _cell(text: str, md: bool) -> str:
    """A name as a cell: control characters escaped (no name can forge a row or drive the
    terminal); in Markdown ``|`` escaped too, so no name can add a column, and ``&``, ``<``, ``>``
    as entities, so no name is raw HTML in a pull-request comment (see
    :func:`~netsummary._safeio.markdown_cell`)."""
    return markdown_cell(text) if md else escape(text)


def render_diff(diff: SummaryDiff, format: str = "text", title: str = "", show_unchanged: bool = False) -> str:
    """The diff as aligned text (``"text"``) or GitHub Markdown (``"markdown"``). Names, types and
    the title are shown with control characters escaped (``\\n``, ``\\x1b``).

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
        # a lone ">" opens no HTML, and the title's own "base -> new" keeps its arrow
        title = _cell(title, md).replace("&gt;", ">") if md else _cell(title, md)
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
            kind = _cell(d.type_new or d.type_base or "", md)
            if d.type_base and d.type_new and d.type_base != d.type_new:
                kind = f"{_cell(d.type_base, md)} {arrow} {_cell(d.type_new, md)}"
            label = markdown_code(d.label) if md else _cell(d.label, md)  # a code span shows <, > and & as written
            table.append([d.status, label, kind, _n(d.params_base), _n(d.params_new),
                          _delta(d.params_base, d.params_new) if d.status == "changed" else "",
                          _n(d.macs_base), _n(d.macs_new), _delta(d.macs_base, d.macs_new) if d.status == "changed" else ""])
        headers = ["status", "layer", "type", "params base", "params new", "Δ params" if md else "params change",
                   "MACs base", "MACs new", "Δ MACs" if md else "MACs change"]
        parts.append(tabulate(table, headers=headers, tablefmt=fmt, disable_numparse=True,
                              colalign=("left", "left", "left", *["right"] * 6)))
    return "\n\n".join(parts)

