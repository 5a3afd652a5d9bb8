"""Packed-integer weight layouts (GPTQ, AWQ) from tensor shapes alone: no torch, no data read.

Used by :mod:`netsummary._analysis.quantized` for live modules and by ``netsummary inspect`` for
checkpoints, which must not import torch.

**The layouts.** A GPTQ layer (auto-gptq / optimum / transformers' ``GPTQConfig``, exllama
kernels) holds ``qweight`` int32 ``[in × bits / 32, out]`` (the weight's input axis packed:
each int32 word holds ``32 / bits`` values, 8 for 4 bits), ``qzeros`` int32
``[groups, out × bits / 32]``, ``scales`` float16 ``[groups, out]`` and ``g_idx`` int32 ``[in]``
(the group of each input row); ``groups = in / group_size``. An AWQ layer (autoawq's
``WQLinear_GEMM``) packs the output axis instead: ``qweight`` int32 ``[in, out × bits / 32]``,
``qzeros`` int32 ``[groups, out × bits / 32]``, ``scales`` float16 ``[groups, out]``. In both,
``qweight`` holds ``in × out × bits / 32`` words, so the float layer's weight had

    logical elements = qweight words × 32 / bits

(``[128, 32]`` int32 at 4 bits: 4,096 words × 8 = 32,768 = 1,024 in × 32 out). ``qzeros``,
``scales`` and ``g_idx`` are the quantization state, not parameters of the float model.

**The bits.** From the model's ``quantization_config`` (``bits`` for GPTQ, ``w_bit`` / ``bits``
for AWQ) when known; otherwise inferred from the shapes: ``qzeros`` packs ``out`` zero points per
group into ``out × bits / 32`` words and ``scales`` has ``out`` columns, so

    bits = 32 × qzeros.shape[-1] / scales.shape[-1]

(``qzeros [8, 4]``, ``scales [8, 32]``: 32 × 4 / 32 = 4 bits). Without ``qzeros`` (or with a
``qweight`` that is not int32) the bits cannot be inferred and the logical count is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

WORD_BITS = 32  # bits of the int32 words GPTQ and AWQ pack into
BITS = (2, 3, 4, 8)  # the bit widths GPTQ and AWQ kernels pack
STATE_NAMES = ("qzeros", "scales", "g_idx")  # a packed layer's quantization state (not parameters)


@dataclass(frozen=True, slots=True)
class PackedLayout:
    """A packed layer's logical size, from shapes.

    ``logical`` is the float weight's element count (``in × out``), ``bits`` the bits per value,
    ``layout`` ``"GPTQ"`` (input axis packed), ``"AWQ"`` (output axis packed) or ``"packed"``
    (neither could be told), ``bits_from`` ``"config"`` or ``"shapes"`` (inferred, see the
    module docstring).
    """

    logical: int
    bits: int
    layout: str
    bits_from: str


def infer_bits(qzeros_shape: tuple[int, ...] | None, scales_shape: tuple[int, ...] | None) -> int | None:
    """Bits per value from ``qzeros`` and ``scales`` shapes: ``32 × qzeros[-1] / scales[-1]``.

    >>> infer_bits((8, 4), (8, 32))      # 32 * 4 / 32
    4
    >>> infer_bits((8, 3), (8, 32))      # 3-bit: 32 * 3 / 32
    3
    >>> infer_bits(None, (8, 32)) is None
    True
    """
    if not qzeros_shape or not scales_shape or not scales_shape[-1]:
        return None
    words, out = qzeros_shape[-1], scales_shape[-1]
    if (WORD_BITS * words) % out:
        return None
    bits = WORD_BITS * words // out
    return bits if bits in BITS else None


def packed_layout(qweight_shape: tuple[int, ...], qweight_dtype: str, qzeros_shape: tuple[int, ...] | None,
                  scales_shape: tuple[int, ...] | None, bits: int | None = None) -> PackedLayout | None:
    """The logical size of a GPTQ/AWQ layer, or ``None`` when it cannot be told exactly.

    ``qweight_dtype`` is the dtype's name without ``torch.`` (``"int32"``); ``bits`` from the
    model's ``quantization_config`` when known, else inferred (:func:`infer_bits`). The result
    must be consistent: the logical count a whole number and a multiple of ``scales``' columns.

    >>> packed_layout((128, 32), "int32", (8, 4), (8, 32))       # GPTQ 4-bit: 1,024 in x 32 out
    PackedLayout(logical=32768, bits=4, layout='GPTQ', bits_from='shapes')
    >>> packed_layout((1024, 4), "int32", (8, 4), (8, 32))       # AWQ 4-bit, the same layer
    PackedLayout(logical=32768, bits=4, layout='AWQ', bits_from='shapes')
    """
    bits_from = "config"
    if bits is None:
        bits, bits_from = infer_bits(qzeros_shape, scales_shape), "shapes"
    if qweight_dtype != "int32" or bits not in BITS or len(qweight_shape) != 2:
        return None
    words = prod(qweight_shape)
    if (words * WORD_BITS) % bits:
        return None
    logical = words * WORD_BITS // bits
    out = scales_shape[-1] if scales_shape else None
    if out is not None and (not out or logical % out):
        return None
    layout = "packed"
    if out is not None:
        if qweight_shape[1] == out and (qweight_shape[0] * WORD_BITS) % bits == 0:
            layout = "GPTQ"
        elif qweight_shape[1] * WORD_BITS == out * bits:
            layout = "AWQ"
    return PackedLayout(logical, bits, layout, bits_from)


def config_bits(config: object) -> int | None:
    """The bits of a ``quantization_config`` (a dict from ``config.json`` /
    ``quantize_config.json``): ``bits`` (GPTQ) or ``w_bit`` (AWQ); ``None`` if absent or not one of
    :data:`BITS`.

    >>> config_bits({"quant_method": "gptq", "bits": 4, "group_size": 128})
    4
    >>> config_bits({"quantization_config": {"quant_method": "awq", "w_bit": 4}})
    4
    >>> config_bits({"bits": True}) is None
    True
    """
    if not isinstance(config, dict):
        return None
    inner = config.get("quantization_config")
    if isinstance(inner, dict):
        config = inner
    for key in ("bits", "w_bit"):
        value = config.get(key)
        if type(value) is int and value in BITS:
            return value
    return None
