"""What a summary inside a ``torch.distributed`` job needs around the forward.

- **Live process groups.** A forward over DTensor parameters (FSDP2's all-gathers, a tensor
  parallel layer's collectives) needs the process group of each parameter's device mesh. One
  whose group was never initialized or is already destroyed is refused before the forward, with
  a :class:`~netsummary.DeviceError` that names the parameter and its mesh
  (:func:`check_process_groups`), instead of torch's own error from inside the forward.
- **FSDP2 left as it was.** FSDP2's pre-forward hooks all-gather a module's parameters and
  register the unsharded ones; the root module keeps them unsharded after its forward (a real
  training step frees them in the backward), and every other module reshards after its own.
  :func:`reshard_unsharded` calls the public ``FSDPModule.reshard()`` of each FSDP module whose
  parameters were sharded when the summary started and are not any more (and ``unshard()`` of
  one the user had unsharded that the forward resharded), so the model is in its sharding state
  of before (the same parameter objects registered, FSDP's own state consistent for the next step).
- **FSDP2 on meta** (the large-model recipe: build on ``meta``, ``fully_shard``, summarize):
  FSDP refuses to all-gather meta parameters, so the fake forward runs on
  :func:`fsdp_free_view`, a view of the module tree without FSDP's classes and hooks whose
  parameters are the very same DTensors (counted global and local as always) and run as plain
  fake tensors of their global shape: what each rank computes after the all-gather.
- **all_ranks**: :func:`gather_ranks` collects every rank's local figures with
  ``torch.distributed.all_gather_object`` (a collective: every rank must call ``summary``);
  :func:`collective_on_every_path` makes a call that fails take part in it too (see
  :class:`RankGather`), so one rank's error never leaves the others waiting.

Nothing here imports ``torch.distributed.fsdp`` or ``torch.distributed.tensor``: what the user's
program has not imported, no model can use.

A forward that writes into a DTensor parameter in place (``self.weight.mul_(2)`` under
``no_grad``) has this rank's shard copied before the write and written back, as for any tensor
(:func:`dtensor_locals` gives the write watch the local shards). Under FSDP2 the forward sees the
all-gathered unsharded parameters, which FSDP frees when it reshards: a write into them never
reaches the sharded parameters, with or without netsummary.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import sys
import weakref
from collections import OrderedDict
from typing import Any, Callable

import torch
from torch import nn

from .._analysis.sharding import dtensor_class, placement_text
from .._errors import DeviceError, InputSpecError


def _fsdp_module_class() -> type | None:
    fsdp = sys.modules.get("torch.distributed.fsdp")
    return getattr(fsdp, "FSDPModule", None) if fsdp is not None else None


def _dtensor_params(named: list[tuple[str, nn.Module]]) -> list[tuple[str, Any]]:
    """``(qualified name, DTensor)`` of the DTensor parameters (none when DTensor was never imported)."""
    dtensor = dtensor_class()
    if dtensor is None:
        return []
    return [(f"{name}.{k}" if name else k, p) for name, m in named for k, p in m._parameters.items()
            if isinstance(p, dtensor)]


def check_process_groups(named: list[tuple[str, nn.Module]]) -> None:
    """Refuse a forward over DTensor parameters whose device mesh has no live process group.

    Raises:
        DeviceError: ``torch.distributed`` is not initialized (never, or already destroyed),
            or a mesh's process group is not registered any more; the message names the first
            such parameter, its mesh and what is needed.
    """
    dist = torch.distributed
    seen: set[int] = set()
    for qualified, p in _dtensor_params(named):
        mesh = p.device_mesh
        if id(mesh) in seen:
            continue
        seen.add(id(mesh))
        placements = ", ".join(map(placement_text, p.placements))
        where = f"parameter {qualified!r} is a DTensor ({placements}) on a device mesh of shape {tuple(mesh.shape)}"
        if not (dist.is_available() and dist.is_initialized()):
            raise DeviceError(
                f"{where}, but torch.distributed is not initialized (never, or destroyed already): expected a "
                f"running job (torch.distributed.init_process_group, e.g. under torchrun) for the forward; "
                f"summary(model) without an input counts global and local parameters without one", qualified)
        try:
            for dim in range(mesh.ndim):
                dist.get_process_group_ranks(mesh.get_group(dim))
        except Exception as err:  # destroyed and re-initialized: the mesh's group is gone
            raise DeviceError(
                f"{where}, whose process group is not initialized any more ({type(err).__name__}: {err}): "
                f"expected the mesh's process group to be alive for the forward; rebuild the mesh "
                f"(init_device_mesh) after init_process_group, or summarize without an input", qualified) from None


def check_all_ranks(all_ranks: Any) -> bool:
    """Validate ``all_ranks``; ``True`` needs an initialized default process group.

    Raises:
        InputTypeError: not a bool.
        InputSpecError: ``all_ranks=True`` outside an initialized ``torch.distributed`` job.
    """
    from .._errors import InputTypeError

    if not isinstance(all_ranks, bool):
        raise InputTypeError(f"all_ranks: expected True (gather every rank's figures) or False, got {all_ranks!r}",
                             all_ranks)
    dist = torch.distributed
    if all_ranks and not (dist.is_available() and dist.is_initialized()):
        raise InputSpecError(
            "all_ranks=True gathers every rank's local figures with torch.distributed.all_gather_object and "
            "expected an initialized process group, but torch.distributed.is_initialized() is False; call "
            "torch.distributed.init_process_group first (torchrun sets up the job) or drop all_ranks", all_ranks)
    return all_ranks


COLLECTIVE = "torch.distributed.all_gather_object"

_GATHER: contextvars.ContextVar[RankGather | None] = contextvars.ContextVar("netsummary_rank_gather", default=None)


class RankGather:
    """The one ``all_gather_object`` of a ``summary(..., all_ranks=True)`` call.

    Every way out of the call takes part in it exactly once: a success contributes this rank's
    ``(local params, local trainable, local bytes)`` (:meth:`succeeded`), a failure — argument,
    device, forward or summary-building error alike — contributes ``"ErrorType: message"``
    (:meth:`failed`, called by :func:`collective_on_every_path`), so no rank is left waiting
    on a rank that raised. A rank that succeeded while another failed raises
    :class:`~netsummary.RankError` naming that rank and its error; the failing rank raises
    its own error. A collective that fails (a rank exited; the process group's timeout passed)
    is a :class:`~netsummary.RankError` that names it.
    """

    def __init__(self) -> None:
        self.done = False

    def _exchange(self, figures: tuple[int, int, int] | None, error: str | None) -> list[dict]:
        from .._errors import RankError

        self.done = True
        dist = torch.distributed
        rank, world = dist.get_rank(), dist.get_world_size()
        gathered: list[Any] = [None] * world
        try:
            dist.all_gather_object(gathered, {"figures": figures, "error": error})
        except Exception as err:
            raise RankError(
                f"all_ranks=True: the collective {COLLECTIVE} (every rank's figures, on the default process group "
                f"of {world} ranks) failed on rank {rank}: {type(err).__name__}: {_first_line(err)}. Every rank must "
                f"call summary(..., all_ranks=True): a rank that exits before it breaks the collective, and a rank "
                f"that never calls it leaves the others waiting until the process group's timeout "
                f"(init_process_group(timeout=...), 30 minutes by default)", collective=COLLECTIVE) from err
        return gathered

    def succeeded(self, result: Any) -> Any:
        """``result`` with every rank's figures (:attr:`Summary.ranks`), or :class:`RankError` if a
        rank failed."""
        from .._errors import RankError

        gathered = self._exchange(_figures(result), None)
        result = dataclasses.replace(result, ranks=_shares(gathered))
        failed = {r: g["error"] for r, g in enumerate(gathered) if g["error"] is not None}
        if failed:
            world = len(gathered)
            which = "; ".join(f"rank {r} of {world} failed: {_first_line(e)}" for r, e in failed.items())
            raise RankError(
                f"all_ranks=True: {which}. This rank's summary succeeded and is on .partial (its ranks: every "
                f"rank that reported figures); the failing rank raised its own error", failed,
                COLLECTIVE, result)
        return result

    def failed(self, err: Exception) -> None:
        """Take part in the collective for a call that raised ``err`` (once; nothing if it did already).
        A :class:`~netsummary.ForwardError`'s partial summary contributes its figures and gets
        every rank's; what the other ranks reported, or a failed collective, becomes a note on ``err``."""
        from .._errors import RankError
        from .._summary import Summary

        if self.done:
            return
        partial = getattr(err, "partial", None)
        partial = partial if isinstance(partial, Summary) else None
        try:
            gathered = self._exchange(None if partial is None else _figures(partial), f"{type(err).__name__}: {err}")
        except RankError as gather_err:
            err.add_note(str(gather_err))
            return
        if partial is not None:
            err.partial = dataclasses.replace(partial, ranks=_shares(gathered))
        me = torch.distributed.get_rank()
        others = [f"rank {r} failed too: {_first_line(g['error'])}" for r, g in enumerate(gathered)
                  if r != me and g["error"] is not None]
        if others:
            err.add_note("all_ranks=True: " + "; ".join(others))


def _figures(result: Any) -> tuple[int, int, int]:
    """This rank's ``(local params, local trainable, local bytes)``; an unsharded model's whole."""
    if result.sharded:
        return result.local_params, result.local_trainable_params, result.local_param_bytes
    return result.total_params, result.trainable_params, result.param_bytes


def _shares(gathered: list[dict]) -> tuple:
    from .._summary import RankShare

    return tuple(RankShare(rank, *g["figures"]) for rank, g in enumerate(gathered) if g["figures"] is not None)


def _first_line(err: Any) -> str:
    text = str(err).strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= 500 else line[:497] + "..."


def collective_on_every_path(fn: Callable) -> Callable:
    """Wrap ``summary``: with ``all_ranks=True`` in an initialized job, a call that raises before
    (or instead of) its gather still takes part in it (:meth:`RankGather.failed`), then raises."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        dist = torch.distributed
        if kwargs.get("all_ranks") is not True or not (dist.is_available() and dist.is_initialized()):
            return fn(*args, **kwargs)
        gather = RankGather()
        token = _GATHER.set(gather)
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            gather.failed(err)
            raise
        finally:
            _GATHER.reset(token)

    return wrapper


def gather_ranks(result: Any) -> Any:
    """``result`` with every rank's local figures in :attr:`Summary.ranks`, by the one
    ``all_gather_object`` of this ``summary(..., all_ranks=True)`` call (see :class:`RankGather`)."""
    gather = _GATHER.get()
    if gather is None or gather.done:  # not under collective_on_every_path: a gather of its own
        gather = RankGather()
    return gather.succeeded(result)


def has_fsdp(named: list[tuple[str, nn.Module]]) -> bool:
    """Whether a module of the model is an FSDP2 module (``fully_shard``)."""
    fsdp = _fsdp_module_class()
    return fsdp is not None and any(isinstance(m, fsdp) for _, m in named)


def fsdp_free_view(model: nn.Module) -> nn.Module:
    """A view of ``model`` without FSDP2: each module a shallow copy of its original class (the
    ``FSDPLinear`` class FSDP made stripped back to ``Linear``), FSDP's forward hooks left out,
    the user's other hooks kept, and the very same parameter and buffer objects. The user's
    modules, their dicts and hooks are not touched."""
    fsdp_cls = _fsdp_module_class()
    from torch.distributed.fsdp import fully_shard

    memo: dict[int, nn.Module] = {}

    def view(m: nn.Module) -> nn.Module:
        got = memo.get(id(m))
        if got is not None:
            return got
        cls = type(m)
        hooks_of = None
        if fsdp_cls is not None and isinstance(m, fsdp_cls):
            cls = next(c for c in cls.__mro__ if not issubclass(c, fsdp_cls))
            hooks_of = fully_shard.state(m)
        new = object.__new__(cls)
        new.__dict__.update(m.__dict__)
        memo[id(m)] = new
        new._parameters = dict(m._parameters)
        new._buffers = dict(m._buffers)
        if hooks_of is not None:
            for attr in ("_forward_pre_hooks", "_forward_hooks"):
                kept = OrderedDict((k, h) for k, h in getattr(m, attr).items()
                                   if getattr(h, "__self__", None) is not hooks_of)
                object.__setattr__(new, attr, kept)
        new._modules = {k: None if c is None else view(c) for k, c in m._modules.items()}
        return new

    root = view(model)
    _VIEWS.add(root)
    return root


_VIEWS: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def is_fsdp_view(model: nn.Module) -> bool:
    """Whether ``model`` is a view made by :func:`fsdp_free_view`."""
    return model in _VIEWS


def logical_stand_in(t: torch.Tensor) -> torch.Tensor:
    """A DTensor as a plain meta tensor of its global shape (what FSDP's all-gather gives)."""
    dtensor = dtensor_class()
    if dtensor is not None and isinstance(t, dtensor):
        return torch.empty(t.shape, dtype=t.dtype, device="meta")
    return t


def wait_collectives(output: Any) -> Any:
    """Wait on the collectives still in flight in a forward's ``output`` and return it.

    A tensor-parallel layer's output (``RowwiseParallel``'s all-reduce, a DTensor's
    ``to_local()`` after a redistribute) is an ``AsyncCollectiveTensor``: its collective is
    waited on when the tensor is first used. A summary discards the output unused, which leaves
    the collective unwaited (torch warns at exit: "there are still 1 unwaited collective
    calls"), so each such tensor in ``output`` (a DTensor's local tensor too) is waited on here
    with its own ``trigger_wait()``. Nothing to do, and nothing imported, if the program never
    imported ``torch.distributed._functional_collectives``."""
    functional = sys.modules.get("torch.distributed._functional_collectives")
    act = getattr(functional, "AsyncCollectiveTensor", None)
    if act is None:
        return output
    dtensor = dtensor_class()
    for t in _tensors_in(output):
        if dtensor is not None and isinstance(t, dtensor):
            with torch.no_grad():
                t = t.to_local()
        if isinstance(t, act):
            t.trigger_wait()
    return output


_MAX_VALUES = 100_000  # as in netsummary._tracing.structure: hostile outputs cost bounded work


def _tensors_in(output: Any) -> list[torch.Tensor]:
    """The tensors in ``output``: its containers (lists, tuples, dicts, registered pytree nodes,
    through ``torch.utils._pytree``'s flatten functions) each visited once, so an output that
    contains itself or shares a container at every level costs bounded work."""
    from torch.utils import _pytree as pytree

    found: list[torch.Tensor] = []
    seen: set[int] = set()
    todo, visited = [output], 0
    while todo and visited < _MAX_VALUES:
        value = todo.pop()
        visited += 1
        if isinstance(value, torch.Tensor):
            found.append(value)
            continue
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, (list, tuple)):
            todo.extend(value)
        elif isinstance(value, dict):
            todo.extend(value.values())
        elif (node := pytree.SUPPORTED_NODES.get(type(value))) is not None:
            try:
                todo.extend(node.flatten_fn(value)[0])
            except Exception:  # a node type whose flatten fails on this value: nothing to wait on there
                pass
    return found


def dtensor_locals(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The local shards (``to_local()``, sharing their storage) of the DTensors among ``tensors``,
    for the write watch to protect."""
    dtensor = dtensor_class()
    if dtensor is None:
        return []
    with torch.no_grad():
        return [t.to_local() for t in tensors if isinstance(t, dtensor)]


def reshard_unsharded(snapshot: list[tuple[nn.Module, bool, dict, dict]]) -> None:
    """Put each FSDP2 module back in the sharding state it had in ``snapshot`` (module, training,
    ``_parameters`` copy, ``_buffers`` copy): ``reshard()`` where its managed parameters were
    DTensors (sharded) and are not any more (FSDP2's root keeps them unsharded after the
    forward), ``unshard()`` where they were unsharded (the user had called ``unshard()``) and the
    forward resharded them. Both are FSDP2's public methods; ``unshard()`` all-gathers, as the
    forward did, on every rank that runs the summary."""
    fsdp_cls = _fsdp_module_class()
    dtensor = dtensor_class()
    if fsdp_cls is None or dtensor is None or not any(isinstance(m, fsdp_cls) for m, _, _, _ in snapshot):
        return
    now_unsharded, now_sharded = set(), set()
    for m, _, params, _ in snapshot:
        if not isinstance(m._parameters, dict):  # TorchScript's read-only views: never FSDP's
            continue
        for k, old in params.items():
            was, now = isinstance(old, dtensor), isinstance(m._parameters.get(k), dtensor)
            if was and not now:
                now_unsharded.add(id(m))
            elif now and not was and old is not None:
                now_sharded.add(id(m))
    if not (now_unsharded or now_sharded):
        return
    for m, _, _, _ in snapshot:
        if isinstance(m, fsdp_cls):
            if _manages_any(m, now_unsharded, fsdp_cls):
                m.reshard()
            elif _manages_any(m, now_sharded, fsdp_cls):
                m.unshard()


def _manages_any(root: nn.Module, ids: set[int], fsdp_cls: type) -> bool:
    """Whether a module in ``root``'s subtree, outside nested FSDP modules, is in ``ids``."""
    todo = [root]
    while todo:
        m = todo.pop()
        if id(m) in ids:
            return True
        todo.extend(c for c in m._modules.values() if c is not None and not isinstance(c, fsdp_cls))
    return False
