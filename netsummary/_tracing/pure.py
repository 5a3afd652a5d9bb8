"""Whether a forward is made only of torch's own stateless layers, so it needs no write watch.

The guard's write watch (:mod:`netsummary._tracing.watch`) and the MAC counter
(:mod:`netsummary._analysis.flops`) are dispatch modes: Python code runs for every operator of the
forward, which on a model of many tiny layers costs more than the forward itself. Neither is
needed when the whole forward is **known-pure**: every module of the model is one of torch's own
layers (the exact class, not a subclass) running torch's own ``forward``, which provably writes no
parameter or buffer and draws no random number, and MACs follow from the shapes:

- ``nn.Linear`` and ``nn.Conv1d/2d/3d`` through torch's own formulas applied to the call's
  shapes (:data:`netsummary._analysis.flops.SHAPE_MACS`: the ones the dispatch counter applies
  to the ``addmm`` / ``mm`` / ``convolution`` they run); ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (in
  eval) as rows times their weight matrices' elements, what the counter adds up over their steps
  (a GRU runs its steps as separate operators on CPU: 14,000 of them at 512 steps, each a trip
  through a Python dispatch mode);
- every other allowed layer (activations, pooling, normalization, dropout in eval, ``Flatten``,
  ``Identity``, ``Embedding`` without ``max_norm``, ``Sequential``) runs no matmul-class operator:
  0 MACs.

Tests check these numbers against the dispatch counter on the same layers
(``tests/test_pure.py``). Anything that could run other code turns the fast path off, and the
forward then runs under the watch as always: a module of another class (a user's block, a
parametrized layer), any method set on the instance (``forward``, ``_conv_forward``, ...) or a
method of the class or its bases that is not torch's own code (a patched ``_check_input_dim``),
a ``torch.nn.functional`` entry replaced (``F.relu = ...``), a forward hook or backward hook on
any module, a global module hook that is not one of netsummary's own (marked
:data:`OWN_HOOK`), saved-tensor hooks outside ``"eval"`` (they run user code when the forward
saves a tensor for backward), an active dispatch or ``__torch_function__`` mode (``with
torch.device(...)`` included), a tensor in a module's instance dict under a parameter's or
buffer's name (it would be read instead), a tensor that is not a plain strided tensor on a real device (tensor subclasses,
quantized or sharded weights, meta), BatchNorm, Dropout or a recurrent layer in training mode
(they write running statistics or draw), ``nn.Embedding(max_norm=...)`` (renormalizes its weight in place), an
in-place activation given inputs the caller passed in (it would write them), or a class whose
``forward`` was replaced (checked by its defining module and name).
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _module_globals
from torch.utils import _pytree as pytree

#: The attribute netsummary sets on its own global hook functions (they only record shapes).
OWN_HOOK = "__netsummary_hook__"

_ALWAYS = (
    nn.Sequential, nn.Identity, nn.Flatten, nn.Unflatten, nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Softmax, nn.LogSoftmax,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
    nn.LayerNorm, nn.GroupNorm, nn.Embedding,
)
# (the recurrent layers draw for their between-layer dropout in training; in eval they only read)
_EVAL_ONLY = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
              nn.Dropout3d, nn.AlphaDropout, nn.RNN, nn.LSTM, nn.GRU)
# class -> its forward as torch defines it (checked by where it was defined: a class whose
# forward someone replaced is not stock any more)
_STOCK = {cls: cls.forward for cls in (*_ALWAYS, *_EVAL_ONLY)}
_EVAL = frozenset(_EVAL_ONLY)
_PLAIN = (torch.Tensor, nn.Parameter)


def _stock_forward(cls: type) -> bool:
    f = cls.forward
    return f is _STOCK[cls] and getattr(f, "__module__", "").startswith("torch.nn.modules.")


def _torch_own(value: Any) -> bool:
    """A class attribute or ``torch.nn.functional`` entry that is not Python code from outside
    torch (a patched ``_conv_forward``, a replaced ``F.relu``)."""
    f = getattr(value, "__func__", value)  # staticmethod / classmethod
    if not isinstance(f, types.FunctionType):
        return True
    module = f.__module__ or ""
    return module == "torch" or module.startswith("torch.")


def _stock_methods(cls: type) -> frozenset[str] | None:
    """The method names of a stock class and its torch bases when every one of them is still
    torch's own code (a stock forward calls ``self._conv_forward``, ``self._check_input_dim``,
    ``self.check_forward_args``...), else ``None``. ``nn.Module`` itself is checked by
    :func:`_module_stock` (libraries add methods to it: transformers' ``smart_apply``)."""
    names = set(_MODULE_METHODS)
    for c in cls.__mro__[:-2]:  # the class and its bases up to, not including, nn.Module
        for name, value in vars(c).items():
            if isinstance(value, (types.FunctionType, staticmethod, classmethod)):
                if not _torch_own(value):
                    return None
                names.add(name)
    return frozenset(names)


def _methods_of_module() -> dict[str, Any]:
    return {n: v for n, v in vars(nn.Module).items()
            if isinstance(v, (types.FunctionType, staticmethod, classmethod)) and _torch_own(v)}


# nn.Module's own methods as imported: every module call goes through several of them
_MODULE_METHODS = _methods_of_module()


def _module_stock() -> bool:
    """None of ``nn.Module``'s own methods replaced since import by code outside torch (methods a
    library adds are not torch's, and no stock forward calls them)."""
    now = vars(nn.Module)
    return all(_same_or_torch(v, now.get(n)) for n, v in _MODULE_METHODS.items()) and all(
        _torch_own(now.get(n)) for n in ("__call__", "_call_impl", "_wrapped_call_impl", "__getattr__"))


def _same_or_torch(old: Any, new: Any) -> bool:
    """An entry is as imported, or replaced by torch itself (torch._dynamo wraps
    ``nn.Module.__init__`` once it is imported)."""
    return new is old or (isinstance(getattr(new, "__func__", new), types.FunctionType) and _torch_own(new))


# torch.nn.functional as imported: the stock forwards call F.linear, F.relu, ... through it
_FUNCTIONAL = dict(vars(F))


def _functional_stock() -> bool:
    """No entry of ``torch.nn.functional`` replaced since import by code outside torch, nor holding
    Python code from outside torch."""
    now = vars(F)
    return all(_same_or_torch(v, now.get(n)) for n, v in _FUNCTIONAL.items()) and all(
        _torch_own(v) for v in now.values())


def _global_hooks_own() -> bool:
    g = _module_globals
    for table in (g._global_forward_pre_hooks, g._global_forward_hooks, g._global_backward_hooks,
                  g._global_backward_pre_hooks):
        for hook in table.values():
            if not getattr(hook, OWN_HOOK, False):
                return False
    return True


def _global_state_stock(device: torch.device, mode: str) -> bool:
    """Nothing outside the model can run code inside a stock forward: no dispatch or
    ``__torch_function__`` mode, no foreign global hook, ``torch.nn.functional`` and ``nn.Module``
    as imported, no saved-tensor hooks outside ``"eval"``; and the device is a real one."""
    if device.type == "meta" or torch._C._len_torch_dispatch_stack() or torch._C._len_torch_function_stack():
        return False
    if not _global_hooks_own() or not _functional_stock() or not _module_stock():
        return False
    saved_hooks = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    # saved-tensor hooks (torch.autograd.graph.saved_tensors_hooks) run user code
    return mode == "eval" or (saved_hooks is not None and saved_hooks(False) is None)


def _module_pure(m: nn.Module, methods: dict[type, frozenset[str] | None], mode: str, fresh_inputs: bool) -> bool:
    """One module's own call is known-pure (the per-module conditions of the module docstring);
    ``methods`` caches each class's method names (``None``: not a stock class)."""
    cls = type(m)
    if cls in methods:
        names = methods[cls]
    else:
        names = methods[cls] = _stock_methods(cls) if cls in _STOCK and _stock_forward(cls) else None
    if names is None:
        return False
    d = m.__dict__
    if (d["_forward_hooks"] or d["_forward_pre_hooks"] or d["_backward_hooks"] or d["_backward_pre_hooks"]
            or not names.isdisjoint(d)):  # a method set on the instance (forward, _conv_forward, ...)
        return False
    if cls in _EVAL and mode != "eval":
        return False
    if (not fresh_inputs and d.get("inplace")) or (cls is nn.Embedding and m.max_norm is not None):
        return False
    plain, strided = _PLAIN, torch.strided
    for name, t in d["_parameters"].items():
        if t is not None and (type(t) not in plain or t.layout != strided or t.is_meta or name in d):
            return False  # (a tensor of that name in the instance dict would shadow it)
    for name, t in d["_buffers"].items():
        if t is not None and (type(t) not in plain or t.layout != strided or t.is_meta or name in d):
            return False
    return True


def pure_forward(named: Iterable[tuple[str, nn.Module]], inputs: Any, fresh_inputs: bool,
                 device: torch.device, mode: str) -> bool:
    """Whether the forward of these modules on ``inputs`` is known-pure (see the module docstring).

    ``fresh_inputs``: the inputs were generated by the summary (an in-place activation may then
    write them). ``mode``: the summary's mode; BatchNorm and Dropout are pure only with
    ``"eval"`` (every module then runs in eval mode; with ``"same"`` the flags are read only
    once the guard holds the model, too late for this decision, so they count as training).
    Checked once, before the forward; each module costs a few attribute reads.
    """
    if not _global_state_stock(device, mode):
        return False
    for leaf in pytree.tree_leaves(inputs):
        if isinstance(leaf, torch.Tensor) and (type(leaf) is not torch.Tensor or leaf.layout != torch.strided):
            return False
    methods: dict[type, frozenset[str] | None] = {}
    return all(_module_pure(m, methods, mode, fresh_inputs) for _, m in named)


def pure_leaves(named: Iterable[tuple[str, nn.Module]], device: torch.device, mode: str) -> frozenset[int]:
    """Ids of the leaf modules (no children) whose own call is known-pure, in a forward that is not
    as a whole: the tracer pauses the write watch or MAC counter inside their calls and takes
    their MACs from the shapes (:data:`netsummary._analysis.flops.SHAPE_MACS`), as on the
    known-pure path. In-place layers never qualify (their input may be a model tensor); the
    tracer also requires plain strided tensors as the call's positional inputs. Empty when
    anything global could run other code (:func:`pure_forward`'s global conditions)."""
    if not _global_state_stock(device, mode):
        return frozenset()
    methods: dict[type, frozenset[str] | None] = {}
    return frozenset(id(m) for _, m in named if not m._modules and _module_pure(m, methods, mode, False))
