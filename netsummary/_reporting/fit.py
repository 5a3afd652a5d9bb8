"""Text of the memory verdict, the KV cache and the per-rank figures (the data: :mod:`netsummary._memory`).

Sizes in binary units (``GiB`` = 2**30 bytes) with two decimals, as the tree view writes them.
"""

from __future__ import annotations

import dataclasses
import textwrap
from typing import TYPE_CHECKING, Any

from .._units import format_bytes

MAX_LINE = 100  # columns of the per-rank table's lines

if TYPE_CHECKING:
    from .._memory.kvcache import KVCache
    from .._memory.plan import MemoryPlan
    from .._memory.sharding import ShardedMemory
    from .._memory.verdict import FitVerdict


def render_fit(fit: FitVerdict, per_rank: bool = False) -> str:
    """``Fits in 24.00 GiB: yes, 20.12 GiB headroom ...``, then the largest batch and context and
    the overheads, one line each; ``per_rank``: the figures are one rank's of a sharded plan."""
    answer = (f"yes, {format_bytes(fit.margin_bytes)} headroom" if fit.fits
              else f"no, {format_bytes(-fit.margin_bytes)} short")
    rank = " per rank" if per_rank else ""
    lines = [f"Fits in {fit.capacity.label}{' on each rank' if per_rank else ''}: {answer} (peak {format_bytes(fit.peak_bytes)} + overheads "
             f"{format_bytes(fit.overhead_bytes)} = {format_bytes(fit.need_bytes)})"]
    if fit.peak_note:
        lines.append(f"  peak {fit.peak_note}")
    if fit.largest_batch is not None:
        (b1, _), (b2, _) = fit.batches[:2]
        at = f"; set in the {fit.limit_phase}" if fit.limit_phase else ""
        shown = f"{fit.largest_batch:,}" if fit.largest_batch else "none, not even 1"
        tokens = "" if fit.lines_context is None else f" at {fit.lines_context:,} tokens"
        lines.append(f"  largest batch{rank}{tokens} that fits: {shown}")
        lines.append(f"    from batches {b1:,} and {b2:,}: {format_bytes(fit.fixed_bytes or 0)} fixed + "
                     f"{format_bytes(fit.per_sample_bytes or 0)} per sample{tokens}{at}")
    elif len(fit.batches) >= 2:
        lines.append("  largest batch that fits: not derived (the peak did not grow with the batch between "
                     f"batches {fit.batches[0][0]:,} and {fit.batches[1][0]:,})")
    if fit.largest_context is not None:
        cap = "" if fit.context_limit is None else f" (the model's max_position_embeddings: {fit.context_limit:,})"
        shown = f"~{fit.largest_context:,} tokens" if fit.largest_context else "none, not even 1 token"
        lines.append(f"  largest context that fits at batch {fit.batch_size:,}: {shown}{cap}")
        if not fit.largest_context and fit.context_floor_bytes is not None:
            lines.append(f"    with no tokens at all the step{rank} already needs "
                         f"{format_bytes(fit.context_floor_bytes)} with overheads (parameters, gradients, "
                         "optimizer state, transients)")
        if fit.context_note:
            lines.append(f"    {fit.context_note}")
    lines.append("  overheads the estimate cannot see:")
    width = max(len(o.name) for o in fit.overheads)
    for o in fit.overheads:
        lines.append(f"    {o.name:<{width}}  {format_bytes(o.bytes):>10}  {o.note}")
    return "\n".join(lines)


def render_kv(kv: KVCache) -> str:
    """``KV cache (2,048 tokens, batch 1): 44.00 MiB  formula``, then the arithmetic on its own line."""
    return f"KV cache ({kv.context:,} tokens, batch {kv.batch:,}): {format_bytes(kv.bytes)}  formula\n  {kv.formula}"


_LABELS = {"all_gathered": "All-gathered (transient)", "peak": "Peak during the step", "ddp_buckets": "DDP buckets"}


def render_sharded(sh: ShardedMemory) -> str:
    """The per-rank table: one line per category, bytes and how each is obtained."""
    title = (f"Per rank, {sh.strategy} on {sh.world_size} rank{'s' * (sh.world_size != 1)} "
             f"(batch {sh.rank_batch:,} per rank of {sh.batch_size:,})")
    rows = [(_LABELS.get(name, name.replace("_", " ").capitalize()), item.bytes, item.note) for name, item in sh.items]
    width = max(len(n) for n, _, _ in rows)
    lines = [title]
    padded = sh.rank_batch * sh.world_size
    if padded != sh.batch_size:
        # not divisible: stated, not silent. DistributedSampler (drop_last=False) pads the dataset by
        # repeating samples to a multiple of the ranks, so every rank runs ⌈batch / N⌉ samples.
        lines.append(f"  note: {sh.batch_size:,} samples do not split evenly over {sh.world_size:,} ranks: each rank "
                     f"runs ⌈{sh.batch_size:,} / {sh.world_size:,}⌉ = {sh.rank_batch:,}")
        lines.append(f"    ({padded:,} samples in all, as DistributedSampler pads by repeating "
                     f"{padded - sh.batch_size:,}); the figures are for {sh.rank_batch:,} per rank")
    for name, n, note in rows:
        head = f"  {name:<{width}}  {format_bytes(n):>12}  "
        # a long note continues under itself, so no line passes MAX_LINE columns
        notes = textwrap.wrap(note, max(40, MAX_LINE - len(head)), break_on_hyphens=False) or [""]
        lines.append(head + notes[0])
        lines += [" " * len(head) + more for more in notes[1:]]
    return "\n".join(lines)


def plan_to_dict(plan: MemoryPlan) -> dict[str, Any]:
    """The plan as plain data, every size an int of bytes with its method: ``{"fits": {...},
    "kv_cache": {...}, "per_rank": {...}}`` (a key only where the plan has it). Written for readers
    and CI; a loaded summary does not carry it back (it depends on the device's state when made)."""
    out: dict[str, Any] = {}
    if plan.fit is not None:
        fit = plan.fit
        out["fits"] = {
            "fits": fit.fits, "method": "formula", "capacity_bytes": fit.capacity.bytes,
            "device": fit.capacity.device, "device_total_bytes": fit.capacity.total_bytes,
            "peak_bytes": fit.peak_bytes, "overheads": [dataclasses.asdict(o) for o in fit.overheads],
            "need_bytes": fit.need_bytes, "margin_bytes": fit.margin_bytes, "batch_size": fit.batch_size,
            "measured_batches": [list(b) for b in fit.batches], "largest_batch": fit.largest_batch,
            "fixed_bytes": fit.fixed_bytes, "per_sample_bytes": fit.per_sample_bytes,
            "limit_phase": fit.limit_phase, "context": fit.context, "largest_context": fit.largest_context,
            "context_limit": fit.context_limit, "context_note": fit.context_note,
        }
    if plan.kv_cache is not None:
        kv = plan.kv_cache
        out["kv_cache"] = {"bytes": kv.bytes, "method": kv.method, "note": kv.formula, "context": kv.context,
                           "batch": kv.batch, "dtype_bytes": kv.dtype_bytes,
                           "bytes_per_token": kv.bytes_per_token, "layers": [list(x) for x in kv.layers]}
    if plan.sharded is not None:
        sh = plan.sharded
        out["per_rank"] = {"strategy": sh.strategy, "world_size": sh.world_size, "batch_size": sh.batch_size,
                           "rank_batch": sh.rank_batch, "unit": sh.unit,
                           **{name: dataclasses.asdict(item) for name, item in sh.items}}
    out["measured"] = [list(m) for m in plan.measured]
    return out
