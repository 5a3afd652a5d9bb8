"""Figures only some models have, added to a finished :class:`~netsummary.Summary`: total and
active parameters of a mixture-of-experts model (:mod:`.experts`), parameters by PEFT adapter
(:mod:`.adapters`). Each costs a pass over the modules (never over the parameters' elements),
and an ordinary model's summary is returned unchanged (the same object)."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from .._summary import Summary
from . import experts as _experts
from .adapters import peft_adapters
from .._summary import AdapterGroup


def _params_of(modules: list[nn.Module]) -> int:
    """Unique parameter elements of the modules' subtrees (a tied weight counts once)."""
    seen: dict[int, int] = {}
    for m in modules:
        for p in m.parameters():
            seen.setdefault(id(p), p.numel())
    return sum(seen.values())


def find_adapters(model: nn.Module, named: list[tuple[str, nn.Module]]) -> tuple[AdapterGroup, ...]:
    """The PEFT adapters of ``model`` (``()`` unless peft is imported and it is a PEFT model);
    called before any forward runs.

    Raises:
        InputSpecError: a PEFT model without adapters (see :func:`.adapters.peft_adapters`).
    """
    return peft_adapters(model, named) if _peft_loaded() else ()


def with_extras(result: Summary, adapters: tuple[AdapterGroup, ...], groups: list[_experts.ExpertGroup],
                calls: list[Any] | None) -> Summary:
    """``result`` with ``expert_params`` / ``active_params`` / ``active_params_method`` when the
    model has routed experts and ``adapters`` when it is a PEFT model. ``calls``: the tracer's
    calls (``None``: no forward ran, k comes from the config).
    """
    changes: dict[str, Any] = {}
    if adapters:
        changes["adapters"] = adapters
    if groups and calls is not None:
        _experts.measure_lists(groups, calls)
        _experts.top_k_from_calls(groups, calls)
    groups = _experts.routed_groups(groups, ran=calls is not None)  # a layout alone is no MoE
    if groups:
        fig = _experts.moe_figures(groups, result.total_params, _params_of, ran=calls is not None)
        if fig is not None:
            changes.update(expert_params=fig.expert_params, active_params=fig.active_params,
                           active_params_method=fig.method)
    return dataclasses.replace(result, **changes) if changes else result


def _peft_loaded() -> bool:
    import sys

    return "peft" in sys.modules
