"""Watch a forward for writes into the model's parameters and draws from the global generators.

:class:`StateWatch` is a ``TorchDispatchMode`` (thread-local, like every dispatch mode: it sees the
operators of the summary's own thread only). For every operator that writes into one of its
arguments — by its schema's alias annotation, ``Tensor(a!)`` — it checks whether that argument
shares storage with a watched parameter, and copies the parameter *before* its first write
(copy-on-write). So a parameter the forward writes in place (``nn.Embedding(max_norm=...)``'s
renormalization, a ``clamp_`` under ``no_grad``, an ActNorm layer that initializes itself from
its first batch through ``.data.copy_``) can be restored exactly, while the memory cost is only
the parameters actually written, not a second copy of the model.

Operators tagged ``nondeterministic_seeded`` (dropout, ``rand``, ``bernoulli_``, ...) called
without an explicit ``generator=`` draw from the global generator of their device; the watch
notes which device types drew, so the guard restores exactly those generators and leaves the
others alone.

Writes that bypass the dispatcher (a C++ extension writing through a raw pointer) or that an
operator's schema does not declare are not seen; buffers therefore are not watched but copied
(:mod:`netsummary._guard`), because native batch norm updates its running statistics without
declaring it.

>>> p = torch.nn.Parameter(torch.ones(3))
>>> with StateWatch([p]) as w, torch.no_grad():
...     _ = p.data.mul_(2)
...     _ = torch.rand(2)
>>> p.tolist(), sorted(w.global_draws)     # written in place; drew from the CPU generator
([2.0, 2.0, 2.0], ['cpu'])
>>> w.restore_params() == [p], p.tolist()
(True, [1.0, 1.0, 1.0])
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

Tensor = torch.Tensor

# OpOverload -> None (neither writes nor draws: the hot path) or
# (positions and names of written arguments, index of the generator argument or -1, seeded)
_Info = tuple[tuple[tuple[int, str], ...], int, bool] | None
_UNSEEN = object()


def _storage_key(t: Tensor) -> int:
    """The address of ``t``'s storage (shared by every view and alias of it); 0 when unknown."""
    try:
        ptr = t.data_ptr()
        return ptr - t.storage_offset() * t.element_size() if ptr else 0  # meta: no address
    except Exception:  # tensor subclasses, fake tensors, sparse layouts: no storage
        return 0


class StateWatch(TorchDispatchMode):
    """Copy-on-write protection of ``params`` and a record of global-generator draws.

    Args:
        params: the tensors to protect (the model's unique parameters). Tensors without a
            storage address (meta, fake, tensor subclasses) cannot be watched and are skipped.

    After the ``with`` block, :meth:`restore_params` writes the saved values back and
    :attr:`global_draws` holds the device types (``"cpu"``, ``"cuda"``) whose global generator
    the forward drew from.
    """

    supports_higher_order_operators = True

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps __torch_dispatch__ in _disable_dynamo otherwise, which imports torch._dynamo
        # (about a second) on the first op; the summary runs eager modules, so nothing to skip
        return False

    def __init__(self, params: Iterable[Tensor]) -> None:
        super().__init__()
        self._params = params
        self._owners: dict[int, list[Tensor]] | None = None  # storage address -> params, built on the first write
        self.saved: list[tuple[Tensor, Tensor]] = []
        self.global_draws: set[str] = set()
        self._ops: dict[Any, Any] = {}

    def _resolve(self, func: Any) -> _Info:
        schema = getattr(func, "_schema", None)
        info: _Info = None
        if schema is not None:
            written = tuple(
                (i, a.name) for i, a in enumerate(schema.arguments) if a.alias_info is not None and a.alias_info.is_write
            )
            seeded = torch.Tag.nondeterministic_seeded in getattr(func, "tags", ())
            gen = next((i for i, a in enumerate(schema.arguments) if a.name == "generator"), -1)
            if written or seeded:
                info = (written, gen, seeded)
        self._ops[func] = info
        return info

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
        info = self._ops.get(func, _UNSEEN)
        if info is _UNSEEN:
            info = self._resolve(func)
        if info is None:  # hot path
            return func(*args, **kwargs) if kwargs else func(*args)
        kwargs = kwargs or {}
        written, gen, seeded = info
        for i, name in written:
            self._before_write(args[i] if i < len(args) else kwargs.get(name))
        if seeded and (kwargs.get("generator") if gen < 0 or gen >= len(args) else args[gen]) is None:
            # noted before the draw, so that an interrupted op is still restored after
            self.global_draws.add(_device_type(args, kwargs))
        return func(*args, **kwargs)

    def _before_write(self, value: Any) -> None:
        for t in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(t, Tensor):
                if self._owners is None:
                    self._owners = _by_storage(self._params)
                key = _storage_key(t)
                owners = self._owners.get(key)
                if owners:  # only the first write copies
                    self.saved.extend([(p, p.detach().clone()) for p in owners])
                    del self._owners[key]

    def restore_params(self) -> list[Tensor]:
        """Write every saved parameter back (no version bump: through ``.data``); returns the
        restored tensors. Idempotent."""
        with torch.no_grad():
            for p, original in self.saved:
                p.data.copy_(original)
        return [p for p, _ in self.saved]


def _by_storage(params: Iterable[Tensor]) -> dict[int, list[Tensor]]:
    owners: dict[int, list[Tensor]] = {}
    for p in params:
        key = _storage_key(p) if p.numel() else 0
        if key:
            owners.setdefault(key, []).append(p)
    return owners


def _device_type(args: tuple, kwargs: dict) -> str:
    """The device a seeded op draws on: its first tensor argument's, or its ``device=``."""
    for value in args:
        for t in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(t, Tensor):
                return t.device.type
    device = kwargs.get("device")
    return torch.device(device).type if device is not None else "cpu"
