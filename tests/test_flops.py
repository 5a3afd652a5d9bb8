"""MAC counting (netsummary._analysis.flops): hand-derived counts per operator, fused CPU paths, devices, zoo."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import register_flop_formula

from netsummary._analysis import flops as _flops
from netsummary._analysis.flops import MATMUL_CLASS, UNKNOWN_OPS, MacCounter


GRAD_MODES: dict[str, Callable[[], contextlib.AbstractContextManager[Any]]] = {
    "grad": contextlib.nullcontext,
    "no_grad": torch.no_grad,
    "inference_mode": torch.inference_mode,  # CompositeImplicit ops (linear, lstm, sdpa) reach dispatch
}


def events(fn: Callable[..., Any], *args: Any, grad: bool | str = True) -> list[tuple[str, int | None]]:
    """Run ``fn(*args)`` under a MacCounter; return the (op_name, macs) callbacks in order.

    ``grad``: True/False for grad on/off, or a key of GRAD_MODES.
    """
    mode = grad if isinstance(grad, str) else ("grad" if grad else "no_grad")
    seen: list[tuple[str, int | None]] = []
    with GRAD_MODES[mode](), MacCounter(lambda op, m: seen.append((op, m))):
        fn(*args)
    return seen


def total(fn: Callable[..., Any], *args: Any, grad: bool | str = True) -> int:
    seen = events(fn, *args, grad=grad)
    assert all(m is not None for _, m in seen), seen
    return sum(m for _, m in seen)  # type: ignore[misc]


@torch.library.custom_op("netsummary_test::mymm", mutates_args=())
def _mymm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a @ b


@_mymm.register_fake
def _mymm_fake(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a.new_empty(a.shape[0], b.shape[1])


@register_flop_formula(torch.ops.netsummary_test.mymm)
def _mymm_flops(a_shape: torch.Size, b_shape: torch.Size, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


@pytest.fixture(autouse=True)
def _seed() -> Iterator[None]:
    torch.manual_seed(0)
    yield


# --- convolutions --------------------------------------------------------------------------------


def test_conv2d_groups_stride_dilation() -> None:
    conv = nn.Conv2d(4, 8, 3, stride=2, dilation=2, groups=2)
    # effective kernel 2*(3-1)+1 = 5; out spatial (10-5)//2+1 = 3 -> out [1, 8, 3, 3]
    # every output: (4/2 in-channels) * 3*3 taps = 18 MACs; 1*8*3*3 outputs * 18 = 1,296
    assert events(conv, torch.randn(1, 4, 10, 10)) == [("aten.convolution", 1296)]


def test_conv2d_depthwise_padding() -> None:
    conv = nn.Conv2d(3, 6, 3, padding=1, groups=3)
    # out [2, 6, 8, 8]; each output: 1 in-channel * 9 taps; 2*6*8*8*9 = 6,912
    assert total(conv, torch.randn(2, 3, 8, 8)) == 6912


def test_conv1d_and_conv3d() -> None:
    # Conv1d(4, 8, 3) on [2, 4, 10] -> [2, 8, 8]; 2*8*8 * 4*3 = 1,536
    assert total(nn.Conv1d(4, 8, 3), torch.randn(2, 4, 10)) == 1536
    # Conv3d(2, 4, 3) on [1, 2, 5, 5, 5] -> [1, 4, 3, 3, 3]; 4*27 * 2*27 = 5,832
    assert total(nn.Conv3d(2, 4, 3), torch.randn(1, 2, 5, 5, 5)) == 5832


def test_conv_transpose2d() -> None:
    conv = nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2)
    x = torch.randn(1, 4, 5, 5)
    # each of the 1*4*5*5 = 100 input elements is scattered into (6/2 out-channels)*3*3 = 27 outputs
    # 100 * 27 = 2,700 (output [1, 6, 11, 11] does not enter the count)
    assert events(conv, x) == [("aten.convolution", 2700)]
    assert conv(x).shape == (1, 6, 11, 11)


# --- linear and matrix products ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((2, 8), 256),  # Linear(8, 16) on [2, 8]: 2*8*16 = 256
        ((2, 5, 8), 1280),  # Linear(8, 16) on [2, 5, 8]: 2*5*8*16 = 1,280
        ((2, 3, 5, 8), 3840),  # Linear(8, 16) on [2, 3, 5, 8]: 2*3*5*8*16 = 3,840
    ],
)
def test_linear_any_rank(shape: tuple[int, ...], expected: int) -> None:
    assert events(nn.Linear(8, 16), torch.randn(*shape)) == [("aten.addmm", expected)]
    assert total(nn.Linear(8, 16, bias=False), torch.randn(*shape)) == expected  # as aten.mm


def test_memoised_formula_tracks_shape_changes() -> None:
    lin = nn.Linear(8, 16)

    def twice() -> None:
        lin(torch.randn(2, 8))  # 2*8*16 = 256
        lin(torch.randn(3, 8))  # 3*8*16 = 384
        lin(torch.randn(2, 8))  # 256 again (memo hit)

    assert [m for _, m in events(twice)] == [256, 384, 256]


def test_matmul_bmm_einsum_mv_dot() -> None:
    a, b = torch.randn(3, 4, 5), torch.randn(3, 5, 6)
    # [3, 4, 5] @ [3, 5, 6]: 3 batches * 4*5*6 = 360
    assert events(torch.bmm, a, b) == [("aten.bmm", 360)]
    assert total(lambda: a @ b) == 360
    assert total(torch.einsum, "bij,bjk->bik", a, b) == 360
    # [2, 3, 5, 8] @ [8, 3]: 2*3*5 rows * 8 * 3 = 720 (broadcast -> one mm)
    assert total(lambda: torch.randn(2, 3, 5, 8) @ torch.randn(8, 3)) == 720
    # chain of three: left to right, [3,4]@[4,5] = 60, then [3,5]@[5,6] = 90 -> 150
    assert total(torch.einsum, "ij,jk,kl->il", torch.randn(3, 4), torch.randn(4, 5), torch.randn(5, 6)) == 150
    # mv [4, 5] @ [5]: 20; dot [5].[5]: 5
    assert events(torch.mv, torch.randn(4, 5), torch.randn(5)) == [("aten.mv", 20)]
    assert events(torch.dot, torch.randn(5), torch.randn(5)) == [("aten.dot", 5)]
    # baddbmm: same as bmm, the add is not counted: 360
    assert total(torch.baddbmm, torch.randn(3, 4, 6), a, b) == 360


def test_other_products_and_backend_ops() -> None:
    i8 = lambda *shape: torch.randint(-5, 5, shape, dtype=torch.int8)  # noqa: E731
    aten = torch.ops.aten
    cases: list[tuple[Callable[[], Any], str, int]] = [
        # cdist [2, 3, 4] x [2, 5, 4]: 2*3*5 pairs * 4 coordinates = 120
        (lambda: torch.cdist(torch.randn(2, 3, 4), torch.randn(2, 5, 4)), "aten._cdist_forward", 120),
        (lambda: torch._int_mm(i8(32, 16), i8(16, 8)), "aten._int_mm", 4096),  # 32*16*8 = 4,096
        # int8 weight [6, 8] on activations [4, 8]: 4*8*6 = 192
        (lambda: torch._weight_int8pack_mm(torch.randn(4, 8), i8(6, 8), torch.randn(6)), "aten._weight_int8pack_mm", 192),
        # conv_tbc x [T=5, B=2, 4], w [K=3, 4, 6] -> out [3, 2, 6]: 36 outputs * 3*4 = 432
        (lambda: torch.conv_tbc(torch.randn(5, 2, 4), torch.randn(3, 4, 6), torch.randn(6)), "aten.conv_tbc", 432),
        (lambda: torch.addmv(torch.randn(4), torch.randn(4, 5), torch.randn(5)), "aten.addmv", 20),  # 4*5
        # addbmm sums 3 products [4, 5] @ [5, 6]: 3*4*5*6 = 360
        (lambda: torch.addbmm(torch.randn(4, 6), torch.randn(3, 4, 5), torch.randn(3, 5, 6)), "aten.addbmm", 360),
        (lambda: torch.randn(2, 16).addmm_(torch.randn(2, 8), torch.randn(8, 16)), "aten.addmm_", 256),  # 2*8*16
        (lambda: torch.randn(3, 4, 6).baddbmm_(torch.randn(3, 4, 5), torch.randn(3, 5, 6)), "aten.baddbmm_", 360),
        # _slow_conv2d_forward (torch's formula raises on its schema): 3x3 stride 2 on 10x10 -> 4x4;
        # 1*8*4*4 outputs * 4*3*3 = 4,608
        (lambda: aten._slow_conv2d_forward(torch.randn(1, 4, 10, 10), torch.randn(8, 4, 3, 3), [3, 3], None,
                                           [2, 2], [0, 0]), "aten._slow_conv2d_forward", 4608),
        (lambda: torch.mm(torch.randn(3, 4), torch.randn(4, 5), out=torch.empty(3, 5)), "aten.mm", 60),  # 3*4*5
    ]
    for fn, op, expected in cases:
        assert events(fn) == [(op, expected)], op
    # outer products contract nothing: not matmul-class
    assert events(lambda: torch.addr(torch.randn(3, 4), torch.randn(3), torch.randn(4))) == []
    assert events(lambda: torch.outer(torch.randn(3), torch.randn(4))) == []


def test_user_formula_registered_in_torch_is_used() -> None:
    # a custom op with a FLOP formula in torch's registry: FLOPs 2*M*K*N -> MACs 3*4*5 = 60
    assert events(torch.ops.netsummary_test.mymm, torch.randn(3, 4), torch.randn(4, 5)) == [
        ("netsummary_test.mymm", 60)
    ]


def test_bilinear() -> None:
    # Bilinear(3, 4, 5) on N=2 rows: one MAC per term x1_i * W_oij * x2_j: 2*5*3*4 = 120
    assert events(nn.Bilinear(3, 4, 5), torch.randn(2, 3), torch.randn(2, 4)) == [("aten._trilinear", 120)]


def test_embedding_and_elementwise_are_not_counted() -> None:
    emb = nn.Embedding(10, 4)
    assert events(emb, torch.tensor([[1, 2, 3]])) == []
    x = torch.randn(4, 8)
    assert events(lambda: F.softmax(F.relu(x + 1) * 2, -1).sum()) == []
    assert events(nn.LayerNorm(8), x) == []


# --- attention ------------------------------------------------------------------------------------


def test_sdpa_cpu_fused_kernel() -> None:
    q = torch.randn(2, 4, 6, 8)
    # B*H*L*S*(E + Ev) = 2*4*6*6*(8 + 8) = 4,608, one CPU flash kernel (not in torch's registry)
    assert events(F.scaled_dot_product_attention, q, q, q) == [
        ("aten._scaled_dot_product_flash_attention_for_cpu", 4608)
    ]
    # causal masking is not discounted (dense upper bound): 4,608
    assert total(lambda: F.scaled_dot_product_attention(q, q, q, is_causal=True)) == 4608
    # 3-D inputs [H, L, E] are batch 1: 1*4*6*6*16 = 2,304
    assert total(F.scaled_dot_product_attention, q[0], q[0], q[0]) == 2304


def test_sdpa_math_path_and_gqa() -> None:
    q, k, v = torch.randn(2, 4, 6, 8), torch.randn(2, 4, 7, 8), torch.randn(2, 4, 7, 5)
    # math path (two bmm): Q@K^T 2*4*6*7*8 = 2,688 and A@V 2*4*6*7*5 = 1,680 -> 4,368
    assert total(F.scaled_dot_product_attention, q, k, v) == 4368
    kv = torch.randn(2, 2, 6, 8)
    # GQA: 2 kv heads broadcast to the 4 query heads: 2*4*6*6*(8 + 8) = 4,608
    assert total(lambda: F.scaled_dot_product_attention(q, kv, kv, enable_gqa=True)) == 4608


# MHA(E=16, H=4) self-attention on [B=2, L=5, E=16]:
# in-proj 2*5*16*48 = 7,680; Q@K^T and A@V 2 * 2*4*5*5*4 = 1,600; out-proj 2*5*16*16 = 2,560 -> 11,840
MHA_MACS = 11840


def test_mha_fast_path_counted_exactly() -> None:
    mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    x = torch.randn(2, 5, 16)
    assert events(lambda: mha(x, x, x), grad=False) == [("aten._native_multi_head_attention", MHA_MACS)]
    assert events(lambda: mha(x, x, x, need_weights=False), grad=False) == [
        ("aten._native_multi_head_attention", MHA_MACS)
    ]


def test_mha_slow_paths_agree() -> None:
    mha = nn.MultiheadAttention(16, 4, batch_first=True)
    x = torch.randn(2, 5, 16)
    train = events(lambda: mha(x, x, x))  # training mode: unfused mm/bmm/addmm
    assert "aten._native_multi_head_attention" not in {op for op, _ in train}
    assert sum(m for _, m in train) == MHA_MACS  # type: ignore[misc]
    mha.eval()
    assert total(lambda: mha(x, x, x)) == MHA_MACS  # eval with grad: unfused
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        fast_off = events(lambda: mha(x, x, x), grad=False)
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)
    assert "aten._native_multi_head_attention" not in {op for op, _ in fast_off}
    assert sum(m for _, m in fast_off) == MHA_MACS  # type: ignore[misc]


def test_native_mha_cross_attention_formula() -> None:
    mha = nn.MultiheadAttention(16, 4, batch_first=True)
    q, kv = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    # L=5, S=7: Q-proj 2*5*16*16 = 2,560; K,V-proj 2 * 2*7*16*16 = 7,168; scores and A@V
    # 2*2*5*7*16 = 2,240; out-proj 2,560 -> 14,528
    assert total(lambda: mha(q, kv, kv)) == 14528
    weights = (mha.in_proj_weight, mha.in_proj_bias, mha.out_proj.weight, mha.out_proj.bias)
    # the CPU kernel wants equal q/k/v shapes, so check the L != S formula on its own
    assert _flops._mha((q, kv, kv, 16, 4, *weights), {}, None) == 14528
    # distinct q, k, v tensors of one shape through the fused kernel: the self-attention count
    k, v = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    fused = events(torch._native_multi_head_attention, q, k, v, 16, 4, *weights, grad=False)
    assert fused == [("aten._native_multi_head_attention", MHA_MACS)]
    assert total(lambda: mha(q, k, v)) == MHA_MACS


def test_transformer_encoder_layer_fast_path() -> None:
    layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, batch_first=True)
    x = torch.randn(2, 5, 16)
    # attention 11,840 + FFN 2*5*16*32 + 2*5*32*16 = 10,240 -> 22,080
    assert total(layer, x) == 22080  # training mode: unfused
    layer.eval()
    assert events(layer, x, grad=False) == [("aten._transformer_encoder_layer_fwd", 22080)]


# --- recurrent layers -----------------------------------------------------------------------------
# Per time step and batch row: LSTM 4H(I+H), GRU 3H(I+H), RNN H(I+H). Input [T=5, B=2, I=8], H=16:
# 10 rows. Layer 2 of a bidirectional stack sees I = 2H = 32.


@pytest.mark.filterwarnings("ignore:LSTM with projections")
@pytest.mark.parametrize(
    ("cls", "kwargs", "expected"),
    [
        (nn.LSTM, {}, 15360),  # 10 * 4*16*(8+16) = 15,360 (one fused mkldnn_rnn_layer on CPU)
        # layer 1: 2 dirs * 15,360; layer 2: 2 dirs * 10 * 4*16*(32+16) = 61,440 -> 92,160
        (nn.LSTM, {"num_layers": 2, "bidirectional": True}, 92160),
        (nn.LSTM, {"proj_size": 4}, 8320),  # 10 * (4*16*(8+4) + 16*4) = 8,320 (unfused addmm/mm)
        (nn.GRU, {}, 11520),  # 10 * 3*16*(8+16) = 11,520
        # layer 1: 2 * 11,520; layer 2: 2 * 10 * 3*16*(32+16) = 46,080 -> 69,120
        (nn.GRU, {"num_layers": 2, "bidirectional": True}, 69120),
        (nn.RNN, {}, 3840),  # 10 * 16*(8+16) = 3,840
        (nn.RNN, {"num_layers": 2, "bidirectional": True}, 23040),  # 2*3,840 + 2*10*16*48 = 23,040
    ],
)
def test_rnn_family(cls: type[nn.Module], kwargs: dict[str, Any], expected: int) -> None:
    rnn = cls(8, 16, **kwargs)
    x = torch.randn(5, 2, 8)
    assert total(rnn, x) == expected
    assert total(rnn, x, grad=False) == expected
    batch_first = cls(8, 16, batch_first=True, **kwargs)
    assert total(batch_first, x.transpose(0, 1)) == expected
    with torch.device("meta"):  # on meta every RNN decomposes into addmm per step
        assert total(cls(8, 16, **kwargs), torch.randn(5, 2, 8)) == expected


def test_lstm_fused_op_on_cpu() -> None:
    seen = events(nn.LSTM(8, 16, num_layers=2, bidirectional=True), torch.randn(5, 2, 8))
    if {op for op, _ in seen} != {"aten.mkldnn_rnn_layer"}:
        pytest.skip(f"LSTM did not run as mkldnn_rnn_layer on this build: {seen}")
    assert [m for _, m in seen] == [15360, 15360, 30720, 30720]


def test_lstm_packed_sequence() -> None:
    x = torch.randn(5, 3, 8)
    packed = nn.utils.rnn.pack_padded_sequence(x, [5, 3, 2])
    # only real steps are computed: 5+3+2 = 10 rows * 4*16*(8+16) = 15,360
    assert total(nn.LSTM(8, 16), packed) == 15360


def test_lstm_cell() -> None:
    # LSTMCell(8, 16) on [2, 8]: 2 * 4*16*(8+16) = 3,072
    assert total(nn.LSTMCell(8, 16), torch.randn(2, 8)) == 3072


# --- every grad mode gives the same totals ---------------------------------------------------------


def _grad_mode_cases() -> dict[str, tuple[Callable[[], Any], int]]:
    torch.manual_seed(0)
    q, x, a, b = torch.randn(2, 4, 6, 8), torch.randn(2, 5, 16), torch.randn(3, 4, 5), torch.randn(3, 5, 6)
    conv, conv_t = nn.Conv2d(4, 8, 3, stride=2, dilation=2, groups=2), nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2)
    lin, lstm, gru, cell = nn.Linear(8, 16), nn.LSTM(8, 16, 2, bidirectional=True), nn.GRU(8, 16), nn.LSTMCell(8, 16)
    mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    enc = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, batch_first=True).eval()
    bil = nn.Bilinear(3, 4, 5)
    seq, k, v = torch.randn(5, 2, 8), torch.randn(2, 4, 7, 8), torch.randn(2, 4, 7, 5)
    return {  # expected totals derived in the tests above
        "conv2d": (lambda: conv(torch.randn(1, 4, 10, 10)), 1296),
        "conv_transpose2d": (lambda: conv_t(torch.randn(1, 4, 5, 5)), 2700),
        "linear_3d": (lambda: lin(torch.randn(2, 5, 8)), 1280),
        "sdpa_flash_cpu": (lambda: F.scaled_dot_product_attention(q, q, q), 4608),
        "sdpa_math": (lambda: F.scaled_dot_product_attention(q, k, v), 4368),
        "mha_eval": (lambda: mha(x, x, x), MHA_MACS),
        "encoder_layer_eval": (lambda: enc(x), 22080),
        "lstm_bidir_2_layers": (lambda: lstm(seq), 92160),
        "gru": (lambda: gru(seq), 11520),
        "lstm_cell": (lambda: cell(torch.randn(2, 8)), 3072),  # 2 * 4*16*(8+16) = 3,072
        "einsum": (lambda: torch.einsum("bij,bjk->bik", a, b), 360),
        "matmul": (lambda: a @ b, 360),
        "tensordot": (lambda: torch.tensordot(torch.randn(3, 4, 5), torch.randn(4, 5, 6), dims=2), 360),
        "bilinear": (lambda: bil(torch.randn(2, 3), torch.randn(2, 4)), 120),
    }


@pytest.mark.parametrize("grad_mode", list(GRAD_MODES))
def test_same_totals_in_every_grad_mode(grad_mode: str) -> None:
    wrong = {}
    for name, (fn, expected) in _grad_mode_cases().items():
        got = total(fn, grad=grad_mode)
        if got != expected:
            wrong[name] = (got, expected)
    assert not wrong, wrong


def test_inference_mode_counts_undecomposed_ops() -> None:
    # under inference_mode nn.Linear reaches dispatch as aten.linear: 2*8*16 = 256
    assert events(nn.Linear(8, 16), torch.randn(2, 8), grad="inference_mode") == [("aten.linear", 256)]
    # ... and F.scaled_dot_product_attention as the CompositeImplicit op, decomposed here
    q = torch.randn(2, 4, 6, 8)
    assert events(F.scaled_dot_product_attention, q, q, q, grad="inference_mode") == [
        ("aten._scaled_dot_product_flash_attention_for_cpu", 4608)
    ]


# --- unknown ops, errors, registry ----------------------------------------------------------------


def test_unknown_matmul_class_op_reported_as_none() -> None:
    s = torch.randn(4, 4).to_sparse()  # sparse x sparse GEMM: no formula
    seen = events(lambda: torch.sspaddmm(s, s, torch.randn(4, 4)))
    assert seen == [("aten.sspaddmm", None)]
    assert "aten::sspaddmm" in UNKNOWN_OPS and "aten::sspaddmm" in MATMUL_CLASS


# --- grouped GEMMs (transformers v5 experts) -------------------------------------------------------


def _grouped(a: torch.Tensor, b: torch.Tensor, offs: torch.Tensor | None = None) -> list[tuple[str, int | None]]:
    try:
        return events(lambda: torch._grouped_mm(a, b, offs=offs))
    except (RuntimeError, NotImplementedError) as e:  # pragma: no cover - a build without the CPU kernel
        pytest.skip(f"_grouped_mm does not run on this CPU build: {e}")


def test_grouped_mm_2d_3d_sums_tokens_times_k_times_n_over_groups() -> None:
    x, w = torch.randn(10, 8), torch.randn(3, 8, 4)  # 10 rows, 3 groups of K=8 -> N=4
    offs = torch.tensor([2, 6, 9], dtype=torch.int32)  # groups of 2, 4 and 3 rows; row 9 ignored
    # (2 + 4 + 3) tokens * 8 * 4 = 288 (not 10 * 8 * 4 = 320: rows past offs[-1] are not computed)
    assert _grouped(x, w, offs) == [("aten._grouped_mm", 288)]
    # the same figure as the per-group matmuls it stands for: 2*8*4 + 4*8*4 + 3*8*4 = 288
    per_group = sum(m for _, m in events(lambda: [x[a:b] @ w[g] for g, (a, b) in enumerate([(0, 2), (2, 6), (6, 9)])]))
    assert per_group == 288
    # offsets are read per call, never memoised by shape: same shapes, fewer routed rows
    assert _grouped(x, w, torch.tensor([1, 1, 3], dtype=torch.int32)) == [("aten._grouped_mm", 3 * 8 * 4)]


def test_grouped_mm_other_layouts() -> None:
    offs = torch.tensor([4, 8, 12], dtype=torch.int32)  # 3 groups of 4
    a3, b2 = torch.randn(3, 4, 8), torch.randn(8, 12)  # 3D x 2D: b's 12 columns jagged -> [4, 12]
    assert _grouped(a3, b2, offs) == [("aten._grouped_mm", 4 * 8 * 12)]  # M*K*offs[-1] = 384
    a2, b22 = torch.randn(4, 12), torch.randn(12, 4)  # 2D x 2D: K = 12 jagged -> [3, 4, 4]
    assert _grouped(a2, b22, offs) == [("aten._grouped_mm", 4 * 12 * 4)]  # M*offs[-1]*N = 192
    # 3D x 3D, no offsets: a batched matmul, G*M*K*N = 3*4*8*4 = 384
    assert _grouped(a3, torch.randn(3, 8, 4)) == [("aten._grouped_mm", 384)]
    assert "aten::_grouped_mm" in MATMUL_CLASS and "aten::_grouped_mm" not in UNKNOWN_OPS


def test_grouped_mm_on_fake_tensors_counts_every_row() -> None:
    # offsets hold no values on fake tensors: every row of the jagged operand counts, 10*8*8 = 640
    # (the fake kernel wants bf16 and rows of 16 bytes: N = 8)
    with FakeTensorMode():
        x, w = torch.randn(10, 8, dtype=torch.bfloat16), torch.randn(3, 8, 8, dtype=torch.bfloat16)
        offs = torch.tensor([2, 6, 10], dtype=torch.int32)
        try:
            seen = events(lambda: torch._grouped_mm(x, w, offs=offs))
        except RuntimeError as e:  # pragma: no cover
            pytest.skip(f"_grouped_mm's fake kernel refused: {e}")
    assert seen == [("aten._grouped_mm", 640)]


def test_higher_order_op_without_formula_is_unknown() -> None:
    x = torch.randn(3, 3)
    # torch.cond runs as a higher-order op whose branches the counter cannot see: unknown
    seen = events(lambda: torch.cond(torch.tensor(True), lambda t: t @ t, lambda t: t + 1, (x,)))
    assert seen == [("higher_order.cond", None)]


def test_matmul_class_list() -> None:
    for name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::convolution", "aten::mkldnn_rnn_layer",
                 "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_native_multi_head_attention",
                 "aten::einsum", "aten::lstm"):
        assert name in MATMUL_CLASS, name
    for name in ("aten::add", "aten::embedding", "aten::convolution_backward", "aten::_softmax"):
        assert name not in MATMUL_CLASS, name


def test_forward_only_backward_ignored() -> None:
    conv = nn.Conv2d(2, 4, 3)
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    # forward: out [1, 4, 3, 3] * 2*9 = 648; convolution_backward is not reported
    assert events(lambda: conv(x).sum().backward()) == [("aten.convolution", 648)]


def test_constructor_rejects_non_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        MacCounter(42)  # type: ignore[arg-type]


def test_callback_errors_propagate() -> None:
    def boom(op: str, macs: int | None) -> None:
        raise KeyError(op)

    with pytest.raises(KeyError, match="aten.addmm"), MacCounter(boom):
        nn.Linear(2, 2)(torch.randn(1, 2))


# --- devices ---------------------------------------------------------------------------------------


def test_meta_device() -> None:
    with torch.device("meta"):
        conv, x = nn.Conv2d(4, 8, 3, stride=2, dilation=2, groups=2), torch.randn(1, 4, 10, 10)
        assert total(conv, x) == 1296
        mha, y = nn.MultiheadAttention(16, 4, batch_first=True).eval(), torch.randn(2, 5, 16)
        assert total(lambda: mha(y, y, y), grad=False) == MHA_MACS  # no fast path on meta
        q = torch.randn(2, 4, 6, 8)
        assert total(F.scaled_dot_product_attention, q, q, q) == 4608  # math path on meta


def test_fake_tensor_mode() -> None:
    with FakeTensorMode():
        mha, x = nn.MultiheadAttention(16, 4, batch_first=True).eval(), torch.randn(2, 5, 16)
        assert events(lambda: mha(x, x, x), grad=False) == [("aten._native_multi_head_attention", MHA_MACS)]
        assert total(nn.LSTM(8, 16, num_layers=2, bidirectional=True), torch.randn(5, 2, 8)) == 92160
        assert total(nn.Linear(8, 16), torch.randn(2, 5, 8)) == 1280


# --- zoo: published torchvision GFLOPS (which are GMACs) ----------------------------------------


@pytest.mark.zoo
@pytest.mark.parametrize("arch", ["resnet18", "vit_b_16"])
def test_torchvision_published_gmacs(arch: str) -> None:
    torchvision = pytest.importorskip("torchvision")
    weights = torchvision.models.get_model_weights(arch).IMAGENET1K_V1
    with torch.device("meta"):
        model = torchvision.models.get_model(arch, weights=None).eval()
        x = torch.randn(1, 3, 224, 224)
    macs = total(model, x, grad=False)
    # resnet18 1.814 GMACs (measured 1,814,073,344), vit_b_16 17.564 (measured 17,563,828,224)
    assert macs == pytest.approx(weights.meta["_ops"] * 1e9, rel=0.005)
