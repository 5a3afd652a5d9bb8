"""Budgets: hold a model to limits on its parameters, MACs and bytes; one line per result.

>>> from torch import nn
>>> from netsummary import summary
>>> s = summary(nn.Linear(16, 8), (16,), verbose=0)       # 16*8 + 8 = 136 params, 544 bytes
>>> check_budget(s, max_params="1K")                       # within budget: no violations
[]
>>> [v.message for v in check_budget(s, max_params=100)]   # 136 / 100 - 1 = 36%
['Linear: total params 136 > budget 100 (+36.0%)']

The budgets, the quantity each one names in messages, and the value it reads:

* ``max_params``: ``total params``, ``Summary.total_params`` (elements);
* ``max_trainable_params``: ``trainable params``, ``Summary.trainable_params`` (elements);
* ``max_macs``: ``MACs``, ``Summary.total_macs`` (for the batch as shown: one sample by default);
* ``max_param_bytes``: ``param bytes``, ``Summary.param_bytes`` (bytes);
* ``max_total_bytes``: ``total bytes``, ``Summary.estimated_total_bytes`` (bytes: input + 2 x
  layer outputs + parameters, torchsummary's "Estimated Total Size").
* ``max_train_memory``: ``train memory``, the measured peak of one training step
  (``Summary.memory.peak``, made with ``estimate="train"``; per rank with ``world_size=``:
  ``memory.plan.sharded.peak``) (bytes);
* ``max_inference_memory``: ``inference memory``, the same for one inference forward
  (``estimate="inference"``).

Limits are ints or strings with units (:mod:`netsummary._units`): counts take SI suffixes
(``12M`` = 12,000,000); byte sizes need an explicit unit, ``MB`` = 10**6 bytes, ``MiB`` = 2**20.

MACs and operators without a formula: ``Summary.total_macs`` leaves them out, so it is a *lower
bound*. A lower bound above the limit is a violation; a lower bound within it passes, and its
message says it is a lower bound and names the operators. A summary made without MACs
(``total_macs is None``) cannot be held to ``max_macs``: that is an :class:`InputSpecError`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import BudgetExceeded, InputSpecError, InputTypeError
from .._units import format_bytes, format_count, parse_bytes, parse_count

if TYPE_CHECKING:
    from .._checkpoints.summary import CheckpointSummary
    from .._summary import Summary

# keyword -> (quantity as printed, unit kind: "count" or "bytes")
QUANTITIES: dict[str, tuple[str, str]] = {
    "max_params": ("total params", "count"),
    "max_trainable_params": ("trainable params", "count"),
    "max_macs": ("MACs", "count"),
    "max_param_bytes": ("param bytes", "bytes"),
    "max_total_bytes": ("total bytes", "bytes"),
    "max_train_memory": ("train memory", "bytes"),
    "max_inference_memory": ("inference memory", "bytes"),
}
#: the memory budgets and the estimate each one needs
MEMORY_BUDGETS = {"max_train_memory": "train", "max_inference_memory": "inference"}


@dataclass(frozen=True, slots=True)
class Check:
    """One quantity held to one limit: ``value`` and ``limit`` in base units (elements, MACs,
    bytes). ``note`` qualifies the value (``"lower bound: no formula for aten.foo"``)."""

    quantity: str
    value: int
    limit: int
    name: str | None = None
    unit: str = "count"
    note: str | None = None

    @property
    def ok(self) -> bool:
        """The value is within the limit (``value <= limit``)."""
        return self.value <= self.limit

    @property
    def message(self) -> str:
        """One line, e.g. ``gan: total params 11,038,081 > budget 10,000,000 (+10.4%)`` or
        ``gan: total params 11,038,081 <= budget 12,000,000 (8.0% headroom)``; byte sizes also
        in binary units: ``param bytes 44,152,324 (42.11 MiB) > budget ...``."""
        value, limit = self._show(self.value), self._show(self.limit)
        if self.ok:
            relation = "<="
            extra = "0.0% headroom" if self.limit == 0 else f"{100 * (1 - self.value / self.limit):.1f}% headroom"
        else:
            relation = ">"
            over = None if self.limit == 0 else 100 * (self.value / self.limit - 1)
            extra = "budget is 0" if over is None else "+<0.1%" if over < 0.05 else f"+{over:.1f}%"
        if self.note:
            extra += f"; {self.note}"
        prefix = f"{self.name}: " if self.name else ""
        return f"{prefix}{self.quantity} {value} {relation} budget {limit} ({extra})"

    def _show(self, n: int) -> str:
        return show_bytes(n) if self.unit == "bytes" else format_count(n)


@dataclass(frozen=True, slots=True)
class Violation(Check):
    """A :class:`Check` whose value is over its limit; ``message`` is the one-line report."""


def show_bytes(n: int) -> str:
    """Exact bytes, with binary units from 1 KiB: ``"44,152,324 (42.11 MiB)"``, ``"544 B"``."""
    return f"{n:,} ({format_bytes(n)})" if abs(n) >= 1024 else f"{n:,} B"


def parse_limits(**limits: Any) -> dict[str, int]:
    """Parse the ``max_*`` keywords that are not ``None`` into exact ints (elements or bytes).

    >>> parse_limits(max_params="12M", max_param_bytes="50MiB", max_macs=None)
    {'max_params': 12000000, 'max_param_bytes': 52428800}

    Raises:
        InputTypeError: an unknown keyword.
        InputSpecError: a malformed limit (the message names the keyword).
    """
    out = {}
    for key, raw in limits.items():
        if key not in QUANTITIES:
            raise InputTypeError(f"unknown budget {key!r}; valid budgets are {', '.join(QUANTITIES)}", key)
        if raw is None:
            continue
        parse = parse_bytes if QUANTITIES[key][1] == "bytes" else parse_count
        try:
            out[key] = parse(raw)
        except InputSpecError as err:  # InputTypeError included
            raise type(err)(f"{key}: {err}", raw) from None
    return out


def evaluate(summary: Summary, limits: dict[str, int], name: str | None = None) -> list[Check]:
    """Hold ``summary`` to parsed ``limits`` (from :func:`parse_limits`): one :class:`Check` per
    limit, a :class:`Violation` where it is exceeded, in the order of :data:`QUANTITIES`.

    Raises:
        InputSpecError: ``max_macs`` on a summary made without MACs (``total_macs is None``).
    """
    values = {
        "max_params": summary.total_params,
        "max_trainable_params": summary.trainable_params,
        "max_macs": summary.total_macs,
        "max_param_bytes": summary.param_bytes,
        "max_total_bytes": summary.estimated_total_bytes,
    }
    for key, kind in MEMORY_BUDGETS.items():
        if key in limits:
            values[key] = memory_peak(summary, kind, key)
    if "max_macs" in limits and summary.total_macs is None:
        raise InputSpecError("max_macs: this summary has no MACs (total_macs is None); make it with "
                             "summary(..., macs=True) or pass the model itself", summary)
    notes = {}
    if summary.unknown_ops:
        notes["max_macs"] = f"lower bound: no formula for {', '.join(summary.unknown_ops)}"
    return _checks(values, limits, name, notes)


def memory_peak(summary: Summary, kind: str, key: str = "") -> int:
    """The measured peak of ``summary``'s ``kind`` estimate in bytes, per rank when sharded.

    Raises:
        InputSpecError: the summary holds no estimate of that kind.
    """
    est = summary.memory
    if est is None or est.kind != kind:
        got = "no memory estimate" if est is None else f"an estimate of kind {est.kind!r}"
        raise InputSpecError(f"{key}: needs a summary made with estimate={kind!r}; this one has {got}", summary)
    plan = est.plan
    if plan is not None and plan.sharded is not None:
        return plan.sharded.peak.bytes
    return est.peak.bytes


def fit_check(summary: Summary, name: str | None = None) -> Check | None:
    """The ``fits=`` verdict as a budget line (``None`` without one): the peak plus the named
    overheads held to the capacity, e.g. ``Net: train peak + overheads 1,200,845 (1.15 MiB) <= fits
    in 24.00 MiB 25,165,824 (24.00 MiB) (95.2% headroom)``; over it is a violation (exit 1)."""
    est = summary.memory
    fit = None if est is None or est.plan is None else est.plan.fit
    if fit is None:
        return None
    shown = f"{fit.largest_batch:,}" if fit.largest_batch else "none, not even 1"  # the API's wording
    largest = "" if fit.largest_batch is None else f"largest batch that fits: {shown}"
    cls = Check if fit.fits else Violation
    return cls(f"{est.kind} peak + overheads on {fit.capacity.label}", fit.need_bytes, fit.capacity.bytes, name,
               "bytes", largest or None)


def evaluate_checkpoint(ckpt: CheckpointSummary, limits: dict[str, int], name: str | None = None) -> list[Check]:
    """Hold a checkpoint to ``max_params`` (the elements of every tensor but the normalization
    buffers ``running_mean``/``running_var``/``num_batches_tracked``, shared storage once) and
    ``max_param_bytes`` (their bytes), as a summary's ``total_params`` and ``param_bytes`` count
    parameters and not buffers.

    Raises:
        InputSpecError: any other budget (a checkpoint has no trainability, MACs or activations).
    """
    other = sorted(set(limits) - {"max_params", "max_param_bytes"})
    if other:
        raise InputSpecError(f"{', '.join(other)}: a checkpoint holds only tensors; the budgets that "
                             "apply to it are max_params and max_param_bytes", other)
    return _checks({"max_params": ckpt.total_params, "max_param_bytes": ckpt.param_bytes}, limits, name, {})


def _checks(values: dict[str, Any], limits: dict[str, int], name: str | None, notes: dict[str, str]) -> list[Check]:
    checks: list[Check] = []
    for key, (quantity, unit) in QUANTITIES.items():
        if key in limits:
            value, limit = values[key], limits[key]
            cls = Check if value <= limit else Violation
            checks.append(cls(quantity, value, limit, name, unit, notes.get(key)))
    return checks


def check_budget(
    summary_or_model: Any,
    *,
    max_params: int | str | None = None,
    max_trainable_params: int | str | None = None,
    max_macs: int | str | None = None,
    max_param_bytes: int | str | None = None,
    max_total_bytes: int | str | None = None,
    max_train_memory: int | str | None = None,
    max_inference_memory: int | str | None = None,
    name: str | None = None,
    **summary_kwargs: Any,
) -> list[Violation]:
    """The budgets a summary (or a model, summarized here) exceeds; ``[]`` when within all.

    Given an ``nn.Module`` it runs ``summary(model, verbose=0, **summary_kwargs)`` first, counting
    MACs when ``max_macs`` is set. ``name`` prefixes every message (default: the model's class
    name). Counts take SI suffixes (``"12M"``), byte sizes an explicit unit (``"50MB"`` = 50 *
    10**6 bytes, ``"50MiB"`` = 50 * 2**20 bytes).

    A keyword that looks like a budget but is none (``max_maccs``, ``max_flops``) is an error,
    not a keyword argument for the model's forward; other keywords (``max_length``) are passed on.

    Raises:
        InputSpecError: no budget given, a malformed limit, ``max_macs`` on a summary without
            MACs, or ``summary_kwargs`` together with a ready :class:`Summary`; anything
            ``summary()`` raises for a model (``ForwardError`` when its forward fails).
        InputTypeError: an unknown budget such as ``max_maccs`` (the message lists the valid ones).
    """
    from .._summary import Summary

    for key in summary_kwargs:
        if _looks_like_budget(key):
            close = difflib.get_close_matches(key, QUANTITIES, n=1, cutoff=0.8)
            hint = f"did you mean {close[0]}? " if close else ""
            if "flop" in key:
                hint = "there is no FLOPs budget; max_macs holds multiply-accumulates (FLOPs = 2 x MACs); "
            raise InputTypeError(f"unknown budget {key!r}; {hint}valid budgets are {', '.join(QUANTITIES)}", key)
    limits = parse_limits(max_params=max_params, max_trainable_params=max_trainable_params, max_macs=max_macs,
                          max_param_bytes=max_param_bytes, max_total_bytes=max_total_bytes,
                          max_train_memory=max_train_memory, max_inference_memory=max_inference_memory)
    if not limits:
        raise InputSpecError(f"no budget given; pass at least one of {', '.join(f'{k}=' for k in QUANTITIES)}")
    if isinstance(summary_or_model, Summary):
        if summary_kwargs:
            raise InputSpecError(f"{', '.join(summary_kwargs)}: summary arguments apply when a model is "
                                 "given, not a ready Summary", summary_kwargs)
        s = summary_or_model
    else:
        from .._api import summary

        if "max_macs" in limits:
            summary_kwargs.setdefault("macs", True)
        kinds = {kind for key, kind in MEMORY_BUDGETS.items() if key in limits}
        if len(kinds) == 2:
            raise InputSpecError("max_train_memory and max_inference_memory: one summary measures one estimate; "
                                 "check them in two calls", sorted(kinds))
        if kinds:
            summary_kwargs.setdefault("estimate", kinds.pop())
        s = summary(summary_or_model, **{**summary_kwargs, "verbose": 0})
    return [c for c in evaluate(s, limits, s.model_type if name is None else name) if isinstance(c, Violation)]


def _looks_like_budget(key: str) -> bool:
    """``max_maccs``, ``max_param``, ``max_flops``: a ``max_*`` keyword naming a budget quantity,
    or one typo away from a budget; ``max_length`` is not."""
    if not key.startswith("max_") or key in QUANTITIES:
        return False
    words = ("param", "mac", "flop", "byte", "budget", "memory")
    return any(w in key for w in words) or bool(difflib.get_close_matches(key, QUANTITIES, n=1, cutoff=0.8))


def assert_within_budget(summary_or_model: Any, **kwargs: Any) -> None:
    """Like :func:`check_budget` (same arguments), but raise when any budget is exceeded.

    Raises:
        BudgetExceeded: an ``AssertionError`` whose message has one line per violation, e.g.
            ``discriminator: total params 11,038,081 > budget 10,000,000 (+10.4%)``.
    """
    violations = check_budget(summary_or_model, **kwargs)
    if violations:
        raise BudgetExceeded("\n".join(v.message for v in violations), tuple(violations))
