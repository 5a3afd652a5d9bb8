"""Memory per rank of data-parallel training: DDP, ZeRO-2 and FSDP (ZeRO-3), from one measured step.

With ``N`` ranks, parameters ``P``, gradients ``G`` and optimizer state ``O`` (bytes, counted on
one device), the ZeRO paper (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training
Trillion Parameter Models", SC 2020, section 5 and figure 1) gives per rank:

=============  ============  ============  ============  =====================================
strategy       parameters    gradients     optim. state  also per rank
=============  ============  ============  ============  =====================================
``"ddp"``      P             G             O             DDP's gradient buckets: G
``"zero2"``    P             ⌈G / N⌉       ⌈O / N⌉       --
``"fsdp"``     ⌈P / N⌉       ⌈G / N⌉       ⌈O / N⌉       the all-gathered unit (transient)
=============  ============  ============  ============  =====================================

* DDP replicates everything; its reducer also copies every gradient into communication buckets
  unless ``gradient_as_bucket_view=True`` (the PyTorch DDP documentation: that option saves
  "the total gradients size"), so the buckets count G.
* ZeRO-2 (DeepSpeed ``stage=2``, FSDP ``SHARD_GRAD_OP``) shards gradients and optimizer state.
* ZeRO-3 / FSDP (``fully_shard``, ``FULL_SHARD``) shards parameters too and all-gathers one unit
  at a time. The transient counted is the largest unit's full parameters, the second largest
  unit's (the next unit, which FSDP prefetches while one runs) and, in training, the largest
  unit's full gradients before the reduce-scatter. Units are the blocks of the model's topmost ``nn.ModuleList`` /
  ``nn.Sequential`` containers (the usual wrap policy: one unit per transformer block); the
  parameters outside them form the root unit. See :func:`fsdp_units`.
* Shards are even splits rounded up (ZeRO partitions a flattened buffer padded to a multiple of
  N); FSDP2 pads each parameter's dim 0 instead, at most ``N − 1`` rows per parameter more.
* Buffers are replicated. Activations and temporaries are those of the per-rank batch
  ``⌈batch / N⌉`` (the global batch split as ``DistributedSampler`` does), *measured* by a step
  at that batch, not scaled.

>>> mib = 2**20
>>> sh = shard_memory(parameters=400 * mib, gradients=400 * mib, optimizer_state=800 * mib, buffers=0,
...                   rest=1000 * mib, world_size=4, strategy="fsdp", batch_size=32, rank_batch=8,
...                   unit=("layers.0", 50 * mib, 50 * mib))
>>> sh.peak.bytes // mib    # 100 + 100 + 200 sharded + 1,000 rest + (2 × 50 + 50) unit
1550

Raises :class:`~netsummary._errors.InputSpecError` for a world size below 1 or an unknown
strategy (:class:`~netsummary._errors.InputTypeError` for a world size that is not an int).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .._errors import InputSpecError, InputTypeError
from .._units import format_bytes
from .estimate import FORMULA, MemoryItem

__all__ = ["STRATEGIES", "ShardedMemory", "check_sharding", "fsdp_units", "shard_memory"]

#: strategy -> what it shards
STRATEGIES = {
    "ddp": "DDP: everything replicated",
    "zero2": "ZeRO-2: gradients and optimizer state sharded",
    "fsdp": "FSDP / ZeRO-3: parameters, gradients and optimizer state sharded",
}


def check_sharding(world_size: Any, strategy: Any) -> tuple[int, str]:
    """Validate ``world_size`` (an int >= 1) and ``strategy`` (a key of :data:`STRATEGIES`).

    Raises:
        InputTypeError: ``world_size`` not an int, ``strategy`` not a str.
        InputSpecError: ``world_size`` below 1, an unknown strategy.
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int):
        raise InputTypeError(f"world_size: expected a positive int (the number of ranks), got {world_size!r} "
                             f"({type(world_size).__name__})", world_size)
    if world_size < 1:
        raise InputSpecError(f"world_size: expected a positive int (the number of ranks), got {world_size}",
                             world_size)
    if not isinstance(strategy, str):
        raise InputTypeError(f"strategy: expected one of {', '.join(map(repr, STRATEGIES))}, got {strategy!r} "
                             f"({type(strategy).__name__})", strategy)
    key = strategy.strip().lower()
    if key not in STRATEGIES:
        raise InputSpecError(f"strategy: expected one of {', '.join(map(repr, STRATEGIES))} (ddp replicates, "
                             f"zero2 shards gradients and optimizer state, fsdp shards parameters too), got "
                             f"{strategy!r}", strategy)
    return world_size, key


@dataclass(frozen=True, slots=True)
class ShardedMemory:
    """Bytes per rank of ``strategy`` on ``world_size`` ranks (method: formula on counted and
    measured figures; each item's note gives its arithmetic).

    Attributes:
        parameters / buffers / gradients / ddp_buckets / optimizer_state: per rank, whole step.
        all_gathered: FSDP's transient unshard of the largest unit (0 for ddp and zero2);
            ``unit`` names it.
        activations: everything else live at the peak of a step at ``rank_batch`` (activations,
            inputs, temporaries), measured.
        peak: the per-rank peak: the parts live at the measured peak, sharded, plus the buckets
            and the transient.
    """

    strategy: str
    world_size: int
    batch_size: int
    rank_batch: int
    parameters: MemoryItem
    buffers: MemoryItem
    gradients: MemoryItem
    ddp_buckets: MemoryItem
    optimizer_state: MemoryItem
    all_gathered: MemoryItem
    activations: MemoryItem
    peak: MemoryItem
    unit: str = ""
    train: bool = True

    @property
    def items(self) -> tuple[tuple[str, MemoryItem], ...]:
        """``(category, item)`` in display order; the DDP buckets and the all-gathered unit only
        where the strategy has them, gradients and optimizer state only in training."""
        rows = [("parameters", self.parameters), ("buffers", self.buffers)]
        if self.train:  # inference has no gradients, buckets or optimizer state
            rows.append(("gradients", self.gradients))
            if self.strategy == "ddp":
                rows.append(("ddp_buckets", self.ddp_buckets))
            rows.append(("optimizer_state", self.optimizer_state))
        if self.strategy == "fsdp":
            rows.append(("all_gathered", self.all_gathered))
        rows += [("activations", self.activations), ("peak", self.peak)]
        return tuple(rows)

    def __str__(self) -> str:
        from .._reporting.fit import render_sharded

        return render_sharded(self)


def _split(n: int, world: int) -> int:
    return math.ceil(n / world)


def shard_memory(
    *,
    parameters: int,
    gradients: int,
    optimizer_state: int,
    buffers: int,
    rest: int,
    world_size: int,
    strategy: str,
    batch_size: int,
    rank_batch: int,
    unit: tuple[str, int, int] = ("", 0, 0),
    prefetched: int | None = None,
    live: dict[str, int] | None = None,
    train: bool = True,
) -> ShardedMemory:
    """Per-rank bytes from single-device figures (bytes).

    Args:
        parameters / gradients / optimizer_state / buffers: the whole model's, on one device.
        rest: everything else live at the peak of a step at ``rank_batch`` (measured).
        unit: the largest FSDP unit, ``(name, parameter bytes, trainable parameter bytes)``.
        prefetched: the parameter bytes of the unit FSDP gathers ahead while ``unit`` runs: the
            second largest unit (default: ``unit``'s own, for a model of alike blocks).
        live: the parameters / gradients / optimizer state live at the measured peak (the
            estimate's ``peak_parts``), when the peak came before all gradients existed;
            default: all of them.
        train: ``False`` for inference (no gradients, no buckets, no unit gradients).
    """
    world_size, strategy = check_sharding(world_size, strategy)
    n = world_size
    live = dict(live or {})
    p_live = live.get("parameters", parameters)
    g_live = live.get("gradients", gradients)
    o_live = live.get("optimizer_state", optimizer_state)
    shard_p = strategy == "fsdp"
    shard_go = strategy in ("fsdp", "zero2")
    name, unit_p, unit_g = unit

    def share(x: int, sharded: bool) -> int:
        return _split(x, n) if sharded else x

    def how(x: int, sharded: bool) -> str:
        return f"⌈{format_bytes(x)} / {n}⌉ (sharded)" if sharded else f"{format_bytes(x)} (replicated)"

    params = MemoryItem(share(parameters, shard_p), FORMULA, how(parameters, shard_p))
    grads = MemoryItem(share(gradients, shard_go), FORMULA, how(gradients, shard_go))
    optim = MemoryItem(share(optimizer_state, shard_go), FORMULA, how(optimizer_state, shard_go))
    bufs = MemoryItem(buffers, FORMULA, f"{format_bytes(buffers)} (replicated)")
    buckets_n = gradients if strategy == "ddp" and train else 0
    buckets = MemoryItem(buckets_n, FORMULA, "= gradients: DDP copies them into buckets (gradient_as_bucket_view="
                         "False, the default; True saves this)" if buckets_n else "")
    gathered_n = 0
    note = ""
    if strategy == "fsdp":
        ahead = unit_p if prefetched is None else prefetched
        gathered_n = unit_p + ahead + (unit_g if train else 0)
        note = (f"largest unit {name or '(root)'}: {format_bytes(unit_p)} params + {format_bytes(ahead)} prefetched"
                + (f" + {format_bytes(unit_g)} grads" if train else ""))
    gathered = MemoryItem(gathered_n, FORMULA, note)
    acts = MemoryItem(rest, FORMULA, f"measured at batch {rank_batch:,}: activations, inputs, temporaries at the peak")
    peak_n = (share(p_live, shard_p) + buffers + share(g_live, shard_go) + share(o_live, shard_go) + buckets_n
              + gathered_n + rest)
    peak = MemoryItem(peak_n, FORMULA, "parts live at the measured peak, sharded, + buckets, transient, activations")
    return ShardedMemory(strategy, n, batch_size, rank_batch, params, bufs, grads, buckets, optim, gathered, acts,
                         peak, name, train)


def fsdp_units(model: Any) -> list[tuple[str, int, int]]:
    """The FSDP units of ``model``, ``(qualified name, parameter bytes, trainable parameter
    bytes)``, each unique parameter tensor in exactly one unit (so the bytes add up to the
    model's): one unit per child of every topmost ``nn.ModuleList`` / ``nn.Sequential`` with at
    least two children (the root itself included), and the root unit ``""`` for every parameter
    outside them. A model with no such container has one unit per direct child.
    """
    from torch import nn

    def is_list(m: nn.Module) -> bool:
        return isinstance(m, (nn.ModuleList, nn.Sequential)) and len(m) >= 2

    heads: list[tuple[str, nn.Module]] = []
    stack: list[tuple[str, nn.Module]] = [("", model)]
    while stack:
        prefix, m = stack.pop()
        if is_list(m):
            heads += [(f"{prefix}.{k}" if prefix else k, c) for k, c in m.named_children()]
            continue
        stack += [(f"{prefix}.{k}" if prefix else k, c) for k, c in reversed(list(m.named_children()))]
    if not heads:
        heads = [(k, c) for k, c in model.named_children()]
    seen: set[int] = set()
    units = []
    for name, m in heads:
        units.append((name, *_take(m, seen)))
    root = _take(model, seen)
    if root[0]:
        units.insert(0, ("", *root))
    return units


def _take(module: Any, seen: set[int]) -> tuple[int, int]:
    total = trainable = 0
    for p in module.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = p.numel() * p.element_size()
        total += n
        trainable += n if p.requires_grad else 0
    return total, trainable
