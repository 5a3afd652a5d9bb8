"""Quantized weights: logical parameters, stored bytes and quantization state, never conflated.

Every expected number is derived by hand in a comment, or compared with an independent source:
the float model before quantization (``sum(p.numel() for p in float_model.parameters())``) and
the libraries' own attributes. torchao and bitsandbytes tests ``importorskip`` their library.
auto-gptq / autoawq / optimum are not installed here: the GPTQ and AWQ layouts are tested on
hand-built modules holding the same buffers (``qweight``, ``qzeros``, ``scales``, ``g_idx``,
``bias``) as auto-gptq's ``QuantLinear`` and autoawq's ``WQLinear_GEMM``.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from netsummary import Summary, summary
from netsummary._analysis.packing import config_bits, infer_bits, packed_layout
from netsummary._checkpoints.inspect import inspect_checkpoint
from netsummary._commandline.cli import main
from netsummary._errors import InputSpecError

from conftest import assert_unchanged, snapshot

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))


FLOAT_PARAMS = 64 * 32 + 32 + 32 * 4 + 4  # 2,080 + 132 = 2,212
WEIGHTS = 64 * 32 + 32 * 4  # the quantized share: 2,048 + 128 = 2,176


def dynamic(dtype=torch.qint8, qconfig=None) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = {nn.Linear: qconfig} if qconfig is not None else {nn.Linear}
        return torch.ao.quantization.quantize_dynamic(mlp(), spec, dtype=dtype)


# --- torch.ao dynamic quantization (in torch) -----------------------------------------------------

def test_dynamic_int8_logical_stored_and_state_apart() -> None:
    q = dynamic()
    assert list(q.parameters()) == []  # the bug: parameters() is empty, the weights live in packed params
    s = summary(q, (64,), verbose=0, macs=True)
    assert s.total_params == FLOAT_PARAMS == sum(p.numel() for p in mlp().parameters())
    assert s.quantized_params == WEIGHTS
    assert s.trainable_params == 0 and s.non_trainable_params == FLOAT_PARAMS  # torch.ao layers are inference-only
    # int8 weights 1 byte each: 2,048 + 128; fp32 biases 4 bytes each: 32 * 4 + 4 * 4 = 144
    assert s.param_bytes == 2048 + 128 + 144 == 2320
    assert s.quantized_bytes == 2048 + 128
    # per-tensor quantizer: a float64 scale and an int64 zero point, 16 bytes per layer
    assert s.quant_state_bytes == 2 * 16
    assert s.quant_dtypes == ("int8",)
    # the layers' own API agrees: weight() is the qint8 tensor, 1 byte per element
    w = q[0].weight()
    assert (w.dtype, w.numel() * w.element_size(), w.qscheme()) == (torch.qint8, 2048, torch.per_tensor_affine)
    # MACs of quantized::linear_dynamic: 64 * 32 + 32 * 4 = 2,176, counted, not "unknown"
    assert s.total_macs == 2176 and s.unknown_ops == ()
    rows = {r.name: r for r in s.leaf_layers}
    assert (rows["0"].params, rows["0"].quant_params, rows["0"].param_bytes, rows["0"].quant_dtype) == (
        2080, 2048, 2048 + 128, "int8")
    assert rows["0"].macs == 2048 and rows["2"].macs == 128


def test_dynamic_classic_table_shows_stored_bytes_and_quantized_share() -> None:
    text = str(summary(dynamic(), (64,), verbose=0))
    assert "Total params: 2,212\n" in text
    assert "Quantized params: 2,176 of 2,212 (98.37%), stored as int8\n" in text  # 2176 / 2212 = 98.37%
    assert "Params size (MB): 0.00\nQuantization state size (MB): 0.00\n" in text
    assert "            Linear-1                   [-1, 32]           2,080" in text


def test_dynamic_per_channel_state_is_a_scale_and_zero_point_per_row() -> None:
    qc = torch.ao.quantization.per_channel_dynamic_qconfig
    s = summary(dynamic(qconfig=qc), (64,), verbose=0)
    w = dynamic(qconfig=qc)[0].weight()
    assert w.qscheme() == torch.per_channel_affine
    # float64 scales and int64 zero points per output row: (32 + 4) * (8 + 8) = 576
    assert s.quant_state_bytes == (32 + 4) * 16 == 576
    assert s.total_params == FLOAT_PARAMS and s.param_bytes == 2320


def test_dynamic_float16_weights_are_two_bytes_each() -> None:
    s = summary(dynamic(torch.float16), (64,), verbose=0, macs=True)
    assert s.total_params == FLOAT_PARAMS
    assert s.quantized_bytes == 2 * WEIGHTS == 4352  # float16 packed weights
    assert s.param_bytes == 4352 + 144 and s.quant_state_bytes == 0
    assert s.quant_dtypes == ("float16",)
    assert s.total_macs == 2176 and s.unknown_ops == ()  # quantized::linear_dynamic_fp16


def test_dynamic_lstm_weights_through_get_weight_and_its_op_reported_unknown() -> None:
    torch.manual_seed(0)
    float_model = nn.Sequential(nn.LSTM(8, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(float_model, {nn.LSTM}, dtype=torch.qint8)
    s = summary(q, (3, 8), verbose=0, macs=True)
    # 4 gates * 16 * (8 + 16) = 1,536 weights + 2 * 4 * 16 = 128 biases = 1,664
    assert s.total_params == 1664 == sum(p.numel() for p in float_model.parameters())
    assert s.quantized_params == 1536 and s.quantized_bytes == 1536  # qint8: 1 byte each
    assert s.param_bytes == 1536 + 128 * 4 and s.quant_state_bytes == 2 * 16  # two per-tensor quantizers
    assert s.quant_unknown == ()  # its PackedParameter children are the layer's, not layers of their own
    assert "aten.quantized_lstm" in s.unknown_ops  # no formula: a lower bound, never a silent 0


def test_quant_stubs_hold_activation_qparams_not_quantized_weights() -> None:
    m = nn.Sequential(torch.ao.nn.quantized.Quantize(0.1, 0, torch.quint8), torch.ao.nn.quantized.DeQuantize())
    s = summary(m, (4,), verbose=0)
    assert not s.quantized and s.total_params == 0
    assert s.buffer_count == 2 and s.buffer_bytes == 4 + 8  # a float32 scale and an int64 zero point


def test_dynamic_tree_view_marks_rows_and_formula_uses_logical_shapes() -> None:
    s = summary(dynamic(), (64,), verbose=0, formulas=True)
    text = s.render("tree", columns=["params", "param_bytes", "quantized", "formula"])
    line = next(li for li in text.splitlines() if li.startswith("  0 (Linear)"))
    assert line.split() == ["0", "(Linear)", "2,080", "(int8)", "2,176", "int8:", "2,048", "B", "+", "16", "B", "state",
                            "32", "×", "64", "+", "32", "=", "2,080"]
    assert "Quantization state size" in text and "32 B" in text


def test_dynamic_summary_leaves_the_model_unchanged_and_forward_equal() -> None:
    q = dynamic()
    x = torch.randn(3, 64)
    before = q(x)
    flags = [(n, m.training) for n, m in q.named_modules()]
    weights = [q[i].weight().int_repr().clone() for i in (0, 2)]
    summary(q, (64,), verbose=0, macs=True)  # conftest's snapshot() cannot read packed state dicts
    assert torch.equal(q(x), before)
    assert [(n, m.training) for n, m in q.named_modules()] == flags
    assert all(torch.equal(q[i].weight().int_repr(), w) for i, w in zip((0, 2), weights))


def test_json_round_trip_and_csv_carry_quantized_fields() -> None:
    s = summary(dynamic(), (64,), verbose=0, macs=True)
    d = s.to_dict()
    assert (d["quantized_params"], d["quantized_bytes"], d["quant_state_bytes"], d["quant_dtypes"]) == (
        2176, 2176, 32, ["int8"])
    assert d["layers"][1]["quant_params"] == 2048 and d["layers"][1]["quant_dtype"] == "int8"
    assert Summary.from_json(s.to_json()) == s
    header, first = s.render("csv").splitlines()[:2]
    assert header.endswith(",quant_params,quant_bytes,quant_state_bytes,quant_unknown,quant_dtype")
    assert first.endswith(",2176,2176,32,0,int8")  # the root row: the whole model
    bad = dict(d, quantized_params=5000)
    with pytest.raises(InputSpecError, match=r"quantized_params 5,000 is more than total_params 2,212"):
        Summary.from_dict(bad)
    with pytest.raises(InputSpecError, match=r"layers\[1\]\.quant_bytes is -1 \(int\), expected an int >= 0"):
        Summary.from_dict(dict(d, layers=[d["layers"][0], dict(d["layers"][1], quant_bytes=-1), *d["layers"][2:]]))


def test_ordinary_model_has_no_quantized_fields_in_json_or_csv() -> None:
    s = summary(mlp(), (64,), verbose=0)
    assert not s.quantized and s.quantized_params == 0
    d = s.to_dict()
    assert not any(k.startswith("quant") for k in d) and not any(k.startswith("quant") for k in d["layers"][0])
    assert "quant" not in s.render("csv").splitlines()[0]
    assert "Quantiz" not in str(s) and "Quantiz" not in s.render("tree")


# --- torchao tensor subclasses ---------------------------------------------------------------------

def test_torchao_int8_weight_only() -> None:
    tq = pytest.importorskip("torchao.quantization")
    m = mlp()
    tq.quantize_(m, tq.Int8WeightOnlyConfig())
    w = m[0].weight
    assert type(w).__name__ == "Int8Tensor" and w.shape == (32, 64)  # the logical shape
    assert w.numel() * w.element_size() == 8192  # the bug: the float32 wrapper's bytes, not what it stores
    s = summary(m, (64,), verbose=0, macs=True)
    assert s.total_params == FLOAT_PARAMS and s.quantized_params == WEIGHTS
    # qdata int8: 2,048 + 128 bytes; fp32 biases 144 bytes
    assert s.quantized_bytes == 2176 and s.param_bytes == 2176 + 144
    # state: a float32 scale and an int8 zero point per output row: (32 + 4) * (4 + 1) = 180
    assert s.quant_state_bytes == 180
    assert s.trainable_params == 36  # the float biases are still trainable; the Int8Tensor weights are not
    assert s.total_macs == 2176  # torchao's dispatch runs aten.mm: 64 * 32 + 32 * 4
    assert s.quant_dtypes == ("int8",)


def test_torchao_intx_int4_stored_one_per_byte() -> None:
    tq = pytest.importorskip("torchao.quantization")
    m = nn.Sequential(nn.Linear(64, 32))
    tq.quantize_(m, tq.IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=tq.PerGroup(32)))
    s = summary(m, (64,), verbose=0)
    assert s.total_params == 2080 and s.quantized_params == 2048
    # int4 values unpacked into int8: 2,048 bytes; groups of 32: 2 per row, a float32 scale and an
    # int8 zero point each: 32 * 2 * (4 + 1) = 320
    assert s.quantized_bytes == 2048 and s.quant_state_bytes == 320
    assert s.quant_dtypes == ("int4 in int8",)


def test_torchao_int4_tensor_needs_a_gpu_here() -> None:
    """``Int4WeightOnlyConfig`` (``Int4Tensor``, two values per byte) needs CUDA or the mslk
    package in torchao 0.18, so it does not run on this CPU machine; the packed 4-bit layout is
    tested through bitsandbytes' Params4bit and the GPTQ buffers below."""
    tq = pytest.importorskip("torchao.quantization")
    m = nn.Sequential(nn.Linear(64, 32)).to(torch.bfloat16)
    try:
        tq.quantize_(m, tq.Int4WeightOnlyConfig(group_size=32))
    except Exception:  # noqa: BLE001 - ImportError (mslk) or RuntimeError (no GPU)
        pytest.skip("torchao Int4WeightOnlyConfig does not run on this machine (needs CUDA or mslk)")
    s = summary(m, verbose=0)
    assert s.total_params == 2080 and s.quantized_bytes == 1024  # 2,048 / 2 bytes


# --- bitsandbytes ----------------------------------------------------------------------------------

def _bnb():
    bnb = pytest.importorskip("bitsandbytes")
    return bnb


def test_bitsandbytes_4bit_counts_logical_not_packed_elements() -> None:
    bnb = _bnb()
    torch.manual_seed(0)
    layer = bnb.nn.Linear4bit(64, 32, compute_dtype=torch.float32, quant_type="nf4", compress_statistics=False)
    layer = layer.to("cpu")  # quantizes: a uint8 Params4bit packing two values per byte
    w = layer.weight
    assert w.bnb_quantized and (w.dtype, tuple(w.shape)) == (torch.uint8, (1024, 1))
    assert tuple(w.quant_state.shape) == (32, 64)  # bitsandbytes' own record of the logical shape
    s = summary(nn.Sequential(layer), verbose=0)  # no forward: the state as quantization made it
    assert s.total_params == 2080 == sum(p.numel() for p in nn.Linear(64, 32).parameters())
    assert s.quantized_params == 2048
    assert s.quantized_bytes == 2048 // 2 == 1024  # two 4-bit values per byte
    assert s.param_bytes == 1024 + 32 * 4  # + the fp32 bias
    # absmax: one float32 per block of 64: 2,048 / 64 = 32 blocks * 4 = 128; the nf4 code book
    # 16 float32 = 64
    assert s.quant_state_bytes == 128 + 64
    assert s.quant_dtypes == ("nf4 packed",)


def test_bitsandbytes_4bit_nested_statistics_state() -> None:
    bnb = _bnb()
    layer = bnb.nn.Linear4bit(64, 32, compute_dtype=torch.float32, quant_type="fp4").to("cpu")  # compress_statistics
    s = summary(nn.Sequential(layer), verbose=0)
    # absmax quantized to uint8: 32; fp4 code 16 float32: 64; offset: a float32 scalar: 4;
    # state2: absmax of 32 / 256 -> 1 block, float32: 4; its dynamic code book 256 float32: 1,024
    assert s.quant_state_bytes == 32 + 64 + 4 + 4 + 1024 == 1128
    assert s.total_params == 2080 and s.quant_dtypes == ("fp4 packed",)


def test_bitsandbytes_forward_macs_and_8bit() -> None:
    bnb = _bnb()
    torch.manual_seed(0)
    m = nn.Sequential(bnb.nn.Linear4bit(64, 32, compute_dtype=torch.float32), nn.ReLU(),
                      bnb.nn.Linear8bitLt(32, 4, has_fp16_weights=False)).to("cpu")
    assert m[2].weight.dtype == torch.int8 and m[2].weight.SCB.shape == (4,)
    x = torch.randn(2, 64)
    reference = copy.deepcopy(m).eval()
    with torch.no_grad():
        reference(x)  # a real eval forward: bitsandbytes repacks its 4-bit weight for the CPU on the first one
    s = summary(m, (64,), verbose=0, macs=True)
    assert s.total_params == FLOAT_PARAMS and s.quantized_params == WEIGHTS
    # the 4-bit weight 2,048 / 2 = 1,024 bytes; the int8 weight 128 bytes; fp32 biases 144
    assert s.quantized_bytes == 1024 + 128 and s.param_bytes == 1024 + 128 + 144
    rows = {r.name: r for r in s.leaf_layers}
    assert (rows["2"].quant_bytes, rows["2"].quant_state_bytes) == (128, 4 * 4)  # SCB: a float32 per row
    # bitsandbytes::gemv_4bit 64 * 32 and int8_scaled_mm 32 * 4: counted, not a silent 0
    assert s.total_macs == 2176 and s.unknown_ops == ()
    with torch.no_grad():  # as after any real forward, nothing else
        m.train(reference.training)
        assert torch.equal(m(x), reference(x))


# --- GPTQ / AWQ layouts (hand-built: auto-gptq and autoawq are not installed) --------------------

class GPTQLinear(nn.Module):
    """auto-gptq's QuantLinear buffers: qweight [in*bits/32, out], qzeros [groups, out*bits/32],
    scales [groups, out] float16, g_idx [in], bias [out] float16 (a buffer, as auto-gptq keeps it)."""

    def __init__(self, i: int, o: int, bits: int = 4, group: int = 32, bits_attr: bool = False) -> None:
        super().__init__()
        self.register_buffer("qweight", torch.zeros(i * bits // 32, o, dtype=torch.int32))
        self.register_buffer("qzeros", torch.zeros(i // group, o * bits // 32, dtype=torch.int32))
        self.register_buffer("scales", torch.ones(i // group, o, dtype=torch.float16))
        self.register_buffer("g_idx", torch.arange(i, dtype=torch.int32) // group)
        self.register_buffer("bias", torch.zeros(o, dtype=torch.float16))
        if bits_attr:
            self.bits = bits
        self.out = o

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(*x.shape[:-1], self.out)


class AWQLinear(nn.Module):
    """autoawq's WQLinear_GEMM buffers: qweight [in, out*bits/32], qzeros, scales [groups, out]."""

    def __init__(self, i: int, o: int, group: int = 32) -> None:
        super().__init__()
        self.register_buffer("qweight", torch.zeros(i, o * 4 // 32, dtype=torch.int32))
        self.register_buffer("qzeros", torch.zeros(i // group, o * 4 // 32, dtype=torch.int32))
        self.register_buffer("scales", torch.ones(i // group, o, dtype=torch.float16))
        self.w_bit = 4
        self.out = o

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(*x.shape[:-1], self.out)


def test_gptq_buffers_count_logical_params_and_state_apart() -> None:
    m = nn.Sequential(GPTQLinear(64, 32), nn.Linear(32, 4))
    before = snapshot(m)
    s = summary(m, (64,), verbose=0)
    assert_unchanged(before, m)
    # qweight [8, 32] int32: 256 words * 8 values = 2,048 = 64 * 32; + 32 bias = 2,080; + 132 float
    assert s.total_params == 2080 + 132 and s.quantized_params == 2048
    # qweight 256 * 4 = 1,024 bytes; float16 bias 64; fp32 Linear 132 * 4 = 528
    assert s.quantized_bytes == 1024 and s.param_bytes == 1024 + 64 + 528
    # qzeros [2, 4] int32 32 + scales [2, 32] float16 128 + g_idx [64] int32 256 = 416
    assert s.quant_state_bytes == 32 + 128 + 256 == 416
    assert s.buffer_count == 0 and s.buffer_bytes == 0  # not counted twice as buffers
    assert s.quant_dtypes == ("int4 packed",) and s.trainable_params == 132



def test_packed_layer_whose_kernel_no_dispatcher_sees_has_unknown_macs() -> None:
    """GPTQ/AWQ CUDA kernels are called outside torch's dispatcher: a quantized layer whose
    forward ran no counted operator reads as MACs unknown, not 0 (this one returns zeros)."""
    s = summary(nn.Sequential(GPTQLinear(64, 32), nn.Linear(32, 4)), (64,), verbose=0, macs=True)
    assert s.unknown_ops == ("GPTQLinear (quantized layer: no counted operator seen)",)
    assert s.total_macs == 32 * 4  # the float Linear alone: a lower bound
    assert s.leaf_layers[0].unknown_ops == s.unknown_ops


def test_folded_quantized_blocks() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q = GPTQLinear(64, 64)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.q(x)

    s = summary(nn.Sequential(*[Block() for _ in range(4)]), (64,), verbose=0)
    line = s.render("tree", depth=1, columns=["params", "quantized"]).splitlines()[3]
    # per block: 64 * 64 + 64 = 4,160; qweight [8, 64] int32 = 2,048 B; state: qzeros [2, 8] int32 64
    # + scales [2, 64] float16 256 + g_idx [64] int32 256 = 576 B
    assert line.split() == ["0–3", "(Block)", "×", "4", "4", "×", "4,160", "=", "16,640", "4", "×", "(int4", "packed:",
                            "2,048", "B", "+", "576", "B", "state)"]


@pytest.mark.parametrize("bits", [2, 3, 4, 8], ids=lambda b: f"{b}bit")
def test_gptq_bits_inferred_from_shapes_or_read_from_the_module(bits: int) -> None:
    for attr in (False, True):
        s = summary(nn.Sequential(GPTQLinear(64, 32, bits, bits_attr=attr)), verbose=0)
        assert s.total_params == 64 * 32 + 32  # whatever the bits: 64 * 32 * bits / 32 words * 32 / bits
        assert s.quantized_bytes == 64 * 32 * bits // 8  # bits / 8 bytes per value


def test_awq_layout_packs_the_output_axis() -> None:
    s = summary(nn.Sequential(AWQLinear(64, 32)), (64,), verbose=0)
    # qweight [64, 4] int32: 256 words * 8 = 2,048 = 64 * 32
    assert s.total_params == 2048 and s.quantized_bytes == 1024
    assert s.quant_state_bytes == 2 * 4 * 4 + 2 * 32 * 2  # qzeros [2, 4] int32 + scales [2, 32] float16


def test_packed_layout_arithmetic() -> None:
    assert infer_bits((8, 4), (8, 32)) == 4  # 32 * 4 / 32
    assert infer_bits((8, 5), (8, 32)) is None  # 5 bits: not a GPTQ width
    assert packed_layout((128, 32), "int32", (8, 4), (8, 32)).logical == 1024 * 32  # 4,096 words * 8
    assert packed_layout((128, 32), "int32", None, (8, 32)) is None  # no qzeros, no bits: unknown
    assert packed_layout((128, 32), "int32", None, (8, 32), bits=4).bits_from == "config"
    assert packed_layout((128, 32), "float16", (8, 4), (8, 32)) is None  # not int32 words
    assert config_bits({"quantization_config": {"bits": 8}}) == 8


# --- unknown quantized layouts ---------------------------------------------------------------------

class MysteryQuantLinear(nn.Module):
    """A quantized layer netsummary does not know: int8 packed weight and a float scale."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("packed_weight", torch.zeros(16, 8, dtype=torch.uint8))
        self.register_buffer("weight_scale", torch.ones(16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., :16]


def test_unknown_layout_stored_bytes_exact_logical_count_unknown() -> None:
    m = nn.Sequential(nn.Linear(64, 32), MysteryQuantLinear())
    s = summary(m, (64,), verbose=0)
    assert s.quant_unknown == ("1 (MysteryQuantLinear)",)
    assert s.total_params == 2080  # only what is known; its elements are in no count
    # its tensors at their stored size: 16 * 8 uint8 = 128 + 16 float32 = 64 -> 192; Linear 2,080 * 4
    assert s.param_bytes == 2080 * 4 + 192 and s.buffer_bytes == 0
    row = s.leaf_layers[1]
    assert (row.params, row.quant_unknown, row.quant_bytes) == (0, 1, 192)
    text = str(s)
    assert "MysteryQuantLinear-2                   [-1, 16]         unknown" in text
    assert "Params unknown (1 quantized layer of unknown layout): 1 (MysteryQuantLinear)" in text
    tree = s.render("tree", columns=["params"])
    assert tree.splitlines()[2].split() == ["(root)", "(Sequential)", "2,080", "+", "unknown"]
    assert Summary.from_json(s.to_json()) == s


class Int8ParamLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(8, 8, dtype=torch.int8), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_integer_parameter_of_an_unknown_layer_is_not_counted_as_params() -> None:
    s = summary(nn.Sequential(Int8ParamLayer()), verbose=0)
    assert s.total_params == 0 and s.param_bytes == 64 and s.quant_unknown == ("0 (Int8ParamLayer)",)


# --- checkpoints: netsummary inspect ---------------------------------------------------------------

def gptq_state_dict(bits: int = 4) -> dict[str, torch.Tensor]:
    sd = {}
    for i, (n_in, n_out) in enumerate([(64, 32), (32, 64)]):
        p = f"model.layers.{i}.proj."
        sd[p + "qweight"] = torch.zeros(n_in * bits // 32, n_out, dtype=torch.int32)
        sd[p + "qzeros"] = torch.zeros(n_in // 32, n_out * bits // 32, dtype=torch.int32)
        sd[p + "scales"] = torch.zeros(n_in // 32, n_out, dtype=torch.float16)
        sd[p + "g_idx"] = torch.zeros(n_in, dtype=torch.int32)
        sd[p + "bias"] = torch.zeros(n_out, dtype=torch.float16)
    sd["model.norm.weight"] = torch.ones(64, dtype=torch.float16)
    return sd


def test_inspect_gptq_checkpoint_logical_params(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(gptq_state_dict(), path)
    c = inspect_checkpoint(path)
    # 64 * 32 + 32 + 32 * 64 + 64 + 64 = 4,256 (the int32 words would give 256 + 256 + ... )
    assert c.total_params == 4256 and c.quantized_params == 4096
    # state: g_idx 64 * 4 + 32 * 4, qzeros 2 * 4 * 4 + 1 * 8 * 4, scales (2 * 32 + 1 * 64) * 2 = 704
    assert c.quant_state_bytes == 384 + 64 + 256 == 704
    assert c.param_bytes == c.total_bytes - 704 == 2 * 1024 + (32 + 64 + 64) * 2
    assert c.packed.bits_from == "qzeros/scales shapes" and c.packed.layouts == {"GPTQ": 2}
    rows = {r.name: r.params for r in c.tree(2)}
    assert rows == {"model": 4256, "model.layers": 4192, "model.norm": 64}
    text = c.render()
    assert "qweight (packed)" in text and "scales (quantization state)" in text
    assert "Quantized: 2 GPTQ packed layers of 4 bits; bits from qzeros/scales shapes" in text
    assert "(8 per int32 word), 4,096 in all" in text


def test_inspect_reads_bits_from_quantize_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sd = gptq_state_dict(8)
    for k in [k for k in sd if k.endswith("qzeros")]:  # without qzeros the shapes cannot tell the bits
        del sd[k]
    torch.save(sd, tmp_path / "model.pt")
    c = inspect_checkpoint(tmp_path / "model.pt")
    assert c.packed.unknown == ("model.layers.0.proj", "model.layers.1.proj")
    assert c.total_params == 32 + 64 + 64  # only the float tensors: the packed ones are not guessed
    assert "Logical params unknown for 2 packed layers" in c.render()
    (tmp_path / "quantize_config.json").write_text(json.dumps({"bits": 8, "group_size": 32}))
    c = inspect_checkpoint(tmp_path / "model.pt")
    assert c.total_params == 4256 and c.packed.bits_from == "quantize_config.json" and c.packed.bits == (8,)
    assert main(["inspect", str(tmp_path / "model.pt"), "--max-params", "4256", "-q"]) == 0
    assert "total params 4,256 <= budget 4,256" in capsys.readouterr().out


# --- the plain user pays nothing -----------------------------------------------------------------

def test_summary_does_not_import_optional_quantization_libraries() -> None:
    code = ("import sys, torch; from netsummary import summary; "
            "summary(torch.nn.Linear(4, 2), (4,), verbose=0, macs=True); "
            "print(sorted(m for m in ('torchao', 'bitsandbytes', 'auto_gptq', 'awq') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
