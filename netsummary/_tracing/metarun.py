"""A meta model's forward on plain meta stand-ins, where that does what fake stand-ins would do.

On ``meta`` the summary's forward never runs on the model's own tensors but on stand-ins of them
(:func:`~netsummary._tracing.forward.run_forward`). ``FakeTensorMode`` stand-ins work for every
model, at the cost of torch's fake dispatch on each operator (a Llama-2-70B-shaped config at 128
tokens: about 14,000 operators, 2.3 s here, against 1.1 s for the same forward on plain meta
tensors). Where every operator of the forward takes and gives meta tensors only, the two runs go
through the same meta kernels and record the same calls, shapes and MACs, so
:func:`plain_meta_forward` tries the plain run first:

- stand-ins are new meta tensors of each parameter's, buffer's and input's shape, strides, dtype
  and ``requires_grad``, of the kind the fake run's are (a meta Parameter's stand-in is a
  Parameter; a tensor on another device is ``.to("meta")``'s plain copy), swapped in by
  ``functional_call`` with tied weights kept tied; the user's tensors are never touched, their
  version counters included;
- :class:`_MetaOnly`, a dispatch mode on top of the stack, refuses the run at the first operator
  that would read or make a tensor that is not on ``meta`` (a CPU tensor the forward builds, a
  factory function without ``device="meta"``; checked *before* a random operator draws from a
  global generator) and marks the run failed on any operator that raises (a data-dependent
  ``.item()``, an operator without a meta kernel), even one the model then catches;
- a run that was refused or failed leaves no trace in the summary: the tracer forgets its calls
  and the caller runs the fake forward as before, so the summary and its error report are the
  fake run's (a forward that raises on fake tensors too reports that error, as before).

The plain run is tried only where nothing else could tell the two apart: every parameter,
buffer and input tensor a plain strided ``torch.Tensor`` / ``nn.Parameter`` (no subclass with
its own dispatch, no input requiring grad), no ``TorchFunctionMode`` (``torch.device("meta")``
as a context manager is one) and no dispatch mode but netsummary's own on the stack; the caller
also leaves out lazy copies, FSDP views and MoE grouped-matmul stand-ins.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode, _get_current_dispatch_mode_stack

from .standins import meta_stand_in

Tensor = torch.Tensor
_PLAIN = (Tensor, nn.Parameter)

#: what :func:`plain_meta_forward` returns when the plain run was refused or failed
FAILED = object()


class _Refused(Exception):
    """Raised into the forward at an operator that is not meta-only (see :class:`_MetaOnly`)."""


def _meta_only(values: Any) -> bool:
    """Every tensor in ``values`` (a flat sequence, lists and tuples one level down: ``cat``'s
    tensors) is on ``meta``."""
    for v in values:
        if isinstance(v, Tensor):
            if not v.is_meta:
                return False
        elif type(v) in (list, tuple):
            for t in v:
                if isinstance(t, Tensor) and not t.is_meta:
                    return False
    return True


class _MetaOnly(TorchDispatchMode):
    """Runs each operator; sets :attr:`failed` (and raises :class:`_Refused` into the forward)
    at one that takes a tensor not on ``meta``, would make one (a factory without
    ``device="meta"``), or gives one; sets it too where an operator raises."""

    supports_higher_order_operators = True

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # no torch._dynamo import on the first operator (see flops.MacCounter)

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if not _meta_only(args) or not _meta_only(kwargs.values()) or (
                "device" in kwargs and torch.device(kwargs["device"] or "cpu").type != "meta"):
            self.failed = True
            raise _Refused(f"{func} on a tensor or device other than meta")
        if not any(isinstance(a, Tensor) or type(a) in (list, tuple) for a in args) and "device" not in kwargs:
            # a factory without a device argument makes its tensor on the default device
            schema = getattr(func, "_schema", None)
            if schema is None or any(a.name == "device" for a in schema.arguments):
                self.failed = True
                raise _Refused(f"{func} without device='meta'")
        try:
            out = func(*args, **kwargs)
        except BaseException:
            self.failed = True
            raise
        if isinstance(out, Tensor):
            if not out.is_meta:
                self.failed = True
                raise _Refused(f"{func} gave a tensor on {out.device}")
        elif type(out) in (list, tuple) and not _meta_only(out):
            self.failed = True
            raise _Refused(f"{func} gave a tensor not on meta")
        return out


def plain_meta_ok(model: nn.Module, inputs: Any, own_modes: tuple[Any, ...]) -> bool:
    """Whether the plain run may be tried (see the module docstring): plain strided tensors only,
    no input requiring grad, no ``TorchFunctionMode``, no dispatch mode outside ``own_modes``."""
    if torch._C._len_torch_function_stack() or any(m not in own_modes for m in _get_current_dispatch_mode_stack()):
        return False
    for t in (*model.parameters(), *model.buffers()):
        if type(t) not in _PLAIN or t.layout != torch.strided:
            return False
    for leaf in pytree.tree_leaves(inputs):
        if isinstance(leaf, Tensor) and (type(leaf) is not Tensor or leaf.layout != torch.strided
                                         or leaf.requires_grad):
            return False
    return True


def _stand_in(t: Tensor) -> Tensor:
    """What the fake run's stand-in of ``t`` is, on plain meta: a meta tensor's copy keeps it a
    Parameter (as ``FakeTensorMode.from_tensor`` does); any other tensor is ``t.to("meta")`` (a
    plain tensor, a Parameter's included, as in the fake run)."""
    if not t.is_meta:
        return t.to("meta")
    s = meta_stand_in(t)
    return nn.Parameter(s, requires_grad=s.requires_grad) if isinstance(t, nn.Parameter) else s


def plain_meta_forward(model: nn.Module, args: tuple, kwargs: dict) -> Any:
    """``model(*args, **kwargs)`` on plain meta stand-ins of its tensors and inputs, or
    :data:`FAILED` when the run was refused or an operator raised (the caller then runs the fake
    forward). ``KeyboardInterrupt`` is raised as it came. The caller checks :func:`plain_meta_ok`
    first."""
    stand_ins = {name: _stand_in(t) for name, t in [*model.named_parameters(), *model.named_buffers()]}
    args, kwargs = pytree.tree_map_only(Tensor, _stand_in, (args, kwargs))
    check = _MetaOnly()
    try:
        with check:
            out = torch.func.functional_call(model, stand_ins, args, kwargs, tie_weights=True, strict=False)
    except Exception:
        return FAILED
    return FAILED if check.failed else out
