"""Failure reports: what a user sees when their model's forward raises inside ``summary()``."""

from __future__ import annotations

import traceback
from collections.abc import Callable

from torch import nn

from ._errors import ForwardError
from ._render import format_tree, render_classic
from ._records import dtype_names
from ._structure import describe
from ._summary import Summary
from ._trace import Call


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


def forward_error(
    err: Exception,
    failed: Call | None,
    received: str | None,
    partial: Summary,
    render: Callable[[Summary], str] = render_classic,
) -> ForwardError:
    """netsummary's error for a failed forward: where, what it received, hints, the partial table."""
    if failed is None:  # raised before any of the model's modules ran (or in the root's hooks)
        name, kind = "", partial.model_type
        where = f"the forward of {kind}"
    else:
        name, kind = failed.name, type(failed.module).__name__
        where = f"module {name or '(root)'!r} ({kind}, call {failed.call_index})"
    lines = [f"the model's forward raised in {where}: {type(err).__name__}: {err}"]
    if received is not None:
        lines.append(f"  it received: {received}")
    if failed is not None and isinstance(failed.module, (nn.Embedding, nn.EmbeddingBag)) and received and "float" in received:
        lines.append("  hint: embeddings take integer ids; pass dtypes=[torch.long] (or real input_data)")
    if partial.device == "meta" and isinstance(err, (NotImplementedError, RuntimeError)) and "meta" in str(err).lower() + type(err).__name__.lower():
        lines.append("  hint: on the meta device tensors have shapes but no values, so code that reads values "
                     "(.item(), data-dependent branches) cannot run; summarize on the model's own device")
    done = sum(1 for r in partial.layers if r.completed)
    lines.append(f"  {done} module call(s) completed before the failure; partial summary:")
    lines.append(render(partial))
    return ForwardError("\n".join(lines), name, kind, partial)
