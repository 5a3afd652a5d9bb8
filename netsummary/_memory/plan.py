"""From one measured step to the answers: the verdict (``fits=``), the KV cache (``context=``) and
the per-rank figures (``world_size=``, ``strategy=``).

:func:`check_plan` validates the keywords before anything runs; :func:`plan_memory` takes the
estimate at the user's batch and a ``remeasure(batch)`` callable that measures the same step at
another batch (the engine's :func:`netsummary._memory.step.estimate_memory` with the same
arguments), and measures once more where it needs to:

* ``world_size=N``: at the per-rank batch ``⌈batch / N⌉`` (activations are measured for it);
* ``fits=``: at a second batch, so that the largest batch comes from two measurements
  (the per-rank batch when sharded, else half the batch, or 2 for a batch of 1).

Context (decoders only): ``tokens`` is the sequence length of the measured run. Every moment's
per-sample bytes (see :func:`~netsummary._memory.verdict.lines_from`) are scaled linearly with
tokens; an inference run that keeps its KV cache (the config's ``use_cache``) has the cache in
them, exactly linear for full attention (a sliding window's cache stops growing, so the figure
errs high); one that does not has the cache at ``context`` tokens added by its formula. With
``context`` given, the verdict holds the peak so derived at ``context``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._errors import InputSpecError
from .estimate import FORMULA, MemoryEstimate, MemoryItem
from .kvcache import KVCache, decoder_config, kv_cache
from .sharding import ShardedMemory, check_sharding, fsdp_units, shard_memory
from .verdict import Capacity, FitVerdict, fit_verdict, lines_from, parse_fits

__all__ = ["MemoryPlan", "PlanArgs", "check_plan", "measured_tokens", "plan_memory", "remeasurer"]

_FIXED_PARTS = ("parameters", "buffers", "gradients", "optimizer_state")


@dataclass(frozen=True, slots=True)
class PlanArgs:
    """The validated keywords: ``capacity`` (``None`` without ``fits=``), ``context``,
    ``world_size`` and ``strategy`` (``None`` when not sharded)."""

    capacity: Capacity | None = None
    context: int | None = None
    world_size: int | None = None
    strategy: str | None = None

    @property
    def empty(self) -> bool:
        return self.capacity is None and self.context is None and self.world_size is None


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    """What follows from the measured step.

    Attributes:
        fit: the verdict for ``fits=`` (per rank when sharded), else ``None``.
        kv_cache: the KV cache at ``context`` (or the measured tokens) for decoders in
            inference, else ``None``.
        sharded: the per-rank figures for ``world_size=``, else ``None``.
        measured: every ``(batch, peak bytes)`` the plan measured, the user's batch first.
    """

    fit: FitVerdict | None = None
    kv_cache: KVCache | None = None
    sharded: ShardedMemory | None = None
    measured: tuple[tuple[int, int], ...] = ()

    def __str__(self) -> str:
        from .._reporting.fit import render_kv, render_sharded, render_fit

        parts = [render_kv(self.kv_cache)] if self.kv_cache is not None else []
        if self.sharded is not None:
            parts.append(render_sharded(self.sharded))
        if self.fit is not None:
            parts.append(render_fit(self.fit, per_rank=self.sharded is not None))
        return "\n".join(parts)


def check_plan(model: Any, estimate: str | None, fits: Any = None, context: Any = None, world_size: Any = None,
               strategy: Any = None) -> PlanArgs:
    """Validate the keywords (before any forward runs).

    Raises:
        InputSpecError: ``fits`` / ``context`` / ``world_size`` / ``strategy`` without
            ``estimate``; a ``fits`` that is neither a size nor a device; ``context`` on a model
            that is not a transformers decoder, or not a positive int; a world size below 1; an
            unknown strategy; ``strategy`` without ``world_size``.
        InputTypeError: a value of the wrong type.
        DeviceError: ``fits`` names a CUDA device that is not there.
    """
    given = [k for k, v in (("fits", fits), ("context", context), ("world_size", world_size),
                            ("strategy", strategy)) if v is not None]
    if given and estimate is None:
        raise InputSpecError(f"{', '.join(given)}: needs estimate='train' or estimate='inference' (the step to "
                             "measure); got estimate=None", given)
    capacity = None if fits is None else parse_fits(fits)
    if context is not None:
        decoder_config(model)  # refuses a non-decoder, saying what it got
        kv_cache(model, context)  # refuses a bad context (type and value) the same way
    if world_size is None and strategy is not None:
        check_sharding(1, strategy)  # an unknown strategy is named as such first
        raise InputSpecError(f"strategy={strategy!r}: needs world_size=N (the number of ranks)", strategy)
    if world_size is not None:
        world_size, strategy = check_sharding(world_size, "ddp" if strategy is None else strategy)
    return PlanArgs(capacity, context, world_size, strategy)


def plan_memory(model: Any, est: MemoryEstimate, remeasure: Callable[[int], MemoryEstimate], args: PlanArgs,
                tokens: int | None = None) -> MemoryPlan:
    """The verdict, KV cache and per-rank figures of ``est`` (see the module docstring).

    ``remeasure(batch)`` measures the same step at another batch; ``tokens`` is the measured
    run's sequence length (decoders; ``None`` when unknown: no context figures).
    """
    if args.empty:
        return MemoryPlan()
    batch = est.batch_size
    runs = {batch: est}

    def at(b: int) -> MemoryEstimate:
        if b not in runs:
            runs[b] = remeasure(b)
        return runs[b]

    train = est.kind == "train"
    rank_batch = batch if args.world_size is None else math.ceil(batch / args.world_size)
    kv = None
    kv_in_run = 0
    if (tokens or args.context) and (args.context is not None or _is_decoder(model)):
        kv = kv_cache(model, args.context or tokens, rank_batch)
        if tokens and not train and getattr(decoder_config(model), "use_cache", False):
            kv_in_run = kv.at(tokens, 1)  # the measured forward returned a cache: it is in the per-sample bytes

    sharded = None
    if args.world_size is not None:
        units = sorted(fsdp_units(model) if args.strategy == "fsdp" else [], key=lambda u: -u[1])
        unit = units[0] if units else ("", 0, 0)
        prefetched = units[1][1] if len(units) > 1 else 0
        e = at(rank_batch)
        sharded = _shard(est, e, args, unit, train, prefetched)
        curve = _rank_curve(e, sharded)
        if curve:  # the most live at any moment, per rank (the moment may differ from the single device's)
            i = max(range(len(curve)), key=lambda k: curve[k][0])
            live, grads, phase = e.live_curve[i]
            rest = max(0, live - e.parameters.bytes - e.buffers.bytes - e.optimizer_state.bytes - grads)
            sharded = dataclasses.replace(
                sharded,
                activations=MemoryItem(rest, FORMULA, f"measured at batch {rank_batch:,}: activations, inputs, "
                                       f"temporaries at the peak ({phase})"),
                peak=MemoryItem(curve[i][0], FORMULA, f"most live at any moment of the step, per rank ({phase})"))

    fit = None
    if args.capacity is not None:
        first = rank_batch
        second = batch if rank_batch != batch else (batch // 2 if batch >= 2 else 2)
        runs_ab = (at(first), at(second))
        curves = tuple(e.live_curve if sharded is None else _rank_curve(e, sharded) for e in runs_ab)
        pairs = tuple((e.batch_size, max(c[0] for c in cv) if cv else e.peak.bytes) for e, cv in zip(runs_ab, curves))
        peak = pairs[0][1]
        context_bytes = note = at_context = None
        peak_note = ""
        if kv is not None and tokens:
            lines, _ = lines_from(pairs, curves)
            add_kv = not train and not kv_in_run

            def context_bytes(t: int, b: int) -> float:
                scale = b * t / tokens
                return max(f + s * scale for f, s, _ in lines) + (kv.at(t, b) if add_kv else 0)

            eager = getattr(decoder_config(model), "_attn_implementation", None) == "eager"
            note = (f"per-sample bytes scaled linearly from the measured {tokens:,} tokens"
                    + ("; KV cache by formula" if add_kv else "")
                    + (" (eager attention's scores grow with tokens squared)" if eager else ""))
            if args.context is not None and args.context != tokens:
                peak = math.ceil(context_bytes(args.context, rank_batch))
                peak_note = f"derived at {args.context:,} tokens from the measured {tokens:,}"
                # The largest batch is for the same context as the verdict: every moment's line at
                # ``context`` tokens is context_bytes(context, b) = max(f + s·b·context/tokens) + KV(context, b),
                # and the KV cache is linear in b, so each line becomes (f, s·context/tokens + KV per sequence).
                kv1 = kv.at(args.context, 1) if add_kv else 0
                at_context = [(f, s * args.context / tokens + kv1, ph) for f, s, ph in lines]
        limit = getattr(decoder_config(model), "max_position_embeddings", None) if context_bytes else None
        fit = fit_verdict(peak, args.capacity, pairs, rank_batch, curves=curves, context=(args.context or tokens) if kv else None,
                          context_bytes=context_bytes, context_limit=limit, context_note=note or "", peak_note=peak_note,
                          lines=at_context, lines_context=args.context if at_context is not None else None)
    measured = tuple((b, e.peak.bytes) for b, e in runs.items())
    return MemoryPlan(fit, kv if not train else None, sharded, measured)


def _is_decoder(model: Any) -> bool:
    try:
        decoder_config(model)
    except InputSpecError:
        return False
    return True


def _parts(e: MemoryEstimate) -> dict[str, int]:
    parts = dict(e.peak_parts)
    if not parts:  # no split recorded: every fixed category counted live
        parts = {k: getattr(e, k).bytes for k in _FIXED_PARTS}
    return parts


def _rank_curve(e: MemoryEstimate, sh: ShardedMemory) -> tuple:
    """``e``'s live curve per rank: at every moment the sharded categories' savings taken off
    (parameters for fsdp; optimizer state and the gradients live then for zero2 and fsdp), DDP's
    buckets added, and FSDP's all-gathered unit added in the forward and backward only.

    ``optimizer.step()`` under FSDP (ZeRO-3) and ZeRO-2 runs on each rank's shards: FSDP2
    reshards every unit after the backward (the root's too: ``reshard_after_backward``), so no
    unit is all-gathered then, and the step's temporaries (Adam's per-parameter intermediates,
    sized like the tensor they update: what was live beyond parameters, buffers, inputs,
    optimizer state and gradients) are those of ``1/N`` shards: ``⌈temporaries / N⌉``.
    """
    n = sh.world_size
    params = e.parameters.bytes
    state = e.optimizer_state.bytes
    held = params + e.buffers.bytes + e.inputs.bytes + state
    save = (params - math.ceil(params / n)) if sh.strategy == "fsdp" else 0
    if sh.strategy in ("fsdp", "zero2"):
        save += state - math.ceil(state / n)
    shard_grads = sh.strategy in ("fsdp", "zero2")
    out = []
    for live, g, phase in e.live_curve:
        add = sh.ddp_buckets.bytes
        rank = live - save - ((g - math.ceil(g / n)) if shard_grads else 0)
        if phase == "optimizer" and shard_grads:
            temporaries = max(0, live - held - g)
            rank -= temporaries - math.ceil(temporaries / n)
        else:
            add += sh.all_gathered.bytes
        out.append((rank + add, g, phase))
    return tuple(out)


def _rest(e: MemoryEstimate) -> int:
    """What was live at ``e``'s peak besides parameters, buffers, gradients and optimizer state."""
    parts = _parts(e)
    return e.peak.bytes - sum(parts.get(k, 0) for k in _FIXED_PARTS)


def _shard(est: MemoryEstimate, at_rank: MemoryEstimate, args: PlanArgs, unit: tuple[str, int, int],
           train: bool, prefetched: int | None = None) -> ShardedMemory:
    parts = _parts(at_rank)
    return shard_memory(parameters=est.parameters.bytes, gradients=est.gradients.bytes,
                      optimizer_state=est.optimizer_state.bytes, buffers=parts.get("buffers", est.buffers.bytes),
                      rest=_rest(at_rank), world_size=args.world_size or 1, strategy=args.strategy or "ddp",
                      batch_size=est.batch_size, rank_batch=at_rank.batch_size, unit=unit, prefetched=prefetched,
                      live={k: parts[k] for k in ("parameters", "gradients", "optimizer_state") if k in parts},
                      train=train)


def remeasurer(model: Any, input_size: Any, input_data: Any, batch_size: int, **measure: Any
               ) -> Callable[[int], MemoryEstimate]:
    """``remeasure(b)``: the engine's :func:`~netsummary._memory.step.estimate_memory` with the
    same arguments at batch ``b``. ``input_data`` is cut to its first ``b`` samples (or its
    samples repeated) along the first axis of every tensor whose first axis is the batch."""
    from torch.utils import _pytree as pytree

    from .step import estimate_memory

    def resize(t: Any, b: int) -> Any:
        import torch

        if t.dim() == 0 or t.shape[0] != batch_size:
            return t
        reps = -(-b // batch_size)
        return (t if reps == 1 else torch.cat([t] * reps))[:b].clone()  # its own storage: a view holds all

    def remeasure(b: int) -> MemoryEstimate:
        if input_data is None:
            return estimate_memory(model, input_size, b, **measure)
        import torch

        data = pytree.tree_map_only(torch.Tensor, lambda t: resize(t, b), input_data)
        return estimate_memory(model, input_data=data, **measure)

    return remeasure


def measured_tokens(model: Any, input_size: Any, input_data: Any) -> int | None:
    """The sequence length of a decoder's run: ``input_size=(L,)``, or the last axis of an
    integer ``input_ids`` (or of the first integer tensor) of ``input_data``; ``None`` otherwise."""
    if not _is_decoder(model):
        return None
    if input_data is None:
        size = input_size[0] if isinstance(input_size, list) and input_size else input_size
        return int(size[-1]) if isinstance(size, tuple) and size else None
    import torch
    from torch.utils import _pytree as pytree

    if isinstance(input_data, dict) and isinstance(input_data.get("input_ids"), torch.Tensor):
        return int(input_data["input_ids"].shape[-1])
    for t in pytree.tree_leaves(input_data):
        if isinstance(t, torch.Tensor) and not t.is_floating_point() and t.dim() >= 2:
            return int(t.shape[-1])
    return None


def inputs_at(model: Any, inputs: Any, measured: int, batch: int, dev: Any) -> Any:
    """The :class:`~netsummary._tracing.inputs.ForwardInputs` of the same step at ``batch``:
    generated again for ``input_size``; real ``input_data`` cut to its first ``batch`` samples
    (or its samples repeated) along the first axis of every tensor whose first axis is the
    ``measured`` batch."""
    import torch
    from torch.utils import _pytree as pytree

    from .._tracing.inputs import ForwardInputs, make_inputs

    if inputs.sizes:
        args, _ = make_inputs(model, list(inputs.sizes), list(inputs.dtypes), batch, dev)
        return ForwardInputs(args, inputs.kwargs, batch, batch, inputs.sizes, inputs.dtypes)

    def resize(t: torch.Tensor) -> torch.Tensor:
        if t.dim() == 0 or t.shape[0] != measured:
            return t
        reps = -(-batch // measured)
        return (t if reps == 1 else torch.cat([t] * reps))[:batch].clone()  # its own storage: a view holds all

    args, kwargs = pytree.tree_map_only(torch.Tensor, resize, (inputs.args, inputs.kwargs))
    return ForwardInputs(args, kwargs, inputs.batch_size, None, inputs.sizes, inputs.dtypes)


def forward_tokens(model: Any, inputs: Any) -> int | None:
    """The sequence length of a decoder's measured forward: the last axis of ``input_ids`` (or
    of the first integer tensor of two or more axes); ``None`` for any other model."""
    import torch
    from torch.utils import _pytree as pytree

    if not _is_decoder(model):
        return None
    ids = inputs.kwargs.get("input_ids")
    if isinstance(ids, torch.Tensor):
        return int(ids.shape[-1])
    for t in pytree.tree_leaves((inputs.args, inputs.kwargs)):
        if isinstance(t, torch.Tensor) and not t.is_floating_point() and t.dim() >= 2:
            return int(t.shape[-1])
    return None
