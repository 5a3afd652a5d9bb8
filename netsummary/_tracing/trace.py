"""Record every module call of one forward pass with two global hooks.

:class:`Tracer` is a context manager. While it is open, a global forward pre-hook pushes each call
of one of the model's modules on a stack and a global forward hook pops it and describes its
inputs and output (:mod:`._structure`). Global hooks fire for every module call in every thread,
so the hooks record only calls made in the thread that opened the tracer: a forward of the same
model in another thread, or another summary running beside this one, is not recorded. A module
that was not the model's when the tracer opened, called inside one of its calls in that thread
(made during the forward: a head built on first use, a throwaway layer), is recorded too, marked
``created``; modules other threads make and call are not. Each call costs two dict lookups and a push/pop, whatever
the model's nesting depth, and nothing is registered on the user's modules. On exit every handle
is removed, on success and on error alike (and Ctrl-C cannot cut that short). The post-hook is registered with ``always_call``, so
a call that raises is reported too, which tells which module a failed forward came out of.

With ``count_macs=True`` a :class:`~netsummary._analysis.flops.MacCounter` runs beside the hooks and each
operator's MACs are added to the innermost call running at that moment, so functional calls in
a container's own ``forward`` land on that container's record and nothing is counted twice.

In a forward watched by a dispatch mode (the guard's write watch, or the MAC counter standing in
for it), the leaves that are torch's own stateless layers (``pausable``, from
:func:`~netsummary._tracing.pure.pure_leaves`) run with that mode paused: the pre-hook pops it
off this thread's mode stack when it is on top and the call's positional inputs are plain
strided tensors, the post-hook (or the tracer's exit, after a Ctrl-C inside the call) puts it
back, and the call's MACs come from its shapes as on the known-pure path. resnet50's convolutions
and batch norms then run as in a bare forward.

The hooks only read shapes and dtypes, so the same tracer works on real tensors, on the ``meta``
device and under a ``TorchDispatchMode`` such as ``FakeTensorMode``.

>>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
>>> with Tracer(m) as t:
...     _ = m(torch.zeros(2, 4))
>>> [(c.name, c.depth, c.out.tree) for c in t.calls]
[('', 0, (2, 8)), ('0', 1, (2, 8)), ('1', 1, (2, 8))]
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as _module_globals
from torch.utils.hooks import RemovableHandle as _Handle
from torch.nn.utils import parametrize
from torch.utils import _python_dispatch

from .interrupts import on_interrupt, uninterrupted
from .pure import EVAL_ONLY, bindings_check, pure_call_check
from .trust import OWN_HOOK, forward_ad_active
from .structure import Described, describe

Tensor = torch.Tensor


_FAILED = object()  # post_hook's output when torch reports a call that raised


class Call:
    """One executed module call, frozen into a LayerRecord after the forward.

    ``parent`` is the index in :attr:`Tracer.calls` of the enclosing call (-1 for the outermost).
    ``inp`` / ``out`` describe the inputs (positional then keyword) and the output; ``out`` is
    ``None`` if the call raised. ``created``: the module was not one of the model's when the tracer
    opened (made during the forward); its ``name`` is then ``"<parent's name>.<created>"``.
    ``args`` holds the positional inputs of the call a failed
    forward came out of (for the failure report), ``None`` otherwise. ``macs`` counts the
    operators the call ran itself (not inside a child call); ``unknown_ops`` names the
    matmul-class operators it ran that have no formula.
    """

    __slots__ = ("module", "name", "parent", "args", "inp", "out", "macs", "unknown_ops", "call_index", "depth",
                 "n_children", "created")

    def __init__(self, raw: list, created: bool = False, described: dict | None = None) -> None:
        self.module, self.name, self.parent, self.args, inp, out, self.macs, unknown = raw
        self.created = created  # the module was not part of the model when the tracer opened
        memo = described if described is not None else {}
        self.inp: Described | None = _as_described(inp, memo)
        self.out: Described | None = _as_described(out, memo)
        self.unknown_ops: tuple[str, ...] = tuple(dict.fromkeys(unknown)) if unknown else ()
        self.call_index = 1
        self.depth = 0
        self.n_children = 0


def _as_described(raw: Any, memo: dict) -> Described | None:
    """The hooks store a lone tensor as ``(torch.Size, dtype)`` (cheap) and anything else as a
    :class:`Described`; a lone *input* tensor is stored as ``[(torch.Size, dtype)]``. ``memo``
    maps ``(size, dtype, is_input)`` to the one immutable :class:`Described` of that value, shared
    by every call that saw it (2,000 ``Linear(8, 8)`` calls: two objects, not 4,000)."""
    if raw is None or isinstance(raw, Described):
        return raw
    if isinstance(raw, list):
        (size, dtype), = raw
        key = (size, dtype, True)
    else:
        size, dtype = raw
        key = (size, dtype, False)
    got = memo.get(key)
    if got is None:
        shape = tuple(size)
        got = memo[key] = Described([shape] if key[2] else shape, (dtype,), (shape,), (dtype.itemsize,))
    return got


class _ModelTensors:
    """The ids of the model's parameters and buffers, collected on the first lookup (a forward
    whose calls all take and return one tensor never asks)."""

    __slots__ = ("_named", "_ids")

    def __init__(self, named: list[tuple[str, nn.Module]]) -> None:
        self._named = named
        self._ids: set[int] | None = None

    def __contains__(self, key: object) -> bool:
        if self._ids is None:
            self._ids = {id(t) for _, m in self._named for d in (m._parameters, m._buffers) for t in d.values()
                         if t is not None}
        return key in self._ids


def module_names(named: list[tuple[str, nn.Module]]) -> dict[int, str]:
    """``id(module) -> qualified name`` (the state_dict prefix; ``""`` for the root).

    A module reachable under several parents keeps its first name. Parametrization containers
    (``torch.nn.utils.parametrize``) are left out: their tensors belong to the parametrized module,
    and their calls (made when the weight is read) are part of that module's call.
    """
    names: dict[int, str] = {}
    skip: set[int] = set()
    for name, m in named:
        if isinstance(m, parametrize.ParametrizationList) or id(m) in skip:
            skip.update(id(s) for s in m.modules())
            continue
        names[id(m)] = name
    return names


class Tracer:
    """Context manager that records the calls of ``model``'s modules into :attr:`calls`."""

    def __init__(self, model: nn.Module, named: list[tuple[str, nn.Module]] | None = None, count_macs: bool = False,
                 guard: Any = None, shape_macs: bool = False, pausable: frozenset[int] = frozenset(),
                 pure_since: tuple[int, dict] | None = None) -> None:
        self.model = model
        # a known-pure forward (no dispatch mode): the next hook handle id when it was judged so,
        # and the class verdicts (see .pure.pure_forward); the guard's watch goes on at the first
        # call that finds a hook registered since, a layer that writes in training mode switched
        # to it, or a class's bindings changed (see ModelGuard.watch_from_here)
        self._pure_since = pure_since if guard is not None else None
        self._count_macs = count_macs
        # a known-pure forward (see .pure): MACs from each call's shapes, no dispatch mode
        self._shape_macs = count_macs and shape_macs
        # leaves whose own call is known-pure (.pure.pure_leaves): the dispatch mode is paused
        # inside them, their MACs come from their shapes
        self._pausable = pausable
        self._paused: list[Any] = [None]  # (module, mode) while a pausable leaf runs
        self._own_mode: list[Any] = [None]  # the dispatch mode the tracer found on top, when its own
        self._on_interrupt: Any = None  # cancels the interrupt callback
        self._counter: Any = None  # a MacCounter while counting
        # the ModelGuard around the forward: while counting, the counter runs the checks of the
        # guard's write watch and takes its place on the dispatch-mode stack (one Python mode per
        # operator instead of two)
        self._guard = guard
        self._watch: Any = None
        self._stood_in = False
        named = named if named is not None else list(model.named_modules())
        self._named = named
        self.names = module_names(named)
        self._known = {id(m) for _, m in named}  # parametrization containers included (never recorded)
        self.created: dict[int, nn.Module] = {}  # modules first called during the forward, by id
        self._raw: list[list] = []
        self.stack: list[int] = []
        self._failed: list[int | None] = [None]
        self._handles: list[Any] = []
        self._calls: list[Call] | None = None

    @property
    def calls(self) -> list[Call]:
        """The recorded calls in the order they began, with call index, depth and child count."""
        if self._calls is None or len(self._calls) != len(self._raw):
            created = self.created
            memo: dict = {}
            calls = [Call(r, id(r[0]) in created, memo) for r in self._raw]
            counts: dict[int, int] = {}
            for c in calls:
                key = id(c.module)
                c.call_index = counts[key] = counts.get(key, 0) + 1
                if c.parent >= 0:
                    parent = calls[c.parent]
                    parent.n_children += 1
                    c.depth = parent.depth + 1
            self._calls = calls
        return self._calls

    def __enter__(self) -> Tracer:
        names, raw, stack, failed = self.names, self._raw, self.stack, self._failed
        known, created = self._known, self.created
        constants = _ModelTensors(self._named)  # marked in described values (see .batch.ambiguous)
        thread, this_thread = threading.get_ident(), threading.get_ident
        shape_macs = None
        pausable, paused, own_mode = self._pausable, self._paused, self._own_mode
        if self._shape_macs or (self._count_macs and pausable):
            from .._analysis.flops import SHAPE_MACS as shape_macs  # torch's formulas, on the shapes
        all_shapes = self._shape_macs  # every call's MACs from its shapes (else: paused leaves only)
        stack_len, stack_at = torch._C._len_torch_dispatch_stack, torch._C._get_dispatch_stack_at
        pop_mode, push_mode = torch._C._pop_torch_dispatch_stack, torch._C._push_on_torch_dispatch_stack
        still_pure = pure_call_check() if pausable else None
        function_modes, grad_on = torch._C._len_torch_function_stack, torch.is_grad_enabled
        saved_hooks = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
        g = _module_globals
        hook_tables = (g._global_forward_pre_hooks, g._global_forward_hooks, g._global_backward_hooks,
                       g._global_backward_pre_hooks)
        hook_counts: list[int] = []  # the global hooks once the tracer's own are in (set below)
        pure_counts = [-1]  # on a known-pure forward: the next hook handle id once the tracer's are in
        since_id, verdicts = self._pure_since or (-1, {})
        bound = bindings_check(verdicts)
        counted_from = [sys.maxsize]  # calls from this index on are the MAC counter's (see go_watched)

        def turns_impure(module: nn.Module) -> bool:
            # any hook registered since the tracer's own (even one removed again by now: the call
            # under way may still run it) took a handle id
            return (_Handle.next_id != pure_counts[0] or (module.training and type(module) in EVAL_ONLY)
                    or not bound(module))

        unwatched = [self._pure_since is not None]  # a known-pure forward not yet watched

        def go_watched() -> None:
            """The known-pure forward stops being one: the guard's write watch from here on and,
            when MACs are counted, the MAC counter in its place, as in a watched forward. Calls
            begun before keep their MACs from shapes (nothing but torch's layers ran in them)."""
            unwatched[0] = False
            self._guard.watch_from_here()
            if self._count_macs:
                counted_from[0] = len(raw)
                self._start_counter(on_op)

        def may_pause(module: nn.Module, args: tuple) -> bool:
            """Checked at the call: the forward may have changed the leaf, or entered a mode or
            hook of its own, since the tracer opened (see .pure.pure_call_check)."""
            if function_modes() or [len(t) for t in hook_tables] != hook_counts:
                return False
            if grad_on() and (saved_hooks is None or saved_hooks(False) is not None):
                return False  # saved-tensor hooks run user code when a tensor is saved
            for a in args:
                if type(a) is not Tensor or a.layout != torch.strided or a.is_complex():
                    return False
            return not forward_ad_active() and still_pure(module)

        # The hooks do the least they can: a lookup, a push or pop, and shapes of plain tensors.
        def pre_hook(module: nn.Module, args: tuple) -> None:
            key = id(module)
            name = names.get(key)
            if name is None:
                # a module that was not the model's when the tracer opened, called inside one of
                # its calls in this thread: made during the forward (a lazily built head, a
                # throwaway layer). Only this thread writes ``created``.
                if this_thread() != thread or not stack or key in known:
                    return
                created[key] = module
                parent = raw[stack[-1]][1]
                name = f"{parent}.<created>" if parent else "<created>"
            elif this_thread() != thread:
                return
            if unwatched[0] and turns_impure(module):
                go_watched()  # before the new hook (registered after the tracer's) runs
            raw.append([module, name, stack[-1] if stack else -1, None, None, None, 0, None])
            stack.append(len(raw) - 1)
            if (key in pausable and args and paused[0] is None and (n := stack_len()) and stack_at(n - 1) is own_mode[0]
                    and may_pause(module, args)):
                paused[0] = (module, pop_mode(None))  # this thread's mode stack only; back in post_hook

        def post_hook(module: nn.Module, args: tuple, kwargs: Any, output: Any = _FAILED) -> None:
            # Registered with always_call=True: when the forward raises, torch calls it as
            # hook(module, args, None), so ``output`` keeps its default.
            resumed = False
            if paused[0] is not None and paused[0][0] is module and this_thread() == thread:
                push_mode(paused[0][1])  # the paused mode goes back before anything else
                paused[0] = None
                resumed = shape_macs is not None
            if not stack or (id(module) not in names and id(module) not in created) or this_thread() != thread:
                return
            if unwatched[0] and _Handle.next_id != pure_counts[0]:  # a hook added in the call
                go_watched()
            while stack and raw[stack[-1]][0] is not module:
                stack.pop()  # defensive: a call that never reported back
            if not stack:
                return
            index = stack.pop()
            rec = raw[index]
            # (torch versions that pass kwargs on that path give output None while the exception
            # is being handled: sys.exc_info() tells the two apart)
            if output is _FAILED or (output is None and sys.exc_info()[0] is not None):
                if failed[0] is None:  # the exception is unwinding: the first call it leaves
                    failed[0] = index  # is the innermost failing one
                    rec[3] = args  # kept for the failure report only
                return
            failed[0] = None  # the model caught an earlier exception and went on
            if not kwargs and len(args) == 1 and type(a := args[0]) is Tensor and not a.is_nested:
                rec[4] = [(a.shape, a.dtype)]
            else:
                rec[4] = describe([*args, *kwargs.values()], constants)
            plain = type(output) is Tensor and not output.is_nested
            rec[5] = (output.shape, output.dtype) if plain else describe(output, constants)
            if (all_shapes and index < counted_from[0]) or resumed:
                f = shape_macs.get(type(module))
                if f is not None:
                    rec[6] += f(module, args[0] if args else kwargs["input"], output)

        def on_op(op: str, macs: int | None) -> None:
            if stack:  # attribute the operator to the innermost module call running it
                rec = raw[stack[-1]]
                if macs is None:
                    rec[7] = [*(rec[7] or ()), op]
                else:
                    rec[6] += macs

        setattr(pre_hook, OWN_HOOK, True)  # they only record: see .pure
        setattr(post_hook, OWN_HOOK, True)
        try:
            self._handles.append(_module_globals.register_module_forward_pre_hook(pre_hook))
            self._handles.append(_module_globals.register_module_forward_hook(post_hook, with_kwargs=True, always_call=True))
            if self._count_macs and not self._shape_macs:
                self._start_counter(on_op)
            if unwatched[0] and [h.id for h in self._handles] != [since_id, since_id + 1]:
                # a hook registered between the judgement and the tracer's own: the forward is
                # watched (and counted) from its start
                go_watched()
            pure_counts[0] = _Handle.next_id
            top = _python_dispatch._get_current_dispatch_mode()
            if top is not None and (top is self._counter or (self._guard is not None and top is self._guard.watch)):
                self._own_mode[0] = top  # the mode a pausable leaf pauses: netsummary's own, on top
                hook_counts.extend(len(t) for t in hook_tables)
                # Ctrl-C inside a paused leaf skips the post-hook (torch's always-called hooks
                # catch Exception only): the mode goes back before the interrupt is raised
                self._on_interrupt = on_interrupt(self._resume)
        except BaseException:  # interrupted half-way: with never calls __exit__
            uninterrupted(self._remove)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        uninterrupted(self._remove)

    def _start_counter(self, on_op: Callable[[str, int | None], None]) -> None:
        """The MAC counter on top of this thread's mode stack; standing in for the guard's write
        watch when that is on top (one Python mode per operator instead of two)."""
        from .._analysis.flops import MacCounter  # imported when first needed: flop_counter pulls in triton

        watch = self._guard.watch if self._guard is not None else None
        stand_in = watch is not None and _python_dispatch._get_current_dispatch_mode() is watch
        counter = MacCounter(on_op, before_op=watch.before_op if stand_in else None)
        if stand_in:
            watch.__exit__(None, None, None)
            self._watch, self._stood_in = watch, True
        counter.__enter__()
        self._counter = counter

    def _resume(self) -> None:
        """Put a paused mode back on this thread's stack (a paused leaf that never reported back)."""
        paused = self._paused
        if paused[0] is not None:
            mode, paused[0] = paused[0][1], None
            torch._C._push_on_torch_dispatch_stack(mode)

    def _remove(self) -> None:
        """Remove the counter and exactly the hooks this tracer registered; idempotent."""
        self._resume()
        if self._on_interrupt is not None:
            self._on_interrupt, cancel = None, self._on_interrupt
            cancel()
        if self._counter is not None:
            counter, self._counter = self._counter, None
            counter.__exit__(None, None, None)
        if self._stood_in:  # the watch goes back to where it was
            self._stood_in = False
            self._watch.__enter__()
        for h in self._handles:
            h.remove()
            _module_globals._global_forward_hooks_with_kwargs.pop(h.id, None)  # remove() forgets it
        self._handles = []

    def failing_call(self) -> Call | None:
        """After a forward raised: the innermost module call the exception came out of."""
        return None if self._failed[0] is None else self.calls[self._failed[0]]
