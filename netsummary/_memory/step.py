"""Measure the memory of one training step or inference forward by running it once.

The step runs on **stand-ins** of the model's parameters and buffers, swapped in with
``torch.func.functional_call``: on real tensors (clones: the estimate costs one more copy of the
weights) or, for a model or device on ``meta`` (or ``fake=True``), on fake tensors
(``FakeTensorMode``: sizes without memory, so a 70B model needs none). The user's model, its
``.grad``s, a passed optimizer (only its class and hyper-parameters are read) and the global
generators are left as they were (:class:`~netsummary._tracing.guard.ModelGuard`), on success and
on failure. While the step runs, the model's modules hold the stand-ins (swapped in and back by
``torch.nn.utils.stateless``, as ``functional_call`` does); other summaries of the same model wait
for it (the guard's claim), but a plain forward of the same model in another thread meanwhile
would run on the stand-ins.

A training step is a steady-state one: forward (under ``torch.autocast`` when asked), loss = the
sum of the output's floating tensors, ``backward()``, ``optimizer.step()``; the optimizer's state
is live from the start (it persists between steps: the state the step allocates is counted as
live before it), gradients start as ``None`` (``zero_grad(set_to_none=True)``). Live storages are
tracked op by op (:class:`~netsummary._memory.live.LiveStorages`); tensors autograd saves for the
backward are seen through ``torch.autograd.graph.saved_tensors_hooks`` and attributed to the
innermost module call running. Activation checkpointing installs its own hooks inside its
region, so what it does not keep is not counted, and its recomputation is measured as it runs.

>>> from torch import nn
>>> m = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 10))
>>> est = estimate_memory(m, (256,), batch_size=8, optimizer="sgd")
>>> est.parameters.bytes            # (256*512 + 512 + 512*10 + 10) = 136,714 float32 * 4 bytes
546856
>>> est.gradients.bytes == est.parameters.bytes, est.optimizer_state.bytes   # plain SGD keeps nothing
(True, 0)
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.modules import module as _module_globals
from torch.nn.utils.stateless import _reparametrize_module
from torch.utils import _pytree as pytree
from torch.utils.weak import WeakIdKeyDictionary

from .._errors import InputSpecError, InputTypeError, MemoryEstimateError
from .._tracing.fakelog import quiet_fake_tensor_logs
from .._tracing.guard import ModelGuard
from .._tracing.inputs import ForwardInputs, build_inputs, resolve_device
from .._tracing.interrupts import deferred_interrupts
from .._tracing.model import eager_module, walk_modules
from .._tracing.switches import GC_PAUSED, MHA_FASTPATH_OFF
from .._tracing.trace import Tracer
from .estimate import COUNTED, MEASURED_FAKE, MEASURED_REAL, LayerMemory, MemoryEstimate, MemoryItem
from .live import LiveStorages, Where
from .backward import BackwardMacCounter, loss_of
from .caveats import WORKSPACE_OPS, reads_values, unseen_overheads
from .optimizers import build_optimizer, resolve_optimizer
from .options import check_autocast, check_kind

Tensor = torch.Tensor

def estimate_memory(model: nn.Module, input_size: Any = None, batch_size: int | None = None, *, input_data: Any = None,
                    dtypes: Any = None, device: Any = None, kind: str = "train", optimizer: Any = "adamw",
                    autocast: torch.dtype | None = None, fake: bool | None = None, **kwargs: Any) -> MemoryEstimate:
    """Measure one training step (``kind="train"``) or inference forward of ``model`` on a batch
    of ``batch_size`` samples (default 1) of shape ``input_size`` (or on ``input_data``); see the module
    docstring. ``fake=None`` runs fake tensors when the model or ``device`` is ``meta``, real
    ones otherwise; ``fake=True`` forces a fake run (no memory used).

    Raises:
        InputSpecError / InputTypeError / DeviceError: as :func:`netsummary.summary` for the
            inputs; an unknown ``kind``, ``optimizer`` or ``autocast``.
        MemoryEstimateError: the step failed (see :func:`measure`).
    """
    if check_kind(kind) is None:
        raise InputSpecError("kind: expected 'train' or 'inference', got None", kind)
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}", model)
    model = eager_module(model)
    named = walk_modules(model)
    dev = resolve_device(named, device)
    if batch_size is None:  # input_data carries its own batch
        batch_size = -1 if input_data is not None else 1
    inputs = build_inputs(model, dev, input_size, input_data, dtypes, batch_size, kwargs)
    return measure(model, named, inputs, dev, kind, optimizer, autocast, fake)


def measure(model: nn.Module, named: list[tuple[str, nn.Module]], inputs: ForwardInputs, dev: torch.device,
            kind: str, optimizer: Any = "adamw", autocast: torch.dtype | None = None,
            fake: bool | None = None) -> MemoryEstimate:
    """Run and measure the step on ``inputs`` (built on ``dev``); returns the estimate.

    Raises:
        InputSpecError / InputTypeError: unknown ``kind``, ``optimizer`` or ``autocast``.
        MemoryEstimateError: the forward, backward or optimizer step raised (chained to that
            error; ``.partial`` holds what was measured before it). On fake tensors, code that
            reads tensor values (``.item()``, ``nonzero``, a data-dependent shape) gets a
            message saying so that suggests a real run.
    """
    kind = check_kind(kind)
    autocast = check_autocast(autocast)
    opt_label = resolve_optimizer(optimizer)[2] if kind == "train" else None
    fake = dev.type == "meta" if fake is None else bool(fake)
    run = _Step(model, named, inputs, dev, kind, optimizer, autocast, fake, opt_label)
    return run.run()


def _batch_of(inputs: ForwardInputs) -> int:
    if inputs.run_batch is not None:
        return inputs.run_batch
    for t in pytree.tree_leaves((inputs.args, inputs.kwargs)):
        if isinstance(t, Tensor) and t.dim() > 0:
            return int(t.shape[0])
    return 1


def _unique_tensors(model: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
    params = list({id(p): p for p in model.parameters()}.values())
    buffers = list({id(b): b for b in model.buffers() if b is not None}.values())
    return params, buffers


def _floating_dtype(params: list[Tensor], buffers: list[Tensor]) -> str:
    for t in (*params, *buffers):
        if t.dtype.is_floating_point:
            return str(t.dtype).removeprefix("torch.")
    return "float32"


def _bytes(tensors: list[Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class _Step:
    """One measured step (see :func:`measure`); :meth:`run` returns the estimate."""

    def __init__(self, model: nn.Module, named: list, inputs: ForwardInputs, dev: torch.device, kind: str,
                 optimizer: Any, autocast: torch.dtype | None, fake: bool, opt_label: str | None) -> None:
        self.model, self.named, self.inputs, self.dev = model, named, inputs, dev
        self.kind, self.optimizer, self.autocast, self.fake = kind, optimizer, autocast, fake
        self.opt_label = opt_label
        self.params, self.buffers = _unique_tensors(model)
        self.trainable = [p for p in self.params if p.requires_grad]
        self.notes: list[str] = []
        self.train = kind == "train" and bool(self.trainable)
        if kind == "train" and not self.trainable:
            self.notes.append("estimate='train' on a model with no trainable parameters: nothing to update, so the "
                              "figures are those of one forward under torch.no_grad() (no gradients, no optimizer state)")
            self.opt_label = None
        self.where = Where()
        self.live = LiveStorages(self.where)
        self.tracer = Tracer(model, named, count_macs=True)
        self.saved: dict[int, int] = {}  # record index -> call index (innermost call running when first saved)
        self.forward_end = 0
        self.backward_end = 0
        self.grad_records: list[int] = []
        self.state_records: list[int] = []
        self.backward_macs: int | None = None
        self.bw_module = ""
        self.bw_unknown: list[str] = []

    # -- where ------------------------------------------------------------------------------------
    def _forward_module(self) -> str:
        stack = self.tracer.stack
        return self.tracer._raw[stack[-1]][1] if stack else ""

    # -- the run ----------------------------------------------------------------------------------
    def run(self) -> MemoryEstimate:
        guard = ModelGuard(self.model, [m for _, m in self.named], watch_writes=False)
        failure: tuple[str, BaseException] | None = None
        with deferred_interrupts(), GC_PAUSED.held(), guard:
            self.model.train(self.train)
            fake_mode = FakeTensorMode(allow_non_fake_inputs=True) if self.fake else None
            with quiet_fake_tensor_logs() if self.fake else contextlib.nullcontext():
                with fake_mode if fake_mode is not None else contextlib.nullcontext():
                    try:
                        failure = self._run(fake_mode)
                    finally:
                        guard.add_draws(self.live.draws)
        est = self._estimate(complete=failure is None)
        if failure is not None:
            phase, err = failure
            raise self._error(phase, err, est) from err
        return est

    def _stand_in(self, t: Tensor, fake_mode: FakeTensorMode | None) -> Tensor:
        if fake_mode is None:
            s = t.detach().clone()
        elif t.device.type == "meta":
            s = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="cpu")  # fake (mode is on)
        else:
            s = fake_mode.from_tensor(t.detach())
        if isinstance(t, nn.Parameter):
            s.requires_grad_(t.requires_grad)
        return s

    def _run(self, fake_mode: FakeTensorMode | None) -> tuple[str, BaseException] | None:
        live, where, model = self.live, self.where, self.model
        stand = {id(t): self._stand_in(t, fake_mode) for t in (*self.params, *self.buffers)}
        tensors = {name: stand[id(t)] for name, t in
                   [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
                   if t is not None}

        def to_run(t: Tensor) -> Tensor:
            if fake_mode is None:
                return t
            if t.device.type == "meta":
                return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="cpu")
            return fake_mode.from_tensor(t)

        args, kwargs = pytree.tree_map_only(Tensor, to_run, (self.inputs.args, self.inputs.kwargs))
        run_device = "cpu" if self.dev.type == "meta" else self.dev.type
        self.run_device = run_device
        opt = build_optimizer(self.optimizer, stand) if self.train else None
        # the stand-ins stay swapped in for the whole step: activation checkpointing recomputes
        # its region during the backward, through the module's attributes
        with _reparametrize_module(model, tensors, tie_weights=False, strict=False), live:
            for t in self.params:
                live.register(stand[id(t)], "parameters")
            for t in self.buffers:
                live.register(stand[id(t)], "buffers")
            for t in pytree.tree_leaves((args, kwargs)):
                if isinstance(t, Tensor):
                    live.register(t, "inputs")
            self.inputs_bytes = sum(live.records[i][1] for i in range(len(live.records))
                                    if live.records[i][4] == "inputs")
            # forward
            where.phase = "forward"
            where.module = self._forward_module
            try:
                out = self._forward(tensors, args, kwargs, run_device)
            except Exception as err:  # noqa: BLE001 - reported as MemoryEstimateError
                self.forward_end = len(live.events) - 1
                return ("forward", err)
            self.forward_end = len(live.events) - 1
            if not self.train:
                del out
                return None
            # backward
            where.phase = "backward"
            where.module = lambda: self.bw_module
            live.last_op = ""
            macs = [0]

            def on_bw(op: str, n: int | None) -> None:
                if n is None:
                    self.bw_unknown.append(op)
                else:
                    macs[0] += n

            try:
                loss = loss_of(out)
                del out
                with BackwardMacCounter(on_bw):
                    loss.backward()
                del loss
            except Exception as err:  # noqa: BLE001
                self.backward_end = len(live.events) - 1
                return ("backward", err)
            self.backward_macs = macs[0]
            self.backward_end = len(live.events) - 1
            self.grad_records = self._records([stand[id(p)].grad for p in self.trainable])
            # optimizer
            where.phase = "optimizer"
            where.module = lambda: ""
            live.last_op = ""  # a failure report names this phase's operators only
            try:
                opt.step()
            except Exception as err:  # noqa: BLE001
                return ("optimizer", err)
            self.state_records = self._records(
                [v for st in opt.state.values() for v in st.values() if isinstance(v, Tensor)])
            del opt
            stand.clear()
            tensors.clear()
        return None

    def _records(self, tensors: list) -> list[int]:
        out: dict[int, None] = {}
        for t in tensors:
            if isinstance(t, Tensor):
                idx = self.live.record_of(t)
                if idx is not None:
                    out[idx] = None
        return list(out)

    def _forward(self, tensors: dict, args: tuple, kwargs: dict, run_device: str) -> Any:
        live, tracer = self.live, self.tracer
        handles = []
        names = tracer.names
        grad = contextlib.nullcontext() if self.train else torch.no_grad()

        def pack(t: Tensor) -> Tensor:
            idx = live.record_of(t)
            if idx is not None and live.records[idx][4] == "" and idx not in self.saved:
                self.saved[idx] = tracer.stack[-1] if tracer.stack else -1
            return t

        def unpack(t: Tensor) -> Tensor:
            return t

        def entered_backward(name: str) -> Any:
            def hook(grad: Tensor) -> None:
                self.bw_module = name
            return hook

        thread = threading.get_ident()
        hooked = WeakIdKeyDictionary()  # tensors already hooked (identity, never ==)

        def post_hook(module: nn.Module, a: Any, output: Any) -> None:
            if threading.get_ident() != thread:
                return
            name = names.get(id(module))
            if name is None:
                return
            for t in pytree.tree_leaves(output):
                if isinstance(t, Tensor) and t.requires_grad:
                    if t not in hooked:  # a tensor several nested calls return: the innermost's name
                        hooked[t] = True
                        t.register_hook(entered_backward(name))
                    break

        autocast = torch.autocast(run_device, dtype=self.autocast) if self.autocast is not None else contextlib.nullcontext()
        try:
            if self.train:
                handles.append(_module_globals.register_module_forward_hook(post_hook))
            with grad, MHA_FASTPATH_OFF.held(), tracer, autocast:
                with torch.autograd.graph.saved_tensors_hooks(pack, unpack) if self.train else contextlib.nullcontext():
                    return self.model(*args, **kwargs)
        finally:
            for h in handles:
                h.remove()

    # -- the figures --------------------------------------------------------------------------------
    def _estimate(self, complete: bool) -> MemoryEstimate:
        live = self.live
        method = MEASURED_FAKE if self.fake else MEASURED_REAL
        recs = live.records
        for i in self.grad_records:
            recs[i][4] = "gradients"
        for i in self.state_records:
            recs[i][4] = "optimizer_state"
        for i in self.saved:
            if recs[i][4] == "":
                recs[i][4] = "activations"
        for r in recs:
            if r[4] == "":
                r[4] = "temporaries"
        # steady state: the optimizer state is live from the start
        extra = [0] * (len(live.events) + 1)
        for i in self.state_records:
            extra[recs[i][2]] += recs[i][1]
        running = 0
        for e in range(len(live.events), -1, -1):  # suffix sums: state allocated after event e
            running, extra[e] = running + extra[e], running
        peak_ev, peak_bytes = live.peak_event(extra)
        parts: dict[str, int] = dict.fromkeys(("parameters", "buffers", "inputs", "optimizer_state", "gradients",
                                               "activations", "temporaries"), 0)
        for i in live.live_at(peak_ev):
            parts[recs[i][4]] += recs[i][1]
        parts["optimizer_state"] += extra[peak_ev]
        _, phase, module, op = live.events[peak_ev]
        if phase == "setup":
            phase = "forward"
        live_curve = _live_curve(live, extra, recs)  # (memfit) for the fits= verdict from two batches
        end = self.forward_end  # saved tensors still held for the backward when the forward ended
        held = {i: c for i, c in self.saved.items() if recs[i][3] is None or recs[i][3] > end}
        saved_bytes = sum(recs[i][1] for i in held)
        per_call: dict[int, int] = {}
        for i, c in held.items():
            per_call[c] = per_call.get(c, 0) + recs[i][1]
        calls = self.tracer.calls
        layers = tuple(LayerMemory(c.name, type(c.module).__name__, c.call_index, per_call.get(k, 0), c.macs)
                       for k, c in enumerate(calls))
        fwd_macs = sum(c.macs for c in calls) if calls else None
        grads = sum(recs[i][1] for i in self.grad_records)
        state = sum(recs[i][1] for i in self.state_records)
        lower = False
        notes = list(self.notes)
        if live.ops & WORKSPACE_OPS:
            lower = True
            ops = ", ".join(sorted(live.ops & WORKSPACE_OPS))
            notes.append(f"lower bound: {ops} allocate(s) workspace memory inside the kernel, which the estimate does not "
                         f"see" + ("; fake tensors do not model its size either (a real run, device='cpu', sees more)"
                                   if self.fake else ""))
        uncounted = sorted(live.ops & _NO_MAC_FORMULA)
        if self.train and uncounted and self.backward_macs is not None:
            # never a silent undercount: torch.utils.flop_counter has no formula for these ops
            notes.append(f"backward MACs unknown: torch.utils.flop_counter has no formula for {', '.join(uncounted)} "
                         f"(the ops it counts: {self.backward_macs:,} MACs, a lower bound)")
            self.backward_macs = None
        if live.transient_ops:
            from .transients import RULES

            for op in sorted(live.transient_ops):
                notes.append(f"counted by rule: {RULES[op]}; oneDNN makes it for most shapes, not all (not for "
                             "Conv2d(512, 1024, 4, 2, 1) on 8×8), so such a moment may be high by the input's bytes")
        if self.train and self.dev.type == "meta" and not any(op.startswith("aten._foreach") for op in live.ops):
            notes.append("the optimizer ran its single-tensor implementation (torch's default off CUDA); on CUDA "
                         "torch defaults to foreach, whose step holds one more copy of some state at once (about "
                         "the trainable parameters' size for Adam): pass optimizer=<an instance with foreach=True> "
                         "to measure that")
        notes.extend(unseen_overheads(self.dev))
        if self.autocast is not None:
            notes.append(f"autocast {str(self.autocast).removeprefix('torch.')}: the casted weight copies it keeps "
                         f"for the backward are in the saved activations and the peak")
        if self.bw_unknown:
            notes.append("backward MACs leave out operators without a formula: " + ", ".join(sorted(set(self.bw_unknown))))
        grad_note = "trainable only" if self.train else ""
        state_note = ""
        if self.train and self.trainable:
            tb = _bytes(self.trainable)
            state_note = f"{state / tb:.3g} × trainable" if tb else ""
        train = self.train
        return MemoryEstimate(
            kind=self.kind, batch_size=_batch_of(self.inputs), dtype=_floating_dtype(self.params, self.buffers),
            autocast=None if self.autocast is None else str(self.autocast).removeprefix("torch."),
            optimizer=self.opt_label if train else None, device=str(self.dev), method=method,
            parameters=MemoryItem(_bytes(self.params), COUNTED),
            buffers=MemoryItem(_bytes(self.buffers), COUNTED),
            inputs=MemoryItem(getattr(self, "inputs_bytes", 0), COUNTED),
            gradients=MemoryItem(grads, method if train else COUNTED, grad_note),
            optimizer_state=MemoryItem(state, method if train else COUNTED, state_note),
            saved_activations=MemoryItem(saved_bytes, method if train else COUNTED),
            peak=MemoryItem(peak_bytes, method, "lower bound" if lower else ""),
            peak_phase=phase, peak_module=module, peak_op=op if op != "free" else "",
            peak_parts=tuple(parts.items()),
            forward_macs=fwd_macs, backward_macs=self.backward_macs if train else None,
            trainable_params=sum(p.numel() for p in self.trainable),
            layers=layers, lower_bound=lower, notes=tuple(notes), complete=complete,
            live_curve=live_curve,
        )

    def _error(self, phase: str, err: BaseException, partial: MemoryEstimate) -> MemoryEstimateError:
        if phase == "forward":
            failed = self.tracer.failing_call()
            module = failed.name if failed is not None else ""
            mtype = type(failed.module).__name__ if failed is not None else type(self.model).__name__
        elif phase == "backward":
            module, mtype = self.bw_module, ""
        else:
            module, mtype = "", ""
        op = self.live.last_op
        where = f"module {module!r}" + (f" ({mtype})" if mtype else "") if module or mtype else "the root"
        if phase == "optimizer":
            where = f"{resolve_optimizer(self.optimizer)[0].__name__}.step()"
        data_dependent = self.fake and reads_values(err)
        if data_dependent:
            msg = (f"estimate: the {phase} reads tensor values (data-dependent code in {where}, operator {op}), which "
                   f"fake tensors do not have; expected code whose shapes follow from the input shapes alone. Measure "
                   f"it on real tensors instead: build the model on 'cpu' and pass device='cpu'")
        else:
            at = f"at operator {op or '(none)'}" if phase != "backward" else (
                f"(the module whose backward ran last; last operator {op or '(none)'})")
            msg = (f"estimate: the measured {'optimizer step' if phase == 'optimizer' else phase} failed in {where} "
                   f"{at}: {type(err).__name__}: {err}")
        if isinstance(err, torch.OutOfMemoryError) or "out of memory" in str(err).lower():
            msg += ("; the real run needs one more copy of the weights besides the step itself: pass device='meta' "
                    "to measure it on fake tensors, which use no memory")
        if phase != "forward":
            ran = "forward's" if phase == "backward" else "forward's and backward's"
            msg += f"; the {ran} figures are in err.partial"
        return MemoryEstimateError(msg, phase, module, op, partial)


#: Backward ops that do multiply-accumulates torch.utils.flop_counter has no formula for (fused RNNs).
_NO_MAC_FORMULA = frozenset({"aten.mkldnn_rnn_layer_backward", "aten._cudnn_rnn_backward", "aten.miopen_rnn_backward"})


def _live_curve(live: LiveStorages, extra: list[int], recs: list) -> tuple:
    """``(live bytes, gradient bytes live, phase)`` after every allocation, the optimizer state counted
    from the start as for the peak (added for the fits= verdict: the same step at two batch sizes
    gives each event's fixed part and per-sample slope, and the peak at any batch is their largest)."""
    grads = [0] * (len(live.events) + 1)
    for r in recs:
        if r[4] == "gradients":
            grads[r[2]] += r[1]
            if r[3] is not None:
                grads[r[3]] -= r[1]
    out, g = [], 0
    for i, ev in enumerate(live.events):
        g += grads[i]
        if ev[3] != "free":  # a peak follows an allocation; frees at teardown come in no fixed order
            out.append((ev[0] + extra[i], g, "forward" if ev[1] == "setup" else ev[1]))
    return tuple(out)
