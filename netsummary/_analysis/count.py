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
from torch.nn.parameter import Parameter, is_lazy

from .quantized import ModuleQuant, Probe
from .sharding import Sharded, dtensor_class, shard_of


class TensorCounts(NamedTuple):
    """Element and byte counts of a set of tensors (a NamedTuple: built once per module call).

    With quantized weights (:mod:`netsummary._analysis.quantized`) ``numel`` counts their logical
    elements and ``nbytes`` their stored bytes; ``quant_numel`` / ``quant_bytes`` are that share,
    ``state_bytes`` the bytes of their quantization state (scales, zero points, absmax: not in
    ``nbytes``), ``unknown`` the quantized layers whose logical count is unknown (their stored
    bytes are in ``nbytes``, their elements nowhere) and ``labels`` how they are stored."""

    numel: int = 0
    trainable: int = 0
    nbytes: int = 0
    quant_numel: int = 0
    quant_bytes: int = 0
    state_bytes: int = 0
    unknown: int = 0
    labels: tuple[str, ...] = ()


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
        # id -> shape, or the plain parameter itself (its shape is read on demand: most never are)
        self._shapes: dict[int, tuple[int, ...] | torch.Tensor] = {}
        self.owner: dict[int, str] = {}  # param id -> qualified name of the module owning it
        self._own: dict[int, list[int]] = {}  # module id -> ids of its direct parameters
        self._subtree: dict[int, frozenset[int]] = {}
        self._counted: dict[int, tuple[frozenset[int], TensorCounts]] = {}
        self.uninitialized: list[str] = []
        self.quant: dict = {}  # key -> QuantTensor of every quantized weight (and its layer's plain bias)
        self.quant_unknown: list[str] = []  # "name (Type)" of quantized layers of an unknown layout
        self.tensor_names: dict = {}  # quantized keys -> attribute name (for formulas)
        self.sharded: dict[int, Sharded] = {}  # param id -> its shard, for sharded parameters only
        dtensor = dtensor_class()
        info, shapes, owner, own_of = self._info, self._shapes, self.owner, self._own
        buffers: dict[int, torch.Tensor] = {}
        quant_module = Probe().module
        # a leaf whose parameters are all plain and its own gets its counts here (see counted())
        new_counts, counted, subtree = tuple.__new__, self._counted, self._subtree  # (a NamedTuple's own __new__ is Python)
        for name, m in named:
            own = []
            q = quant_module(m)
            skip_p = skip_b = frozenset()
            if q is not None:
                self._add_quant(q, name, m, own)
                skip_p, skip_b = q.params, q.buffers
            n_all = t_all = b_all = 0
            alone = q is None and not m._modules
            for pname, p in m._parameters.items():
                if p is None or pname in skip_p:
                    continue
                key = id(p)
                own.append(key)
                if key in info:
                    alone = False
                    continue
                if type(p) is Parameter and "ds_numel" not in p.__dict__:  # plain: the common case
                    n = p.numel()
                    nbytes = n * p.element_size()
                    grad = p.requires_grad
                    info[key] = (n, grad, nbytes)
                    shapes[key] = p  # its shape is read when asked for (see shape())
                    owner[key] = name
                    n_all += n
                    b_all += nbytes
                    if grad:
                        t_all += n
                    continue
                alone = False
                if is_lazy(p):
                    self.uninitialized.append(f"{name}.{pname}" if name else pname)
                    info[key] = (0, p.requires_grad, 0)
                elif (sharded := shard_of(p, dtensor, pname)) is not None:
                    info[key] = (sharded.numel, p.requires_grad, sharded.nbytes)
                    shapes[key] = sharded.shard.shape
                    self.sharded[key] = sharded
                else:
                    info[key] = (p.numel(), p.requires_grad, p.numel() * p.element_size())
                    shapes[key] = tuple(p.shape)
                if key not in owner:
                    owner[key] = name
            own_of[id(m)] = own
            if alone:
                ids = subtree[id(m)] = frozenset(own)
                counted[id(m)] = (ids, new_counts(TensorCounts, (n_all, t_all, b_all, 0, 0, 0, 0, ())))
            for bname, b in m._buffers.items():
                if b is not None and bname not in skip_b and not is_lazy(b):
                    buffers.setdefault(id(b), b)
        self.params = self._sum(self._info)
        self.buffers = TensorCounts(
            numel=sum(b.numel() for b in buffers.values()),
            nbytes=sum(b.numel() * b.element_size() for b in buffers.values()),
        )
        # DTensor buffers (distribute_tensor, distribute_module): counted global above, as
        # parameters are; this rank's share in local_buffers (None when no buffer is a DTensor)
        self.sharded_buffers: dict[int, Sharded] = {} if dtensor is None else {
            i: s for i, b in buffers.items() if isinstance(b, dtensor) and (s := shard_of(b, dtensor)) is not None}
        self.local_buffers: TensorCounts | None = None
        if self.sharded_buffers:
            whole = [b for i, b in buffers.items() if i not in self.sharded_buffers]
            self.local_buffers = TensorCounts(
                numel=sum(b.numel() for b in whole) + sum(s.local_numel for s in self.sharded_buffers.values()),
                nbytes=sum(b.numel() * b.element_size() for b in whole)
                + sum(s.local_nbytes for s in self.sharded_buffers.values()),
            )

    def _add_quant(self, q: ModuleQuant, name: str, m: nn.Module, own: list) -> None:
        """Count a module's quantized tensors: logical elements, stored bytes (state apart)."""
        if q.unknown:
            self.quant_unknown.append(f"{name or '(root)'} ({type(m).__name__})")
        for t in q.tensors:
            own.append(t.key)
            if t.key in self._info:
                continue
            self._info[t.key] = (t.logical or 0, t.trainable, t.data_bytes)
            self._shapes[t.key] = t.shape
            self.quant[t.key] = t
            self.tensor_names[t.key] = t.name
            self.owner[t.key] = name

    def _sum(self, ids) -> TensorCounts:
        n = t = b = 0
        for i in ids:
            numel, trainable, nbytes = self._info[i]
            n += numel
            b += nbytes
            if trainable:
                t += numel
        if not self.quant:
            return TensorCounts(n, t, b)
        return self._with_quant(ids, n, t, b)

    def _with_quant(self, ids, n: int, t: int, b: int) -> TensorCounts:
        qn = qb = unknown = 0
        state: dict = {}
        labels: dict[str, None] = {}
        quant = self.quant
        for i in ids:
            q = quant.get(i)
            if q is None or q.label is None:
                continue
            if q.logical is None:
                unknown += 1
            else:
                qn += q.logical
                labels[q.label] = None
            qb += q.data_bytes
            state.update(q.state)
        return TensorCounts(n, t, b, qn, qb, sum(state.values()), unknown, tuple(sorted(labels)))

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

    def counted(self, module: nn.Module) -> tuple[frozenset[int], TensorCounts]:
        """:meth:`ids_of` and their counts together, memoized per module (a module called
        again, or in every call of a loop, is counted once)."""
        got = self._counted.get(id(module))
        if got is None:
            ids = self.ids_of(module)
            got = self._counted[id(module)] = (ids, self._sum(ids))
        return got

    @property
    def plain(self) -> bool:
        """No quantized and no sharded tensor: records need none of their fields (the common case)."""
        return not (self.quant or self.quant_unknown or self.sharded or self.sharded_buffers)

    def quant_formula(self, module: nn.Module) -> str | None:
        """How a module holding quantized weights gets its logical count, from the logical shapes
        (``"32 × 64 + 32"``; ``"unknown"`` for an unknown layout); ``None`` for any other module
        (its formula is :func:`~netsummary._analysis.formula.param_formula`'s)."""
        if not self.quant or not module._modules.keys() <= {"_packed_params"}:
            return None
        own = self._own.get(id(module), ())
        if not any(k in self.quant for k in own):
            return None
        terms = []
        for k in own:
            q = self.quant.get(k)
            if q is not None and q.logical is None:
                return "unknown"
            shape = self.shape(k)
            terms.append(" × ".join(map(str, shape)) if len(shape) > 1 else f"{self._info[k][0]:,}")
        return " + ".join(terms)

    def shape(self, pid: int) -> tuple[int, ...]:
        """The shape of parameter ``pid`` (``()`` for an uninitialized lazy one)."""
        shape = self._shapes.get(pid, ())
        return tuple(shape.shape) if isinstance(shape, torch.Tensor) else shape

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
