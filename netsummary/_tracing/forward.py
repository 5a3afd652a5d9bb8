"""Run the model's forward for the summary: on real tensors, or on fake stand-ins; and the probe
forward that settles ambiguous batch axes.

:func:`run_forward` calls the model once, on real tensors or (``fake=True``, a model on
``meta``) on fake stand-ins of its tensors swapped in by ``functional_call``: shapes and dtypes
only, no memory, never moved.

:func:`probe_batch_axes` runs the second forward of :mod:`netsummary._tracing.batch` (one more
sample) when some recorded shape is ambiguous. It is a shape question, so where a forward on fake
tensors costs less than a real one the probe runs there first:

- a fake forward costs about a fixed time per module call (0.6-1.3 ms here: torch's fake kernels
  and their bookkeeping), whatever the tensors' sizes; a real one costs what the model computes
  (BERT-base, 128 tokens: 0.8 s real at 3 samples, 0.15 s fake; a stack of small layers is the
  other way round). :func:`fake_probe_pays` compares the first forward's measured time, scaled
  to the probe's batch, with :data:`FAKE_SECONDS_PER_CALL` per call (the slow end, times
  :data:`FAKE_MARGIN`);
- the fake run's answer is kept only when it made exactly the calls the first run made, module
  by module; a forward that reads values (``.item()``, data-dependent shapes), takes another path
  on fake tensors, or fails there is probed on real tensors after all, as before. Either way the
  shapes compared are the same, so the summary is the same.

The fake probe runs the model's own modules on fake inputs (the parameters are read as fake
tensors where they meet them, never swapped out of the modules: a forward another thread runs on
the same model meanwhile is not disturbed), and only for plain models: every parameter and
buffer a plain dense tensor off ``meta`` (no quantized, sharded, lazy or other tensor-subclass
weights, whose fake stand-ins are their own story).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils import _pytree as pytree

from .._analysis import experts as _experts
from .batch import BatchAxes, ambiguous
from .distributed import is_fsdp_view, logical_stand_in, wait_collectives
from .fakelog import quiet_fake_tensor_logs
from .inputs import ForwardInputs, make_inputs
from .interrupts import interruptible
from .standins import meta_stand_in, overrides_to
from .trace import Tracer

#: A fake forward's cost per module call, slow end of what was measured (0.6-1.3 ms on a shared
#: 2-core machine: BERT-base 0.72 ms, GPT-2-style 1.24 ms, 2,000 x Linear 1.28 ms).
FAKE_SECONDS_PER_CALL = 1.5e-3
#: The fake probe is tried only when its estimate is below the real probe's by this factor, so a
#: fake run that fails (and is followed by the real one) costs at most half as much again.
FAKE_MARGIN = 2.0


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


def fake_probe_pays(first_seconds: float | None, n_calls: int, run_batch: int) -> bool:
    """Whether the probe should try fake tensors first: the first forward took ``first_seconds``
    on ``run_batch`` samples, so a real probe on ``run_batch + 1`` is expected to take
    ``first_seconds * (run_batch + 1) / run_batch``; a fake one ``n_calls *``
    :data:`FAKE_SECONDS_PER_CALL`. Fake first when it is :data:`FAKE_MARGIN` times cheaper.

    >>> fake_probe_pays(0.55, 215, 2), fake_probe_pays(0.035, 2001, 2)  # BERT-base; 2,000 x Linear(8, 8)
    (True, False)
    """
    if first_seconds is None or n_calls <= 0:
        return False
    real = first_seconds * (run_batch + 1) / run_batch
    return real > FAKE_MARGIN * n_calls * FAKE_SECONDS_PER_CALL


def _plain_tensors(model: nn.Module) -> bool:
    """Every parameter and buffer a plain dense tensor off ``meta``: their fake stand-ins are exact."""
    for t in (*model.parameters(), *model.buffers()):
        if type(t) not in (torch.Tensor, nn.Parameter) or t.layout != torch.strided or t.device.type == "meta":
            return False
    return True


def probe_batch_axes(model: nn.Module, named: list, inputs: ForwardInputs, tracer: Tracer, dev: torch.device,
                     stand_in: bool = False, first_seconds: float | None = None) -> BatchAxes:
    """Batch axes for the ``-1`` display; a second forward with one more sample settles
    ambiguous shapes (see :mod:`netsummary._tracing.batch`), on fake tensors first where that is
    cheaper (:func:`fake_probe_pays`) and the model's tensors are plain.

    ``first_seconds``: how long the summary's own forward took (``None``: unknown, probe on
    real tensors). Never raises: a probe that fails leaves the first run's heuristic axes.
    """
    rb = inputs.run_batch
    calls = tracer.calls
    if not ambiguous([d for c in calls for d in (c.inp, c.out)], rb):
        return BatchAxes(rb)
    on_meta = dev.type == "meta"
    if not on_meta and fake_probe_pays(first_seconds, len(calls), rb) and _plain_tensors(model):
        probed = _probe(model, named, inputs, dev, fake=False, stand_in=stand_in, on_fake=True)
        if probed is not None and [m for m, _, _ in probed] == [c.module for c in calls]:
            return BatchAxes(rb, probe=probed)  # the same calls: the same shapes as a real run's
    probed = _probe(model, named, inputs, dev, fake=on_meta, stand_in=stand_in)
    return BatchAxes(rb) if probed is None else BatchAxes(rb, probe=probed)


def _probe(model: nn.Module, named: list, inputs: ForwardInputs, dev: torch.device, fake: bool,
           stand_in: bool, on_fake: bool = False) -> list | None:
    """The ``(module, inputs, output)`` of each call of a forward on ``run_batch + 1`` samples, or
    ``None`` when it failed (the first run's shapes then stand). ``fake``: the model is on meta
    (:func:`run_forward`'s stand-ins); ``on_fake``: a real model run on fake inputs."""
    rb = inputs.run_batch
    probe = Tracer(model, named)
    try:
        args, _ = make_inputs(model, list(inputs.sizes), list(inputs.dtypes), rb + 1, dev)
        more = ForwardInputs(args, inputs.kwargs, -1, rb + 1)
        with probe:
            # after the first forward nothing is lazy any more
            if on_fake:
                _on_fake_inputs(model, more, stand_in)
            else:
                run_forward(model, more, fake=fake, stand_in=stand_in)
    except Exception:  # the shapes of the first run stand; the first axis of size rb is marked
        return None
    return [(c.module, c.inp, c.out) for c in probe.calls]


def _on_fake_inputs(model: nn.Module, inputs: ForwardInputs, stand_in: bool) -> Any:
    """The model's own forward on fake inputs (same devices, dtypes and shapes): its real
    parameters and buffers meet them under the fake mode and are read as fake tensors there,
    never swapped out of the modules, so a forward another thread runs meanwhile is untouched,
    and nothing real is computed or written."""
    with interruptible(), quiet_fake_tensor_logs(), FakeTensorMode(allow_non_fake_inputs=True) as mode:
        args, kwargs = pytree.tree_map_only(torch.Tensor, mode.from_tensor, (inputs.args, inputs.kwargs))
        with _experts.GroupedMmStandIn() if stand_in else contextlib.nullcontext():
            return model(*args, **kwargs)
