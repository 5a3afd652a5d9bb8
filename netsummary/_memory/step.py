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

from .._errors import InputSpecError, InputTypeError
from .._tracing.fakelog import quiet_fake_tensor_logs
from .._tracing.guard import ModelGuard
from .._tracing.device import resolve_device
from .._tracing.inputs import ForwardInputs, build_inputs
from .._tracing.interrupts import deferred_interrupts
from .._tracing.model import eager_module, walk_modules
from .._tracing.switches import GC_PAUSED, MHA_FASTPATH_OFF
from .._tracing.trace import Tracer
from .estimate import MemoryEstimate
from .live import LiveStorages, Where
from .backward import BackwardMacCounter, loss_of
from .figures import _Figures
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


def _unique_tensors(model: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
    params = list({id(p): p for p in model.parameters()}.values())
    buffers = list({id(b): b for b in model.buffers() if b is not None}.values())
    return params, buffers


class _Step(_Figures):
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
