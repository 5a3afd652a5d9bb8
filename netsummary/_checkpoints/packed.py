"""GPTQ / AWQ packed layers in a checkpoint: logical parameters from ``qweight``, state apart.

A checkpoint saved from a GPTQ or AWQ model holds, per linear layer ``P``, ``P.qweight`` (int32
words packing ``32 / bits`` values each: 8 at 4 bits), ``P.qzeros``, ``P.scales`` and (GPTQ)
``P.g_idx`` (see :mod:`netsummary._analysis.packing` for both layouts). Counting their elements
as parameters is wrong twice: ``qweight`` has ``bits / 32`` of the float layer's elements, and
``qzeros`` / ``scales`` / ``g_idx`` are quantization state, not parameters. Here:

* ``P.qweight`` counts ``words × 32 / bits`` parameters (the float layer's ``in × out``);
* ``P.qzeros``, ``P.scales``, ``P.g_idx`` count no parameters: their bytes are the
  quantization state (``CheckpointSummary.quant_state_bytes``);
* the bits come from a ``quantize_config.json`` (auto-gptq, autoawq) or the
  ``quantization_config`` of a ``config.json`` (transformers) next to the checkpoint, when one
  is there and says them (``bits``, ``w_bit``); otherwise they are inferred from the shapes of
  ``qzeros`` and ``scales`` (``bits = 32 × qzeros[-1] / scales[-1]``), and the report says so;
* where the config's bits contradict the shapes (the shapes determine the bits when ``qzeros``
  and ``scales`` are there, or a GPTQ ``g_idx`` gives the input size: ``bits = qweight words ×
  32 / (g_idx length × scales[-1])``), the shapes win: a config beside the file may belong to
  another export, the tensors are what the file holds. The layer is counted at the shapes' bits
  and named in ``conflicts`` (a note in the inspect output);
* a ``qweight`` whose bits can be neither read nor inferred counts no parameters and is named
  in ``quant_unknown``: its bytes are still counted, its logical size is not guessed.

Only JSON text is read (bounded, :data:`~netsummary._safeio.MAX_JSON_BYTES`); no torch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from .._analysis.packing import BITS, STATE_NAMES, WORD_BITS, config_bits, infer_bits, packed_layout
from .._safeio import MAX_JSON_BYTES, read_regular
from .entries import TensorEntry

CONFIG_FILES = ("quantize_config.json", "config.json")  # read next to the checkpoint, in this order


@dataclass(frozen=True, slots=True)
class PackedCheckpoint:
    """What a checkpoint's packed layers stand for.

    ``params``: tensor name -> parameter elements it counts for (``qweight``: logical; state: 0);
    names not in it count their own elements. ``state``: names of the quantization-state tensors.
    ``layouts``: layout name -> number of layers (``{"GPTQ": 2}``). ``bits``: the bit widths
    seen. ``bits_from``: ``"quantize_config.json"``, ``"config.json"`` or ``"qzeros/scales
    shapes"``. ``unknown``: prefixes whose logical count could not be told. ``conflicts``: layers
    whose config bits contradict their shapes (counted at the shapes' bits).
    """

    params: dict[str, int] = field(default_factory=dict)
    state: frozenset[str] = frozenset()
    layouts: dict[str, int] = field(default_factory=dict)
    bits: tuple[int, ...] = ()
    bits_from: str | None = None
    unknown: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()  # "prefix: config says N bits, the shapes say M" (counted at M)


def _config_bits(folder: str) -> tuple[int | None, str | None]:
    for name in CONFIG_FILES:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        try:
            data = json.loads(read_regular(path, MAX_JSON_BYTES, "a quantization config",
                                           lambda why: ValueError(why)).decode("utf-8"))
        except (OSError, ValueError, UnicodeDecodeError, RecursionError):
            continue  # an unreadable config says nothing: the shapes decide
        bits = config_bits(data)
        if bits is not None:
            return bits, name
    return None, None


def find_packed(entries: list[TensorEntry], folder: str) -> PackedCheckpoint | None:
    """The packed layers among ``entries`` (``None`` when there is no ``*.qweight``); ``folder``
    is where a quantization config may lie (the checkpoint's directory)."""
    by_name = {e.name: e for e in entries}
    prefixes = [e.name[: -len("qweight")] for e in entries if e.name == "qweight" or e.name.endswith(".qweight")]
    if not prefixes:
        return None
    bits, source = _config_bits(folder)
    params: dict[str, int] = {}
    state: set[str] = set()
    layouts: dict[str, int] = {}
    seen_bits: set[int] = set()
    unknown = []
    conflicts: list[str] = []
    inferred = False
    for prefix in prefixes:
        qw = by_name[prefix + "qweight"]
        qz, sc = by_name.get(prefix + "qzeros"), by_name.get(prefix + "scales")
        shaped = shape_bits(qw.shape, None if qz is None else qz.shape, None if sc is None else sc.shape,
                            by_name.get(prefix + "g_idx"))
        use = bits
        if bits is not None and shaped is not None and shaped != bits:
            conflicts.append(f"{prefix.rstrip('.') or '(root)'}: {source} says {bits} bits, the shapes say {shaped}")
            use = shaped
        layout = packed_layout(qw.shape, qw.dtype, None if qz is None else qz.shape,
                               None if sc is None else sc.shape, use)
        for n in STATE_NAMES:
            if prefix + n in by_name:
                state.add(prefix + n)
                params[prefix + n] = 0
        if layout is None:
            unknown.append(prefix.rstrip(".") or "(root)")
            params[prefix + "qweight"] = 0
            continue
        inferred |= layout.bits_from == "shapes"
        params[prefix + "qweight"] = layout.logical
        layouts[layout.layout] = layouts.get(layout.layout, 0) + 1
        seen_bits.add(layout.bits)
    bits_from = source if source is not None else ("qzeros/scales shapes" if inferred else None)
    if conflicts:
        bits_from = f"{source}, overridden by the shapes where they disagree"
    return PackedCheckpoint(params, frozenset(state), layouts, tuple(sorted(seen_bits)), bits_from, tuple(unknown),
                            tuple(conflicts))


def shape_bits(qweight_shape: tuple[int, ...], qzeros_shape: tuple[int, ...] | None,
               scales_shape: tuple[int, ...] | None, g_idx: TensorEntry | None) -> int | None:
    """The bits the shapes determine, else ``None``: from ``qzeros`` and ``scales``
    (:func:`~netsummary._analysis.packing.infer_bits`), else from a GPTQ ``g_idx`` (one entry per
    input) and ``scales`` (one column per output): ``words × 32 / (in × out)``.

    >>> shape_bits((16, 128), (2, 32), (2, 128), None)   # 32 * 32 / 128
    8
    >>> shape_bits((16, 128), None, (2, 128), None) is None
    True
    """
    bits = infer_bits(qzeros_shape, scales_shape)
    if bits is not None or g_idx is None or not scales_shape or len(qweight_shape) != 2 or len(g_idx.shape) != 1:
        return bits
    words = qweight_shape[0] * qweight_shape[1]
    elements = g_idx.shape[0] * scales_shape[-1]
    if not elements or (words * WORD_BITS) % elements:
        return None
    bits = words * WORD_BITS // elements
    return bits if bits in BITS else None
