"""Record every module call of one forward pass with two global hooks.

:class:`Tracer` is a context manager. While it is open, a global forward pre-hook pushes each call
of one of the model's modules on a stack and a global forward hook pops it and describes its
inputs and output (:mod:`._structure`). Each call costs two dict lookups and a push/pop, whatever
the model's nesting depth, and nothing is registered on the user's modules. On exit every handle
is removed, on success and on error alike.

The hooks only read shapes and dtypes, so the same tracer works on real tensors, on the ``meta``
device and under a ``TorchDispatchMode`` such as ``FakeTensorMode``.

>>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
>>> with Tracer(m) as t:
...     _ = m(torch.zeros(2, 4))
>>> [(c.name, c.depth, c.out.tree) for c in t.calls]
[('', 0, (2, 8)), ('0', 1, (2, 8)), ('1', 1, (2, 8))]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as _module_globals
from torch.nn.utils import parametrize

from ._structure import Described, describe


class Call:
    """One executed module call (mutable while the forward runs, frozen into a LayerRecord after).

    ``parent`` is the index in :attr:`Tracer.calls` of the enclosing call (-1 for the outermost),
    ``inp`` / ``out`` describe the inputs (positional then keyword) and the output; ``out`` is
    ``None`` while the call runs and stays ``None`` if it raised.
    """

    __slots__ = ("module", "name", "call_index", "depth", "parent", "inp", "out", "n_children", "args")

    def __init__(self, module: nn.Module, name: str, call_index: int, depth: int, parent: int, args: tuple) -> None:
        self.module = module
        self.name = name
        self.call_index = call_index
        self.depth = depth
        self.parent = parent
        self.args: tuple | None = args  # kept only while the call runs (failure reports)
        self.inp: Described | None = None
        self.out: Described | None = None
        self.n_children = 0


def module_names(model: nn.Module) -> dict[int, str]:
    """``id(module) -> qualified name`` (the state_dict prefix; ``""`` for the root).

    A module reachable under several parents keeps its first name. Parametrization containers
    (``torch.nn.utils.parametrize``) are left out: their tensors belong to the parametrized module,
    and their calls (made when the weight is read) are part of that module's call.
    """
    names: dict[int, str] = {}
    skip: set[int] = set()
    for name, m in model.named_modules():
        if isinstance(m, parametrize.ParametrizationList) or id(m) in skip:
            skip.update(id(s) for s in m.modules())
            continue
        names[id(m)] = name
    return names


class Tracer:
    """Context manager that records the calls of ``model``'s modules into :attr:`calls`."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.names = module_names(model)
        self.calls: list[Call] = []
        self.stack: list[int] = []
        self._counts: dict[int, int] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> Tracer:
        names, calls, stack, counts = self.names, self.calls, self.stack, self._counts

        def pre_hook(module: nn.Module, args: tuple) -> None:
            key = id(module)
            name = names.get(key)
            if name is None:
                return
            n = counts.get(key, 0) + 1
            counts[key] = n
            parent = stack[-1] if stack else -1
            if parent >= 0:
                calls[parent].n_children += 1
            stack.append(len(calls))
            calls.append(Call(module, name, n, len(stack) - 1, parent, args))

        def post_hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            if id(module) not in names or not stack:
                return
            # Calls whose forward raised and whose exception the model caught never reach here;
            # pop them until we find this module's call.
            while stack and calls[stack[-1]].module is not module:
                calls[stack.pop()].args = None
            if not stack:
                return
            call = calls[stack.pop()]
            call.args = None
            call.inp = describe(args if not kwargs else [*args, *kwargs.values()])
            call.out = describe(output)

        self._handles = [
            _module_globals.register_module_forward_pre_hook(pre_hook),
            _module_globals.register_module_forward_hook(post_hook, with_kwargs=True),
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def failing_call(self) -> Call | None:
        """The innermost call still open: after a forward raised, the module that failed."""
        return self.calls[self.stack[-1]] if self.stack else None
