"""PEFT adapters (LoRA, prefix tuning, IA3, ``modules_to_save``, ...): parameters by adapter name.

Read through peft's own structure, and only when ``peft`` is already imported (a model cannot be
a PEFT model otherwise; netsummary never imports peft itself):

* the model is a PEFT model when it is a ``peft.PeftModel`` / ``peft.PeftMixedModel`` / peft
  tuner (``peft.tuners.tuners_utils.BaseTuner``), or a transformers model with adapters loaded
  (``_hf_peft_config_loaded``); its adapter names are the keys of ``model.peft_config`` and the
  ones the forward runs are ``model.active_adapters``, unless peft has them **disabled**;
* an adapter is disabled when peft says so through its own state: the ``PeftModel``'s
  ``_adapters_disabled`` (set by ``with model.disable_adapter():`` for every kind of adapter,
  prompt learning included), or the ``disable_adapters`` property of every adapter layer holding
  it (``BaseTunerLayer`` and ``modules_to_save`` wrappers: set by ``disable_adapter()``,
  ``disable_adapter_layers()`` and transformers' ``model.disable_adapters()``). A disabled
  adapter is not active;
* an adapter's parameters are those peft keeps under the adapter's name: every
  ``nn.ModuleDict`` / ``nn.ParameterDict`` held by one of peft's modules (a tuner layer's
  ``lora_A`` / ``lora_B`` / ``lora_embedding_A`` / ``ia3_l`` ..., a ``ModulesToSaveWrapper``'s
  ``modules_to_save``, the ``PeftModel``'s ``prompt_encoder``), at the key of that name.

The totals stay those of every unique parameter, so the trainable share is exactly peft's
``get_nb_trainable_parameters()`` (``print_trainable_parameters()``'s ``trainable%``) for models
without bitsandbytes 4-bit weights. The base model is every parameter outside the adapters.
"""

from __future__ import annotations

import sys
from typing import Any

from torch import nn

from .._errors import InputSpecError
from .._summary import AdapterGroup

__all__ = ["peft_adapters", "is_peft_model"]


def is_peft_model(model: nn.Module) -> bool:
    """``model`` is a PEFT model (see the module docstring); ``False`` whenever peft is not imported."""
    peft = sys.modules.get("peft")
    if peft is None:
        return False
    kinds = tuple(k for k in (getattr(peft, "PeftModel", None), getattr(peft, "PeftMixedModel", None))
                  if isinstance(k, type))
    tuners = sys.modules.get("peft.tuners.tuners_utils")
    base_tuner = getattr(tuners, "BaseTuner", None)
    if isinstance(base_tuner, type):
        kinds += (base_tuner,)
    return isinstance(model, kinds) or model.__dict__.get("_hf_peft_config_loaded") is True


def peft_adapters(model: nn.Module, named: list[tuple[str, nn.Module]]) -> tuple[AdapterGroup, ...]:
    """One :class:`AdapterGroup` per adapter name of a PEFT model, in ``peft_config`` order;
    ``()`` for any other model. One pass over the modules.

    Raises:
        InputSpecError: a PEFT model without adapters (its ``peft_config`` is empty, e.g. after
            ``delete_adapter``): its forward would fail looking for the deleted adapter. The model
            is left as it was; the message names the way out.
    """
    if not is_peft_model(model):
        return ()
    config = getattr(model, "peft_config", None)
    names = list(config) if isinstance(config, dict) else []
    if not names:
        raise InputSpecError(
            f"{type(model).__name__} is a PEFT model without adapters (model.peft_config is empty, e.g. after "
            "delete_adapter): there is nothing to fine-tune and its forward would look for a deleted adapter; "
            "add one (model.add_adapter(name, config)), or take the adapter layers out and summarize the base "
            "model: summary(model.unload(), ...)", model)
    try:
        got = getattr(model, "active_adapters", names)  # PeftModel: a property; transformers: a method
        got = got() if callable(got) else got
        active = {got} if isinstance(got, str) else set(got)
    except Exception:  # noqa: BLE001 - a model whose active_adapters cannot be read: all count as active
        active = set(names)
    wanted = set(names)
    found: dict[str, dict[int, Any]] = {n: {} for n in names}
    switched: dict[str, list[bool]] = {n: [] for n in names}  # each adapter layer's disable_adapters
    for _, m in named:
        if not type(m).__module__.startswith("peft."):
            continue
        off = _disabled_flag(m)
        for child in m._modules.values():
            if isinstance(child, (nn.ModuleDict, nn.ParameterDict)):
                for key in wanted.intersection(child.keys()):
                    if off is not None:
                        switched[key].append(off)
                    entry = child[key]
                    tensors = [entry] if isinstance(entry, nn.Parameter) else (
                        entry.parameters() if isinstance(entry, nn.Module) else ())
                    for p in tensors:
                        found[key].setdefault(id(p), p)
    all_off = model.__dict__.get("_adapters_disabled") is True  # PeftModel, inside disable_adapter()
    out = []
    for n in names:
        disabled = all_off or (bool(switched[n]) and all(switched[n]))
        ps = found[n].values()
        numel = sum(p.numel() for p in ps)
        kind = getattr(config[n], "peft_type", "")
        kind = str(getattr(kind, "value", kind) or "")
        out.append(AdapterGroup(n, numel, sum(p.numel() for p in ps if p.requires_grad),
                                sum(p.numel() * p.element_size() for p in ps), n in active and not disabled, kind,
                                disabled))
    return tuple(out)


def _disabled_flag(m: nn.Module) -> bool | None:
    """peft's ``disable_adapters`` property of an adapter layer (a tuner layer, a
    ``modules_to_save`` wrapper); ``None`` for a module without one."""
    try:
        flag = getattr(m, "disable_adapters", None)
    except Exception:  # noqa: BLE001 - a layer whose flag cannot be read says nothing
        return None
    return flag if isinstance(flag, bool) else None
