"""Meta stand-ins of the user's tensors built from their metadata, never through their own methods.

A tensor subclass may override ``.to()`` with side effects on shared state: bitsandbytes'
``Params4bit.to("meta")`` moves the layer's ``QuantState`` (its ``absmax``, code book, nested
state) to the target device **in place**, so that a fake stand-in built through it would leave
the user's quantization state holding fake tensors. For such parameters the stand-in is a plain
``torch.empty_strided(size, stride, dtype=..., device="meta")``: the same shape, strides and
dtype, and nothing of the original is touched. Wrapper subclasses that do not override a
Parameter's ``.to`` (torchao's tensor subclasses, DTensor) keep their own conversion, which
builds a new wrapper and leaves the original alone.
"""

from __future__ import annotations

import torch
from torch import nn

_PLAIN_TO = (torch.Tensor.to, nn.Parameter.to)


def overrides_to(t: torch.Tensor) -> bool:
    """Whether ``t`` is a Parameter subclass whose class defines its own ``.to`` (bitsandbytes'
    ``Params4bit`` / ``Int8Params``).

    >>> overrides_to(nn.Parameter(torch.zeros(2)))
    False
    >>> class P(nn.Parameter):
    ...     def to(self, *a, **k): raise AssertionError("never called")
    >>> overrides_to(P(torch.zeros(2)))
    True
    """
    return isinstance(t, nn.Parameter) and type(t) is not nn.Parameter and getattr(type(t), "to", None) not in _PLAIN_TO


def meta_stand_in(t: torch.Tensor) -> torch.Tensor:
    """A plain meta tensor with ``t``'s shape, strides, dtype and ``requires_grad`` (elements: as
    many as ``t``'s storage view; no memory). ``t`` is only read, never called.

    >>> s = meta_stand_in(torch.zeros(3, 4).t())
    >>> s.device.type, tuple(s.shape), s.stride(), s.dtype
    ('meta', (4, 3), (1, 4), torch.float32)
    """
    s = torch.empty_strided(tuple(t.shape), t.stride(), dtype=t.dtype, device="meta")
    if t.requires_grad and (t.dtype.is_floating_point or t.dtype.is_complex):
        s.requires_grad_(True)
    return s
