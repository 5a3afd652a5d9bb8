"""Decide what the forward runs on: the user's model, its eager original, or a shape-only copy.

- ``torch.compile``'d models are summarized through their eager original (``_orig_mod``): the
  same modules, parameters and shapes, without recompiling around the summary's hooks.
- A model with unmaterialized lazy modules (``nn.LazyLinear``, ...) runs as a shape-only copy on
  the meta device: the copy's lazy modules materialize to their real sizes while the user's
  model stays lazy, untouched. Initialized tensors are shared as meta stand-ins, so the copy
  costs no memory.
- TorchScript modules run compiled code that Python hooks cannot see inside: they are summarized
  as far as hooks reach (usually the scripted module's own call).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter

from .._errors import InputSpecError


def walk_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``list(model.named_modules())``, the same names in the same order, refusing cycles.

    A child that is also one of its own ancestors (``self.owner = parent`` registers the parent
    as a submodule) makes every recursive walk of the tree loop: ``model.eval()``, parameter
    counting. The walk is iterative, so arbitrarily deep models do not hit the recursion limit.

    >>> walk_modules(nn.Sequential(nn.Linear(2, 2)))[1][0]
    '0'

    Raises:
        InputSpecError: the module graph has a cycle; the message names the module whose child
            refers back and the ancestor it refers to.
    """
    out: list[tuple[str, nn.Module]] = [("", model)]
    seen = {id(model)}
    path = {id(model): ""}  # the modules on the current root-to-node path, by id -> name
    stack = [("", model, iter(model._modules.items()))]
    while stack:
        prefix, module, children = stack[-1]
        for key, child in children:
            if child is None:
                continue
            name = f"{prefix}.{key}" if prefix else key
            if id(child) in path:
                back = path[id(child)]
                holder = repr(prefix) if prefix else "the root"
                held = "itself" if child is module else f"its own ancestor {repr(back) if back else 'the root'}"
                raise InputSpecError(
                    f"model: the module graph has a cycle: {holder} ({type(module).__name__}) holds {held} "
                    f"({type(child).__name__}) as submodule {key!r}, so every walk of the module tree loops; "
                    f"keep such back-references out of the tree (a weakref, a plain list, or object.__setattr__)",
                    (name, back),
                )
            if id(child) in seen:  # shared module: its first name stands, as in named_modules()
                continue
            seen.add(id(child))
            out.append((name, child))
            path[id(child)] = name
            stack.append((name, child, iter(child._modules.items())))
            break
        else:
            stack.pop()
            path.pop(id(module), None)
    return out


def eager_module(model: nn.Module) -> nn.Module:
    """The eager module behind a ``torch.compile`` wrapper (without importing torch._dynamo)."""
    while type(model).__name__ == "OptimizedModule" and isinstance(getattr(model, "_orig_mod", None), nn.Module):
        model = model._orig_mod
    return model


def has_lazy(named: list[tuple[str, nn.Module]]) -> bool:
    """Whether a lazy module (``nn.LazyLinear``, ...) still has unmaterialized tensors."""
    return any(isinstance(m, LazyModuleMixin) and m.has_uninitialized_params() for _, m in named)


def shape_only_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose tensors are meta stand-ins (lazy ones stay lazy, on meta)."""
    memo: dict[int, Any] = {}
    for t in (*model.parameters(), *model.buffers()):
        if id(t) in memo:
            continue
        if isinstance(t, UninitializedParameter):
            memo[id(t)] = UninitializedParameter(t.requires_grad, device="meta", dtype=t.dtype)
        elif isinstance(t, UninitializedBuffer):
            memo[id(t)] = UninitializedBuffer(t.requires_grad, device="meta", dtype=t.dtype)
        else:
            stand_in = torch.empty_like(t, device="meta")
            memo[id(t)] = nn.Parameter(stand_in, t.requires_grad) if isinstance(t, nn.Parameter) else stand_in
    return copy.deepcopy(model, memo)


def check_forward_kwargs(model: nn.Module, kwargs: Mapping[str, Any], given_by_name: bool) -> None:
    """Reject keyword arguments ``model.forward`` cannot take, before the forward runs.

    Raises:
        InputSpecError: a keyword is not a parameter of ``forward`` (which has no ``**kwargs``);
            the message lists the parameters it does take.
    """
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # builtins, TorchScript: nothing to check against
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    names = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = [k for k in kwargs if k not in names]
    if unknown:
        where = "input_data" if given_by_name else "keyword arguments (passed on to forward)"
        raise InputSpecError(
            f"{where}: {type(model).__name__}.forward() takes no argument named {unknown[0]!r}; "
            f"it takes {', '.join(names) or 'no keyword arguments'}",
            unknown[0],
        )
