"""Text for the figures only some models have: active parameters of a mixture-of-experts model,
the trainable share and adapters of a PEFT model. Lines appear only for such models, so the
tables of every other model are unchanged."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._summary import AdapterGroup, Summary

# how active_params was obtained, in words (keys: Summary.active_params_method)
METHOD_WORDS = {
    "measured": "measured: tokens each expert processed in the traced run",
    "top-k": "router top-k: fake tensors (meta) cannot route, each token counted k times",
    "config": "router top-k from the config: no forward was run",
}

# the same, short, for the tree view's totals column
METHOD_SHORT = {"measured": "measured", "top-k": "router top-k, on meta", "config": "top-k from the config"}


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f}%" if whole else "--"


def extra_rows(s: Summary) -> list[tuple[str, str]]:
    """(label, value) rows for the tree view's totals; ``[]`` for an ordinary model."""
    rows: list[tuple[str, str]] = []
    if s.expert_params is not None:
        rows.append(("Routed expert params", f"{s.expert_params:,}"))
        if s.active_params is None:
            rows.append(("Active params per token", "unknown (no routing seen)"))
        else:
            rows.append((f"Active params per token ({METHOD_SHORT.get(s.active_params_method or '', '')})",
                         f"{s.active_params:,} ({_share(s.active_params, s.total_params)})"))
    if s.adapters:
        rows.append(("Trainable share (trainable / total params)", _share(s.trainable_params, s.total_params)))
        for a in s.adapters:
            kind = f"{a.peft_type}, " if a.peft_type else ""
            rows.append((f"Adapter {a.name!r} ({kind}{_state(a)})",
                         f"{a.params:,} params, {a.trainable_params:,} trainable"))
        base, base_trainable = _base(s)
        rows.append(("Base model (outside the adapters)",
                     f"{base:,} params, " + ("frozen" if not base_trainable else f"{base_trainable:,} trainable")))
    return rows


def _state(a: AdapterGroup) -> str:
    """``disabled`` (peft has it switched off), ``active`` (the forward runs it) or ``inactive``."""
    return "disabled" if a.disabled else "active" if a.active else "inactive"


def _base(s: Summary) -> tuple[int, int]:
    return (s.total_params - sum(a.params for a in s.adapters),
            s.trainable_params - sum(a.trainable_params for a in s.adapters))


def extra_lines(s: Summary) -> list[str]:
    """Lines under the classic table's totals; ``[]`` for an ordinary model."""
    lines: list[str] = []
    if s.expert_params is not None:
        if s.active_params is None:
            lines.append(f"Active params per token: unknown (no routing seen); routed experts hold {s.expert_params:,}")
        else:
            lines.append(f"Active params per token: {s.active_params:,} of {s.total_params:,} "
                         f"({_share(s.active_params, s.total_params)}; {METHOD_WORDS.get(s.active_params_method or '', '')})")
            lines.append(f"Routed expert params: {s.expert_params:,}")
    if s.adapters:
        lines.append(f"trainable: {_share(s.trainable_params, s.total_params)} "
                     f"({s.trainable_params:,} of {s.total_params:,} params)")
        for a in s.adapters:
            kind = f"{a.peft_type}, " if a.peft_type else ""
            lines.append(f"Adapter {a.name!r} ({kind}{_state(a)}): "
                         f"{a.params:,} params, {a.trainable_params:,} trainable")
        base, base_trainable = _base(s)
        lines.append(f"Base model: {base:,} params, " + ("frozen" if not base_trainable else f"{base_trainable:,} trainable"))
    return lines
