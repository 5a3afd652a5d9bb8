"""Sharded parameters: global (logical) counts for the totals, this rank's shard beside them.

A parameter may hold only part of its values on this process:

- a **DTensor** (``torch.distributed.tensor.DTensor``): FSDP2's ``fully_shard`` between forwards,
  tensor parallelism (``parallelize_module`` with ``ColwiseParallel`` / ``RowwiseParallel``),
  ``distribute_tensor``. ``p.shape`` / ``p.numel()`` are the global (logical) figures; the shard
  this rank holds is ``p.to_local()``, laid out by ``p.placements`` (``Shard(0)``,
  ``Replicate()``) over ``p.device_mesh``;
- a **DeepSpeed ZeRO-3** partitioned parameter: ``p.numel()`` is 0 (or partial) while
  ``p.ds_numel`` / ``p.ds_shape`` hold the logical size and ``p.ds_tensor`` this rank's partition
  (its local figures are that partition as held, DeepSpeed's padding of the last one included).

Every figure is read from the tensor's own metadata, in the one counting pass
(:class:`~netsummary._analysis.count.ParamStats`), without any collective: the global totals are
the same on every rank and CI budgets keep working; the local ones are this rank's. A DTensor
*buffer* (``distribute_tensor`` registered with ``register_buffer``, ``distribute_module``) is
counted the same way: global in ``buffer_count`` / ``buffer_bytes``, this rank's share in
``local_buffer_count`` / ``local_buffer_bytes``, and the model is ``sharded``. Global
counts are never summed across ranks (``Replicate()`` shards would count twice).
``torch.distributed.tensor`` is not imported here: if the user's program has not imported it,
no parameter can be a DTensor, and a model without sharded parameters costs one dict lookup
per parameter (the ZeRO-3 attribute check).

>>> import torch
>>> p = torch.nn.Parameter(torch.zeros(0))           # a ZeRO-3 partition, hand-built
>>> p.ds_numel, p.ds_shape, p.ds_tensor = 544, torch.Size([32, 17]), torch.zeros(272)
>>> s = shard_of(p, None)
>>> s.numel, s.local_numel, s.shard.shape, s.shard.local_shape, s.shard.placements
(544, 272, (32, 17), (272,), ('ZeRO-3',))
"""

from __future__ import annotations

import sys
from typing import Any, NamedTuple

import torch

from .._summary import ParamShard

ZERO3 = "ZeRO-3"


class Sharded(NamedTuple):
    """One sharded parameter: global elements and bytes, this rank's elements and bytes, layout."""

    numel: int
    nbytes: int
    local_numel: int
    local_nbytes: int
    shard: ParamShard
    mesh: Any  # the DeviceMesh (None for ZeRO-3)


def dtensor_class() -> type | None:
    """``DTensor`` if the program imported ``torch.distributed.tensor`` (else no tensor can be one)."""
    module = sys.modules.get("torch.distributed.tensor")
    return getattr(module, "DTensor", None) if module is not None else None


def shard_of(p: torch.Tensor, dtensor: type | None, name: str = "") -> Sharded | None:
    """How ``p`` is sharded, or ``None`` for a whole tensor (see the module docstring)."""
    if dtensor is not None and isinstance(p, dtensor):
        local = p.to_local()
        size = p.element_size()
        mesh = p.device_mesh
        return Sharded(p.numel(), p.numel() * size, local.numel(), local.numel() * local.element_size(),
                       ParamShard(name, tuple(p.shape), tuple(local.shape), tuple(map(placement_text, p.placements)),
                                  tuple(mesh.shape)), mesh)
    attrs = p.__dict__
    if "ds_numel" in attrs:  # DeepSpeed ZeRO-3: logical size in ds_numel / ds_shape, partition in ds_tensor
        numel = int(attrs["ds_numel"])
        shape = tuple(int(d) for d in attrs.get("ds_shape", (numel,)))
        part = attrs.get("ds_tensor")
        local = part if isinstance(part, torch.Tensor) else p
        return Sharded(numel, numel * p.element_size(), local.numel(), local.numel() * local.element_size(),
                       ParamShard(name, shape, tuple(local.shape), (ZERO3,)), None)
    return None


def placement_text(placement: Any) -> str:
    """``Shard(0)``, ``Replicate()``, ``Partial(sum)``: a DTensor placement as its constructor reads."""
    kind = type(placement).__name__
    if kind.endswith("Shard") and hasattr(placement, "dim"):
        return f"{kind}({placement.dim})"
    if kind == "Replicate":
        return "Replicate()"
    if kind == "Partial" and hasattr(placement, "reduce_op"):
        return f"Partial({placement.reduce_op})"
    return str(placement)


def rank_and_world() -> tuple[int | None, int | None]:
    """This process's rank and the world size, or ``(None, None)`` outside a ``torch.distributed`` job."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return None, None


def record_fields(stats: Any, ids: Any, module: torch.nn.Module) -> dict[str, Any]:
    """A record's sharding fields (none for a model without sharded parameters): this rank's
    elements and bytes of ``ids`` and the shards of the parameters ``module`` holds itself."""
    sharded = stats.sharded
    if not sharded and not stats.sharded_buffers:
        return {}
    local = stats.local(ids)
    own = tuple(sharded[id(p)].shard for p in module._parameters.values() if p is not None and id(p) in sharded)
    return {"local_params": local.numel, "local_param_bytes": local.nbytes, "shards": own}


def summary_fields(stats: Any) -> dict[str, Any]:
    """The summary's sharding fields (none for a model without sharded parameters)."""
    sharded = stats.sharded
    if not sharded and not stats.sharded_buffers:
        return {}
    local = stats.local(stats.owner)  # every unique parameter once
    rank, world = rank_and_world()
    every = [*sharded.values(), *stats.sharded_buffers.values()]
    meshes = tuple(dict.fromkeys(s.shard.mesh_shape for s in every if s.mesh is not None))
    fields = {"local_params": local.numel, "local_trainable_params": local.trainable,
              "local_param_bytes": local.nbytes, "rank": rank, "world_size": world, "mesh_shapes": meshes}
    if stats.local_buffers is not None:  # some buffer is a DTensor: its share too
        fields |= {"local_buffer_count": stats.local_buffers.numel, "local_buffer_bytes": stats.local_buffers.nbytes}
    return fields
