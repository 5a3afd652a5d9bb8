"""The figures of one measured step: its live storages sorted into categories (parameters,
gradients, optimizer state, saved activations, temporaries), the peak and what was live at it,
the notes that qualify them, as a :class:`~netsummary._memory.estimate.MemoryEstimate`; and the
:class:`~netsummary._errors.MemoryEstimateError` of a step that failed.

:class:`_Figures` is the part of :class:`netsummary._memory.step._Step` that reads what the run
recorded; :mod:`netsummary._memory.step` runs the step.
"""

from __future__ import annotations

import torch
from torch.utils import _pytree as pytree

from .._errors import MemoryEstimateError
from .._tracing.inputs import ForwardInputs
from .estimate import COUNTED, MEASURED_FAKE, MEASURED_REAL, LayerMemory, MemoryEstimate, MemoryItem
from .live import LiveStorages
from .caveats import WORKSPACE_OPS, reads_values, unseen_overheads
from .optimizers import resolve_optimizer

Tensor = torch.Tensor


def _batch_of(inputs: ForwardInputs) -> int:
    if inputs.run_batch is not None:
        return inputs.run_batch
    for t in pytree.tree_leaves((inputs.args, inputs.kwargs)):
        if isinstance(t, Tensor) and t.dim() > 0:
            return int(t.shape[0])
    return 1


def _floating_dtype(params: list[Tensor], buffers: list[Tensor]) -> str:
    for t in (*params, *buffers):
        if t.dtype.is_floating_point:
            return str(t.dtype).removeprefix("torch.")
    return "float32"


def _bytes(tensors: list[Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class _Figures:
    """The estimate and the error of a measured step, from the records :class:`~netsummary._memory.step._Step`
    keeps while it runs (its ``live``, ``tracer``, ``saved``, ``grad_records``, ``state_records``, ...)."""

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
