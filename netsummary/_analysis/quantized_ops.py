"""MACs of quantized linear operators, which ``torch.utils.flop_counter`` has no formula for.

Each is a linear layer: ``rows × N × K`` multiply-accumulates (FLOPs = 2 × MACs), the formula of
``aten::linear``, with the shapes read from each operator's own schema (``torch.ops.quantized``
in torch, ``torch.ops.bitsandbytes`` registered by bitsandbytes). Used by
:mod:`netsummary._analysis.flops`; nothing here imports bitsandbytes.
"""

from __future__ import annotations

from math import prod
from typing import Any

import torch


def _rows(a: torch.Tensor) -> int:
    return a.numel() // a.shape[-1] if a.shape[-1] else 0


def _packed_linear(args: tuple, kwargs: dict, out: Any) -> int:
    """``quantized::linear_dynamic(Tensor X, W_prepack, ...)`` and its kin: X ``[.., K]`` and
    the output ``[.., N]`` give ``rows × N × K`` (the packed weight is ``[N, K]``)."""
    return out.numel() * args[0].shape[-1]


def _bnb_4bit_mm(args: tuple, kwargs: dict, out: Any) -> int:
    """``bitsandbytes::gemv_4bit`` / ``gemm_4bit(Tensor A, Tensor B, int[] shapeB, ...)``: A
    ``[.., K]``, the unpacked weight ``shapeB = [N, K]``: ``rows × N × K``."""
    return _rows(args[0]) * prod(args[2])


def _bnb_int8_mm(args: tuple, kwargs: dict, out: Any) -> int:
    """``bitsandbytes::int8_scaled_mm`` / ``int8_linear_matmul(Tensor A, Tensor B, ...)``: A
    ``[.., K]``, B ``[N, K]``: ``rows × N × K``."""
    return _rows(args[0]) * args[1].shape[0] * args[1].shape[-1]


def _bnb_int8_mixed(args: tuple, kwargs: dict, out: Any) -> int:
    """``bitsandbytes::int8_mixed_scaled_mm(Tensor A, Tensor CA, Tensor CB, ...)``: CB ``[N, K]``."""
    return _rows(args[0]) * args[2].shape[0] * args[2].shape[-1]


#: Qualified operator name -> formula (args, kwargs, out) -> MACs.
FORMULAS = {
    **{f"quantized::{n}": _packed_linear for n in ("linear", "linear_relu", "linear_dynamic", "linear_relu_dynamic",
                                                   "linear_dynamic_fp16", "linear_relu_dynamic_fp16")},
    "bitsandbytes::gemv_4bit": _bnb_4bit_mm, "bitsandbytes::gemm_4bit": _bnb_4bit_mm,
    "bitsandbytes::int8_scaled_mm": _bnb_int8_mm, "bitsandbytes::int8_linear_matmul": _bnb_int8_mm,
    "bitsandbytes::int8_mixed_scaled_mm": _bnb_int8_mixed,
}
