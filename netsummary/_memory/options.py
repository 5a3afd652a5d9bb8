"""Checks of ``summary()``'s memory keywords, made before any forward runs (no heavy imports)."""

from __future__ import annotations

from typing import Any

import torch

from .._errors import InputSpecError, InputTypeError
from .estimate import KINDS


def check_kind(kind: Any) -> str | None:
    """``estimate=``'s value: ``"train"``, ``"inference"`` or ``None``.

    Raises:
        InputSpecError: any other value.
    """
    if kind is None or (isinstance(kind, str) and kind in KINDS):
        return kind
    raise InputSpecError(f"estimate: expected 'train', 'inference' or None, got {kind!r}", kind)


def check_autocast(dtype: Any) -> torch.dtype | None:
    """``autocast=``'s value: ``None`` or a floating ``torch.dtype`` (``torch.bfloat16``).

    Raises:
        InputTypeError: not a floating torch.dtype.
    """
    if dtype is None or (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        return dtype
    raise InputTypeError(f"autocast: expected None or a floating torch.dtype such as torch.bfloat16, got {dtype!r}", dtype)
