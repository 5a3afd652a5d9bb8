"""Quantized weights: logical parameters, stored bytes and quantization state, never conflated.

A quantized layer holds its weight in fewer bits than the float layer it replaces, so
``p.numel() * p.element_size()`` of what it holds is the wrong answer for the parameter count
(a bitsandbytes 4-bit weight is a ``uint8`` tensor of half the elements; a GPTQ ``qweight`` word
holds 8 values; a ``torch.ao`` dynamic-quantized ``Linear`` has no ``parameters()`` at all).
For every quantized weight this module reports three numbers:

* **logical** elements: what the float model had (``in × out`` for a linear weight);
* **stored bytes** of the quantized values, packed as memory holds them (``numel ×
  element_size`` of the tensor holding them): these are part of ``param_bytes``;
* **quantization state** bytes: scales, zero points, absmax, code books, group indices —
  reported on their own line, never as parameters.

Each layout is read through its library's own types and attributes; a library is looked at only
when ``sys.modules`` already holds it (netsummary never imports torchao or bitsandbytes):

* ``torch.ao`` quantized modules (``torch.ao.quantization.quantize_dynamic``; source
  ``torch/ao/nn/quantized/modules/linear.py``, ``.../dynamic/modules/rnn.py``): the weights and
  biases come from the module's own ``_weight_bias()`` (or ``weight()`` / ``bias()``, or a
  dynamic LSTM's / GRU's ``get_weight()`` / ``get_bias()``), which unpack its packed params. A
  ``qint8`` weight stores 1 byte per element; a per-tensor quantizer holds a float64 scale and an
  int64 zero point (16 bytes of state), a per-channel one a float64 scale and an int64 zero point
  per channel (``q_per_channel_scales()``); a ``float16`` dynamic weight stores 2 bytes per
  element (``_packed_params.dtype``). The layer is inference-only: its weight and bias count as
  non-trainable (the quantized operator has no autograd formula).
* torchao tensor subclasses (``torchao.quantization.quantize_``, every ``TorchAOBaseTensor``:
  ``Int8Tensor``, ``IntxUnpackedToInt8Tensor``, ``Int4Tensor``, ...): the logical count is the
  subclass's own ``.shape``; its inner tensors come from ``__tensor_flatten__()`` (recursively):
  ``qdata`` (also ``int_data``, ``packed_weight``) is stored data, every other inner tensor
  (``scale``, ``zero_point``, ...) is state.
* bitsandbytes (``bitsandbytes/nn/modules.py``): a quantized ``Params4bit`` (``bnb_quantized``)
  is a ``uint8`` tensor packing two 4-bit values per byte; its logical count is
  ``prod(quant_state.shape)`` and its state the tensors of ``quant_state`` (``absmax``,
  ``code``, ``offset`` and the nested ``state2`` of compressed statistics). An ``Int8Params``
  of dtype ``int8`` stores one byte per element; its state is ``SCB`` (a float32 scale per row;
  after ``Linear8bitLt``'s first forward it is the layer's ``state.SCB``).
* GPTQ / AWQ buffers ``qweight`` / ``qzeros`` / ``scales`` / ``g_idx`` (auto-gptq's
  ``QuantLinear``, autoawq's ``WQLinear``; the module's ``bits`` or ``w_bit`` attribute when it
  has one, else inferred from the shapes): see :mod:`netsummary._analysis.packing`. A ``bias``
  buffer beside them is counted as the layer's (unquantized) bias parameter.

**Unknown layouts.** A module holding a quantized-looking tensor netsummary does not recognize
(a parameter of an integer or ``torch.q*`` dtype, a buffer named ``*weight*`` of such a dtype, a
tensor subclass whose inner tensors are integers, a ``torch.ao`` quantized module without
``weight()``) is reported as unknown: the tensors of that layout it holds itself (the
quantized-looking ones and those named as quantization state, ``*scale*``, ``*zero*``, ...; every
tensor of a ``torch.ao`` module) count in the stored bytes (``numel × element_size``, exact), none
counts as parameters (its other tensors, an ``idx`` buffer or a float bias, count as usual), and the summary names the layer
in ``quant_unknown`` — never a silent wrong number.

**MACs.** ``quantized::linear*`` (torch.ao) and ``bitsandbytes::gemv_4bit`` / ``gemm_4bit`` /
``int8_scaled_mm`` have formulas (:mod:`netsummary._analysis.quantized_ops`); torchao's subclasses
dispatch ordinary aten operators (``mm`` on the dequantized weight), counted as usual. A
quantized layer whose forward ran no counted operator (a CUDA extension called outside torch's
dispatcher, as GPTQ/AWQ kernels are) is listed in ``unknown_ops`` as ``"<Type> (quantized layer:
no counted operator seen)"``: the total is then a lower bound, never a silent 0.

Cost: one look at each module's own tensors (an ``isinstance`` and a dtype per tensor), no pass
over tensor data, except ``torch.ao``'s ``_weight_bias()``, which unpacks each such layer's weight
once.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from math import prod
from typing import Any

import torch
from torch import nn

from .packing import STATE_NAMES, packed_layout

Parameter = nn.Parameter

#: dtypes that mark a tensor as quantized data: 8-bit and smaller integers and torch's quantized
#: dtypes (``int32`` and ``int64`` also hold indices, so they mark only packed ``*weight*`` buffers).
_SMALL = {torch.int8, torch.uint8, torch.qint8, torch.quint8, torch.qint32, torch.quint4x2, torch.quint2x4}
for _name in ("int1", "int2", "int3", "int4", "int5", "int6", "int7", "uint1", "uint2", "uint3", "uint4",
              "uint5", "uint6", "uint7", "float4_e2m1fn_x2"):
    if isinstance(getattr(torch, _name, None), torch.dtype):
        _SMALL.add(getattr(torch, _name))
QUANT_DTYPES: frozenset[torch.dtype] = frozenset(_SMALL)
_PACKED_BUFFER_DTYPES = QUANT_DTYPES | {torch.int32, torch.int16}
_DATA_NAMES = ("qdata", "int_data", "packed_weight")  # torchao inner tensors holding the values
_QDTYPE_NAMES = {torch.qint8: "int8", torch.quint8: "uint8", torch.qint32: "int32", torch.quint4x2: "uint4 packed",
                 torch.quint2x4: "uint2 packed"}


@dataclass(frozen=True, slots=True)
class QuantTensor:
    """One quantized weight (or a quantized layer's plain bias, or an unknown layer's tensors).

    Attributes:
        key: identity of the object holding it (``id()`` of the tensor, or a tuple for values a
            module only hands out on request), unique while the model lives.
        name: the attribute name on its module (``"weight"``, ``"qweight"``, ``"bias"``).
        logical: elements of the float tensor it stands for; ``None``: unknown.
        trainable: ``requires_grad`` of the tensor (``False`` for ``torch.ao`` layers).
        data_bytes: bytes of the stored values as memory holds them (packed).
        state: ``(key, bytes)`` of each quantization-state tensor (scales, zero points, absmax).
        label: how it is stored, e.g. ``"int8"``, ``"int4 packed"``, ``"nf4 packed"``,
            ``"int4 in int8"``; ``None`` for a plain tensor counted with a quantized layer (a bias).
        shape: the logical shape when known, else ``()``.
    """

    key: Any
    name: str
    logical: int | None
    trainable: bool
    data_bytes: int
    state: tuple[tuple[Any, int], ...] = ()
    label: str | None = None
    shape: tuple[int, ...] = ()

    @property
    def quantized(self) -> bool:
        return self.label is not None


@dataclass(frozen=True, slots=True)
class ModuleQuant:
    """What a module's quantized tensors stand for, and which of its own parameters and buffers
    they account for (the counting skips those names)."""

    tensors: tuple[QuantTensor, ...]
    params: frozenset[str] = frozenset()
    buffers: frozenset[str] = frozenset()
    unknown: bool = False


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _dtype_name(d: torch.dtype) -> str:
    return _QDTYPE_NAMES.get(d) or str(d).removeprefix("torch.")


def _label(logical: int, data_bytes: int, data_dtype: torch.dtype, target: Any = None) -> str:
    """``"int8"``; ``"int4 packed"`` (several values per stored element: bits from the bytes);
    ``"int4 in int8"`` (a narrower target dtype stored one value per element)."""
    name = _dtype_name(data_dtype)
    if logical and data_bytes * 8 < logical * data_dtype.itemsize * 8:
        if isinstance(target, torch.dtype):
            return f"{_dtype_name(target)} packed"
        bits, rest = divmod(data_bytes * 8, logical)
        return f"int{bits} packed" if not rest else f"packed in {name}"
    if isinstance(target, torch.dtype) and target != data_dtype:
        return f"{_dtype_name(target)} in {name}"
    return name


class Probe:
    """Recognizes quantized layers, one module at a time (one per summary: the libraries' types
    are looked up once, from ``sys.modules``)."""

    def __init__(self) -> None:
        ao = sys.modules.get("torchao.utils")
        self._torchao = getattr(ao, "TorchAOBaseTensor", None)
        bnb = sys.modules.get("bitsandbytes.nn.modules")
        self._params4bit = getattr(bnb, "Params4bit", None)
        self._int8params = getattr(bnb, "Int8Params", None)

    def module(self, m: nn.Module) -> ModuleQuant | None:
        """The quantized tensors ``m`` holds itself, or ``None`` (nearly every module: fast)."""
        if type(m).__module__.startswith(("torch.ao.nn.quantized", "torch.nn.quantized")):
            return _torch_ao(m)
        if "qweight" in m._buffers or "qweight" in m._parameters:
            return _packed(m)
        special = False
        for p in m._parameters.values():
            if p is not None and (type(p) is not Parameter or p.dtype in QUANT_DTYPES):
                special = True
                break
        else:
            for n, b in m._buffers.items():
                if b is not None and "weight" in n and b.dtype in _PACKED_BUFFER_DTYPES:
                    return _unknown(m, layout_only=True)
        if not special:
            return None
        tensors, names = [], []
        for n, p in m._parameters.items():
            if p is None or (type(p) is Parameter and p.dtype not in QUANT_DTYPES):
                continue
            q = self._param(p, n, m)
            if q is False:
                return _unknown(m, layout_only=True)
            if q is not None:
                tensors.append(q)
                names.append(n)
        return ModuleQuant(tuple(tensors), frozenset(names)) if tensors else None

    def _param(self, p: torch.Tensor, name: str, m: nn.Module) -> QuantTensor | None | bool:
        """A parameter's quantized view; ``None``: a plain tensor after all; ``False``: unknown."""
        if self._params4bit is not None and isinstance(p, self._params4bit):
            return _bnb_4bit(p, name)
        if self._int8params is not None and isinstance(p, self._int8params):
            return _bnb_int8(p, name, m)
        if self._torchao is not None and isinstance(p, self._torchao):
            return _torchao(p, name)
        if p.dtype in QUANT_DTYPES:
            return False
        if hasattr(type(p), "__tensor_flatten__"):  # another wrapper subclass (DTensor, ...)
            inner = _inner(p, "")
            if inner is None or any(not t.dtype.is_floating_point for _, t in inner):
                return False
        return None


def _inner(t: torch.Tensor, prefix: str) -> list[tuple[str, torch.Tensor]] | None:
    """A wrapper subclass's plain inner tensors, by dotted attribute name (recursive)."""
    try:
        names, _ = t.__tensor_flatten__()
        out = []
        for n in names:
            x = getattr(t, n)
            if not isinstance(x, torch.Tensor):  # None, or a non-tensor a subclass flattens (a DeviceMesh)
                continue
            if hasattr(type(x), "__tensor_flatten__") and type(x) is not torch.Tensor:
                got = _inner(x, f"{prefix}{n}.")
                if got is None:
                    return None
                out += got
            else:
                out.append((f"{prefix}{n}", x))
        return out
    except Exception:  # noqa: BLE001 - a subclass we cannot read is an unknown layout
        return None


def _torchao(p: torch.Tensor, name: str) -> QuantTensor | bool:
    inner = _inner(p, "")
    if not inner:
        return False
    data = [(n, t) for n, t in inner if n.rsplit(".", 1)[-1] in _DATA_NAMES]
    if not data:
        return False
    state = [(n, t) for n, t in inner if n.rsplit(".", 1)[-1] not in _DATA_NAMES]
    logical = p.numel()
    data_bytes = sum(_nbytes(t) for _, t in data)
    target = getattr(p, "target_dtype", None)
    return QuantTensor(id(p), name, logical, p.requires_grad, data_bytes, tuple((id(t), _nbytes(t)) for _, t in state),
                       _label(logical, data_bytes, data[0][1].dtype, target), tuple(p.shape))


def _state_tensors(qs: Any, seen: set[int], out: list[tuple[Any, int]], depth: int = 0) -> None:
    """bitsandbytes ``QuantState`` tensors: absmax, code, offset, and the nested ``state2``."""
    if qs is None or depth > 4:
        return
    for attr in ("absmax", "code", "offset"):
        t = getattr(qs, attr, None)
        if isinstance(t, torch.Tensor) and id(t) not in seen:
            seen.add(id(t))
            out.append((id(t), _nbytes(t)))
    _state_tensors(getattr(qs, "state2", None), seen, out, depth + 1)


def _bnb_4bit(p: torch.Tensor, name: str) -> QuantTensor | None | bool:
    qs = getattr(p, "quant_state", None)
    if not getattr(p, "bnb_quantized", False) or qs is None:
        return None  # not quantized yet: a float tensor of its real size
    shape = tuple(getattr(qs, "shape", ()) or ())
    if not shape:
        return False
    logical = prod(shape)
    state: list[tuple[Any, int]] = []
    _state_tensors(qs, set(), state)
    data_bytes = _nbytes(p)
    kind = getattr(qs, "quant_type", None) or "int4"
    bits = data_bytes * 8 // logical if logical and (data_bytes * 8) % logical == 0 else None
    label = f"{kind} packed" if bits == 4 else _label(logical, data_bytes, p.dtype)
    return QuantTensor(id(p), name, logical, p.requires_grad, data_bytes, tuple(state), label, shape)


def _bnb_int8(p: torch.Tensor, name: str, m: nn.Module) -> QuantTensor | None:
    if p.dtype != torch.int8:
        return None  # fp16 weights kept (has_fp16_weights) or not quantized yet
    scb = getattr(p, "SCB", None)
    if scb is None:  # Linear8bitLt's first forward moves it to its MatmulLtState
        scb = getattr(getattr(m, "state", None), "SCB", None)
    state = ((id(scb), _nbytes(scb)),) if isinstance(scb, torch.Tensor) else ()
    return QuantTensor(id(p), name, p.numel(), p.requires_grad, _nbytes(p), state, "int8", tuple(p.shape))


def _qstate(w: torch.Tensor) -> int:
    """Bytes of a quantized tensor's quantizer: float64 scale + int64 zero point (per channel)."""
    scheme = w.qscheme()
    if scheme in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        return 8 + 8
    return _nbytes(w.q_per_channel_scales()) + _nbytes(w.q_per_channel_zero_points())


def _ao_tensors(m: nn.Module) -> tuple[list, list] | None:
    """A ``torch.ao`` layer's (name, weight) and (name, bias) pairs, through its own API:
    ``_weight_bias()`` (Linear, Conv), ``weight()`` / ``bias()``, or ``get_weight()`` /
    ``get_bias()`` (dynamic LSTM, GRU: dicts by parameter name); ``None`` when it has none."""
    pair, weight, bias = getattr(m, "_weight_bias", None), getattr(m, "weight", None), getattr(m, "bias", None)
    get_w, get_b = getattr(m, "get_weight", None), getattr(m, "get_bias", None)
    if callable(get_w):  # before _weight_bias, which RNNs also have (returning dicts)
        return list(get_w().items()), list(get_b().items()) if callable(get_b) else []
    if callable(pair):
        w, b = pair()
        return [("weight", w)], [("bias", b)]
    if callable(weight):
        return [("weight", weight())], [("bias", bias() if callable(bias) else None)]
    return None


def _holds_quantized(m: nn.Module) -> bool:
    """The module's state dict holds a quantized tensor or a packed (TorchScript) object."""
    try:
        leaves = torch.utils._pytree.tree_leaves(m.state_dict(keep_vars=True))
    except Exception:  # noqa: BLE001 - a state we cannot read may hold anything
        return True
    return any((isinstance(v, torch.Tensor) and v.is_quantized) or isinstance(v, torch.ScriptObject) for v in leaves)


def _torch_ao(m: nn.Module) -> ModuleQuant | None:
    if type(m).__name__.endswith(("PackedParams", "PackedParameter")):  # a layer's packed child: the layer counts it
        return None
    try:
        got = _ao_tensors(m)
    except Exception:  # noqa: BLE001 - a layer whose own API fails: an unknown layout
        return _unknown(m)
    if got is None:  # QuantStub, DeQuantize, FloatFunctional: activation qparams only, or nothing
        return _unknown(m) if _holds_quantized(m) else None
    weights, biases = got
    packed = getattr(getattr(m, "_packed_params", None), "dtype", None)
    packed = getattr(m, "dtype", None) if packed is None else packed  # dynamic RNNs keep it on the layer
    tensors = []
    for name, w in weights:
        if not isinstance(w, torch.Tensor):
            return _unknown(m)
        key = ("torch.ao", id(m), name)
        if w.is_quantized:
            tensors.append(QuantTensor(key, name, w.numel(), False, _nbytes(w), (((key, "qparams"), _qstate(w)),),
                                       _dtype_name(w.dtype), tuple(w.shape)))
        elif isinstance(packed, torch.dtype) and packed.is_floating_point and packed != w.dtype:
            # float16 dynamic: the packed weight is float16, handed out unpacked as float32
            tensors.append(QuantTensor(key, name, w.numel(), False, w.numel() * packed.itemsize, (),
                                       _dtype_name(packed), tuple(w.shape)))
        else:
            return None  # a float weight: nothing quantized here
    for name, b in biases:
        if isinstance(b, torch.Tensor):
            tensors.append(QuantTensor(("torch.ao", id(m), name), name, b.numel(), False, _nbytes(b),
                                       shape=tuple(b.shape)))
    return ModuleQuant(tuple(tensors)) if tensors else None


def _packed(m: nn.Module) -> ModuleQuant:
    """GPTQ / AWQ buffers (or parameters) ``qweight``, ``qzeros``, ``scales``, ``g_idx``."""
    held = {**m._buffers, **m._parameters}
    qw = held["qweight"]
    if qw is None:
        return _unknown(m, layout_only=True)
    qz, sc = held.get("qzeros"), held.get("scales")
    bits = getattr(m, "bits", None)
    bits = getattr(m, "w_bit", None) if bits is None else bits
    layout = packed_layout(tuple(qw.shape), _dtype_name(qw.dtype), None if qz is None else tuple(qz.shape),
                           None if sc is None else tuple(sc.shape), bits if type(bits) is int else None)
    if layout is None:
        return _unknown(m, layout_only=True)
    names = {"qweight", *(n for n in STATE_NAMES if held.get(n) is not None)}
    state = tuple((id(held[n]), _nbytes(held[n])) for n in STATE_NAMES if held.get(n) is not None)
    out = sc.shape[-1] if sc is not None else None
    shape = (layout.logical // out, out) if out else ()
    tensors = [QuantTensor(id(qw), "qweight", layout.logical, False, _nbytes(qw), state,
                           f"int{layout.bits} packed", shape)]
    b = m._buffers.get("bias")
    if isinstance(b, torch.Tensor):  # auto-gptq keeps the float bias as a buffer: it is the layer's bias
        names.add("bias")
        tensors.append(QuantTensor(id(b), "bias", b.numel(), False, _nbytes(b), shape=tuple(b.shape)))
    params = frozenset(n for n in names if n in m._parameters)
    return ModuleQuant(tuple(tensors), params, frozenset(names) - params)


_STATE_MARKERS = ("scale", "zero", "absmax", "scb", "qparam", "g_idx", "qweight", "qzeros")


def _in_layout(name: str, t: torch.Tensor, is_param: bool) -> bool:
    """Whether a tensor of a module of unknown layout is part of that layout: a parameter of an
    integer / ``torch.q*`` dtype or a tensor subclass, a ``*weight*``-named buffer of a packed
    dtype, or a tensor named as quantization state (``*scale*``, ``*zero*``, ``*absmax*``, ``SCB``,
    ``*qparam*``, ``g_idx``, ``qweight``, ``qzeros``). Anything else (an ``idx`` or mask buffer, a
    float ``bias``) is an ordinary parameter or buffer beside it, counted as usual."""
    low = name.lower()
    if any(k in low for k in _STATE_MARKERS):
        return True
    if is_param:
        return t.dtype in QUANT_DTYPES or type(t) not in (torch.Tensor, Parameter)
    return "weight" in low and t.dtype in _PACKED_BUFFER_DTYPES


def _unknown(m: nn.Module, layout_only: bool = False) -> ModuleQuant:
    """A quantized layer of a layout netsummary does not know: the tensors of that layout it
    holds itself, at their stored size, and no logical count. ``layout_only``: claim only the
    tensors :func:`_in_layout` names (a layer recognized by a tensor's dtype and name); else
    every tensor it holds (a ``torch.ao`` quantized module, all of whose state is its layout)."""
    held: dict[int, torch.Tensor] = {}
    params: set[str] = set()
    buffers: set[str] = set()
    for names, table, is_param in ((params, m._parameters, True), (buffers, m._buffers, False)):
        for n, t in table.items():
            if isinstance(t, torch.Tensor) and (not layout_only or _in_layout(n, t, is_param)):
                held.setdefault(id(t), t)
                names.add(n)
    if not layout_only:
        params, buffers = set(m._parameters), set(m._buffers)
    if type(m).__module__.startswith(("torch.ao.nn.quantized", "torch.nn.quantized")):
        try:  # packed parameters are reachable only through the state dict
            for v in torch.utils._pytree.tree_leaves(m.state_dict(keep_vars=True)):
                if isinstance(v, torch.Tensor):
                    held.setdefault(id(v), v)
        except Exception:  # noqa: BLE001 - what cannot be read is not counted
            pass
    data = 0
    for t in held.values():
        inner = _inner(t, "") if hasattr(type(t), "__tensor_flatten__") and type(t) not in (torch.Tensor, Parameter) else None
        data += sum(_nbytes(x) for _, x in inner) if inner else _nbytes(t)
    entry = QuantTensor(("unknown", id(m)), "(tensors)", None, False, data, (), "unknown")
    return ModuleQuant((entry,), frozenset(params), frozenset(buffers), unknown=True)
