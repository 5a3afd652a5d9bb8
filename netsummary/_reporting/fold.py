"""Repeated blocks fold: runs of identical sibling calls become one row of the tree view.

An 80-layer decoder's ``model.layers.0`` ... ``model.layers.79`` are shown as one row
``model.layers.0–79 (LlamaDecoderLayer) × 80``, with the children of the first block under it, so
that the table of a deep model fits on a screen and its structure stays visible.

Two sibling calls (children of the same parent call, one right after the other) are *identical*
when their whole subtrees match record for record: the same names relative to the block, types,
nesting, input and output shapes, dtypes and batch axes, parameter counts, trainable counts and
parameter bytes (so dtypes), kernel shapes, formulas, output bytes and MACs per call, and the same
own-parameter rows (:class:`~netsummary._summary.ParamGroup`). Parameter shapes are not recorded
one by one; a different shape with the same count shows in the formula (when recorded), in the
kernel shape or in the input/output shapes of the layer that holds it.

Only blocks named ``<prefix><k>``, ``<prefix><k+1>``, ... (a ``ModuleList`` or ``Sequential``
index) fold, in runs of two or more. A block never folds when any call in it is a repeated call
of a module with parameters (``#2``, ``(repeat)``), shows tied parameters, raised, calls a module
from outside the block, owns parameters that no call used, or holds a module the forward created:
its rows would not add up to N times the first block's. (A parameterless module called several
times inside each block, such as ResNet's ``relu``, is no obstacle.)

Folding changes rows only; the totals come from the unique tensors as always. JSON, CSV and the
classic table are never folded.

>>> from torch import nn
>>> from netsummary import summary
>>> m = nn.Sequential(*[nn.Linear(4, 4) for _ in range(3)], nn.Linear(4, 2))
>>> s = summary(m, (4,), verbose=0)
>>> [(run.label, run.count) for run in find_runs(s).values()]
[('0–2', 3)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._summary import LayerRecord, ParamGroup, Summary


@dataclass(frozen=True, slots=True)
class Run:
    """``count`` identical consecutive sibling calls; ``blocks`` are their records' indices."""

    label: str  # "model.layers.0–79"
    blocks: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.blocks)


def _index_name(name: str) -> tuple[str, int] | None:
    """``"model.layers.7"`` -> ``("model.layers.", 7)``; a numbered name too:
    ``"encoder.layers.encoder_layer_7"`` -> ``("encoder.layers.encoder_layer_", 7)``; ``None`` when
    the last part does not end in an index."""
    stem = name.rstrip("0123456789")
    digits = name[len(stem):]
    if not digits or (digits != "0" and digits.startswith("0")) or stem.endswith("-"):
        return None
    return stem, int(digits)


def _subtrees(s: Summary) -> dict[int, list[int]]:
    """Each call's record indices, itself first, then the calls inside it in call order."""
    sub: dict[int, list[int]] = {r.index: [r.index] for r in s.layers}
    for r in reversed(s.layers):
        if r.parent is not None:
            sub[r.parent][1:1] = sub[r.index]
    return sub


def _signature(s: Summary, root: LayerRecord, members: list[int], groups: list[ParamGroup]) -> Any:
    """What must match for two blocks to fold; ``None`` when ``root`` may never fold."""
    prefix = root.name + "."
    sig = []
    for i in members:
        r = s.layers[i]
        if r.shared_params or (r.call_index > 1 and (r.params or r is root)) or not r.completed:
            return None  # tied or repeated parameters, a block called twice, a call that raised
        if getattr(r, "created", False):
            return None  # made by the forward: outside the totals, and maybe not made every time
        if r is not root and not r.name.startswith(prefix):
            return None  # a module from outside the block: its figures are not the block's own
        rel = r.name[len(root.name):]
        parent = None if r is root else r.parent - root.index  # type: ignore[operator]
        sig.append((
            rel, r.type, r.depth - root.depth, parent, r.index - root.index, r.is_leaf,
            r.input_shapes, r.output_shapes, r.input_dtypes, r.output_dtypes,
            r.input_batch_axes, r.output_batch_axes, r.output_bytes,
            r.params, r.trainable_params, r.param_bytes, r.macs, r.unknown_ops, r.kernel_shape, r.formula,
        ))
    own = []
    for g in groups:
        if g.name == root.name or g.name.startswith(prefix):
            if not g.called:
                return None  # listed at the table's end, outside the block
            own.append((g.name[len(root.name):], g.type, g.params, g.trainable_params, g.param_bytes, g.formula))
    return sig, own


def find_runs(s: Summary) -> dict[int, Run]:
    """The runs of identical consecutive sibling blocks, keyed by the first block's record index."""
    sub = _subtrees(s)
    children: dict[int, list[int]] = {}
    for r in s.layers:
        if r.parent is not None:
            children.setdefault(r.parent, []).append(r.index)
    runs: dict[int, Run] = {}
    for kids in children.values():
        if len(kids) < 2:
            continue
        sigs: dict[int, Any] = {}

        def sig(i: int) -> Any:
            if i not in sigs:
                sigs[i] = _signature(s, s.layers[i], sub[i], list(s.other_params))
            return sigs[i]

        start = 0
        while start < len(kids):
            first = s.layers[kids[start]]
            named = _index_name(first.name)
            end = start + 1
            if named is not None and sig(first.index) is not None:
                prefix, k = named
                while end < len(kids):
                    nxt = s.layers[kids[end]]
                    if nxt.name != f"{prefix}{k + end - start}" or nxt.type != first.type:
                        break
                    if sig(nxt.index) != sig(first.index):
                        break
                    end += 1
                if end - start >= 2:
                    runs[first.index] = Run(f"{prefix}{k}–{k + end - start - 1}", tuple(kids[start:end]))
            start = end
    return runs


def folded_away(s: Summary, runs: dict[int, Run]) -> set[int]:
    """Record indices not shown when ``runs`` fold: every block but the first, with its calls."""
    sub = _subtrees(s)
    return {i for run in runs.values() for b in run.blocks[1:] for i in sub[b]}
