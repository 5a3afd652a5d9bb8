"""Failure reports: what a user sees when their model's forward raises inside ``summary()``."""

from __future__ import annotations

import re

import sys
import traceback
from collections.abc import Callable

from torch import nn

from .._errors import ForwardError
from .render import format_tree, render_classic
from .._analysis.records import dtype_names
from .._tracing.structure import describe
from .._summary import Summary
from .._tracing.trace import Call


def failed_inputs(call: Call, err: BaseException) -> str:
    """Shapes and dtypes the failing call received: its positional arguments (kept by the
    pre-hook) and its keyword arguments (read from ``Module._call_impl``'s frame)."""
    kwargs: dict = {}
    for frame, _ in traceback.walk_tb(err.__traceback__):
        if frame.f_code.co_name == "_call_impl" and frame.f_locals.get("self") is call.module:
            kwargs = frame.f_locals.get("kwargs") or {}
    parts = []
    for value in [*(call.args or ()), *kwargs.values()]:
        d = describe(value)
        dtypes = ", ".join(dtype_names(d))
        parts.append(format_tree(d.tree) + (f" {dtypes}" if dtypes else ""))
    names = [f"arg{i}" for i in range(len(call.args or ()))] + [str(k) for k in kwargs]
    return ", ".join(f"{n}={p}" for n, p in zip(names, parts)) or "no arguments"


# Operators whose result (or output shape) is computed from tensor values, by what the user wrote.
_READS_VALUES = {
    "aten._local_scalar_dense.default": "reading a tensor's value (.item(), .tolist(), float(), int(), bool() or an `if` on a tensor)",
    "aten.equal.default": "torch.equal",
    "aten.allclose.default": "torch.allclose",
    "aten.is_nonzero.default": "bool() of a tensor",
}
# Messages of torch errors that mean the same, on plain meta tensors or fake ones.
_VALUE_MESSAGES = (
    "cannot be called on meta tensors",  # Tensor.item()
    "cannot copy out of meta tensor",  # .tolist(), .cpu()
    "convert meta device type tensor to numpy",
    ".numpy() is not supported for tensor subclasses",
    "cannot access data pointer",
    "data-independent implementation does not exist",  # nonzero, boolean masks on plain meta
    "with meta tensors, but there was no fake impl or meta kernel",
    "from the 'meta' backend",
    "without output_size",  # repeat_interleave on meta
    "not available for 'meta' device type",  # storages
)


def _fake_exception(name: str, module: str = "torch._subclasses.fake_tensor") -> type | None:
    cls = getattr(sys.modules.get(module), name, None)  # only if torch imported it: never import here
    return cls if isinstance(cls, type) else None


def needs_real_values(err: BaseException, lazy: bool = False) -> str | None:
    """The hint for an error of a forward on meta / fake tensors that needs real tensor values
    (an ``.item()``, a data-dependent output shape, an operator without a meta kernel), else
    ``None``. The exception's ``__cause__`` / ``__context__`` chain is searched too, for models
    that re-raise torch's error as their own. ``lazy``: the forward ran on the meta copy of a
    model with uninitialized lazy modules (then no ``device=`` avoids meta).

    >>> print(needs_real_values(RuntimeError("Tensor.item() cannot be called on meta tensors")))
    this code needs real tensor values, which the meta device does not have (meta tensors carry shapes and dtypes only); summarize on a real device instead: device="cpu", or the device the model's weights are on
    >>> needs_real_values(RuntimeError("a and b must have same reduction dim")) is None
    True
    """
    data_dep = tuple(c for c in (_fake_exception("DataDependentOutputException"),
                                 _fake_exception("GuardOnDataDependentSymNode", "torch.fx.experimental.symbolic_shapes"))
                     if c is not None)
    dyn_shape = _fake_exception("DynamicOutputShapeException")
    unsupported = _fake_exception("UnsupportedOperatorException")
    what = None
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen and len(seen) < 16:
        seen.add(id(e))
        op = str(getattr(e, "func", "")) or str(e)
        if data_dep and isinstance(e, data_dep):
            what = _READS_VALUES.get(op, f"operator {op}" if op.startswith("aten.") else "this code")
        elif dyn_shape is not None and isinstance(e, dyn_shape):
            what = f"operator {op} (its output shape depends on the values)"
        elif unsupported is not None and isinstance(e, unsupported):
            what = f"operator {op} (it has no meta implementation)"
        elif isinstance(e, (RuntimeError, NotImplementedError, TypeError)) and any(
            m in str(e).lower() for m in _VALUE_MESSAGES
        ):
            what = "this code"
        if what is not None:
            why = f"{what} needs real tensor values, which the meta device does not have (meta tensors carry shapes and dtypes only); "
            if lazy:
                return why + ("the model has uninitialized lazy modules, so it ran on a shape-only meta copy: "
                              "materialize them with one real forward first (model(example_input)), then summarize")
            return why + 'summarize on a real device instead: device="cpu", or the device the model\'s weights are on'
        e = e.__cause__ or e.__context__
    return None


def forward_error(
    err: Exception,
    failed: Call | None,
    received: str | None,
    partial: Summary,
    render: Callable[[Summary], str] = render_classic,
    lazy: bool = False,
    hint: str | None = None,
    quant_hint: str | None = None,
) -> ForwardError:
    """netsummary's error for a failed forward: where, what it received, hints, the partial table.

    ``lazy``: the forward ran on the meta copy of a model with uninitialized lazy modules.
    ``hint``: a more specific hint for a forward on meta (a MoE layer's routing), shown instead of
    the general one. ``quant_hint``: a quantized layer's hint (:mod:`netsummary._analysis.quant_hints`),
    shown on any device, instead of the general meta hint."""
    if failed is None:  # raised before any of the model's modules ran (or in the root's hooks)
        name, kind = "", partial.model_type
        where = f"the forward of {kind}"
    else:
        name, kind = failed.name, type(failed.module).__name__
        where = f"module {name or '(root)'!r} ({kind}, call {failed.call_index})"
    text = str(err)
    if quant_hint is not None:  # torch's pointer to an internal module that would load a fake kernel: noise
        text = re.sub(r"\s*The operator specified that you may need to import (the )?'[^']*' Python module to load the fake impl\.",
                      "", text).strip() or "(no message)"
    lines = [f"the model's forward raised in {where}: {type(err).__name__}: {text}"]
    if received is not None:
        lines.append(f"  it received: {received}")
    if failed is not None and isinstance(failed.module, (nn.Embedding, nn.EmbeddingBag)) and received and "float" in received:
        lines.append("  hint: embeddings take integer ids; pass dtypes=[torch.long] (or real input_data)")
    if quant_hint is not None:
        lines.append(f"  hint: {quant_hint}")
    elif partial.device == "meta":
        hint = (hint if hint is not None and needs_real_values(err, lazy) is not None else None) or needs_real_values(err, lazy)
        if hint is not None:
            lines.append(f"  hint: {hint}")
    done = sum(1 for r in partial.layers if r.completed)
    lines.append(f"  {done} module call(s) completed before the failure; partial summary:")
    lines.append(render(partial))
    return ForwardError("\n".join(lines), name, kind, partial)
