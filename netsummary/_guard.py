"""Leave the user's model exactly as it was: snapshot what a forward may touch, restore it on exit.

The model is a guest. :class:`ModelGuard` snapshots, and restores on success, on error and on
``KeyboardInterrupt`` alike:

- every module's ``training`` flag, its ``_parameters`` / ``_buffers`` entries (the same tensor
  objects) and its forward/backward hook dicts (per module) plus the global module hooks;
- every buffer's values (BatchNorm running statistics, ``num_batches_tracked``), restored in place
  when the forward changed them (dense buffers; meta, fake and sparse ones have no values to keep);
- every parameter's ``requires_grad`` and ``.grad`` object;
- the RNG states (CPU, initialized CUDA devices, Python ``random``, NumPy when imported) and
  ``torch.is_grad_enabled()``.

Parameters are not copied (that would double the model's memory); a forward that writes into its
own weights in place is outside what the guard can undo, except ``nn.Embedding(max_norm=...)``,
the built-in layer that renormalizes its weight rows during forward: its weight is kept too.
(``summary()`` never runs a forward on a model with unmaterialized lazy modules: it runs a
shape-only copy, see :mod:`netsummary._model`.)
"""

from __future__ import annotations

import random
import sys
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import is_fake
from torch.nn.parameter import is_lazy
from torch.nn.modules import module as _module_globals

_MODULE_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_GLOBAL_HOOK_DICTS = (
    "_global_forward_hooks",
    "_global_forward_hooks_with_kwargs",  # torch's handle.remove() leaves these two behind
    "_global_forward_hooks_always_called",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
)


class _RNGState:
    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        self.py = random.getstate()
        np = sys.modules.get("numpy")
        self.np = np.random.get_state() if np is not None else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)
        random.setstate(self.py)
        if self.np is not None:
            sys.modules["numpy"].random.set_state(self.np)


class ModelGuard:
    """Context manager that restores ``model`` to its state at ``__enter__``.

    >>> m = nn.BatchNorm1d(3).train()
    >>> with ModelGuard(m):
    ...     _ = m(torch.randn(4, 3))   # updates running stats
    ...     _ = m.eval()
    >>> int(m.num_batches_tracked), m.training
    (0, True)
    """

    def __init__(self, model: nn.Module, modules: list[nn.Module] | None = None) -> None:
        self.model = model
        self._module_list = modules

    def __enter__(self) -> ModelGuard:
        modules = self._module_list if self._module_list is not None else list(self.model.modules())
        # (module, class, training, _parameters copy, _buffers copy, copies of its non-empty hook dicts)
        self._modules = [
            (m, type(m), m.training, dict(m._parameters), dict(m._buffers), [(n, dict(d)) for n in _MODULE_HOOK_DICTS if (d := getattr(m, n))])
            for m in modules
        ]
        seen: set[int] = set()
        self._params: list[tuple[torch.Tensor, bool, Any]] = []
        self._buffers: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        self._weights: list[tuple[torch.Tensor, torch.Tensor]] = []
        for m in modules:
            for p in m._parameters.values():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    self._params.append((p, p.requires_grad, p.grad))
            if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.max_norm is not None:
                # the one built-in layer that rewrites its weight in forward (renormalization)
                self._weights.append((m.weight, m.weight.detach().clone()))
            for b in m._buffers.values():
                if b is not None and id(b) not in seen:
                    seen.add(id(b))
                    data_less = is_lazy(b) or b.device.type == "meta" or is_fake(b) or b.layout != torch.strided
                    keep = None if data_less else b.detach().clone()
                    self._buffers.append((b, keep))
        self._globals = [(name, dict(getattr(_module_globals, name))) for name in _GLOBAL_HOOK_DICTS]
        self._rng = _RNGState()
        self._grad_enabled = torch.is_grad_enabled()
        return self

    def __exit__(self, *exc: object) -> None:
        torch.set_grad_enabled(self._grad_enabled)
        for m, cls, training, params, buffers, hooks in self._modules:
            if m.training is not training:
                if isinstance(m, torch.jit.ScriptModule):
                    m.training = training  # stored in the compiled module, not in __dict__
                else:
                    object.__setattr__(m, "training", training)
            _restore_dict(m._parameters, params)
            _restore_dict(m._buffers, buffers)
            if type(m) is not cls:
                continue  # a lazy module materialized: its one-shot hooks are gone for good
            if hooks or m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks:
                saved_hooks = dict(hooks)
                for name in _MODULE_HOOK_DICTS:
                    _restore_dict(getattr(m, name), saved_hooks.get(name, {}))
        for name, saved in self._globals:
            _restore_dict(getattr(_module_globals, name), saved)
        with torch.no_grad():
            for p, requires_grad, grad in self._params:
                if p.requires_grad != requires_grad:
                    p.requires_grad_(requires_grad)
                if p.grad is not grad:
                    p.grad = grad
            for b, keep in [*self._buffers, *self._weights]:
                # Native kernels (BatchNorm's running stats) update buffers without bumping
                # their version counter, so compare values.
                if keep is not None and not torch.equal(b, keep):
                    b.data.copy_(keep)  # through .data: no version bump for a saved graph to trip on
        self._rng.restore()


def _restore_dict(live: dict, saved: dict) -> None:
    """Make ``live`` hold exactly ``saved``'s entries (same objects), without replacing ``live``."""
    if not isinstance(live, dict):  # TorchScript's read-only views of its compiled attributes
        return
    if len(live) == len(saved) and all(live.get(k, live) is v for k, v in saved.items()):
        return
    live.clear()
    live.update(saved)
