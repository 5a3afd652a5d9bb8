"""Track the live tensor storages of one step, op by op: how many bytes are alive at each moment.

:class:`LiveStorages` is a ``TorchDispatchMode`` (thread-local: it sees its own thread's
operators, and the backward's, which torch runs in the same thread on CPU and hands its mode to
on CUDA). Every storage an operator's output lives in is registered once — a view or an in-place
result shares its base's — with its ``nbytes()``; a weak reference tells when it is freed. Each
allocation and free is an *event* holding the live total after it and where it happened (phase,
module, operator), so the peak and what was live at the peak can be read off afterwards
(:meth:`live_at`). It works the same on real tensors and on fake ones (``FakeTensorMode``), whose
storages have sizes but no memory.

Tensors that exist before the step (parameters, buffers, inputs) are registered up front with
:meth:`register`. Memory a kernel allocates inside itself and frees before returning (oneDNN and
cuDNN workspaces) never reaches dispatch and is not seen; nor is a ``resize_`` of an existing
storage.

>>> with LiveStorages() as live:
...     a = torch.ones(256)          # 1,024 bytes
...     b = a * 2                    # 1,024 more
...     del a
>>> live.peak_event()[1], live.live   # 2 x 1,024 at the peak; b (1,024) still alive
(2048, 1024)
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from .transients import transient_bytes

Tensor = torch.Tensor

_SEEDED = torch.Tag.nondeterministic_seeded


class Where:
    """Where the step is: ``phase`` (``"setup"``, ``"forward"``, ``"backward"``, ``"optimizer"``)
    and ``module()``, the qualified name of the module running (set by the step)."""

    __slots__ = ("phase", "module")

    def __init__(self) -> None:
        self.phase = "setup"
        self.module = lambda: ""


class LiveStorages(TorchDispatchMode):
    """The live storages of the operators run while the mode is open (see the module docstring).

    Attributes:
        live: bytes alive now.
        events: one ``(live bytes after, phase, module, operator)`` per allocation or free.
        records: one ``[key, nbytes, alloc event, free event or None, category]`` per storage.
        draws: device types whose global generator an operator drew from (``"cpu"``).
        ops: names of every operator seen (``"aten.mm"``).
        last_op: the operator that ran last (named in a failure report).
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps __torch_dispatch__ in _disable_dynamo otherwise (a cost on every operator);
        # the step runs eager modules, so there is nothing to skip (as MacCounter does)
        return False

    def __init__(self, where: Where | None = None) -> None:
        super().__init__()
        self.where = where or Where()
        self.live = 0
        self.events: list[tuple[int, str, str, str]] = [(0, self.where.phase, "", "")]
        self.records: list[list[Any]] = []
        self.index: dict[int, int] = {}  # storage key (its StorageImpl address) -> record index, while alive
        self._refs: dict[int, Any] = {}
        self.draws: set[str] = set()
        self.ops: set[str] = set()
        self.last_op = ""
        self.transient_ops: set[str] = set()

    # -- registration -----------------------------------------------------------------------
    def register(self, t: Tensor, category: str = "", op: str = "") -> int | None:
        """Register ``t``'s storage (once); returns its record index (``None``: no storage)."""
        try:
            st = t.untyped_storage()
        except Exception:  # noqa: BLE001 - sparse, nested, subclasses without one storage
            return None
        key = st._cdata
        idx = self.index.get(key)
        if idx is not None:
            return idx
        n = st.nbytes()
        if n == 0:
            return None
        idx = len(self.records)
        self.live += n
        where = self.where
        self.events.append((self.live, where.phase, where.module(), op))
        self.records.append([key, n, len(self.events) - 1, None, category])
        self.index[key] = idx
        self._refs[key] = weakref.ref(st, lambda _ref, key=key: self._freed(key))
        return idx

    def record_of(self, t: Tensor) -> int | None:
        """The live record index of ``t``'s storage, or ``None`` if it is not tracked."""
        try:
            return self.index.get(t.untyped_storage()._cdata)
        except Exception:  # noqa: BLE001
            return None

    def _freed(self, key: int) -> None:
        idx = self.index.pop(key, None)
        self._refs.pop(key, None)
        if idx is None:
            return
        rec = self.records[idx]
        self.live -= rec[1]
        where = self.where
        self.events.append((self.live, where.phase, where.module(), "free"))
        rec[3] = len(self.events) - 1

    # -- dispatch -----------------------------------------------------------------------------
    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = func.__name__.split(".")[0]
        op = f"{func.namespace}.{name}"
        if func.namespace != "profiler":  # record_function markers (optimizer.step's) name no work
            self.last_op = op
        self.ops.add(op)
        if _SEEDED in func.tags and kwargs.get("generator") is None:
            for a in (*args, *kwargs.values()):
                if isinstance(a, Tensor):
                    self.draws.add(a.device.type)
                    break
            else:
                device = kwargs.get("device")
                self.draws.add(torch.device(device).type if device is not None else "cpu")
        extra = transient_bytes(op, args)
        if extra:  # a copy the kernel makes inside itself (see .transients): live before its outputs
            self.live += extra
            self.events.append((self.live, self.where.phase, self.where.module(), op))
            rec = [-len(self.records) - 1, extra, len(self.events) - 1, None, ""]
            self.records.append(rec)
            self.transient_ops.add(op)
        out = func(*args, **kwargs)
        for t in pytree.tree_leaves(out):
            if isinstance(t, Tensor):
                self.register(t, op=op)
        if extra:
            self.live -= extra
            self.events.append((self.live, self.where.phase, self.where.module(), "free"))
            rec[3] = len(self.events) - 1
        return out

    # -- reading ------------------------------------------------------------------------------
    def peak_event(self, extra: list[int] | None = None) -> tuple[int, int]:
        """``(event index, bytes)`` of the most bytes alive, ``extra[e]`` added to event ``e``."""
        best, best_bytes = 0, -1
        for i, ev in enumerate(self.events):
            b = ev[0] + (extra[i] if extra is not None else 0)
            if b > best_bytes:
                best, best_bytes = i, b
        return best, best_bytes

    def live_at(self, event: int) -> list[int]:
        """Record indices of the storages alive right after ``event``."""
        return [i for i, r in enumerate(self.records) if r[2] <= event and (r[3] is None or r[3] > event)]
