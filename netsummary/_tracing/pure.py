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
:data:`OWN_HOOK`), saved-tensor hooks outside ``"eval"`` (they run user code when the forward
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
methods, the module globals and ``F`` entries it and the functions it calls read, the attribute
names it reads through the class) is recorded with the class's verdict and checked again at every
paused call: a patch made inside the forward (``mock.patch.object(F, "linear", ...)`` in a
user's block) keeps the leaf watched. On a known-pure forward the tracer puts the write watch on
at the first call that finds a global hook added by another thread, or a batch norm switched to
training (:meth:`netsummary._tracing.guard.ModelGuard.watch_from_here`).
"""

from __future__ import annotations

import functools
import os
import sys
import types
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _module_globals
from torch.utils import _pytree as pytree

try:  # (torch depends on it; its helpers are in torch's namespace)
    import typing_extensions
except ImportError:  # pragma: no cover
    typing_extensions = None  # type: ignore[assignment]

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
_EVAL = EVAL_ONLY = frozenset(_EVAL_ONLY)  # stock only in eval mode (the tracer checks each call of a pure forward)
_PLAIN = (torch.Tensor, nn.Parameter)


# where torch's own Python code lives, and the standard library's (torch's namespace imports a
# few typing helpers); Python code from anywhere else is a user's or another library's
_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_STDLIB_DIR = os.path.dirname(os.__file__) + os.sep
_TYPING_EXTENSIONS = getattr(typing_extensions, "__file__", None)


def _trusted_file(path: str) -> bool:
    if path.startswith(_TORCH_DIR) or path == _TYPING_EXTENSIONS:
        return True
    if path.startswith(_STDLIB_DIR):  # (site-packages sits inside it: other libraries are not)
        rest = path[len(_STDLIB_DIR):]
        return not rest.startswith(("site-packages", "dist-packages"))
    return False


_BUILTIN = (types.BuiltinFunctionType, types.MethodDescriptorType, types.WrapperDescriptorType,
            types.MethodWrapperType, types.ClassMethodDescriptorType, types.GetSetDescriptorType,
            types.MemberDescriptorType)


def _torch_own(value: Any) -> bool:
    """A class attribute or namespace entry that runs no Python code from outside torch (a patched
    ``_conv_forward``, a replaced ``F.relu``, a ``functools.partial`` or callable object around a
    user's function). Judged by where the code *is* (``__code__.co_filename``), never by the
    ``__module__`` a ``functools.wraps`` copies, and by exact types (``type()``, which a proxy
    cannot fake, where ``isinstance`` asks the object's ``__class__``): a callable object of a
    class written in C outside torch (``wrapt``'s function wrappers, which forward ``__code__``
    and ``__eq__`` to the function they wrap) is not trusted; ``functools.lru_cache`` is judged
    by the function it wraps."""
    kind = type(value)
    if kind in (staticmethod, classmethod, types.MethodType):  # their function
        return _torch_own(value.__func__)
    if kind in (functools.partial, functools.partialmethod):
        return _torch_own(value.func)
    if kind is property:
        return all(_torch_own(g) for g in (value.fget, value.fset, value.fdel) if g is not None)
    if kind is types.FunctionType:
        return _trusted_file(value.__code__.co_filename)
    if kind in _BUILTIN or issubclass(kind, (type, types.ModuleType)) or not callable(value):
        return True  # C code, classes, modules, data
    if kind is _LRU_CACHE:
        return _torch_own(value.__wrapped__)
    call = getattr(kind, "__call__", None)  # an object whose class has a __call__
    if type(call) is types.FunctionType:  # a Python class's: where that code is
        return _trusted_file(call.__code__.co_filename)
    return kind.__module__.partition(".")[0] == "torch"  # a C class: torch's own, or nobody's we know


def _torch_code(value: Any) -> bool:
    """A namespace entry *replaced* since import stands only if it is torch's own code (torch._dynamo
    wraps some): a function or C function, never a module, class or value put in its place
    (``F.torch = shim``)."""
    kind = type(value)
    return callable(value) and not issubclass(kind, (type, types.ModuleType)) and _torch_own(value)


_LRU_CACHE = type(functools.lru_cache(None)(lambda: None))


def _stock_forward(cls: type) -> bool:
    f = cls.forward
    return f is _STOCK[cls] and _torch_own(f)


def _stock_methods(cls: type) -> frozenset[str] | None:
    """The method names of a stock class and its torch bases when every one of them is still
    torch's own code (a stock forward calls ``self._conv_forward``, ``self._check_input_dim``,
    ``self.check_forward_args``...), else ``None``. ``nn.Module`` itself is checked by
    :func:`_module_stock` (libraries add methods to it: transformers' ``smart_apply``)."""
    names = set(_MODULE_METHODS)
    for c in cls.__mro__[:-2]:  # the class and its bases up to, not including, nn.Module
        for name, value in vars(c).items():
            # any descriptor or callable (a partialmethod, a data descriptor set on the class)
            if callable(value) or hasattr(type(value), "__get__"):
                if not _torch_own(value) or (hasattr(type(value), "__get__") and not _torch_own(type(value).__get__)):
                    return None
                names.add(name)
    return frozenset(names)


def _methods_of_module() -> dict[str, Any]:
    return {n: v for n, v in vars(nn.Module).items()
            if isinstance(v, (types.FunctionType, staticmethod, classmethod)) and _torch_own(v)}


# nn.Module's own methods as imported: every module call goes through several of them
_MODULE_METHODS = _methods_of_module()
# what every call and attribute read goes through, present or not (``__getattribute__`` added to
# nn.Module would run on every ``self.weight``)
_MODULE_ACCESS = {n: vars(nn.Module).get(n) for n in ("__call__", "_call_impl", "_wrapped_call_impl", "__getattr__",
                                                       "__getattribute__", "__setattr__", "__delattr__")}


def _module_stock() -> bool:
    """None of ``nn.Module``'s own methods replaced since import by code outside torch (methods a
    library adds are not torch's, and no stock forward calls them)."""
    now = vars(nn.Module)
    return all(_same_or_torch(v, now.get(n)) for n, v in _MODULE_METHODS.items()) and all(
        _same_or_torch(v, now.get(n)) for n, v in _MODULE_ACCESS.items())


def _same_or_torch(old: Any, new: Any) -> bool:
    """An entry is as imported, or replaced by torch itself (torch._dynamo wraps
    ``nn.Module.__init__`` once it is imported)."""
    return new is old or (new is not None and _torch_code(new))


# The namespaces stock forwards call into, as imported: ``torch.nn.functional`` (F.linear,
# F.relu...), ``torch`` itself (F.layer_norm calls torch.layer_norm), the tensor methods
# (nn.Flatten calls input.flatten), torch._C._nn and torch._VF (the recurrent kernels)
_NAMESPACES = (F, torch, torch.Tensor, torch._C.TensorBase, torch._C._nn, torch._VF)
_IMPORTED = [(ns, dict(vars(ns))) for ns in _NAMESPACES]
# each namespace's entry names and the ids of their values as imported (the snapshot keeps the
# values alive, so an id names one object): compared by identity, never by ``==``, which a
# replacement may define to say it is the original
_IMPORTED_IDS = [(tuple(entries), tuple(map(id, entries.values()))) for _, entries in _IMPORTED]
# an entry already holding code from outside torch when netsummary was imported (patched before)
_FOREIGN_AT_IMPORT = any(not _torch_own(v) for _, entries in _IMPORTED for v in entries.values())


def _namespaces_stock() -> bool:
    """No entry of those namespaces replaced since import by code outside torch, nor holding
    Python code from outside torch at import. Entries added since (a library's new tensor method)
    are not called by any stock forward."""
    if _FOREIGN_AT_IMPORT:
        return False
    for (ns, entries), (names, ids) in zip(_IMPORTED, _IMPORTED_IDS):
        now = vars(ns)
        if tuple(map(id, map(now.get, names))) != ids and not all(  # (compared in C: the common case)
                _same_or_torch(v, now.get(n)) for n, v in entries.items()):
            return False
        # a method set on the tensor class since import shadows torch's (Tensor.flatten = ...)
        if isinstance(ns, type) and len(now) != len(entries) and not all(
                _torch_own(v) for n, v in now.items() if n not in entries):
            return False
    return True


def _global_hooks_own() -> bool:
    g = _module_globals
    for table in (g._global_forward_pre_hooks, g._global_forward_hooks, g._global_backward_hooks,
                  g._global_backward_pre_hooks):
        for hook in table.values():
            if not getattr(hook, OWN_HOOK, False):
                return False
    return True


def forward_ad_active() -> bool:
    """Inside ``torch.autograd.forward_ad.dual_level()``: dual tensors' tangents run operators of
    their own (three matmuls for one ``Linear``), which shapes alone do not give."""
    return getattr(torch.autograd.forward_ad, "_current_level", -1) >= 0


def _global_state_stock(device: torch.device, mode: str) -> bool:
    """Nothing outside the model can run code inside a stock forward: no dispatch or
    ``__torch_function__`` mode, no foreign global hook, ``torch.nn.functional`` and ``nn.Module``
    as imported, no saved-tensor hooks outside ``"eval"``; and the device is a real one."""
    if device.type == "meta" or torch._C._len_torch_dispatch_stack() or torch._C._len_torch_function_stack():
        return False
    if forward_ad_active():  # dual tensors: the tangents run matmuls of their own
        return False
    if not _global_hooks_own() or not _namespaces_stock() or not _module_stock():
        return False
    saved_hooks = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    # saved-tensor hooks (torch.autograd.graph.saved_tensors_hooks) run user code
    return mode == "eval" or (saved_hooks is not None and saved_hooks(False) is None)


_ABSENT = object()
_REACH_DEPTH = 1  # forward -> self._conv_forward, F.batch_norm -> what they read: torch's own code, by name


def _reached(cls: type) -> tuple[tuple, tuple] | None:
    """What a stock class's ``forward`` reaches by name, as it is bound now: ``(globals, name,
    value)`` for the module-level names its code (and the torch functions it calls, to a few
    levels) reads, and ``(class dicts, name, value)`` for the methods it reads through the class
    (a descriptor added to the class is seen by :func:`_stock_methods` when the summary starts,
    not in the middle of its forward). ``None`` when one of them is not torch's own
    (``F`` in ``torch/nn/modules/conv.py`` replaced by a shim). :func:`_still_bound` checks them
    at each call."""
    dicts = tuple(vars(c) for c in cls.__mro__[:-2])  # up to nn.Module (see _module_stock)
    bound: dict[tuple[int, str], tuple] = {}
    through_class: dict[str, tuple] = {"forward": (dicts, "forward", _class_lookup(dicts, "forward"))}
    seen: set[int] = set()
    todo = [(cls.forward, 0, True)]
    while todo:
        f, depth, method = todo.pop()
        if type(f) is not types.FunctionType or id(f) in seen or depth > _REACH_DEPTH:
            continue
        seen.add(id(f))
        names = set(f.__code__.co_names)
        for const in f.__code__.co_consts:  # comprehensions and lambdas are code objects of their own
            if isinstance(const, types.CodeType):
                names.update(const.co_names)
        g = f.__globals__
        for n in names:
            if method:  # self.<n>: the class's own entry decides (a method it calls)
                v = _class_lookup(dicts, n)
                if v is not _ABSENT:  # (already judged by _stock_methods)
                    through_class[n] = (dicts, n, v)
                    todo.append((getattr(v, "__func__", v), depth + 1, True))
            if n in g:
                v = g[n]
                if not _trusted_global(v):
                    return None
                bound[(id(g), n)] = (g, n, v)
                if type(v) is types.ModuleType:  # F.conv2d, torch.layer_norm: the entries used
                    entries = vars(v)
                    for n2 in names:
                        if n2 in entries:
                            if not _trusted_global(entries[n2]):  # (a verdict made inside a patch)
                                return None
                            bound[(id(entries), n2)] = (entries, n2, entries[n2])
                            todo.append((entries[n2], depth + 1, False))
                else:
                    todo.append((v, depth + 1, False))
    return tuple(bound.values()), tuple(through_class.values())


def _class_lookup(dicts: tuple[dict, ...], name: str) -> Any:
    for d in dicts:
        if name in d:
            return d[name]
    return _ABSENT


def _trusted_global(value: Any) -> bool:
    """A module-level name torch's code reads: a real, imported module of torch or the standard
    library, torch's own code or class, or a plain constant; an object standing in for a module
    (``types.SimpleNamespace(**vars(F))``) is none of these."""
    kind = type(value)
    if kind is types.ModuleType:
        path = getattr(value, "__file__", None)
        return sys.modules.get(value.__name__) is value and (
            path is None and value.__name__ in sys.builtin_module_names or path is not None and _trusted_file(path))
    if kind in _CONSTANTS:
        return True
    if callable(value) or isinstance(value, type):
        return _torch_own(value)
    return kind.__module__.partition(".")[0] == "torch"  # torch's own objects (a dtype, a flag holder)


_CONSTANTS = frozenset({type(None), bool, int, float, complex, str, bytes, tuple, frozenset})


def _still_bound(refs: tuple[tuple, tuple]) -> bool:
    """The names :func:`_reached` found are bound to the same objects (by identity)."""
    bound, through_class = refs
    for d, n, v in bound:
        if d.get(n, _ABSENT) is not v:
            return False
    for dicts, n, v in through_class:
        if _class_lookup(dicts, n) is not v:
            return False
    return True


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
        refs = _reached(cls) if names is not None else None
        verdict = methods[cls] = None if refs is None else (names, refs)
    if verdict is None:
        return False
    names, refs = verdict
    if recheck and not _still_bound(refs):  # replaced since the verdict (in the forward, or by another thread)
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
        if isinstance(leaf, torch.Tensor) and (type(leaf) is not torch.Tensor or leaf.layout != torch.strided
                                               or leaf.is_complex()):
            return False
    methods: dict[type, Any] = {}
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
