"""The backward pass of a measured step: the loss it starts from and the MACs it runs.

>>> import torch
>>> w = torch.ones(4, 3, requires_grad=True)
>>> seen = []
>>> loss = loss_of({"out": torch.ones(2, 4) @ w})     # the sum of the output's floating tensors
>>> with BackwardMacCounter(lambda op, macs: seen.append((op, macs))):
...     loss.backward()
>>> seen                                               # grad of w: [4, 2] @ [2, 3] = 4*2*3 MACs
[('aten.mm', 24)]
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils import _pytree as pytree
from torch.utils import flop_counter as _tfc

from .._analysis.flops import MacCounter

Tensor = torch.Tensor


class BackwardMacCounter(MacCounter):
    """A :class:`MacCounter` that also knows torch's backward formulas (``convolution_backward``,
    the attention backwards; FLOPs // 2) and the CPU flash-attention backward (4 products of the
    forward's sizes: ``sdpa_backward_flop_count`` / 2). A linear layer's backward reaches dispatch
    as ``mm`` and is counted by the forward formulas."""

    def __init__(self, on_op: Any) -> None:
        super().__init__(on_op)
        for target, fn in _tfc.flop_registry.items():
            name = getattr(target, "_qualified_op_name", None)
            if isinstance(name, str) and "backward" in name:
                self._formulas[name] = (lambda a, k, o, _fn=fn: _fn(*a, out_val=o, **k) // 2, False)

        def cpu_flash_backward(args: tuple, kwargs: dict, out: Any) -> int:
            return _tfc.sdpa_backward_flop_count(args[0].shape, args[1].shape, args[2].shape, args[3].shape) // 2

        self._formulas["aten::_scaled_dot_product_flash_attention_for_cpu_backward"] = (cpu_flash_backward, False)


def loss_of(out: Any) -> Tensor:
    """The sum of every floating output tensor that requires grad (a scalar).

    Raises:
        RuntimeError: no output tensor requires grad (reported as a failed backward).
    """
    leaves = [t for t in pytree.tree_leaves(out) if isinstance(t, Tensor) and t.requires_grad
              and (t.dtype.is_floating_point or t.dtype.is_complex)]
    if not leaves and hasattr(out, "__dict__"):
        leaves = [t for t in pytree.tree_leaves(list(vars(out).values()))
                  if isinstance(t, Tensor) and t.requires_grad and t.dtype.is_floating_point]
    if not leaves:
        raise RuntimeError("the model's output holds no floating tensor that requires grad, so there is nothing to "
                           "backpropagate (expected a differentiable output)")
    loss = leaves[0].sum()
    for t in leaves[1:]:
        loss = loss + t.sum().to(loss.dtype)
    return loss
