"""Explain how a module's parameter count arises: the "formula" column of a summary.

:func:`param_formula` returns a :class:`Formula`: readable arithmetic (``text``) and the number of
parameter elements it evaluates to (``value``). For example::

    >>> from torch import nn
    >>> param_formula(nn.Conv2d(3, 128, 4, 2, 1))
    Formula(text='128 × (3 × 4 × 4) + 128', value=6272)

Invariant: ``value == sum(p.numel() for p in module.parameters())``, always (parameters are counted
recursively and shared tensors once, exactly as ``module.parameters()`` yields them). Formulas of
known layers are computed from the layer's hyperparameters (``in_channels``, ``kernel_size``, ...,
and whether ``bias`` etc. is present), never from ``numel``; the result is then checked against the
real count and, if they disagree (a parameter was replaced, reshaped or added after construction),
the generic formula below is used instead.

Families (parameter shapes as listed under "Variables" in each layer's PyTorch documentation,
https://pytorch.org/docs/stable/nn.html; "[+ x]" means "when that parameter exists"):

- ``Conv1d/2d/3d``: weight ``(out, in/groups, *k)``, bias ``(out)``
  -> ``out × (in/groups × k1 × k2 ...) [+ out]`` (``in`` alone when ``groups == 1``).
- ``ConvTranspose1d/2d/3d``: weight ``(in, out/groups, *k)``, bias ``(out)``
  -> ``in × (out/groups × k1 × k2 ...) [+ out]``.
- ``Linear``: weight ``(out, in)``, bias ``(out)`` -> ``in × out [+ out]``.
- ``Bilinear``: weight ``(out, in1, in2)``, bias ``(out)`` -> ``out × in1 × in2 [+ out]``.
- ``BatchNorm*``, ``InstanceNorm*``, ``GroupNorm``: weight and bias ``(C)`` when affine
  -> ``C × 2`` (``C`` without bias, ``0`` without affine; running stats are buffers).
- ``LayerNorm``: weight and bias of ``normalized_shape`` (size ``N``) when ``elementwise_affine``
  -> ``N × 2`` (``N`` with ``bias=False``). ``RMSNorm``: weight only -> ``N``.
- ``Embedding``, ``EmbeddingBag``: weight ``(num_embeddings, embedding_dim)`` -> ``num × dim``.
- ``RNN``/``GRU``/``LSTM`` with ``g`` = 1/3/4 gates, hidden ``h``, recurrent width ``r`` (``h``,
  or ``proj_size`` for a projected LSTM) and ``D`` directions; per layer and direction:
  weight_ih ``(g·h, in)``, weight_hh ``(g·h, r)``, bias_ih and bias_hh ``(g·h)``, weight_hr
  ``(proj_size, h)`` -> ``g × h × (in + r) [+ 2 × g × h] [+ r × h]``, where ``in`` is
  ``input_size`` for layer 0 and ``D × r`` above it; identical layers are grouped as
  ``count × (...)``.
- ``MultiheadAttention`` with ``E = embed_dim``: packed in_proj_weight ``(3E, E)`` or separate
  q/k/v_proj_weight ``(E, E)``, ``(E, kdim)``, ``(E, vdim)``; in_proj_bias ``(3E)``; bias_k and
  bias_v ``(1, 1, E)``; out_proj ``Linear(E, E)``
  -> ``3 × E × E`` or ``E × (E + kdim + vdim)``, ``[+ 3 × E] [+ 2 × E] + E × E [+ E]``.
- ``PReLU``: weight ``(num_parameters)`` -> ``num_parameters``.
- Any module without parameters -> ``0``.
- Anything else (custom modules, containers, parametrized modules such as
  ``torch.nn.utils.parametrizations.weight_norm``, modified known layers): the sum of the shapes of
  the module's unique tensors, named relative to it, e.g. ``weight[64, 3, 7, 7] + bias[64]``.

Only ``text`` of known layers is valid arithmetic (``×`` is multiplication, ``/`` divides exactly);
the generic text lists shapes. Uninitialized lazy parameters (``torch.nn.parameter.is_lazy``) have
no size yet: such a module gives ``Formula("uninitialized", 0)``, the one case where the invariant
cannot be checked (``numel`` raises on them).

Raises: nothing for a valid module; ``TypeError`` if given something that is not an ``nn.Module``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn
from torch.nn.parameter import is_lazy
from torch.nn.utils import parametrize

__all__ = ["Formula", "param_formula"]

TIMES = " × "


@dataclass(frozen=True, slots=True)
class Formula:
    """How a module's parameter count arises: ``text`` evaluates to ``value`` elements."""

    text: str
    value: int


def _mul(*factors: object) -> str:
    return TIMES.join(str(f) for f in factors)


def _sum(*terms: str | None) -> str:
    return " + ".join(t for t in terms if t)


def _has(module: nn.Module, name: str) -> bool:
    return getattr(module, name, None) is not None


# Each rule computes (text, value) from hyperparameters; it must not read numel.
Rule = Callable[[nn.Module], tuple[str, int]]


def _conv(m: nn.Module) -> tuple[str, int]:
    # Transposed conv swaps the roles of in and out in the weight's shape.
    lead, split = (
        (m.in_channels, m.out_channels) if m.transposed else (m.out_channels, m.in_channels)
    )
    kernel = tuple(m.kernel_size)
    if m.groups == 1:
        inner, per_group = str(split), split
    else:
        inner, per_group = f"{split}/{m.groups}", split // m.groups
    text = f"{lead} × ({_mul(inner, *kernel)})"
    value = lead * per_group * math.prod(kernel)
    if _has(m, "bias"):
        text, value = _sum(text, str(m.out_channels)), value + m.out_channels
    return text, value


def _linear(m: nn.Module) -> tuple[str, int]:
    text, value = _mul(m.in_features, m.out_features), m.in_features * m.out_features
    if _has(m, "bias"):
        text, value = _sum(text, str(m.out_features)), value + m.out_features
    return text, value


def _bilinear(m: nn.Module) -> tuple[str, int]:
    out = m.out_features
    text, value = _mul(out, m.in1_features, m.in2_features), out * m.in1_features * m.in2_features
    if _has(m, "bias"):
        text, value = _sum(text, str(out)), value + out
    return text, value


def _affine(size_text: str, size: int, m: nn.Module) -> tuple[str, int]:
    """weight and/or bias, each of ``size`` elements."""
    count = _has(m, "weight") + _has(m, "bias")
    if count == 0:
        return "0", 0
    return (size_text if count == 1 else _mul(size_text, count)), size * count


def _channel_norm(m: nn.Module) -> tuple[str, int]:
    channels = m.num_channels if isinstance(m, nn.GroupNorm) else m.num_features
    return _affine(str(channels), channels, m)


def _shape_norm(m: nn.Module) -> tuple[str, int]:
    shape = tuple(m.normalized_shape)
    text = str(shape[0]) if len(shape) == 1 else f"({_mul(*shape)})"
    return _affine(text, math.prod(shape), m)


def _embedding(m: nn.Module) -> tuple[str, int]:
    return _mul(m.num_embeddings, m.embedding_dim), m.num_embeddings * m.embedding_dim


def _prelu(m: nn.Module) -> tuple[str, int]:
    return str(m.num_parameters), m.num_parameters


_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def _rnn(m: nn.Module) -> tuple[str, int]:
    gates, hidden, proj = _GATES[m.mode], m.hidden_size, m.proj_size
    directions = 2 if m.bidirectional else 1
    width = proj if proj > 0 else hidden  # size of the recurrent state fed back (and passed up)
    gh_text = _mul(gates, hidden) if gates > 1 else str(hidden)

    def block(in_text: str, in_size: int) -> tuple[str, int]:
        text, value = f"{gh_text} × ({in_text} + {width})", gates * hidden * (in_size + width)
        if m.bias:
            text, value = _sum(text, _mul(2, gh_text)), value + 2 * gates * hidden
        if proj > 0:
            text, value = _sum(text, _mul(proj, hidden)), value + proj * hidden
        return text, value

    upper_in = (_mul(directions, width) if directions > 1 else str(width), directions * width)
    groups = [(1, block(str(m.input_size), m.input_size))]
    if m.num_layers > 1:
        groups.append((m.num_layers - 1, block(*upper_in)))
    texts, total = [], 0
    for layers, (text, value) in groups:
        factors = [f for f in (layers, directions) if f > 1]
        texts.append(f"{_mul(*factors)} × ({text})" if factors else text)
        total += layers * directions * value
    return _sum(*texts), total


def _mha(m: nn.Module) -> tuple[str, int]:
    e = m.embed_dim
    if m._qkv_same_embed_dim:
        text, value = _mul(3, e, e), 3 * e * e
    else:
        text, value = f"{e} × ({e} + {m.kdim} + {m.vdim})", e * (e + m.kdim + m.vdim)
    if _has(m, "in_proj_bias"):
        text, value = _sum(text, _mul(3, e)), value + 3 * e
    kv = _has(m, "bias_k") + _has(m, "bias_v")
    if kv:
        text, value = _sum(text, _mul(kv, e) if kv > 1 else str(e)), value + kv * e
    text, value = _sum(text, _mul(e, e)), value + e * e
    if _has(m.out_proj, "bias"):
        text, value = _sum(text, str(e)), value + e
    return text, value


_RULES: dict[type[nn.Module], Rule] = {
    nn.modules.conv._ConvNd: _conv,  # Conv1d/2d/3d, ConvTranspose1d/2d/3d
    nn.Linear: _linear,
    nn.Bilinear: _bilinear,
    nn.modules.batchnorm._NormBase: _channel_norm,  # BatchNorm*, SyncBatchNorm, InstanceNorm*
    nn.GroupNorm: _channel_norm,
    nn.LayerNorm: _shape_norm,
    nn.Embedding: _embedding,
    nn.EmbeddingBag: _embedding,
    nn.RNNBase: _rnn,  # RNN, GRU, LSTM
    nn.MultiheadAttention: _mha,
    nn.PReLU: _prelu,
}
if hasattr(nn, "RMSNorm"):  # torch >= 2.4
    _RULES[nn.RMSNorm] = _shape_norm


def _generic(module: nn.Module) -> Formula:
    terms, value = [], 0
    for name, p in module.named_parameters():  # recursive, shared tensors once
        terms.append(f"{name}[{', '.join(str(d) for d in p.shape)}]")
        value += p.numel()
    return Formula(_sum(*terms) or "0", value)


def _rule_for(module: nn.Module) -> Rule | None:
    for cls in type(module).__mro__:  # subclasses of a known layer use its rule
        if cls in _RULES:
            return _RULES[cls]
    return None


def param_formula(module: nn.Module) -> Formula:
    """Return how ``module``'s parameter count arises, as readable arithmetic and its value.

    ``value`` always equals ``sum(p.numel() for p in module.parameters())``; see the module
    docstring for the formula of each layer family. Raises ``TypeError`` if ``module`` is not an
    ``nn.Module``.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"param_formula expects a torch.nn.Module, got {type(module).__name__}")
    params = list(module.parameters())
    if any(is_lazy(p) for p in params):
        return Formula("uninitialized", 0)
    if not params:
        return Formula("0", 0)
    rule = _rule_for(module)
    if rule is None or parametrize.is_parametrized(module):
        return _generic(module)
    try:
        text, value = rule(module)
    except (AttributeError, KeyError, TypeError, ValueError):  # a subclass without the usual fields
        return _generic(module)
    if value != sum(p.numel() for p in params):
        return _generic(module)
    return Formula(text, value)
