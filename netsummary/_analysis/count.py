"""Count parameters and buffers exactly: unique tensors, per-tensor trainability, real dtypes.

Totals always come from the de-duplicated set of tensors (by identity, as
``nn.Module.parameters()`` does), never from summing rows: a weight tied between two modules and
a module reachable under two parents count once. Trainability is per tensor (``requires_grad``),
so a bias-only fine-tune reports exactly its biases as trainable. Bytes are
``numel * element_size`` of each tensor's own dtype.

Parameters of an uninitialized lazy module (``torch.nn.parameter.is_lazy``) have no size yet and
count 0; after a forward they are materialized and counted with their real sizes.

Sharded parameters (DTensors, DeepSpeed ZeRO-3 partitions; see
:mod:`netsummary._analysis.sharding`) count by their global (logical) size in every total, and
:meth:`ParamStats.local` gives this rank's share of them, in the same single pass.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn.parameter import is_lazy

from .sharding import Sharded, dtensor_class, shard_of


class TensorCounts(NamedTuple):
    """Element and byte counts of a set of tensors (a NamedTuple: built once per module call)."""

    numel: int = 0
    trainable: int = 0
    nbytes: int = 0


class ParamStats:
    """Parameter and buffer statistics of a model, computed in one pass over its modules.

    >>> m = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    >>> s = ParamStats(list(m.named_modules()))
    >>> s.params.numel, s.params.nbytes       # 4*8 + 8 = 40 elements, 40 * 4 bytes
    (40, 160)
    >>> s.of(m[0]).numel, s.of(m[1]).numel
    (40, 0)
    """

    def __init__(self, named: list[tuple[str, nn.Module]]) -> None:
        self._info: dict[int, tuple[int, bool, int]] = {}  # id -> (numel, trainable, nbytes)
        self._shapes: dict[int, tuple[int, ...]] = {}
        self.owner: dict[int, str] = {}  # param id -> qualified name of the module owning it
        self._own: dict[int, list[int]] = {}  # module id -> ids of its direct parameters
        self._subtree: dict[int, frozenset[int]] = {}
        self.uninitialized: list[str] = []
        self.sharded: dict[int, Sharded] = {}  # param id -> its shard, for sharded parameters only
        dtensor = dtensor_class()
        buffers: dict[int, torch.Tensor] = {}
        for name, m in named:
            own = []
            for pname, p in m._parameters.items():
                if p is None:
                    continue
                own.append(id(p))
                if id(p) in self._info:
                    continue
                if is_lazy(p):
                    self.uninitialized.append(f"{name}.{pname}" if name else pname)
                    self._info[id(p)] = (0, p.requires_grad, 0)
                elif (sharded := shard_of(p, dtensor, pname)) is not None:
                    self._info[id(p)] = (sharded.numel, p.requires_grad, sharded.nbytes)
                    self._shapes[id(p)] = sharded.shard.shape
                    self.sharded[id(p)] = sharded
                else:
                    self._info[id(p)] = (p.numel(), p.requires_grad, p.numel() * p.element_size())
                    self._shapes[id(p)] = tuple(p.shape)
                self.owner[id(p)] = name
            self._own[id(m)] = own
            for b in m._buffers.values():
                if b is not None and not is_lazy(b):
                    buffers.setdefault(id(b), b)
        self.params = self._sum(self._info)
        self.buffers = TensorCounts(
            numel=sum(b.numel() for b in buffers.values()),
            nbytes=sum(b.numel() * b.element_size() for b in buffers.values()),
        )

    def _sum(self, ids) -> TensorCounts:
        n = t = b = 0
        for i in ids:
            numel, trainable, nbytes = self._info[i]
            n += numel
            b += nbytes
            if trainable:
                t += numel
        return TensorCounts(n, t, b)

    def ids_of(self, module: nn.Module) -> frozenset[int]:
        """Ids of every unique parameter in ``module``'s subtree (memoized per module)."""
        memo = self._subtree
        got = memo.get(id(module))
        if got is not None:
            return got
        if not module._modules:  # a leaf module: its own parameters
            got = memo[id(module)] = frozenset(self._own.get(id(module), ()))
            return got
        todo = [(module, False)]  # iterative post-order: no recursion limit on deep models
        while todo:
            m, children_done = todo.pop()
            if id(m) in memo:
                continue
            if not children_done:
                todo.append((m, True))
                todo.extend((c, False) for c in m._modules.values() if c is not None and id(c) not in memo)
                continue
            ids = set(self._own.get(id(m), ()))
            for c in m._modules.values():
                if c is not None:
                    ids |= memo.get(id(c), frozenset())
            memo[id(m)] = frozenset(ids)
        return memo[id(module)]

    def of(self, module: nn.Module) -> TensorCounts:
        """Counts of ``module``'s own and descendants' unique parameters."""
        return self._sum(self.ids_of(module))

    def shape(self, pid: int) -> tuple[int, ...]:
        """The shape of parameter ``pid`` (``()`` for an uninitialized lazy one)."""
        return self._shapes.get(pid, ())

    def count(self, ids) -> TensorCounts:
        """Counts of the given parameter ids."""
        return self._sum(ids)

    def local(self, ids) -> TensorCounts:
        """This rank's elements, trainable elements and bytes of the given parameter ids: a sharded
        parameter's local shard, any other parameter whole."""
        n = t = b = 0
        sharded = self.sharded
        for i in ids:
            numel, trainable, nbytes = self._info[i]
            s = sharded.get(i)
            if s is not None:
                numel, nbytes = s.local_numel, s.local_nbytes
            n += numel
            b += nbytes
            if trainable:
                t += numel
        return TensorCounts(n, t, b)
