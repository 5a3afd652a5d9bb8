"""Run the model's forward for the summary, and the probe forward that settles ambiguous batch axes.

:func:`run_forward` calls the model once, on real tensors or (``fake=True``, a model on
``meta``) on fake stand-ins of its tensors swapped in by ``functional_call``: shapes and dtypes
only, no memory, never moved.

:func:`probe_batch_axes` runs the second forward of :mod:`netsummary._tracing.batch` (one more
sample) when some recorded shape is ambiguous, on the same kind of tensors as the first.

It always runs on real tensors for a real model, although a fake run costs less for a heavy one
(BERT-base at 128 tokens: 0.8 s real at 3 samples, 0.15 s on fake inputs): whatever a forward
stores while it runs (an attribute, a rebuilt buffer, an ``lru_cache``, a hook's capture) would
stay behind as a fake tensor and break the user's next real forward, a forward that branches on
values can take another path with the same calls, and recurrent layers are slower on fake
tensors than on real ones. None of that can be checked afterwards.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils import _pytree as pytree

from .._analysis import experts as _experts
from .batch import BatchAxes, ambiguous, stock_axes
from .distributed import is_fsdp_view, logical_stand_in, wait_collectives
from .fakelog import quiet_fake_tensor_logs
from .inputs import ForwardInputs, make_inputs
from .interrupts import interruptible
from .standins import meta_stand_in, overrides_to
from .trace import Tracer


def run_forward(model: nn.Module, inputs: ForwardInputs, fake: bool, stand_in: bool = False) -> Any:
    """``model(*inputs.args, **inputs.kwargs)``, on fake stand-ins when ``fake``; Ctrl-C reaches it.

    ``stand_in``: the MoE grouped-matmul stand-in of :mod:`netsummary._analysis.experts` (fake only).
    """
    with interruptible():  # Ctrl-C reaches the model's forward; the guard undoes a cut-short one
        out = _forward_now(model, inputs, fake, stand_in)
    # a tensor-parallel output's collective is waited on when the output is used: the summary
    # does not use it, so wait here (else torch warns of an unwaited collective at exit)
    return out if fake else wait_collectives(out)


def _forward_now(model: nn.Module, inputs: ForwardInputs, fake: bool, stand_in: bool = False) -> Any:
    if not fake:
        return model(*inputs.args, **inputs.kwargs)
    # On "meta" the forward runs on fake tensors: shapes and dtypes only, no memory, and code that
    # would read values (mask checks calling .item()) can tell it is being traced. Fake stand-ins
    # of the model's tensors are swapped in by functional_call and back after: never moved.
    # torch logs a meta kernel's failure with its traceback before raising it: netsummary reports it
    with quiet_fake_tensor_logs(), FakeTensorMode(allow_non_fake_inputs=True) as fake:

        logical = is_fsdp_view(model)  # FSDP2 on meta: DTensors run as their all-gathered whole

        def to_fake(t: torch.Tensor) -> torch.Tensor:
            if logical:
                t = logical_stand_in(t)
            if t.device.type != "meta":
                # a Parameter subclass with its own .to() (bitsandbytes' Params4bit moves its shared
                # QuantState in place) is never asked to move: a stand-in from its metadata instead
                t = meta_stand_in(t) if overrides_to(t) else t.to("meta")
            return fake.from_tensor(t)

        stand_ins = {
            name: to_fake(t) for name, t in [*model.named_parameters(), *model.named_buffers()]
        }
        args, kwargs = pytree.tree_map_only(torch.Tensor, to_fake, (inputs.args, inputs.kwargs))
        # MoE experts' grouped matmul: its fake kernel wants bf16, the stand-in keeps the model's dtype
        with _experts.GroupedMmStandIn() if stand_in else contextlib.nullcontext():
            return torch.func.functional_call(model, stand_ins, args, kwargs, tie_weights=True, strict=False)


def probe_batch_axes(model: nn.Module, named: list, inputs: ForwardInputs, tracer: Tracer, dev: torch.device,
                     stand_in: bool = False) -> BatchAxes:
    """Batch axes for the ``-1`` display; a second forward with one more sample settles
    ambiguous shapes (see :mod:`netsummary._tracing.batch`). Never raises: a probe that fails
    leaves the first run's heuristic axes."""
    rb = inputs.run_batch
    calls = tracer.calls
    # calls of torch's own recurrent and attention layers carry the batch on documented axes
    known = {i: axes for i, c in enumerate(calls) if (axes := stock_axes(c.module, c.inp, c.out, rb)) is not None}
    if not ambiguous([d for i, c in enumerate(calls) if i not in known for d in (c.inp, c.out)], rb):
        return BatchAxes(rb, known=known)
    probe = Tracer(model, named)
    try:
        args, _ = make_inputs(model, list(inputs.sizes), list(inputs.dtypes), rb + 1, dev)
        with probe:
            # after the first forward nothing is lazy any more
            run_forward(model, ForwardInputs(args, inputs.kwargs, -1, rb + 1), fake=dev.type == "meta", stand_in=stand_in)
    except Exception:  # the shapes of the first run stand; the first axis of size rb is marked
        return BatchAxes(rb, known=known)
    return BatchAxes(rb, probe=[(c.module, c.inp, c.out) for c in probe.calls])
