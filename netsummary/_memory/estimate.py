"""The memory of one training step or inference run, as frozen data in bytes.

:class:`MemoryEstimate` holds one :class:`MemoryItem` per category, each with the way it was
obtained (:data:`METHODS`), the peak and where it happened, and one :class:`LayerMemory` per
module call of the measured forward (saved-activation bytes, innermost attribution). Only
:mod:`netsummary._reporting.memory` makes strings of it.

>>> item = MemoryItem(4096, COUNTED)
>>> item.bytes, item.method
(4096, 'counted')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: How a figure was obtained.
COUNTED = "counted"  # from the tensors' numel() * element_size()
MEASURED_REAL = "measured on real tensors"  # one step ran on real stand-ins, live storages tracked
MEASURED_FAKE = "measured on fake tensors"  # one step ran under FakeTensorMode (no memory used)
FORMULA = "formula"  # arithmetic on counted figures (the KV cache, sharded figures)
METHODS = (COUNTED, MEASURED_REAL, MEASURED_FAKE, FORMULA)

KINDS = ("train", "inference")
PHASES = ("forward", "backward", "optimizer")


@dataclass(frozen=True, slots=True)
class MemoryItem:
    """One category of memory: ``bytes`` (base units, bytes), how it was obtained (``method``,
    one of :data:`METHODS`) and a short ``note`` (``"2 × trainable, float32"``; ``""`` for none)."""

    bytes: int
    method: str
    note: str = ""


@dataclass(frozen=True, slots=True)
class LayerMemory:
    """One module call of the measured forward.

    Attributes:
        name: qualified name (``""`` for the root); ``call_index``: 1 for the module's first call.
        type: the module's class name.
        saved_bytes: bytes of the tensors autograd saved for the backward while this call was the
            innermost one running (its children's are on their own records), each storage once,
            parameters, buffers and inputs left out; 0 for inference.
        forward_macs: multiply-accumulates of the operators the call ran itself (``None`` if
            MACs were not counted).
    """

    name: str
    type: str
    call_index: int
    saved_bytes: int
    forward_macs: int | None = None


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    """Memory of one training step (forward, backward, ``optimizer.step()``) or one inference
    forward (under ``torch.no_grad()``), in bytes, measured by running it once.

    The training step is a steady-state step: the optimizer state already exists when it starts
    (it lives from step to step), gradients are ``None`` (``zero_grad(set_to_none=True)``), the
    loss is the sum of the output's floating tensors.

    Attributes:
        kind: ``"train"`` or ``"inference"``.
        batch_size: samples in the measured batch.
        dtype: the model's floating dtype (``"float32"``; the first floating parameter's).
        autocast: the autocast dtype name (``"bfloat16"``) or ``None``.
        optimizer: the optimizer's class name (``"AdamW"``); ``None`` for inference.
        device: the device the figures are for (``"cpu"``, ``"cuda:0"``, ``"meta"``).
        method: how the step ran: :data:`MEASURED_REAL` or :data:`MEASURED_FAKE`.
        parameters / buffers: unique tensors' bytes (counted).
        inputs: bytes of the input tensors of the forward (counted).
        gradients: bytes of the trainable parameters' ``.grad`` after the backward (measured).
        optimizer_state: bytes the optimizer keeps between steps (``state``; measured by one
            real or fake ``step()``).
        saved_activations: bytes of the tensors autograd holds for the backward at the end of
            the forward (measured; 0 for inference).
        peak: the most bytes live at once during the step: parameters, buffers, inputs,
            optimizer state, gradients, saved activations and temporaries (``foreach`` copies,
            autocast's weight copies) live at that moment.
        peak_phase / peak_module / peak_op: where the peak happened: ``"forward"``,
            ``"backward"`` or ``"optimizer"``; the innermost module call running (forward) or
            the module whose backward ran last (backward), ``""`` for the root or none; the
            operator that allocated the bytes that made the peak (``"aten.mm"``).
        peak_parts: the peak split by category, ``(("parameters", n), ("gradients", n), ...)``;
            the parts add up to ``peak.bytes``; ``"temporaries"`` is everything else live.
        forward_macs / backward_macs: multiply-accumulates of the forward and of the backward
            (matmul-class operators; ``None`` when not counted or for inference's backward).
        trainable_params: trainable parameter elements (0: nothing to train; see ``notes``).
        layers: one :class:`LayerMemory` per module call of the measured forward, in call order.
        lower_bound: the peak is a lower bound: memory some kernels allocate inside themselves
            (workspaces) is not seen; ``notes`` says which.
        notes: what the figures leave out or assume, one sentence each: overheads the
            estimate cannot see (CUDA context, allocator rounding, fragmentation, kernel
            workspaces), "no trainable parameters", lower-bound reasons.
        live_curve: ``(live bytes, gradient bytes live, phase)`` after every allocation
            of the step (the largest live bytes is ``peak``); the same step at two batch
            sizes gives each moment's fixed part and per-sample slope, which the ``fits=``
            verdict's largest batch follows (the moment that holds the peak changes with the batch).
        plan: what follows from the step when ``summary()`` was given ``fits=``, ``context=`` or
            ``world_size=``: a :class:`~netsummary._memory.plan.MemoryPlan` (the verdict, the KV
            cache, the per-rank figures), else ``None``.
        complete: ``False`` for the partial estimate of a failed step (on
            :class:`~netsummary._errors.MemoryEstimateError`): figures of phases that did not
            run are 0.
    """

    kind: str
    batch_size: int
    dtype: str
    autocast: str | None
    optimizer: str | None
    device: str
    method: str
    parameters: MemoryItem
    buffers: MemoryItem
    inputs: MemoryItem
    gradients: MemoryItem
    optimizer_state: MemoryItem
    saved_activations: MemoryItem
    peak: MemoryItem
    peak_phase: str
    peak_module: str
    peak_op: str = ""
    peak_parts: tuple[tuple[str, int], ...] = ()
    forward_macs: int | None = None
    backward_macs: int | None = None
    trainable_params: int = 0
    layers: tuple[LayerMemory, ...] = ()
    lower_bound: bool = False
    notes: tuple[str, ...] = ()
    complete: bool = True
    live_curve: tuple[tuple[int, int, str], ...] = field(default=(), repr=False, compare=False)
    plan: Any = field(default=None, compare=False)

    @property
    def items(self) -> tuple[tuple[str, MemoryItem], ...]:
        """``(category, item)`` in display order."""
        return (("parameters", self.parameters), ("buffers", self.buffers), ("inputs", self.inputs),
                ("gradients", self.gradients), ("optimizer_state", self.optimizer_state),
                ("saved_activations", self.saved_activations), ("peak", self.peak))

    def layer(self, name: str, call_index: int = 1) -> LayerMemory | None:
        """The record of module ``name``'s ``call_index``-th call, or ``None``."""
        for rec in self.layers:
            if rec.name == name and rec.call_index == call_index:
                return rec
        return None

    def __str__(self) -> str:
        from .._reporting.memory import render_memory

        return render_memory(self)
