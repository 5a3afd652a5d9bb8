"""Leave the user's model as it was: restore what the summary changed, and only that.

The model is a guest. :class:`ModelGuard` restores **the model's state**, on success, on error and
on ``KeyboardInterrupt`` alike:

- every module's ``training`` flag;
- every parameter's and buffer's values: a tensor the forward writes in place (BatchNorm's
  running statistics and ``num_batches_tracked``, max-norm renormalization, ``clamp_``, an
  ActNorm layer initializing itself) is copied just before its first write and written back
  (:mod:`netsummary._tracing.watch`), so only written tensors cost memory (meta, fake and sparse
  tensors have no values to keep), and gets back its version count (``t._version``, which the
  write raised), so an autograd graph saved before the summary still passes its checks;
- every parameter's, ``.grad``'s and buffer's storage, dtype, device, shape and strides: a forward
  that rebinds ``.data``, converts a layer (``.half()``, ``.to("meta")``) or reshapes a tensor in
  place (``t_()``, ``resize_()``, ``set_()``) has the tensor bound to its original storage again;
- the tensor objects under each module's existing ``_parameters`` / ``_buffers`` names, where
  the forward replaced one by another of the same shape (an update of its values, a conversion);
- bitsandbytes' quantized weights and state: a ``Linear4bit`` CPU eval forward repacks its
  weight (``.data`` rebound) and rewrites its ``QuantState``; ``Linear8bitLt`` moves its
  ``CB`` / ``SCB`` into its matmul state: put back as they were (:mod:`netsummary._tracing.bnb_state`);
- FSDP2's sharding: a module the forward left unsharded (FSDP2's root keeps its all-gathered
  parameters after the forward) is resharded through ``FSDPModule.reshard()``
  (:mod:`netsummary._tracing.distributed`);
- every parameter's ``requires_grad``, its ``.grad`` object and values (a ``backward()`` inside
  the forward accumulates into ``.grad`` in place), and ``torch.is_grad_enabled()``;
- the global generators the forward itself drew from (dropout in train mode; seen per device
  type by the watch), and Python's ``random`` / NumPy's global state when they changed. Such a
  restore also rewinds draws that another thread made from the same generator meanwhile; a
  summary whose forward draws nothing (every eval-mode summary: the dummy inputs come from a
  private generator) leaves the torch generators alone. A forward that reseeds the global
  generator (``torch.manual_seed``) has it restored too.

What the guard does **not** undo is what the model's own forward did to itself the way any real
forward would: hooks it registers (transformers' output-capturing hooks and the flag saying they
are installed), attributes it sets, buffers it registers under new names or rebuilds at another
shape (a grown rotary or mask cache) stay, exactly as after a real forward. Hooks netsummary
registers are removed by their own handles (:mod:`netsummary._tracing.trace`); the process-global hook
tables and every other process-global state are never rewritten from a snapshot.

Summaries of the same model (or of models sharing a submodule) in several threads take turns:
each guard holds the model's modules from its snapshot to the end of its restore.

The restore runs to its end even if Ctrl-C arrives meanwhile: the interrupt is deferred and
raised once the model is whole (:mod:`netsummary._tracing.interrupts`). Every comparison and copy skips
tensors without values (meta, fake, lazy), so the guard works on models built on ``meta``.
(``summary()`` never runs a forward on a model with unmaterialized lazy modules: it runs a
shape-only copy, see :mod:`netsummary._tracing.model`.)
"""

from __future__ import annotations

import random
import sys
import threading
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import is_fake
from torch.nn.parameter import is_lazy

from .bnb_state import BnbState
from .distributed import dtensor_locals, reshard_unsharded
from .interrupts import uninterrupted
from .watch import StateWatch


class _RNGState:
    """The global generators' states, restored selectively (see :meth:`restore`)."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.seed = torch.initial_seed()  # changes when anything calls torch.manual_seed / seed
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        self.py = random.getstate()
        np = sys.modules.get("numpy")
        self.np = np.random.get_state() if np is not None else None

    def restore(self, torch_drawn: set[str]) -> None:
        """Restore the torch generators of the device types in ``torch_drawn`` (the forward drew
        from them) or that were reseeded (``torch.manual_seed`` changes the initial seed), and
        Python's / NumPy's global state where it changed."""
        if "cpu" in torch_drawn or torch.initial_seed() != self.seed:
            torch.set_rng_state(self.cpu)
        if "cuda" in torch_drawn and self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)
        if random.getstate() != self.py:
            random.setstate(self.py)
        np = sys.modules.get("numpy")
        if self.np is not None and np is not None:
            now = np.random.get_state()  # ("MT19937", key array, pos, has_gauss, cached gaussian)
            if now[2:] != self.np[2:] or not np.array_equal(now[1], self.np[1]):
                np.random.set_state(self.np)


def _has_values(t: torch.Tensor) -> bool:
    """Whether ``t`` holds values the guard can copy and compare (not meta, fake, lazy, sparse)."""
    return not (is_lazy(t) or t.device.type == "meta" or is_fake(t) or t.layout != torch.strided)


class _Claims:
    """Which modules the running summaries hold: a summary waits while another thread's summary
    holds any of its modules (the same model, or one sharing a submodule), since two guards
    snapshotting and restoring the same tensors in interleaved order would leave the model
    modified. The same thread may nest summaries of overlapping models."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held: dict[int, tuple[int, frozenset[int]]] = {}  # token -> (thread, module ids)
        self._next = 0

    def claim(self, ids: frozenset[int]) -> int:
        me = threading.get_ident()
        with self._cond:
            while any(thread != me and not ids.isdisjoint(held) for thread, held in self._held.values()):
                self._cond.wait()
            self._next += 1
            self._held[self._next] = (me, ids)
            return self._next

    def release(self, token: int) -> None:
        with self._cond:
            if self._held.pop(token, None) is not None:
                self._cond.notify_all()


_CLAIMS = _Claims()


class ModelGuard:
    """Context manager that restores ``model``'s state at ``__enter__`` (see the module docstring).

    Args:
        model: the model.
        modules: ``model``'s modules, when the caller has them already (one traversal).
        watch_writes: watch the forward's operators for in-place writes into parameters and
            buffers and for global-generator draws (:class:`~netsummary._tracing.watch.StateWatch`),
            active from ``__enter__`` to ``__exit__`` in this thread. ``False`` where the forward
            cannot touch the model's tensors (fake stand-ins): then buffers with values are copied
            up front and compared after, parameters are not protected, and the torch generators
            are not restored.
        pure: the forward is known-pure (:func:`~netsummary._tracing.pure.pure_forward`: only
            torch's own layers, which write no parameter or buffer, replace no entry, rebind no
            ``.data``, touch no ``.grad`` or ``requires_grad`` and draw nothing): no watch, no
            copies and no snapshot of tensors; the training flags (which the summary sets), grad
            mode and the generators (when reseeded) are restored as always.

    >>> m = nn.BatchNorm1d(3).train()
    >>> with ModelGuard(m):
    ...     _ = m(torch.randn(4, 3))   # updates running stats
    ...     _ = m.eval()
    >>> int(m.num_batches_tracked), m.training
    (0, True)
    """

    def __init__(self, model: nn.Module, modules: list[nn.Module] | None = None, watch_writes: bool = True,
                 pure: bool = False) -> None:
        self.model = model
        self._module_list = modules
        self._watch_writes = watch_writes and not pure
        self._may_watch = watch_writes
        self._pure = pure
        self._watch: StateWatch | None = None
        self._watching = False
        self._draws: set[str] = set()

    def add_draws(self, device_types: set[str]) -> None:
        """Device types whose global generator was drawn from while the guard was open, as seen by
        another observer than the write watch (the memory step's own dispatch mode): their
        generators are restored too."""
        self._draws.update(device_types)

    def __enter__(self) -> ModelGuard:
        modules = self._module_list if self._module_list is not None else list(self.model.modules())
        self._claim = _CLAIMS.claim(frozenset(map(id, modules)))
        try:
            return self._snapshot(modules)
        except BaseException:
            _CLAIMS.release(self._claim)
            raise

    def _snapshot(self, modules: list[nn.Module]) -> ModelGuard:
        self._rng = _RNGState()
        self._grad_enabled = torch.is_grad_enabled()
        if self._pure:  # torch's own layers change no tensor, entry, layout, .grad or requires_grad
            self._flags = [(m, m.training) for m in modules]  # the summary itself sets these
            self._later = modules  # for watch_from_here
            return self
        self._snapshot_tensors(modules)
        return self

    def watch_from_here(self) -> None:
        """A known-pure forward that stops being one while it runs (in this thread: the tracer
        saw a hook registered since the forward was judged, a batch norm put in training mode or
        a patched ``F`` entry, none of which has run yet): the full snapshot and the write watch from
        here on, as for any forward. Taken now, it is the state at the start (torch's own layers
        changed nothing so far), with the training flags from before the summary set them."""
        if not self._pure:
            return
        flags = {id(m): training for m, training in self._flags}
        self._pure, self._watch_writes = False, self._may_watch
        self._snapshot_tensors(self._later)
        self._modules = [(m, flags.get(id(m), m.training), p, b) for m, _, p, b in self._modules]

    def _snapshot_tensors(self, modules: list[nn.Module]) -> None:
        # (module, training, _parameters copy, _buffers copy)
        self._modules = [(m, m.training, dict(m._parameters), dict(m._buffers)) for m in modules]
        seen: set[int] = set()
        self._params: list[tuple[torch.Tensor, bool, Any]] = []
        tensors: list[torch.Tensor] = []  # unique parameters, their .grad, buffers
        for m in modules:
            for p in m._parameters.values():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    self._params.append((p, p.requires_grad, p.grad))
                    tensors.append(p)
                    if p.grad is not None and id(p.grad) not in seen:
                        seen.add(id(p.grad))
                        tensors.append(p.grad)
            for b in m._buffers.values():
                if b is not None and id(b) not in seen:
                    seen.add(id(b))
                    tensors.append(b)
        # (tensor, alias): ``.data`` shares the storage, dtype, device, shape and strides as they are
        # now, so a forward that rebinds .data, converts (.half(), .to()) or reshapes in place
        # (t_(), resize_(), set_()) is undone by binding the tensor to its alias again
        self._aliases = [(t, t.data) for t in tensors if _has_metadata(t)]
        # their version counters: a tensor whose values the watch writes back gets its count back
        # too, so an autograd graph the caller saved before the summary still passes its checks
        # (an inference tensor, made under torch.inference_mode, has no counter: None)
        self._versions = [None if t.is_inference() else t._version for t, _ in self._aliases]
        # without the watch, buffers with values are copied up front and compared after
        self._copies = [] if self._watch_writes or self._pure else [
            (b, b.detach().clone()) for b in tensors if not isinstance(b, nn.Parameter) and _has_values(b)]
        # bitsandbytes layers repack their weight and rewrite their QuantState on a CPU eval forward
        self._bnb = BnbState(modules)
        if self._watch_writes:
            self._watch = StateWatch([alias for _, alias in self._aliases] + dtensor_locals(tensors))
            self._watch.__enter__()
            self._watching = True

    @property
    def watch(self) -> StateWatch | None:
        """The write watch while the guard is open (``None`` when ``watch_writes=False``)."""
        return self._watch

    def __exit__(self, *exc: object) -> None:
        uninterrupted(self._restore)

    def _restore(self) -> None:
        """Put the state back; idempotent, so that an interrupted restore can run again."""
        drawn: set[str] = set(self._draws)
        if self._watch is not None:
            if self._watching:
                self._watching = False
                self._watch.__exit__(None, None, None)
            drawn |= self._watch.global_draws
        torch.set_grad_enabled(self._grad_enabled)
        if self._pure:
            for m, training in self._flags:
                _put_training(m, training)
        else:
            self._restore_model()
        self._rng.restore(drawn)
        _CLAIMS.release(self._claim)  # the model is whole: another thread's summary of it may start

    def _restore_model(self) -> None:
        """The modules' flags and entries, the tensors' layouts, values, ``requires_grad`` and ``.grad``."""
        reshard_unsharded(self._modules)  # FSDP2 modules the forward left unsharded: sharded again
        for m, training, params, buffers in self._modules:
            _put_training(m, training)
            _restore_entries(m._parameters, params)
            _restore_entries(m._buffers, buffers)
        self._bnb.restore()  # before the aliases: a bitsandbytes weight's own .data comes back first
        with torch.no_grad():
            for t, alias in self._aliases:  # first the layout, so that values and .grad fit again
                if not _same_layout(t, alias):
                    t.data = alias
            for p, requires_grad, grad in self._params:
                if p.requires_grad != requires_grad:
                    p.requires_grad_(requires_grad)
                if p.grad is not grad:
                    p.grad = grad
            if self._watch is not None:
                restored = self._watch.restore()  # into the aliases, which back the tensors again
                if restored:
                    self._restore_versions(restored)
            for b, keep in self._copies:
                if not torch.equal(b, keep):
                    b.data.copy_(keep)  # through .data: no version bump for a saved graph to trip on


    def _restore_versions(self, aliases: list[torch.Tensor]) -> None:
        """Give each tensor behind these aliases its version count from the snapshot (its values
        are the snapshot's again; the forward's in-place write counted one more)."""
        set_versions = getattr(torch._C._autograd, "_unsafe_set_version_counter", None)
        if set_versions is None:  # (a torch without it: the counts stay as the forward left them)
            return
        where = {id(alias): i for i, (_, alias) in enumerate(self._aliases)}
        pairs = [(self._aliases[i][0], self._versions[i]) for i in (where.get(id(a)) for a in aliases)
                 if i is not None and self._versions[i] is not None]
        if pairs:
            set_versions(tuple(t for t, _ in pairs), tuple(v for _, v in pairs))


def _put_training(m: nn.Module, training: bool) -> None:
    if m.training is not training:
        if isinstance(m, torch.jit.ScriptModule):
            m.training = training  # stored in the compiled module, not in __dict__
        else:
            object.__setattr__(m, "training", training)


def _has_metadata(t: torch.Tensor) -> bool:
    """Whether ``t`` is a plain strided tensor whose ``.data`` alias can be bound back (not lazy,
    fake or a tensor subclass such as DTensor, whose layout is its own business)."""
    # (FakeTensor and other subclasses fail the exact type test, also when wrapped as a Parameter)
    return type(t) in (torch.Tensor, nn.Parameter) and t.layout == torch.strided and not is_lazy(t)


def _same_layout(t: torch.Tensor, alias: torch.Tensor) -> bool:
    if t.is_meta or alias.is_meta:  # no storage to compare
        return t.device == alias.device and t.dtype == alias.dtype and t.shape == alias.shape
    if t.is_quantized or alias.is_quantized:  # (is_set_to has no quantized kernel)
        return (t.is_quantized and alias.is_quantized and t.data_ptr() == alias.data_ptr() and t.dtype == alias.dtype
                and t.shape == alias.shape and t.stride() == alias.stride() and t.storage_offset() == alias.storage_offset())
    # is_set_to: the same storage, offset, sizes and strides (so the same device), in one call
    return t.is_set_to(alias) and t.dtype == alias.dtype


def _restore_entries(live: dict, saved: dict) -> None:
    """Put back each saved tensor whose entry the forward replaced by one of the same shape (a
    value update, or a conversion such as ``.half()``); entries it added, removed or rebuilt at
    another shape stay."""
    if not isinstance(live, dict):  # TorchScript's read-only views of its compiled attributes
        return
    for name, old in saved.items():
        new = live.get(name)
        if new is not old and isinstance(new, torch.Tensor) and isinstance(old, torch.Tensor):
            if new.shape == old.shape:
                live[name] = old
