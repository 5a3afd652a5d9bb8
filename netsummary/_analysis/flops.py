"""Count multiply-accumulates (MACs) of matmul-class aten operators while a forward pass runs.

Example::

    >>> import torch
    >>> seen = []
    >>> layer = torch.nn.Linear(8, 16)
    >>> with MacCounter(lambda op, macs: seen.append((op, macs))):
    ...     _ = layer(torch.randn(2, 5, 8))      # [2, 5, 8] -> [2, 5, 16]
    >>> seen                                      # 2*5 rows x 8 in x 16 out = 1,280 MACs
    [('aten.addmm', 1280)]

Convention: 1 MAC = one multiply plus one add; FLOPs = 2 x MACs. Only *matmul-class* operators are
counted (the convention behind torchvision's published "GFLOPS", which are GMACs): elementwise ops,
bias adds, activations, normalisation, pooling, softmax, views and copies count nothing.

*Matmul-class* means an operator that contracts (sums products over) at least one dimension. The
exact list is :data:`MATMUL_CLASS`, the keys of the formula table plus :data:`UNKNOWN_OPS`:

* formulas reused from ``torch.utils.flop_counter.flop_registry`` (FLOPs // 2): ``mm``, ``addmm``,
  ``bmm``, ``baddbmm``, ``_scaled_mm``, ``convolution``, ``_convolution``, ``cudnn_convolution``,
  ``convolution_overrideable``, ``_scaled_dot_product_{efficient,flash,cudnn}_attention``,
  ``_flash_attention_forward``, ``_efficient_attention_forward``, and any formula a user registers
  there with ``register_flop_formula`` before the counter is built. Backward formulas are ignored.
* formulas added here, for ops torch's registry lacks (torch 2.14 has none for grouped GEMMs):
  see :func:`_contract`, :func:`_conv`, :func:`_sdpa`, :func:`_rnn`, :func:`_mha`,
  :func:`_encoder_layer`, :func:`_trilinear`, :func:`_grouped_mm` (``_grouped_mm``, run by
  transformers v5 experts, and ``_scaled_grouped_mm``).
* :data:`UNKNOWN_OPS`: matmul-class without a formula (fused RNNs and cells, einsum, sdpa's
  dispatcher op, sparse and quantized GEMMs), reported with ``None`` unless decomposed.

Any op without a formula that has a CompositeImplicitAutograd kernel and still reaches dispatch
(under ``torch.inference_mode()`` ``linear``, ``conv2d``, ``lstm``, ``scaled_dot_product_attention``
... all do) is run through that decomposition (``OpOverload.decompose``) under this mode, as
``FlopCounterMode`` does, so that its matmul-class pieces are seen and counted.

On CPU in torch 2.x: ``nn.Linear`` reaches dispatch as ``addmm``/``mm``; ``einsum``, ``matmul``,
``@`` as ``mm``/``bmm``; GRU/RNN (and LSTM with ``proj_size``, packed input, or on meta) as
``addmm``/``mm`` per step; LSTM as one fused ``mkldnn_rnn_layer`` per layer and direction;
``F.scaled_dot_product_attention`` as ``_scaled_dot_product_flash_attention_for_cpu`` or a math
path of two ``bmm``; ``nn.MultiheadAttention``/``nn.TransformerEncoderLayer`` in eval mode without
grad as the fused ``_native_multi_head_attention``/``_transformer_encoder_layer_fwd``. All of these
are counted exactly, so MHA's fast path need not be disabled (but a fused encoder layer credits
its linear layers' MACs to the layer itself, whose submodules never run).

Formulas only read shapes (memoised per op and argument shapes), so the mode runs unchanged on
the meta device and under ``FakeTensorMode``. A formula that raises (nested tensors, unbacked
symbolic sizes) reports ``None``, never into the forward. Higher-order ops (``torch.cond``) are
reported ``None`` unless torch has a formula. ``MacCounter(x)`` raises ``TypeError`` if ``x`` is
not callable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch._ops import HigherOrderOperator
from torch._subclasses.fake_tensor import FakeTensor as _FakeTensor
from torch.utils import flop_counter as _tfc
from torch.utils._python_dispatch import TorchDispatchMode

from .quantized_ops import FORMULAS as QUANTIZED_FORMULAS

__all__ = ["MacCounter", "MATMUL_CLASS", "SHAPE_MACS", "UNKNOWN_OPS"]

OnOp = Callable[[str, "int | None"], Any]
Formula = Callable[[tuple[Any, ...], dict[str, Any], Any], int]


def _jagged_length(offs: Tensor, full: int) -> int:
    """Rows (or columns) the groups of a grouped GEMM cover: ``offs[-1]``, the end of the last
    group (elements past it are ignored by the kernel). On fake or meta tensors the offsets hold
    no values: ``full``, the whole jagged dimension, is counted — what transformers' experts pass,
    whose offsets are the cumulative token counts of every routed (token, expert) pair."""
    if offs.numel() == 0:
        return 0
    if offs.device.type == "meta" or isinstance(offs, _FakeTensor):
        return full
    return int(offs[-1])


def _grouped_mm(offs_at: int) -> Formula:
    """MACs of ``_grouped_mm(a, b, offs)`` (and ``_scaled_grouped_mm``, offsets at ``offs_at``):
    one ordinary GEMM per group g, ``m_g × k_g × n_g`` MACs, summed over the groups. The layouts
    (``torch.nn.functional.grouped_mm``'s docstring; shapes as its meta kernel infers them):

    * 2D × 3D, a [M, K], b [G, K, N]: rows ``offs[g-1]:offs[g]`` of a times b[g] (the MoE
      forward, ``tokens @ W_e``): ``Σ_g t_g × K × N = offs[-1] × K × N``, t_g = tokens of group g;
    * 3D × 2D, a [G, M, K], b [K, N]: a[g] times columns ``offs[g-1]:offs[g]`` of b:
      ``M × K × offs[-1]``;
    * 2D × 2D, a [M, K], b [K, N], out [G, M, N]: the contraction dimension K is jagged
      (the weight gradient): ``M × offs[-1] × N``;
    * 3D × 3D, a [G, M, K], b [G, K, N], no offsets: a batched matmul, ``G × M × K × N``.

    ``offs[-1]`` is read from the offsets tensor (one value; see :func:`_jagged_length` on fake
    tensors). Bias adds are not matmul-class and count nothing.
    """

    def formula(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
        a, b = args[0], args[1]
        offs = args[offs_at] if len(args) > offs_at else kwargs.get("offs")
        if a.dim() == 3 and b.dim() == 3:
            return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
        if a.dim() == 2 and b.dim() == 3:
            return _jagged_length(offs, a.shape[0]) * a.shape[1] * b.shape[2]
        if a.dim() == 3:  # 3D x 2D: b's columns are jagged
            return a.shape[1] * a.shape[2] * _jagged_length(offs, b.shape[1])
        return a.shape[0] * _jagged_length(offs, a.shape[1]) * b.shape[1]  # 2D x 2D: K is jagged

    return formula


def _contract(i: int) -> Formula:
    """MACs of a matrix/vector product: every output element is a dot product over the last dim
    of operand ``i``: ``MACs = out.numel() * args[i].shape[-1]``.

    ``matmul`` [.., M, K]@[.., K, N] -> M*N*K per batch; ``linear`` x[.., I], W[O, I] -> rows*O*I;
    ``mv``/``addmv`` M*K; ``dot``/``vdot`` K; ``_int_mm``, ``_weight_int{4,8}pack_mm``,
    ``_addmm_activation``, ``mkldnn_linear`` M*N*K; ``_cdist_forward`` x1 [B, P, M], x2 [B, R, M]:
    B*P*R*M (one MAC per coordinate of every pair).
    """

    def formula(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
        return out.numel() * args[i].shape[-1]

    return formula


def _addbmm(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    """``addbmm(self, b1 [B, N, K], b2 [B, K, M])`` sums B products into [N, M]: B*N*K*M."""
    return args[1].numel() * args[2].shape[-1]


def _conv(transposed: bool) -> Formula:
    """MACs of a convolution from its weight ``w`` and the larger-resolution side.

    Direct conv, w [C_out, C_in/groups, *k]: every output element is a dot product of length
    (C_in/groups)*prod(k), so ``MACs = out.numel() * prod(w.shape[1:])``. Transposed conv,
    w [C_in, C_out/groups, *k]: every *input* element is scattered into (C_out/groups)*prod(k)
    outputs, so ``MACs = x.numel() * prod(w.shape[1:])``. Same numbers as torch's
    ``conv_flop_count`` / 2; used for backend variants whose schemas its formula cannot parse
    (it raises on ``_slow_conv2d_forward``, whose 7th positional argument is not ``transposed``).
    """

    def formula(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
        return (args[0] if transposed else out).numel() * math.prod(args[1].shape[1:])

    return formula


def _conv_tbc(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    """``conv_tbc(x [T, B, C_in], w [K, C_in, C_out])`` -> out [T', B, C_out]: out.numel()*K*C_in."""
    return out.numel() * args[1].shape[0] * args[1].shape[1]


def _sdpa(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    """Attention with q [B, H, L, E], k [B, Hkv, S, E], v [B, Hkv, S, Ev] (Hkv divides H).

    Q@K^T is B*H*L*S*E MACs and softmax(.)@V is B*H*L*S*Ev, so
    ``MACs = B*H*L*S*(E + Ev)``, computed by torch's ``sdpa_flop_count`` / 2. Causal and other
    masks are not discounted (dense upper bound, as torch does). Used for
    ``_scaled_dot_product_flash_attention_for_cpu`` (the CPU kernel, absent from torch's registry),
    ``_scaled_dot_product_fused_attention_overrideable`` and ``..._attention_math_for_mps``.
    """
    return _tfc.sdpa_flop_count(args[0].shape, args[1].shape, args[2].shape) // 2


def _rnn(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    """Fused recurrent layers: ``mkldnn_rnn_layer`` (one layer, one direction; weight0 = W_ih,
    weight1 = W_hh) and ``_cudnn_rnn``/``miopen_rnn`` (all layers; ``args[1]`` lists W_ih, W_hh,
    biases and W_hr of every layer and direction).

    Per time step and batch row, a cell with G gates (LSTM 4, GRU 3, RNN 1), input size I, hidden
    size H and recurrent size R (= H, or the projection size P) computes W_ih @ x (G*H*I MACs),
    W_hh @ h (G*H*R) and, with a projection, W_hr @ h (P*H): LSTM 4H(I+H) (4H(I+P) + H*P with
    ``proj_size``), GRU 3H(I+H), RNN H(I+H). That is the element count of its weight matrices, each
    applied once per row, so ``MACs = rows * sum(W.numel() for 2-D W)`` with
    ``rows = T*B = input.numel() // input.shape[-1]`` (also right for a packed [sum(lengths), I]).
    Gate nonlinearities and the elementwise state updates are not matmul-class.
    """
    return _rows_times_weights(args[0], args[1] if isinstance(args[1], (list, tuple)) else args[1:3])


def _rows_times_weights(x: Tensor, weights: Any) -> int:
    """``rows * sum(W.numel() for 2-D W)`` with ``rows = x.numel() // x.shape[-1]`` (see :func:`_rnn`)."""
    return x.numel() // x.shape[-1] * sum(w.numel() for w in weights if w is not None and w.dim() == 2)


def _mha_macs(batch: int, tgt: int, src: int, embed: int) -> int:
    return embed * embed * (2 * batch * tgt + 2 * batch * src) + 2 * batch * tgt * src * embed


def _mha(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    """``_native_multi_head_attention(q [B, L, E], k [B, S, E], v [B, S, E], E, H, ...)``, the fused
    eval/no-grad path of ``nn.MultiheadAttention`` (its CPU kernel wants S = L): in-projections
    E^2*(B*L + 2*B*S), scores and weighted sum 2*B*L*S*E (E = H*d), out-projection B*L*E^2; for
    self-attention ``MACs = 4*B*L*E^2 + 2*B*L^2*E``, exactly what the unfused path counts.
    """
    q, k = args[0].shape, args[1].shape
    return _mha_macs(math.prod(q[:-2]), q[-2], k[-2], args[3])


def _encoder_layer(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    """``_transformer_encoder_layer_fwd(src [B, L, E], E, H, ..., ffn_w1 [F, E], ..., ffn_w2 ...)``
    is self-attention plus a two-layer feed-forward: ``4*B*L*E^2 + 2*B*L^2*E + 2*B*L*E*F`` MACs.
    Nested (padded) ``src`` raises here and is reported as unknown.
    """
    s = args[0].shape
    batch, tgt = math.prod(s[:-2]), s[-2]
    return _mha_macs(batch, tgt, tgt, args[1]) + 2 * batch * tgt * args[14].numel()


def _trilinear(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int:
    """``_trilinear(i1, i2, i3, expand1, expand2, expand3, sumdim)`` (``nn.Bilinear``): the operands
    are unsqueezed at their ``expand`` dims to a common rank, multiplied and summed over ``sumdim``;
    one MAC per term, ``MACs = prod over dims of max(sizes)``. ``nn.Bilinear(I1, I2, O)`` on N rows:
    N*O*I1*I2.
    """
    shapes = []
    for t, expand in zip(args[:3], args[3:6]):
        s = list(t.shape)
        for d in sorted(expand):
            s.insert(d, 1)
        shapes.append(s)
    return math.prod(max(sizes) for sizes in zip(*shapes))


_A = "aten::"
#: Formulas added here (qualified op name -> formula), used where torch's registry has none.
FORMULAS: dict[str, Formula] = {
    **{_A + n: _contract(0) for n in ("mv", "dot", "vdot", "matmul", "_int_mm", "_weight_int8pack_mm",
                                      "_weight_int4pack_mm", "_weight_int4pack_mm_for_cpu",
                                      "_cdist_forward")},
    **{_A + n: _contract(1) for n in ("addmv", "addmv_", "_addmm_activation", "linear", "mkldnn_linear")},
    **{_A + n: _conv(False) for n in ("conv1d", "conv2d", "conv3d", "mkldnn_convolution", "miopen_convolution",
                                      "miopen_depthwise_convolution", "_slow_conv2d_forward",
                                      "slow_conv3d_forward", "slow_conv_dilated2d", "slow_conv_dilated3d",
                                      "_conv_depthwise2d", "conv_depthwise3d", "_nnpack_spatial_convolution",
                                      "_mps_convolution")},
    **{_A + n: _conv(True) for n in ("conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
                                     "cudnn_convolution_transpose", "miopen_convolution_transpose",
                                     "slow_conv_transpose2d", "slow_conv_transpose3d", "_mps_convolution_transpose")},
    **{_A + n: _sdpa for n in ("_scaled_dot_product_flash_attention_for_cpu",
                               "_scaled_dot_product_fused_attention_overrideable",
                               "_scaled_dot_product_attention_math_for_mps")},
    **{_A + n: _rnn for n in ("mkldnn_rnn_layer", "_cudnn_rnn", "miopen_rnn")},
    _A + "addbmm": _addbmm, _A + "addbmm_": _addbmm, _A + "conv_tbc": _conv_tbc, _A + "_trilinear": _trilinear,
    _A + "_native_multi_head_attention": _mha, _A + "_transformer_encoder_layer_fwd": _encoder_layer,
    _A + "_grouped_mm": _grouped_mm(2), _A + "_scaled_grouped_mm": _grouped_mm(4),
    **QUANTIZED_FORMULAS,  # quantized::linear_dynamic, bitsandbytes::gemv_4bit, ...: see quantized_ops.py
}
# Formulas that read a tensor's values (a grouped GEMM's offsets): never memoised by shapes.
_READS_VALUES = frozenset({_A + "_grouped_mm", _A + "_scaled_grouped_mm"})
# Ours win over torch's only where torch's formula is broken for the op's schema.
_OVERRIDE_TORCH = frozenset({_A + "_slow_conv2d_forward"})
# In-place spellings that torch's registry (keyed by packet) misses: use the out-of-place formula.
_INPLACE_ALIASES = {_A + "addmm_": _A + "addmm", _A + "baddbmm_": _A + "baddbmm"}

#: Matmul-class operators without a formula: reported with ``macs=None`` ("unknown") unless they
#: decompose (CompositeImplicit) into counted ops.
UNKNOWN_OPS: frozenset[str] = frozenset(
    [_A + n for n in (
        "einsum", "tensordot", "bilinear", "chain_matmul", "linalg_multi_dot", "inner",
        "scaled_dot_product_attention", "_scaled_dot_product_attention_math",
        "lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell",
        "_thnn_fused_lstm_cell", "_thnn_fused_gru_cell", "mkldnn_rnn", "quantized_lstm", "quantized_gru",
        "quantized_lstm_cell",
        "quantized_gru_cell", "quantized_rnn_relu_cell", "quantized_rnn_tanh_cell",
        "_sparse_mm", "_sparse_addmm", "sspaddmm",
        "_sparse_sparse_matmul", "_cslt_sparse_mm", "_sparse_semi_structured_linear",
        "_sparse_semi_structured_mm", "_sparse_semi_structured_addmm", "_mixed_dtypes_linear",
        "fbgemm_linear_int8_weight", "fbgemm_linear_int8_weight_fp32_activation",
        "fbgemm_linear_fp16_weight", "fbgemm_linear_fp16_weight_fp32_activation")]
    + [f"quantized::{n}" for n in ("conv1d", "conv2d", "conv3d", "conv2d_relu", "conv_transpose1d",
                                   "conv_transpose2d")]
)


def _torch_formulas() -> dict[Any, tuple[Formula, bool]]:
    """Snapshot torch's forward formulas: qualified name -> (formula returning MACs, memoisable)."""
    table: dict[Any, tuple[Formula, bool]] = {}  # keyed by qualified name, or by the HOP itself
    for target, fn in _tfc.flop_registry.items():
        name = target if isinstance(target, HigherOrderOperator) else getattr(target, "_qualified_op_name", None)
        if name is None or "backward" in str(getattr(name, "_name", name)):
            continue  # triton kernels, backward passes

        def formula(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, _fn: Any = fn) -> int:
            return _fn(*args, out_val=out, **kwargs) // 2  # torch counts FLOPs = 2 x MACs

        # Shape-wrapped formulas (functools.wraps sets __wrapped__) see only shapes: memoisable.
        # get_raw formulas may read tensor values (e.g. cumulative sequence lengths): not memoised.
        table[name] = (formula, hasattr(fn, "__wrapped__"))
    return table


#: Qualified names of every matmul-class operator this module knows (torch's formulas are added
#: to these when a counter is built).
MATMUL_CLASS: frozenset[str] = frozenset(FORMULAS) | UNKNOWN_OPS | frozenset(_INPLACE_ALIASES) | frozenset(
    name for name in _torch_formulas() if isinstance(name, str))


class _Unkeyable(Exception):
    """An argument the memo cannot key on safely (see :func:`_freeze`)."""


_PLAIN_KEYS = (bool, int, float, str, torch.dtype, torch.device, torch.layout, torch.memory_format)


def _freeze(x: Any) -> Any:
    """A memo key for one operator argument, built only from values whose hash and equality are
    plain Python's: a tensor's shape (integer sizes), ints, floats, bools, strings, ``None``,
    dtypes, devices, and tuples / lists of those. Anything else (a TorchScript object such as
    ``torch.ao``'s packed params, whose ``__eq__`` raises; symbolic sizes; a nested tensor; a user
    object with a raising ``__hash__``) raises :class:`_Unkeyable`: the call is then not memoised.

    >>> _freeze((torch.zeros(2, 3), 1, None, "mean"))
    (('t', (2, 3)), (<class 'int'>, 1), None, (<class 'str'>, 'mean'))
    """
    if isinstance(x, Tensor):
        if x.is_nested:  # a nested (ragged) tensor has no sizes to key on
            raise _Unkeyable
        shape = tuple(x.shape)
        if not all(type(d) is int for d in shape):
            raise _Unkeyable
        return ("t", shape)
    if x is None:
        return None
    if type(x) in _PLAIN_KEYS:
        return (type(x), x)
    if type(x) in (list, tuple):
        return tuple([_freeze(e) for e in x])
    raise _Unkeyable


def _no_formula(args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:  # HOPs: unknown
    return None


def _has_cia_kernel(func: Any) -> bool:
    dk = torch._C.DispatchKey.CompositeImplicitAutograd
    return dk in getattr(func, "py_kernels", {}) or torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), dk)


_UNSEEN = object()
_PRIM_DEVICE = torch.ops.prim.device.default
# (display name, formula or None = decompose, memo or None, matmul-class without formula)
_Entry = tuple[str, "Formula | None", "dict[Any, int | None] | None", bool]


class MacCounter(TorchDispatchMode):
    """Dispatch mode calling ``on_op(op_name, macs)`` for every matmul-class aten op that runs.

    Args:
        on_op: called synchronously, right after the op ran, with the op's name as
            ``"namespace.name"`` (e.g. ``"aten.addmm"``) and its MACs (``int``), or ``None`` if the
            op is matmul-class but has no formula (the caller should mark the current row
            "unknown, because of <op_name>"). Ops that are not matmul-class are not reported.
            The tracer attributes each call to the innermost module running at that moment.

    ``before_op(func, args, kwargs)``, when given, is called before every op runs (the guard's
    :meth:`~netsummary._tracing.watch.StateWatch.before_op`, so that one dispatch mode does both jobs).

    Usage: ``with MacCounter(cb): model(x)`` (or ``__enter__``/``__exit__`` around the forward).
    Build one counter per summary: torch's registry is snapshotted in the constructor.

    Raises:
        TypeError: ``on_op`` is not callable. Exceptions raised by ``on_op`` propagate.
    """

    supports_higher_order_operators = True  # they reach __torch_dispatch__ instead of raising

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps __torch_dispatch__ in _disable_dynamo otherwise, which imports torch._dynamo
        # (about a second) on the first op; the summary runs eager modules, so nothing to skip
        return False

    def __init__(self, on_op: OnOp, before_op: Callable[[Any, tuple, Any], None] | None = None) -> None:
        if not callable(on_op):
            raise TypeError(f"MacCounter(on_op): expected a callable (op_name, macs), got {type(on_op).__name__}")
        super().__init__()
        self._on_op = on_op
        self._before_op = before_op
        formulas: dict[Any, tuple[Formula, bool]] = {name: (f, name not in _READS_VALUES) for name, f in FORMULAS.items()}
        for name, (f, memo) in _torch_formulas().items():
            if name not in _OVERRIDE_TORCH:
                formulas[name] = (f, memo)
        for alias, base in _INPLACE_ALIASES.items():
            formulas.setdefault(alias, formulas[base])
        self._formulas = formulas
        self._entries: dict[Any, _Entry | None] = {}  # OpOverload -> None: run it, report nothing

    def _resolve(self, func: Any) -> _Entry | None:
        schema = getattr(func, "_schema", None)
        entry: _Entry | None = None
        if isinstance(func, HigherOrderOperator):  # cond, flex_attention, ...: only torch's formulas
            formula, _ = self._formulas.get(func, (_no_formula, False))
            entry = (f"higher_order.{func.name()}", formula, None, formula is _no_formula)
        elif schema is not None and func is not _PRIM_DEVICE:
            name = schema.name
            display = name.replace("::", ".")
            if name in self._formulas:
                formula, memo = self._formulas[name]
                entry = (display, formula, {} if memo else None, False)
            elif name in UNKNOWN_OPS or _has_cia_kernel(func):
                entry = (display, None, None, name in UNKNOWN_OPS)
        self._entries[func] = entry
        return entry

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        if self._before_op is not None:  # the guard's write watch, run by this mode in its place
            self._before_op(func, args, kwargs)
        entry = self._entries.get(func, _UNSEEN)
        if entry is _UNSEEN:
            entry = self._resolve(func)
        if entry is None:  # hot path: neither counted nor decomposable
            return func(*args, **kwargs) if kwargs else func(*args)
        kwargs = kwargs or {}
        name, formula, memo, unknown = entry
        if formula is None:
            # A CompositeImplicit op reached dispatch un-decomposed (e.g. under inference_mode):
            # run its decomposition under this mode so that the pieces are seen and counted.
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
            out = func(*args, **kwargs)
            if unknown:
                self._on_op(name, None)
            return out
        out = func(*args, **kwargs)
        self._on_op(name, self._macs(formula, memo, args, kwargs, out))
        return out

    @staticmethod
    def _macs(formula: Formula, memo: dict[Any, int | None] | None, args: tuple[Any, ...],
              kwargs: dict[str, Any], out: Any) -> int | None:
        key = None
        try:
            if memo is not None:
                key = (tuple([_freeze(a) for a in args]), tuple([(k, _freeze(v)) for k, v in kwargs.items()]))
                hit = memo.get(key, _UNSEEN)
                if hit is not _UNSEEN:
                    return hit  # type: ignore[return-value]
        except _Unkeyable:  # an argument that cannot be keyed safely: not memoised
            key = None
        try:
            macs = formula(args, kwargs, out)
            macs = None if macs is None else int(macs)
        except Exception:  # noqa: BLE001 - a formula must never break the user's forward
            macs = None
        if key is not None:
            memo[key] = macs  # type: ignore[index]
        return macs


_MM_FLOP = getattr(_tfc.mm_flop, "__wrapped__", _tfc.mm_flop)  # torch's formula without its pytree wrapper


def _linear_from_shapes(m: torch.nn.Linear, x: Tensor, out: Tensor) -> int:
    """``nn.Linear`` on ``x [..., in]``: one ``[rows, in] @ [in, out]`` product with
    ``rows = x.numel() / in`` (how ``aten.linear`` folds the leading dimensions into ``addmm`` /
    ``mm``): torch's ``mm_flop`` / 2 = ``rows × in × out``, with ``[out, in]`` the shape of the
    weight the call ran (not ``in_features`` / ``out_features``, which a swapped weight leaves stale)."""
    n, k = m.weight.shape
    rows = x.numel() // k if k else 0
    return _MM_FLOP((rows, k), (k, n)) // 2


def _conv_from_shapes(m: torch.nn.Module, x: Tensor, out: Tensor) -> int:
    """``nn.Conv1d/2d/3d`` (any padding mode, stride, dilation, groups): torch's
    ``conv_flop_count`` / 2 on the weight and output shapes, as for the ``aten.convolution`` the
    layer runs (an unbatched call runs it on a batch of 1): ``out.numel() × prod(weight.shape[1:])``."""
    w = tuple(m.weight.shape)
    o = tuple(out.shape)
    if len(o) < len(w):  # unbatched: the kernel sees a batch of one
        o = (1, *o)
    return _tfc.conv_flop_count(o, w, o) // 2


def _rnn_from_shapes(m: torch.nn.RNNBase, x: Any, out: Any) -> int:
    """``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``: every 2-D weight (W_ih, W_hh, W_hr of each layer and
    direction) applied once per input row, as :func:`_rnn` counts the fused kernels and as the
    per-step ``addmm`` / ``mm`` of the unfused path add up: ``rows * sum(W.numel() for 2-D W)``,
    ``rows = T*B`` (``input.numel() // input.shape[-1]``; a packed sequence's ``data`` has
    ``sum(lengths)`` rows)."""
    data = x.data if isinstance(x, torch.nn.utils.rnn.PackedSequence) else x
    return _rows_times_weights(data, m._parameters.values()) if data.dim() and data.shape[-1] else 0


#: MACs of one call of torch's own layers from the call's input and output, for a forward that
#: runs without the counter (see :mod:`netsummary._tracing.pure`; tested against the counter).
#: Layers not listed run no matmul-class operator.
SHAPE_MACS: dict[type, Callable[[Any, Tensor, Any], int]] = {
    torch.nn.Linear: _linear_from_shapes, torch.nn.Conv1d: _conv_from_shapes, torch.nn.Conv2d: _conv_from_shapes,
    torch.nn.Conv3d: _conv_from_shapes,
    torch.nn.RNN: _rnn_from_shapes, torch.nn.LSTM: _rnn_from_shapes, torch.nn.GRU: _rnn_from_shapes,
}
