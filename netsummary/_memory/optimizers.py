"""Which optimizer a training-step estimate runs, by name, class or instance.

The step builds a fresh optimizer of that class over stand-ins of the model's parameters (never
the user's optimizer, whose state stays untouched) and runs one real or fake ``step()``: the
state it allocates is what that optimizer really keeps, ``foreach`` / ``fused`` copies included.

>>> cls, kwargs, label = resolve_optimizer("sgd-momentum")
>>> cls.__name__, kwargs, label
('SGD', {'lr': 0.01, 'momentum': 0.9}, 'SGD (momentum 0.9)')
"""

from __future__ import annotations

from typing import Any

import torch

from .._errors import InputSpecError, InputTypeError

#: name -> (class name in torch.optim, keyword arguments)
OPTIMIZERS: dict[str, tuple[str, dict[str, Any]]] = {
    "sgd": ("SGD", {"lr": 0.01}),
    "sgd-momentum": ("SGD", {"lr": 0.01, "momentum": 0.9}),
    "adam": ("Adam", {}),
    "adamw": ("AdamW", {}),
    "adagrad": ("Adagrad", {}),
    "rmsprop": ("RMSprop", {}),
}


def resolve_optimizer(value: Any) -> tuple[type, dict[str, Any], str]:
    """``(optimizer class, constructor keyword arguments, display label)`` for ``value``: a name
    of :data:`OPTIMIZERS`, a ``torch.optim.Optimizer`` subclass, or an instance (its class and
    first param group's hyper-parameters; see :func:`param_groups` for several groups).

    Raises:
        InputSpecError: an unknown name (the message lists the known ones).
        InputTypeError: neither a string, an Optimizer class nor an instance.
    """
    if isinstance(value, str):
        key = value.strip().lower()
        if key not in OPTIMIZERS:
            raise InputSpecError(
                f"optimizer: unknown optimizer {value!r}; expected one of {', '.join(map(repr, OPTIMIZERS))}, "
                f"a torch.optim.Optimizer subclass or instance", value)
        name, kwargs = OPTIMIZERS[key]
        label = name + (f" (momentum {kwargs['momentum']})" if kwargs.get("momentum") else "")
        return getattr(torch.optim, name), dict(kwargs), label
    if isinstance(value, type) and issubclass(value, torch.optim.Optimizer):
        return value, {}, value.__name__
    if isinstance(value, torch.optim.Optimizer):
        return type(value), {}, type(value).__name__
    raise InputTypeError(
        f"optimizer: expected a name ({', '.join(map(repr, OPTIMIZERS))}), a torch.optim.Optimizer subclass "
        f"or instance, got {type(value).__name__} {value!r}", value)


def build_optimizer(value: Any, stand_ins: dict[int, torch.Tensor]) -> torch.optim.Optimizer:
    """A fresh optimizer over the stand-ins (``id(user tensor) -> stand-in``) of the trainable
    parameters. An instance's param groups are rebuilt with the same hyper-parameters (its
    ``foreach`` / ``fused`` / ``capturable`` flags included) over the stand-ins of their
    parameters; the instance itself is only read."""
    cls, kwargs, _ = resolve_optimizer(value)
    if isinstance(value, torch.optim.Optimizer):
        groups = []
        for group in value.param_groups:
            params = [stand_ins[id(p)] for p in group["params"] if id(p) in stand_ins and stand_ins[id(p)].requires_grad]
            if params:
                groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": params})
        if not groups:
            raise InputSpecError(
                f"optimizer: the {cls.__name__} instance given holds none of the model's trainable parameters", value)
        return _new(cls, groups, {})  # each group carries every hyper-parameter
    params = [t for t in stand_ins.values() if t.requires_grad]
    return _new(cls, params, kwargs)


def _new(cls: type, params: Any, kwargs: dict[str, Any]) -> torch.optim.Optimizer:
    try:
        return cls(params, **kwargs)
    except TypeError:  # a class whose lr has no default
        return cls(params, **{"lr": 1e-3, **kwargs})
