"""Watch a forward for writes into the model's tensors and draws from the global generators.

:class:`StateWatch` is a ``TorchDispatchMode`` (thread-local, like every dispatch mode: it sees the
operators of the summary's own thread only). For every operator that writes into one of its
arguments it checks whether that argument shares storage with a watched parameter or buffer,
and copies that tensor *before* its first write (copy-on-write). So whatever the forward writes
in place — BatchNorm's running statistics, ``nn.Embedding(max_norm=...)``'s renormalized rows, a
``clamp_`` under ``no_grad``, an ActNorm layer initializing itself through ``.data.copy_`` — is
restored exactly, while the memory cost is only the tensors actually written: a model's 192 MiB
attention-mask buffer that nothing writes is never copied.

An operator writes an argument when its schema says so (the alias annotation ``Tensor(a!)``),
and — because native batch norm kernels update their running statistics without declaring it —
when the argument is named ``running_mean`` or ``running_var`` and the operator does not say it
leaves them alone (a ``training`` / ``use_input_stats`` flag that is False, or ``no_update`` /
``no_training`` / ``functional`` / ``backward`` in its name). Writes outside the dispatcher (a
C++ extension writing through a raw pointer, or operators run in other threads) are not seen.

Operators tagged ``nondeterministic_seeded`` (dropout, ``rand``, ``bernoulli_``, ...) called
without an explicit ``generator=`` draw from the global generator of their device; the watch
notes which device types drew, so the guard restores exactly those generators.

>>> p = torch.nn.Parameter(torch.ones(3))
>>> with StateWatch([p]) as w, torch.no_grad():
...     _ = p.data.mul_(2)
...     _ = torch.rand(2)
>>> p.tolist(), sorted(w.global_draws)     # written in place; drew from the CPU generator
([2.0, 2.0, 2.0], ['cpu'])
>>> w.restore() == [p], p.tolist()
(True, [1.0, 1.0, 1.0])
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch.utils._python_dispatch import TorchDispatchMode

from .._analysis.sharding import dtensor_class

Tensor = torch.Tensor

# OpOverload -> None (neither writes nor draws: the hot path) or (positions and names of written
# arguments, positions and names of running statistics written unless a flag says not, position
# and name of that flag or None, position of the generator argument or -1, position and name of
# the argument without which a seeded op draws nothing or None, seeded)
_Arg = tuple[int, str]
_Info = tuple[tuple[_Arg, ...], tuple[_Arg, ...], _Arg | None, int, _Arg | None, bool] | None
_RUNNING_STATS = ("running_mean", "running_var")
_STATS_FLAGS = ("training", "use_input_stats")
_NO_STATS_UPDATE = ("no_update", "no_training", "functional", "backward")
# a seeded op with one of these arguments draws only when it is true / non-zero (dropout_p of the
# attention kernels, train of native_dropout); left out (None), it has its schema default, 0
_DRAW_SWITCHES = ("dropout_p", "train")
_UNSEEN = object()


def _storage_key(t: Tensor) -> int:
    """The address of ``t``'s storage (shared by every view and alias of it); 0 when unknown."""
    if isinstance(t, FakeTensor):  # a model built under the caller's FakeTensorMode: no storage
        return 0  # (and reading its data_ptr warns)
    try:
        ptr = t.data_ptr()
        return ptr - t.storage_offset() * t.element_size() if ptr else 0  # meta: no address
    except Exception:  # tensor subclasses, fake tensors, sparse layouts: no storage
        return 0


class StateWatch(TorchDispatchMode):
    """Copy-on-write protection of ``tensors`` and a record of global-generator draws.

    Args:
        tensors: the tensors to protect (the model's unique parameters and buffers; a DTensor's
            local shard). Tensors without a storage address (meta, fake, other tensor
            subclasses) cannot be watched and are skipped; a write into a DTensor is matched by
            its local shard's storage.

    After the ``with`` block, :meth:`restore` writes the saved values back and
    :attr:`global_draws` holds the device types (``"cpu"``, ``"cuda"``) whose global generator
    the forward drew from.
    """

    supports_higher_order_operators = True

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps __torch_dispatch__ in _disable_dynamo otherwise, which imports torch._dynamo
        # (about a second) on the first op; the summary runs eager modules, so nothing to skip
        return False

    def __init__(self, tensors: Iterable[Tensor]) -> None:
        super().__init__()
        self._tensors = tensors
        self._owners: dict[int, list[Tensor]] | None = None  # storage address -> params, built on the first write
        self.saved: list[tuple[Tensor, Tensor]] = []
        self.global_draws: set[str] = set()
        self._ops: dict[Any, Any] = {}

    def _resolve(self, func: Any) -> _Info:
        schema = getattr(func, "_schema", None)
        info: _Info = None
        if schema is not None:
            arguments = list(enumerate(schema.arguments))
            declared = {i for i, a in arguments if a.alias_info is not None and a.alias_info.is_write}
            written = tuple((i, a.name) for i, a in arguments if i in declared)
            stats: tuple[tuple[int, str], ...] = ()
            if not any(word in schema.name for word in _NO_STATS_UPDATE):
                stats = tuple((i, a.name) for i, a in arguments if a.name in _RUNNING_STATS and i not in declared)
            flag = next(((i, a.name) for i, a in arguments if a.name in _STATS_FLAGS), None)
            seeded = torch.Tag.nondeterministic_seeded in getattr(func, "tags", ())
            gen = next((i for i, a in arguments if a.name == "generator"), -1)
            # attention kernels are tagged seeded for their dropout: with dropout_p 0 they draw nothing
            draws_if = next(((i, a.name) for i, a in arguments if a.name in _DRAW_SWITCHES), None)
            if written or stats or seeded:
                info = (written, stats, flag, gen, draws_if if seeded else None, seeded)
        self._ops[func] = info
        return info

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
        info = self._ops.get(func, _UNSEEN)
        if info is not None:  # the hot path (an op that neither writes nor draws) skips this
            self.before_op(func, args, kwargs)
        return func(*args, **kwargs) if kwargs else func(*args)

    def before_op(self, func: Any, args: tuple, kwargs: Any) -> None:
        """What the watch does before ``func(*args, **kwargs)`` runs: copy the watched tensors it
        is about to write, note a global-generator draw. For a dispatch mode running the op
        itself in the watch's place (the MAC counter, one mode instead of two)."""
        info = self._ops.get(func, _UNSEEN)
        if info is _UNSEEN:
            info = self._resolve(func)
        if info is None:
            return
        kwargs = kwargs or {}
        written, stats, flag, gen, draws_if, seeded = info
        for i, name in written:
            self._before_write(_arg(args, kwargs, i, name))
        if stats and (flag is None or _arg(args, kwargs, *flag) is not False):
            for i, name in stats:
                self._before_write(_arg(args, kwargs, i, name))
        if seeded and _arg(args, kwargs, gen, "generator") is None and (draws_if is None or _arg(args, kwargs, *draws_if)):
            # noted before the draw, so that an interrupted op is still restored after
            self.global_draws.add(_device_type(args, kwargs))

    def _before_write(self, value: Any) -> None:
        dtensor = dtensor_class()
        for t in value if isinstance(value, (list, tuple)) else (value,):
            if dtensor is not None and isinstance(t, dtensor):  # a DTensor writes into its local shard
                t = t.to_local()
            if isinstance(t, Tensor):
                if self._owners is None:
                    self._owners = _by_storage(self._tensors)
                key = _storage_key(t)
                owners = self._owners.get(key)
                if owners:  # only the first write copies
                    self.saved.extend([(p, p.detach().clone()) for p in owners])
                    del self._owners[key]

    def restore(self) -> list[Tensor]:
        """Write every saved tensor back (no version bump: through ``.data``); returns the
        restored tensors. Idempotent."""
        with torch.no_grad():
            for p, original in self.saved:
                p.data.copy_(original)
        return [p for p, _ in self.saved]


def _arg(args: tuple, kwargs: dict, index: int, name: str) -> Any:
    """An operator's argument by its schema position, passed positionally or by name."""
    return args[index] if 0 <= index < len(args) else kwargs.get(name)


def _by_storage(tensors: Iterable[Tensor]) -> dict[int, list[Tensor]]:
    owners: dict[int, list[Tensor]] = {}
    for p in tensors:
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
