"""Whether code is torch's own, and still bound as it was: what the known-pure checks of
:mod:`netsummary._tracing.pure` trust.

Python code is torch's when its code object lives in torch's files (or the standard library's),
judged by ``__code__.co_filename``, never by the ``__module__`` that ``functools.wraps`` copies;
callables are judged by exact type (``type()``, which a proxy cannot fake). The namespaces stock
forwards call into (``torch.nn.functional``, ``torch``, the tensor classes, ``torch._C._nn``,
``torch._VF``) and ``nn.Module``'s own methods are snapshotted at import and compared by
identity. :func:`reached` records what one stock class's forward reaches by name;
:func:`still_bound` checks at a call that it is bound as it was.
"""

from __future__ import annotations

import functools
import os
import sys
import types
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _module_globals

try:  # (torch depends on it; its helpers are in torch's namespace)
    import typing_extensions
except ImportError:  # pragma: no cover
    typing_extensions = None  # type: ignore[assignment]

#: The attribute netsummary sets on its own global hook functions (they only record shapes).
OWN_HOOK = "__netsummary_hook__"

# where torch's own Python code lives, and the standard library's (torch's namespace imports a
# few typing helpers); Python code from anywhere else is a user's or another library's
_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_STDLIB_DIR = os.path.dirname(os.__file__) + os.sep
_TYPING_EXTENSIONS = getattr(typing_extensions, "__file__", None)


def trusted_file(path: str) -> bool:
    if path.startswith(_TORCH_DIR) or path == _TYPING_EXTENSIONS:
        return True
    if path.startswith(_STDLIB_DIR):  # (site-packages sits inside it: other libraries are not)
        rest = path[len(_STDLIB_DIR):]
        return not rest.startswith(("site-packages", "dist-packages"))
    return False


_BUILTIN = (types.BuiltinFunctionType, types.MethodDescriptorType, types.WrapperDescriptorType,
            types.MethodWrapperType, types.ClassMethodDescriptorType, types.GetSetDescriptorType,
            types.MemberDescriptorType)


def torch_own(value: Any) -> bool:
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
        return torch_own(value.__func__)
    if kind in (functools.partial, functools.partialmethod):
        return torch_own(value.func)
    if kind is property:
        return all(torch_own(g) for g in (value.fget, value.fset, value.fdel) if g is not None)
    if kind is types.FunctionType:
        return trusted_file(value.__code__.co_filename)
    if kind in _BUILTIN or issubclass(kind, (type, types.ModuleType)) or not callable(value):
        return True  # C code, classes, modules, data
    if kind is _LRU_CACHE:
        return torch_own(value.__wrapped__)
    call = getattr(kind, "__call__", None)  # an object whose class has a __call__
    if type(call) is types.FunctionType:  # a Python class's: where that code is
        return trusted_file(call.__code__.co_filename)
    return kind.__module__.partition(".")[0] == "torch"  # a C class: torch's own, or nobody's we know


def torch_code(value: Any) -> bool:
    """A namespace entry *replaced* since import stands only if it is torch's own code (torch._dynamo
    wraps some): a function or C function, never a module, class or value put in its place
    (``F.torch = shim``)."""
    kind = type(value)
    return callable(value) and not issubclass(kind, (type, types.ModuleType)) and torch_own(value)


_LRU_CACHE = type(functools.lru_cache(None)(lambda: None))


def _methods_of_module() -> dict[str, Any]:
    return {n: v for n, v in vars(nn.Module).items()
            if isinstance(v, (types.FunctionType, staticmethod, classmethod)) and torch_own(v)}


# nn.Module's own methods as imported: every module call goes through several of them
MODULE_METHODS = _methods_of_module()
# what every call and attribute read goes through, present or not (``__getattribute__`` added to
# nn.Module would run on every ``self.weight``)
_MODULE_ACCESS = {n: vars(nn.Module).get(n) for n in ("__call__", "_call_impl", "_wrapped_call_impl", "__getattr__",
                                                       "__getattribute__", "__setattr__", "__delattr__")}


def module_stock() -> bool:
    """None of ``nn.Module``'s own methods replaced since import by code outside torch (methods a
    library adds are not torch's, and no stock forward calls them)."""
    now = vars(nn.Module)
    return all(_same_or_torch(v, now.get(n)) for n, v in MODULE_METHODS.items()) and all(
        _same_or_torch(v, now.get(n)) for n, v in _MODULE_ACCESS.items())


def _same_or_torch(old: Any, new: Any) -> bool:
    """An entry is as imported, or replaced by torch itself (torch._dynamo wraps
    ``nn.Module.__init__`` once it is imported)."""
    return new is old or (new is not None and torch_code(new))


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
_FOREIGN_AT_IMPORT = any(not torch_own(v) for _, entries in _IMPORTED for v in entries.values())


def namespaces_stock() -> bool:
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
                torch_own(v) for n, v in now.items() if n not in entries):
            return False
    return True


def global_hooks_own() -> bool:
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


_ABSENT = object()
_REACH_DEPTH = 1  # forward -> self._conv_forward, F.batch_norm -> what they read: torch's own code, by name


def reached(cls: type) -> tuple[tuple, tuple] | None:
    """What a stock class's ``forward`` reaches by name, as it is bound now: ``(globals, name,
    value)`` for the module-level names its code (and the torch functions it calls, to a few
    levels) reads, and ``(class dicts, name, value)`` for the methods it reads through the class
    (a descriptor added to the class is seen by :func:`_stock_methods` when the summary starts,
    not in the middle of its forward). ``None`` when one of them is not torch's own
    (``F`` in ``torch/nn/modules/conv.py`` replaced by a shim). :func:`still_bound` checks them
    at each call."""
    dicts = tuple(vars(c) for c in cls.__mro__[:-2])  # up to nn.Module (see module_stock)
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
            path is None and value.__name__ in sys.builtin_module_names or path is not None and trusted_file(path))
    if kind in _CONSTANTS:
        return True
    if callable(value) or isinstance(value, type):
        return torch_own(value)
    return kind.__module__.partition(".")[0] == "torch"  # torch's own objects (a dtype, a flag holder)


_CONSTANTS = frozenset({type(None), bool, int, float, complex, str, bytes, tuple, frozenset})


def still_bound(refs: tuple[tuple, tuple]) -> bool:
    """The names :func:`reached` found are bound to the same objects (by identity)."""
    bound, through_class = refs
    for d, n, v in bound:
        if d.get(n, _ABSENT) is not v:
            return False
    for dicts, n, v in through_class:
        if _class_lookup(dicts, n) is not v:
            return False
    return True
