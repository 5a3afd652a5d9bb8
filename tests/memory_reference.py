"""An independent measurement of one real training step's peak memory on CPU, for the memory
tests and benchmarks/memory.py: torch.profiler's allocator events (``profile_memory=True``),
nothing of netsummary's engine.

The step is the one the estimate describes: a steady-state step (a first, unmeasured step
creates the optimizer state), gradients set to None, loss = the sum of the output's floating
tensors that require grad, ``backward()``, ``optimizer.step()``. The peak is the bytes alive
before the step (parameters, buffers, optimizer state, inputs: counted with numel * element_size)
plus the largest running total of the allocator's allocations and frees during the step.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils import _pytree as pytree


def _loss(out: Any) -> torch.Tensor:
    leaves = [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor) and t.requires_grad
              and t.dtype.is_floating_point]
    loss = leaves[0].sum()
    for t in leaves[1:]:
        loss = loss + t.sum().to(loss.dtype)
    return loss


def _nbytes(tensors: Any) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor):
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


def real_step_peak(model: nn.Module, args: tuple = (), kwargs: dict | None = None, optimizer: Any = None,
                   autocast: torch.dtype | None = None) -> int:
    """Peak bytes of one real steady-state training step of ``model`` (modified: trained one step)."""
    kwargs = kwargs or {}
    model.train()
    opt = optimizer(model.parameters()) if optimizer is not None else torch.optim.AdamW(model.parameters())
    cast = (lambda: torch.autocast("cpu", dtype=autocast)) if autocast is not None else contextlib.nullcontext

    def step() -> None:
        with cast():
            out = model(*args, **kwargs)
        loss = _loss(out)
        del out
        loss.backward()
        del loss
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # creates the optimizer state
    state = [v for st in opt.state.values() for v in st.values()]
    inputs = pytree.tree_leaves((args, kwargs))
    before = _nbytes([*model.parameters(), *model.buffers(), *state, *inputs])
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    running = peak = 0
    for _, n in events:
        running += n
        peak = max(peak, running)
    return before + peak
