"""A meta model's forward on plain meta stand-ins, switching to fake tensors where it must.

On ``meta`` the summary's forward never runs on the model's own tensors but on stand-ins of them
(:func:`~netsummary._tracing.forward.run_forward`). ``FakeTensorMode`` stand-ins work for every
model, at the cost of torch's fake dispatch on each operator (a Llama-2-70B-shaped config at 128
tokens: about 14,000 operators, 2.3 s here, against 1.1 s for the same forward on plain meta
tensors). An operator whose tensors are all on meta runs the same meta kernel either way and
gives a tensor of the same shape, strides and dtype, so :func:`plain_meta_forward` runs the
forward on plain meta stand-ins and hands an operator to a ``FakeTensorMode`` only where the
fake run would do something else with it:

- stand-ins are new meta tensors of each parameter's, buffer's and input's shape, strides, dtype
  and ``requires_grad``, of the kind the fake run's are (a meta Parameter's stand-in is a
  Parameter; a tensor on another device is ``.to("meta")``'s plain copy), swapped in by
  ``functional_call`` with tied weights kept tied; the user's tensors are never touched, their
  version counters included;
- :class:`_MetaFirst`, a dispatch mode on top of the stack, runs each operator on plain meta
  tensors until the first one that reads or makes a tensor that is not on ``meta`` (a CPU
  tensor the forward builds, a factory without ``device="meta"``: checked *before* a random
  operator could draw from a global generator), or raises on meta (a data-dependent ``.item()``,
  an operator without a meta kernel). That operator and every later one run under a
  ``FakeTensorMode``, as the whole forward would have: the model sees the fake run's result or
  error, and its forward runs once;
- a metadata-mutating operator (``resize_``, ``t_``) runs on plain meta only on tensors of the
  run's own (stand-ins and operator outputs); on any other tensor (a meta tensor the model keeps
  as a plain attribute) it runs under the fake mode, which refuses it as the fake run did;
- a forward that raises is run again on fake stand-ins from the start (the tracer forgets the
  first run's calls), so the error report is the fake run's. What the first run did to the model
  the way any forward would (an attribute it sets, a count of its own calls) then stays, as
  after two forwards.

What no operator shows can still differ from a fake run: a forward that asks whether a tensor
is a ``FakeTensor``, converts one to NumPy (``TypeError`` on meta, ``RuntimeError`` on a fake
tensor), reads a view's ``storage_offset()`` (the stand-ins are not views), or converts its own
layers (``.half()``: torch swaps fake stand-ins, which fails, and assigns plain ones).

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
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode, _get_current_dispatch_mode_stack

from .fakelog import quiet_fake_tensor_logs
from .standins import meta_stand_in

Tensor = torch.Tensor
_PLAIN = (Tensor, nn.Parameter)

#: what :func:`plain_meta_forward` returns when the forward raised (the caller runs the fake forward)
FAILED = object()


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


def _tensors(values: Any) -> list[Tensor]:
    return [t for t in pytree.tree_leaves(values) if isinstance(t, Tensor)]


class _MetaFirst(TorchDispatchMode):
    """Runs each operator on plain meta tensors while that gives what a fake run gives, and from
    the first one that does not, under a ``FakeTensorMode`` (see the module docstring).
    ``ours``: id -> tensor of the run's own tensors (the stand-ins; operator outputs are added;
    held, so that no id is reused). :attr:`fake` is the fake mode once the run switched to it."""

    supports_higher_order_operators = True

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # no torch._dynamo import on the first operator (see flops.MacCounter)

    def __init__(self, ours: dict[int, Tensor]) -> None:
        super().__init__()
        self._ours = ours
        self.fake: FakeTensorMode | None = None

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if torch.Tag.inplace_view in getattr(func, "tags", ()):
            ours = self._ours
            if all(type(t) in _PLAIN and id(t) in ours for t in _tensors((args, kwargs))):
                return func(*args, **kwargs)  # a stand-in's or an output's metadata: as on a fake one
            return self._faked(func, args, kwargs)
        if self.fake is not None or not self._plain(func, args, kwargs):
            return self._faked(func, args, kwargs)
        try:
            out = func(*args, **kwargs)
        except Exception:
            return self._faked(func, args, kwargs)  # the fake run's result or error instead
        ours = self._ours
        if isinstance(out, Tensor):
            if not out.is_meta:
                return self._faked(func, args, kwargs)  # ran on meta inputs: nothing was read or drawn
            ours[id(out)] = out
        elif type(out) in (list, tuple):
            if not _meta_only(out):
                return self._faked(func, args, kwargs)
            for t in out:
                if isinstance(t, Tensor):
                    ours[id(t)] = t
        return out

    @staticmethod
    def _plain(func: Any, args: tuple, kwargs: dict) -> bool:
        """The operator reads and makes meta tensors only (checked before it runs)."""
        if not _meta_only(args) or not _meta_only(kwargs.values()):
            return False
        if "device" in kwargs:
            return torch.device(kwargs["device"] or "cpu").type == "meta"
        if any(isinstance(a, Tensor) or type(a) in (list, tuple) for a in args):
            return True
        # no tensor argument: a factory without a device argument makes its tensor on the default device
        schema = getattr(func, "_schema", None)
        return schema is not None and not any(a.name == "device" for a in schema.arguments)

    def _faked(self, func: Any, args: tuple, kwargs: dict) -> Any:
        if self.fake is None:
            self.fake = FakeTensorMode(allow_non_fake_inputs=True)
        with self.fake:
            return func(*args, **kwargs)


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
    """``model(*args, **kwargs)`` on plain meta stand-ins of its tensors and inputs (switching to
    fake tensors where it must, see the module docstring), or :data:`FAILED` when the forward
    raised (the caller then runs the fake forward from the start). ``KeyboardInterrupt`` is
    raised as it came. The caller checks :func:`plain_meta_ok` first."""
    stand_ins = {name: _stand_in(t) for name, t in [*model.named_parameters(), *model.named_buffers()]}
    args, kwargs = pytree.tree_map_only(Tensor, _stand_in, (args, kwargs))
    ours = {id(t): t for t in (*stand_ins.values(), *_tensors((args, kwargs)))}
    try:
        with quiet_fake_tensor_logs(), _MetaFirst(ours):
            return torch.func.functional_call(model, stand_ins, args, kwargs, tie_weights=True, strict=False)
    except Exception:
        return FAILED
