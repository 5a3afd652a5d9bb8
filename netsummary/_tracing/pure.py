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
an entry of ``torch.nn.functional``, ``torch``, ``torch.Tensor``, ``torch._C._nn`` or
``torch._VF`` replaced (``F.relu = ...``, ``torch.layer_norm = ...``, ``Tensor.flatten = ...``)
by code from outside torch (judged by where the code is, ``__code__.co_filename``, never by the
``__module__`` that ``functools.wraps`` copies), a forward hook or backward hook on
any module, a global module hook that is not one of netsummary's own (marked
:data:`~netsummary._tracing.trust.OWN_HOOK`), saved-tensor hooks outside ``"eval"`` (they run user code when the forward
saves a tensor for backward), an active dispatch or ``__torch_function__`` mode (``with
torch.device(...)`` included), a tensor in a module's instance dict under a parameter's or
buffer's name or as a plain ``weight`` / ``bias`` / running-statistics attribute (it would be read
instead), a recurrent layer whose flat weights are not its registered parameters, a tensor that is not a plain strided tensor on a real device (tensor subclasses,
quantized or sharded weights, meta), BatchNorm, Dropout or a recurrent layer in training mode
(they write running statistics or draw), ``nn.Embedding(max_norm=...)`` (renormalizes its weight in place), an
in-place activation given inputs the caller passed in (it would write them), or a class whose
``forward`` was replaced (checked by its defining module and name), complex tensors (a complex
convolution runs as three real ones) and forward-mode AD (tangents run operators of their own).

Trust is by identity and exact type: a namespace entry is compared with the imported one by
``is`` (a replacement may define ``==``), and a callable passes only as a Python function in
torch's files, C code, or an object of a class of torch's (a ``wrapt`` proxy forwards
``__code__``; ``type()`` cannot be faked). What each stock class's forward reaches by name (its
methods, the module globals and ``F`` entries it and the functions it calls read) is recorded
with the class's verdict and checked again at every paused call: a patch made inside the forward
(``mock.patch.object(F, "linear", ...)`` in a user's block) keeps the leaf watched. On a
known-pure forward the tracer puts the write watch (and the MAC counter) on at the first call
that finds a hook registered since the forward was judged, a batch norm switched to training,
or a class's bindings changed (:meth:`netsummary._tracing.guard.ModelGuard.watch_from_here`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree

from .trust import (MODULE_METHODS, forward_ad_active, global_hooks_own, module_stock, namespaces_stock, reached,
                    still_bound, torch_own)

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
_EVAL = EVAL_ONLY = frozenset(_EVAL_ONLY)  # stock only in eval mode (the tracer checks each call of a pure forward)
_PLAIN = (torch.Tensor, nn.Parameter)


def _stock_forward(cls: type) -> bool:
    f = cls.forward
    return f is _STOCK[cls] and torch_own(f)


def _stock_methods(cls: type) -> frozenset[str] | None:
    """The method names of a stock class and its torch bases when every one of them is still
    torch's own code (a stock forward calls ``self._conv_forward``, ``self._check_input_dim``,
    ``self.check_forward_args``...), else ``None``. ``nn.Module`` itself is checked by
    :func:`module_stock` (libraries add methods to it: transformers' ``smart_apply``)."""
    names = set(MODULE_METHODS)
    for c in cls.__mro__[:-2]:  # the class and its bases up to, not including, nn.Module
        for name, value in vars(c).items():
            # any descriptor or callable (a partialmethod, a data descriptor set on the class)
            getter = getattr(type(value), "__get__", None)
            if callable(value) or getter is not None:
                if not torch_own(value) or (getter is not None and not torch_own(getter)):
                    return None
                names.add(name)
    return frozenset(names)


def _global_state_stock(device: torch.device, mode: str) -> bool:
    """Nothing outside the model can run code inside a stock forward: no dispatch or
    ``__torch_function__`` mode, no foreign global hook, ``torch.nn.functional`` and ``nn.Module``
    as imported, no saved-tensor hooks outside ``"eval"``; and the device is a real one."""
    if device.type == "meta" or torch._C._len_torch_dispatch_stack() or torch._C._len_torch_function_stack():
        return False
    if forward_ad_active():  # dual tensors: the tangents run matmuls of their own
        return False
    if not global_hooks_own() or not namespaces_stock() or not module_stock():
        return False
    saved_hooks = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    # saved-tensor hooks (torch.autograd.graph.saved_tensors_hooks) run user code
    return mode == "eval" or (saved_hooks is not None and saved_hooks(False) is None)


def _module_pure(m: nn.Module, methods: dict[type, Any], mode: str, fresh_inputs: bool, recheck: bool = False) -> bool:
    """One module's own call is known-pure (the per-module conditions of the module docstring);
    ``methods`` caches each class's verdict: ``(method names, what its forward reaches by name)``,
    or ``None`` for a class that is not stock. With ``recheck`` (at each call, in the forward),
    what the forward reaches is checked again: a patch made after the verdict."""
    cls = type(m)
    if cls in methods:
        verdict = methods[cls]
    else:
        names = _stock_methods(cls) if cls in _STOCK and _stock_forward(cls) else None
        refs = reached(cls) if names is not None else None
        verdict = methods[cls] = None if refs is None else (names, refs)
    if verdict is None:
        return False
    names, refs = verdict
    if recheck and not still_bound(refs):  # replaced since the verdict (in the forward, or by another thread)
        return False
    d = m.__dict__
    if type(d["_parameters"]) is not dict or type(d["_buffers"]) is not dict or type(d["_modules"]) is not dict:
        return False  # a mapping whose reads run code (ZeRO-3 style)
    if (d["_forward_hooks"] or d["_forward_pre_hooks"] or d["_backward_hooks"] or d["_backward_pre_hooks"]
            or not names.isdisjoint(d)):  # a method set on the instance (forward, _conv_forward, ...)
        return False
    if cls in _EVAL and mode != "eval":
        return False
    if (not fresh_inputs and d.get("inplace")) or (cls is nn.Embedding and m.max_norm is not None):
        return False
    if not _SHADOWED.isdisjoint(d) and any(isinstance(d.get(n), torch.Tensor) for n in _SHADOWED):
        return False  # a tensor set as a plain attribute: the forward reads it instead (RNNs keep a bool bias)
    if cls in _RECURRENT and not _flat_weights_registered(m, d):
        return False
    plain, strided = _PLAIN, torch.strided
    for name, t in d["_parameters"].items():
        if t is not None and (type(t) not in plain or t.layout != strided or t.is_meta or name in d or t.is_complex()):
            return False  # (a tensor of that name in the instance dict would shadow it; a complex
            # convolution runs as three real ones, which its shape formula does not count)
    for name, t in d["_buffers"].items():
        if t is not None and (type(t) not in plain or t.layout != strided or t.is_meta or name in d):
            return False
    return True


# the tensor attributes stock forwards read; in a stock module they live in _parameters /
# _buffers, never in the instance dict (``del lin.weight; lin.weight = t`` puts one there)
_SHADOWED = frozenset({"weight", "bias", "running_mean", "running_var", "num_batches_tracked"})
_RECURRENT = frozenset({nn.RNN, nn.LSTM, nn.GRU})


def _flat_weights_registered(m: nn.Module, d: dict) -> bool:
    """A recurrent layer's forward runs on ``_flat_weights``: each must be its registered parameter."""
    names, weights, params = d.get("_flat_weights_names"), d.get("_flat_weights"), d["_parameters"]
    return (isinstance(names, list) and isinstance(weights, list) and len(names) == len(weights)
            and all(n not in d and w is params.get(n) for n, w in zip(names, weights)))


def pure_forward(named: Iterable[tuple[str, nn.Module]], inputs: Any, fresh_inputs: bool,
                 device: torch.device, mode: str, verdicts: dict[type, Any] | None = None) -> bool:
    """Whether the forward of these modules on ``inputs`` is known-pure (see the module docstring).

    ``fresh_inputs``: the inputs were generated by the summary (an in-place activation may then
    write them). ``mode``: the summary's mode; BatchNorm and Dropout are pure only with
    ``"eval"`` (every module then runs in eval mode; with ``"same"`` the flags are read only
    once the guard holds the model, too late for this decision, so they count as training).
    Checked once, before the forward; each module costs a few attribute reads. ``verdicts``, when
    given, receives each class's verdict (the bindings :func:`bindings_check` holds the forward to).
    """
    if not _global_state_stock(device, mode):
        return False
    for leaf in pytree.tree_leaves(inputs):
        if isinstance(leaf, torch.Tensor) and (type(leaf) is not torch.Tensor or leaf.layout != torch.strided
                                               or leaf.is_complex()):
            return False
    methods: dict[type, Any] = {} if verdicts is None else verdicts
    return all(_module_pure(m, methods, mode, fresh_inputs) for _, m in named)


def pure_leaves(named: Iterable[tuple[str, nn.Module]], device: torch.device, mode: str) -> frozenset[int]:
    """Ids of the leaf modules (no children) whose own call is known-pure, in a forward that is not
    as a whole: the tracer pauses the write watch or MAC counter inside their calls and takes
    their MACs from the shapes (:data:`netsummary._analysis.flops.SHAPE_MACS`), as on the
    known-pure path. Empty when anything global could run other code (:func:`pure_forward`'s
    global conditions, checked once, before the forward). Never qualify: in-place layers (their
    input may be a model tensor) and the recurrent layers (their ``hx`` may come as a keyword,
    which the tracer's pre-hook cannot see). Batch norm and dropout qualify in any mode here:
    the tracer checks each call again (:func:`still_pure`)."""
    if not _global_state_stock(device, mode):
        return frozenset()
    methods: dict[type, Any] = {}
    return frozenset(id(m) for _, m in named
                     if not m._modules and type(m) not in _RECURRENT and _module_pure(m, methods, "eval", False))


def pure_call_check() -> Callable[[nn.Module], bool]:
    """The tracer's check at each call of a leaf from :func:`pure_leaves`, whose pre-forward state
    the model's own forward may have changed since: still a stock class and forward, no hook, no
    method or tensor set on the instance, plain tensors, and not training where that writes or
    draws (a ``train()`` override keeping dropout on under ``mode="eval"``, a forward switching
    a batch norm to training). What the module cannot show (a mode or hook entered inside the
    forward) the tracer checks itself."""
    methods: dict[type, Any] = {}

    def check(m: nn.Module) -> bool:
        return _module_pure(m, methods, "train" if m.training else "eval", False, recheck=True)

    return check


def bindings_check(verdicts: dict[type, Any]) -> Callable[[nn.Module], bool]:
    """The tracer's check at each call of a known-pure forward: what the module's class's forward
    reaches by name (:func:`~netsummary._tracing.trust.reached`) is still bound as when
    :func:`pure_forward` gave ``verdicts`` (another thread patching ``F.linear`` or a class's
    ``forward`` since): the tracer then puts the watch and the MAC counter on. A class without a
    verdict there was not judged: it fails."""

    def check(m: nn.Module) -> bool:
        got = verdicts.get(type(m))
        return got is not None and still_bound(got[1])

    return check
