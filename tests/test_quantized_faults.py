"""Regression tests for faults a fresh-user review found in the quantized-weights support.

Each test reproduces the review's case and asserts exact values (hand arithmetic in comments) or
compares with an independent source (the model's own forward / state_dict before the summary).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from netsummary import summary
from netsummary._analysis.flops import _freeze, _Unkeyable
from netsummary._commandline.cli import main
from netsummary._errors import ForwardError
from netsummary._tracing.standins import meta_stand_in, overrides_to

from conftest import assert_unchanged, snapshot

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def _bnb():
    return pytest.importorskip("bitsandbytes")


def _quant_state_view(qs) -> dict:
    """Every attribute of a QuantState (and its nested state2), tensors as (type, dtype, shape, values)."""
    out = {}
    for k, v in vars(qs).items():
        if isinstance(v, torch.Tensor):
            out[k] = (type(v).__name__, v.dtype, tuple(v.shape), v.detach().clone())
        elif type(v).__name__ == "QuantState":
            out[k] = _quant_state_view(v)
        else:
            out[k] = v
    return out


def _assert_same_view(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], tuple) and len(a[k]) == 4 and isinstance(a[k][3], torch.Tensor):
            assert a[k][:3] == b[k][:3], k
            assert torch.equal(a[k][3], b[k][3]), k
        elif isinstance(a[k], dict):
            _assert_same_view(a[k], b[k])
        else:
            assert a[k] == b[k], k


def _state_dict(m: nn.Module) -> dict:
    return {k: (v.dtype, tuple(v.shape), v.detach().clone()) for k, v in m.state_dict().items()}


def _assert_same_state_dict(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k][:2] == b[k][:2], k
        assert torch.equal(a[k][2], b[k][2]), k


# --- 1. a meta summary never moves a tensor subclass through its own .to() -------------------------

def test_meta_summary_of_bnb_4bit_fails_clearly_and_leaves_the_quant_state_alone() -> None:
    bnb = _bnb()
    torch.manual_seed(0)
    m = nn.Sequential(bnb.nn.Linear4bit(64, 128, compute_dtype=torch.float32)).to("cpu")
    x = torch.randn(2, 64)
    m.train()
    y = m(x)
    qs = m[0].weight.quant_state
    view, sd, data = _quant_state_view(qs), _state_dict(m), m[0].weight.detach().clone()
    with pytest.raises(ForwardError) as info:
        summary(m, (64,), device="meta", verbose=0)
    assert 'hint: bitsandbytes layers need real tensors' in str(info.value)
    assert 'summarize on device="cpu"' in str(info.value)
    # the bug: Params4bit.to("meta") moved the shared QuantState, absmax became a FakeTensor
    assert m[0].weight.quant_state is qs and type(qs.absmax) is torch.Tensor and qs.absmax.device.type == "cpu"
    _assert_same_view(view, _quant_state_view(qs))
    assert torch.equal(m[0].weight.detach(), data) and m[0].weight.dtype == torch.uint8
    _assert_same_state_dict(sd, _state_dict(m))
    assert torch.equal(m(x), y)  # still runs, and computes the same


class OwnTo(nn.Parameter):
    """A Parameter subclass whose .to() must never be called by netsummary (it records calls)."""

    calls = 0

    def to(self, *args, **kwargs):  # type: ignore[override]
        OwnTo.calls += 1
        raise AssertionError("netsummary called the subclass's own .to()")


def test_meta_stand_in_of_a_parameter_subclass_with_its_own_to_is_built_from_metadata() -> None:
    lin = nn.Linear(8, 4)
    lin.weight = OwnTo(lin.weight.detach().clone())
    before = snapshot(lin)
    s = summary(nn.Sequential(lin), (8,), device="meta", verbose=0)
    assert OwnTo.calls == 0
    assert s.total_params == 8 * 4 + 4 == 36 and s.layers[0].output_shapes == (2, 4)
    assert_unchanged(before, lin)
    assert overrides_to(lin.weight) and not overrides_to(nn.Parameter(torch.zeros(1)))
    st = meta_stand_in(torch.zeros(3, 5).t())
    assert (st.device.type, tuple(st.shape), st.stride(), st.dtype) == ("meta", (5, 3), (1, 5), torch.float32)


# --- 2. the MAC memo keys only on safely hashable arguments ----------------------------------------

class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l = nn.Linear(16, 16)
        self.o = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.o(self.l(self.l(x)))


def build_twice() -> nn.Module:
    """quantize_dynamic(Twice()): its layer 'l' runs twice on the same packed params."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(Twice(), {nn.Linear})


def test_dynamic_layer_called_twice_counts_macs() -> None:
    s = summary(build_twice(), (16,), verbose=0, macs=True)
    assert s.total_params == 16 * 16 + 16 + 16 * 2 + 2 == 306
    # per sample: l twice 16*16 = 256 each, o 16*2 = 32: 256 + 256 + 32 = 544
    assert s.total_macs == 544 and s.unknown_ops == ()


class RaisingEq:
    def __eq__(self, other):  # like torch.ao's LinearPackedParamsBase script object
        raise NotImplementedError("'__eq__' is not implemented")

    def __hash__(self):
        raise RuntimeError("no hash either")


def test_memo_key_refuses_objects_it_cannot_key_safely() -> None:
    # shapes, ints, floats, strings, None, dtypes key; each plain value with its type (1 vs True vs 1.0)
    assert _freeze((torch.zeros(2, 3), 1, None, "mean")) == (("t", (2, 3)), (int, 1), None, (str, "mean"))
    assert _freeze(1) != _freeze(True) != _freeze(1.0)
    assert _freeze([torch.float16, 2.5]) == ((torch.dtype, torch.float16), (float, 2.5))
    with pytest.raises(_Unkeyable):
        _freeze((torch.zeros(1), RaisingEq()))
    with pytest.raises(_Unkeyable):
        _freeze(object())


def test_cli_json_and_max_macs_on_a_dynamic_layer_called_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = f"{Path(__file__).resolve()}:build_twice"
    out_file = tmp_path / "s.json"
    assert main([target, "--input-size", "16", "--format", "json", "--output", str(out_file), "-q"]) == 0
    data = json.loads(out_file.read_text())
    assert data["total_params"] == 306 and data["total_macs"] == 544
    assert main([target, "--input-size", "16", "--max-macs", "544", "-q"]) == 0  # 544 <= 544
    assert main([target, "--input-size", "16", "--max-macs", "543", "-q"]) == 1  # over by one
    capsys.readouterr()


# --- 3. a CPU eval forward of bitsandbytes layers is undone --------------------------------------

def test_eval_summary_of_bnb_4bit_leaves_weight_and_quant_state_as_they_were() -> None:
    bnb = _bnb()
    torch.manual_seed(0)
    m = nn.Sequential(bnb.nn.Linear4bit(64, 128, compute_dtype=torch.float32)).to("cpu")
    x = torch.randn(2, 64)
    m.train()
    y = m(x)
    w = m[0].weight
    qs = w.quant_state
    view, sd = _quant_state_view(qs), _state_dict(m)
    attrs = {k: m[0].__dict__.get(k) for k in ("compute_dtype", "compute_type_is_set")}
    assert (tuple(w.shape), qs.absmax.dtype, qs.nested) == ((64 * 128 // 2, 1), torch.uint8, True)  # 4,096 bytes
    s = summary(m, (64,), verbose=0)  # eval mode, no grad: bitsandbytes repacks for its CPU kernel
    assert s.total_params == 64 * 128 + 128 == 8320 and s.quantized_params == 8192
    # the bug: weight.data (4096, 1) -> (128, 32), absmax uint8 -> bfloat16, state2 deleted
    assert m[0].weight is w and tuple(w.shape) == (4096, 1) and w.dtype == torch.uint8
    assert w.quant_state is qs and not hasattr(qs, "packing_format_for_cpu") and qs.state2 is not None
    _assert_same_view(view, _quant_state_view(qs))
    assert {k: m[0].__dict__.get(k) for k in attrs} == attrs
    _assert_same_state_dict(sd, _state_dict(m))
    m.train()
    assert torch.equal(m(x), y)  # bit-identical: before the fix max abs diff 0.00706


def test_summary_of_bnb_8bit_puts_cb_and_scb_back_on_the_weight() -> None:
    bnb = _bnb()
    torch.manual_seed(0)
    m = nn.Sequential(bnb.nn.Linear8bitLt(32, 4, has_fp16_weights=False)).to("cpu")
    w = m[0].weight
    cb, scb = w.CB, w.SCB
    assert cb is not None and scb.shape == (4,)
    sd = _state_dict(m)
    summary(m, (32,), verbose=0)  # the first forward moves CB / SCB into the layer's MatmulLtState
    assert m[0].weight.CB is cb and m[0].weight.SCB is scb and m[0].state.CB is None
    _assert_same_state_dict(sd, _state_dict(m))


# --- 6. failures of quantized layers come with netsummary's hint ------------------------------------

def test_dynamic_model_on_meta_hint_names_the_fix_not_torch_internals() -> None:
    with pytest.raises(ForwardError) as info:
        summary(build_twice(), (16,), device="meta", verbose=0)
    text = str(info.value)
    assert "caffe2" not in text and "split_dispatcher" not in text
    assert ('hint: torch.ao quantized kernels have no meta implementation '
            "('l' is a torch.ao.nn.quantized.dynamic.modules.linear.Linear); summarize on device=\"cpu\"") in text


def test_unquantized_bnb_4bit_layer_hint_says_move_it_to_a_device() -> None:
    bnb = _bnb()
    m = nn.Sequential(bnb.nn.Linear4bit(64, 128))  # never moved to a device: not quantized
    before = snapshot(m)
    with pytest.raises(ForwardError) as info:
        summary(m, (64,), verbose=0)
    text = str(info.value)
    assert "AssertionError: (no message)" in text
    assert ("hint: bitsandbytes layer '0' (Linear4bit) is not quantized yet: bitsandbytes quantizes a 4-bit "
            'weight when the layer is moved to a device; call model.to("cpu") (or .cuda()) before summary()') in text
    assert_unchanged(before, m)


# --- 4. an unknown layout claims only its own tensors; its rows and totals say unknown ---------------

class MaskedLinear(nn.Module):
    """A Linear beside a uint8 ``mask_weight`` (an unknown layout by its name and dtype) and an
    ordinary int8 ``idx`` buffer that is no part of it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.register_buffer("mask_weight", torch.zeros(6, dtype=torch.uint8))
        self.register_buffer("idx", torch.zeros(3, dtype=torch.int8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


def test_unknown_layout_leaves_ordinary_integer_buffers_buffers() -> None:
    s = summary(MaskedLinear(), (4,), verbose=0)
    assert s.total_params == 4 * 4 + 4 == 20 and s.quant_unknown == ("(root) (MaskedLinear)",)
    # Linear 20 float32 = 80 B + mask_weight 6 uint8 = 6 B; before the fix idx was taken too (89 B)
    assert s.param_bytes == 80 + 6 == 86
    assert (s.buffer_count, s.buffer_bytes) == (3, 3)  # idx: 3 int8 elements, 1 byte each
    text = str(s)
    assert "MaskedLinear-1                    [-1, 4]         unknown\n" in text  # its own row, not 0
    assert "Quantized params: unknown layout\n" in text  # not "0 of 20 (0.00%)"
    tree = s.render("tree", columns=["params"]).splitlines()
    assert tree[2].split() == ["(root)", "(MaskedLinear)", "20", "+", "unknown"]
    assert tree[3].split() == ["(root)", "(MaskedLinear,", "own", "params)", "unknown"]


class IntWeightWithBias(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(4, 4, dtype=torch.int8), requires_grad=False)
        self.weight_scale = nn.Parameter(torch.ones(4), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias


def test_unknown_layout_claims_its_weight_and_scale_not_the_float_bias() -> None:
    s = summary(nn.Sequential(IntWeightWithBias()), (4,), verbose=0)
    # weight 16 int8 = 16 B and weight_scale 4 float32 = 16 B are the layout; bias 4 float32 params
    assert s.total_params == 4 and s.param_bytes == 16 + 16 + 16 == 48
    assert "IntWeightWithBias-1                    [-1, 4]     4 + unknown\n" in str(s)


# --- 5. config bits are checked against the shapes ---------------------------------------------------

def _gptq_layer(bits: int, n_in: int = 64, n_out: int = 128, group: int = 32, qzeros: bool = True) -> dict:
    p = "model.proj."
    sd = {p + "qweight": torch.zeros(n_in * bits // 32, n_out, dtype=torch.int32),
          p + "scales": torch.zeros(n_in // group, n_out, dtype=torch.float16),
          p + "g_idx": torch.zeros(n_in, dtype=torch.int32)}
    if qzeros:
        sd[p + "qzeros"] = torch.zeros(n_in // group, n_out * bits // 32, dtype=torch.int32)
    return sd


@pytest.mark.parametrize("qzeros", [True, False])
def test_inspect_config_bits_contradicted_by_the_shapes_counts_at_the_shapes_bits(tmp_path: Path, qzeros: bool) -> None:
    from netsummary._checkpoints.inspect import inspect_checkpoint

    torch.save(_gptq_layer(8, qzeros=qzeros), tmp_path / "model.pt")  # an 8-bit export
    (tmp_path / "quantize_config.json").write_text(json.dumps({"bits": 4, "group_size": 32}))
    c = inspect_checkpoint(tmp_path / "model.pt")
    # qweight [64 * 8 / 32 = 16, 128] = 2,048 words; at 8 bits 4 per word: 8,192 = 64 * 128
    # (g_idx 64 inputs x scales 128 outputs); the config's 4 bits would say 2,048 * 8 = 16,384
    assert c.quantized_params == c.total_params == 8192 and c.packed.bits == (8,)
    assert c.packed.bits_from == "quantize_config.json, overridden by the shapes where they disagree"
    # shapes: qzeros [2, 32] / scales [2, 128]: 32 * 32 / 128 = 8; or 2,048 * 32 / (64 * 128) = 8
    assert c.packed.conflicts == ("model.proj: quantize_config.json says 4 bits, the shapes say 8",)
    assert ("Note: bits contradict the shapes for model.proj: quantize_config.json says 4 bits, the shapes say 8: "
            "counted at the shapes' bits") in c.render()


def test_inspect_config_bits_agreeing_with_the_shapes_has_no_note(tmp_path: Path) -> None:
    from netsummary._checkpoints.inspect import inspect_checkpoint

    torch.save(_gptq_layer(4), tmp_path / "model.pt")
    (tmp_path / "quantize_config.json").write_text(json.dumps({"bits": 4}))
    c = inspect_checkpoint(tmp_path / "model.pt")
    assert c.total_params == 64 * 128 == 8192 and c.packed.conflicts == () and "Note: bits" not in c.render()


def test_inference_estimate_of_bnb_4bit_leaves_the_quant_state_alone() -> None:
    bnb = _bnb()
    torch.manual_seed(0)
    m = nn.Sequential(bnb.nn.Linear4bit(64, 128, compute_dtype=torch.float32)).to("cpu")
    x = torch.randn(2, 64)
    m.train()
    y = m(x)
    qs = m[0].weight.quant_state
    view, sd = _quant_state_view(qs), _state_dict(m)
    s = summary(m, (64,), estimate="inference", verbose=0)  # the memory step runs its own forward on stand-ins
    assert s.memory is not None and s.total_params == 8320
    assert m[0].weight.quant_state is qs
    _assert_same_view(view, _quant_state_view(qs))
    _assert_same_state_dict(sd, _state_dict(m))
    m.train()
    assert torch.equal(m(x), y)
