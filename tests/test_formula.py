"""Tests of netsummary._analysis.formula: hand-derived parameter formulas and the zoo-wide invariant."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm
from torch.overrides import TorchFunctionMode

from netsummary._analysis.formula import Formula, param_formula


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def evaluate(text: str) -> int:
    """Evaluate a known-layer formula text (× is multiplication, / divides exactly)."""
    result = eval(text.replace("×", "*"), {"__builtins__": {}})  # our own arithmetic only
    assert result == int(result)
    return int(result)


# (module, expected text, expected value), the arithmetic of each value in its comment.
KNOWN = [
    # 128 * (3*4*4) + 128 = 6,272
    (nn.Conv2d(3, 128, 4, 2, 1), "128 × (3 × 4 × 4) + 128", 6_272),
    # 64 * (32/4 * 3*3) + 64 = 64*72 + 64 = 4,672 (dilation does not change the weight)
    (nn.Conv2d(32, 64, 3, groups=4, dilation=2), "64 × (32/4 × 3 × 3) + 64", 4_672),
    # depthwise: 32 * (32/32 * 3*3) = 288, no bias
    (nn.Conv2d(32, 32, 3, groups=32, bias=False), "32 × (32/32 × 3 × 3)", 288),
    # 16 * (8 * 5) + 16 = 656
    (nn.Conv1d(8, 16, 5), "16 × (8 × 5) + 16", 656),
    # 4 * (2 * 3*3*3) + 4 = 220
    (nn.Conv3d(2, 4, 3), "4 × (2 × 3 × 3 × 3) + 4", 220),
    # transposed, weight (in, out/groups, k, k): 32 * (64/4 * 3*3) + 64 = 4,608 + 64 = 4,672
    (nn.ConvTranspose2d(32, 64, 3, groups=4), "32 × (64/4 × 3 × 3) + 64", 4_672),
    # 6 * (3 * 4) + 3 = 75
    (nn.ConvTranspose1d(6, 3, 4), "6 × (3 × 4) + 3", 75),
    # 16,384 * 1 + 1 = 16,385
    (nn.Linear(16384, 1), "16384 × 1 + 1", 16_385),
    # 10 * 5 = 50
    (nn.Linear(10, 5, bias=False), "10 × 5", 50),
    # weight (out, in1, in2): 5 * 3 * 4 + 5 = 65
    (nn.Bilinear(3, 4, 5), "5 × 3 × 4 + 5", 65),
    # 256 * 2 = 512 (running stats are buffers)
    (nn.BatchNorm2d(256), "256 × 2", 512),
    (nn.BatchNorm1d(10, affine=False), "0", 0),
    # 7 * 2 = 14
    (nn.BatchNorm3d(7), "7 × 2", 14),
    # (10*10) * 2 = 200
    (nn.LayerNorm((10, 10)), "(10 × 10) × 2", 200),
    # weight only: 768
    (nn.LayerNorm(768, bias=False), "768", 768),
    (nn.LayerNorm(768, elementwise_affine=False), "0", 0),
    # 32 * 2 = 64
    (nn.GroupNorm(4, 32), "32 × 2", 64),
    (nn.GroupNorm(4, 32, affine=False), "0", 0),
    # InstanceNorm is not affine by default; 8 * 2 = 16 when it is
    (nn.InstanceNorm2d(8), "0", 0),
    (nn.InstanceNorm2d(8, affine=True), "8 × 2", 16),
    # 100 * 8 = 800
    (nn.Embedding(100, 8), "100 × 8", 800),
    (nn.EmbeddingBag(100, 8, mode="sum"), "100 × 8", 800),
    # per direction per layer: 4*20*(in + 5) + 2*4*20 + 5*20; layer 0 in=10, layer 1 in=2*5
    # = 2*(1,200 + 160 + 100) + 2*(1,200 + 160 + 100) = 5,840
    (
        nn.LSTM(10, 20, num_layers=2, bidirectional=True, proj_size=5),
        "2 × (4 × 20 × (10 + 5) + 2 × 4 × 20 + 5 × 20)"
        " + 2 × (4 × 20 × (2 × 5 + 5) + 2 × 4 × 20 + 5 × 20)",
        5_840,
    ),
    # 4*20*(10+20) + 2*4*20 + 2*(4*20*(20+20) + 2*4*20) = 2,560 + 2*3,360 = 9,280
    (
        nn.LSTM(10, 20, num_layers=3),
        "4 × 20 × (10 + 20) + 2 × 4 × 20 + 2 × (4 × 20 × (20 + 20) + 2 × 4 × 20)",
        9_280,
    ),
    # 3*20*(10+20) + 2*3*20 = 1,800 + 120 = 1,920
    (nn.GRU(10, 20), "3 × 20 × (10 + 20) + 2 × 3 × 20", 1_920),
    # 2*(3*16*(8+16)) + 2*(3*16*(2*16+16)) = 2*1,152 + 2*2,304 = 6,912
    (
        nn.GRU(8, 16, num_layers=2, bias=False, bidirectional=True),
        "2 × (3 × 16 × (8 + 16)) + 2 × (3 × 16 × (2 × 16 + 16))",
        6_912,
    ),
    # 20*(10+20) = 600
    (nn.RNN(10, 20, bias=False), "20 × (10 + 20)", 600),
    # 20*(10+20) + 2*20 = 640
    (nn.RNN(10, 20, nonlinearity="relu"), "20 × (10 + 20) + 2 × 20", 640),
    # packed in_proj 3*16*16 + in_proj_bias 3*16 + out_proj 16*16 + 16 = 768 + 48 + 256 + 16 = 1,088
    (nn.MultiheadAttention(16, 4), "3 × 16 × 16 + 3 × 16 + 16 × 16 + 16", 1_088),
    # separate q/k/v: 16*(16+8+12) + 3*16 + bias_k/v 2*16 + 16*16 + 16 = 576 + 48 + 32 + 272 = 928
    (
        nn.MultiheadAttention(16, 4, kdim=8, vdim=12, add_bias_kv=True),
        "16 × (16 + 8 + 12) + 3 × 16 + 2 × 16 + 16 × 16 + 16",
        928,
    ),
    # 3*16*16 + 16*16 = 1,024
    (nn.MultiheadAttention(16, 4, bias=False), "3 × 16 × 16 + 16 × 16", 1_024),
    (nn.PReLU(), "1", 1),
    (nn.PReLU(64), "64", 64),
    (nn.ReLU(), "0", 0),
    (nn.MaxPool2d(2), "0", 0),
    (nn.Sequential(), "0", 0),
]
if hasattr(nn, "RMSNorm"):
    KNOWN.append((nn.RMSNorm(8), "8", 8))


@pytest.mark.parametrize(
    ("module", "text", "value"),
    KNOWN,
    ids=[f"{i}-{type(m).__name__}" for i, (m, _, _) in enumerate(KNOWN)],
)
def test_known_layers(module: nn.Module, text: str, value: int) -> None:
    f = param_formula(module)
    assert f == Formula(text, value)
    assert f.value == n_params(module)
    assert evaluate(f.text) == f.value


def test_known_layers_on_meta_device() -> None:
    with torch.device("meta"):
        conv = nn.Conv2d(3, 128, 4, 2, 1)
    assert param_formula(conv) == Formula("128 × (3 × 4 × 4) + 128", 6_272)


def test_formula_is_frozen_with_slots() -> None:
    f = param_formula(nn.Linear(2, 3))
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.value = 0  # type: ignore[misc]
    assert not hasattr(f, "__dict__")


def test_custom_module_with_odd_names_and_root_parameter() -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(1.0))  # root-level, 0-d
            self.W_q = nn.Parameter(torch.zeros(4, 3))
            self._hidden_bias = nn.Parameter(torch.zeros(3))
            self.blocks = nn.ModuleDict({"0": nn.Linear(3, 2), "e_x": nn.ReLU()})

    m = Odd()
    # 1 + 4*3 + 3 + (3*2 + 2) = 24
    f = param_formula(m)
    assert f.text == (
        "scale[] + W_q[4, 3] + _hidden_bias[3] + blocks.0.weight[2, 3] + blocks.0.bias[2]"
    )
    assert f.value == 24 == n_params(m)


def test_container_uses_qualified_names() -> None:
    m = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    # 2*3 + 3 + 3*1 + 1 = 13
    expected = Formula("0.weight[3, 2] + 0.bias[3] + 2.weight[1, 3] + 2.bias[1]", 13)
    assert param_formula(m) == expected


def test_tied_weights_are_counted_once() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 10)
            self.head.weight = self.emb.weight

    m = Tied()
    # 10*4 (shared) + 10 = 50
    assert param_formula(m) == Formula("emb.weight[10, 4] + head.bias[10]", 50)
    assert n_params(m) == 50
    # the Linear alone still owns its whole (shared) weight: 4*10 + 10 = 50
    assert param_formula(m.head) == Formula("4 × 10 + 10", 50)


def test_weight_norm_parametrization_is_generic() -> None:
    conv = weight_norm(nn.Conv2d(3, 64, 7))
    # bias 64 + g 64*1*1*1 + v 64*3*7*7 = 64 + 64 + 9,408 = 9,536
    f = param_formula(conv)
    assert f.text == (
        "bias[64] + parametrizations.weight.original0[64, 1, 1, 1]"
        " + parametrizations.weight.original1[64, 3, 7, 7]"
    )
    assert f.value == 9_536 == n_params(conv)


def test_modified_known_layer_falls_back() -> None:
    conv = nn.Conv2d(3, 4, 3)
    conv.weight = nn.Parameter(torch.zeros(5))
    # 5 + 4 = 9, not 4*(3*3*3) + 4
    assert param_formula(conv) == Formula("weight[5] + bias[4]", 9)

    class ScaledLinear(nn.Linear):
        def __init__(self) -> None:
            super().__init__(3, 2)
            self.gain = nn.Parameter(torch.ones(2))

    m = ScaledLinear()
    # 2*3 + 2 + 2 = 10
    assert param_formula(m) == Formula("weight[2, 3] + bias[2] + gain[2]", 10)


def test_subclass_of_known_layer_keeps_formula() -> None:
    class MyConv(nn.Conv2d):
        pass

    # 8 * (4 * 1*1) + 8 = 40
    assert param_formula(MyConv(4, 8, 1)) == Formula("8 × (4 × 1 × 1) + 8", 40)


def test_removed_bias_is_reflected() -> None:
    bn = nn.BatchNorm2d(8)
    bn.register_parameter("bias", None)
    # weight only: 8
    assert param_formula(bn) == Formula("8", 8)


def test_lazy_modules() -> None:
    lazy = nn.LazyLinear(4)
    assert param_formula(lazy) == Formula("uninitialized", 0)
    assert param_formula(nn.Sequential(lazy)) == Formula("uninitialized", 0)
    lazy(torch.zeros(2, 3))
    # materialized into a Linear: 3*4 + 4 = 16
    assert param_formula(lazy) == Formula("3 × 4 + 4", 16)


def test_rejects_non_module() -> None:
    with pytest.raises(TypeError, match="nn.Module"):
        param_formula(torch.zeros(3))  # type: ignore[arg-type]


# --- zoo: the invariant on every torchvision classification model -------------------------------

try:
    import torchvision
except ImportError:  # only the zoo needs it
    torchvision = None
ZOO = (
    [
        name
        for name in torchvision.models.list_models(module=torchvision.models)
        if torchvision.models.get_model_weights(name) is not None
    ]
    if torchvision is not None
    else []
)


class _MetaAllocations(TorchFunctionMode):
    """Allocate tensors on meta but keep arithmetic on CPU (RegNet computes widths with tensors and
    calls .tolist(), which fails under ``torch.device("meta")``)."""

    _ALLOC = {torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn}

    def __torch_function__(
        self, func: Callable[..., Any], types: object, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if func in self._ALLOC and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def _build_on_meta(name: str) -> nn.Module:
    try:
        with torch.device("meta"):
            return torchvision.models.get_model(name)
    except NotImplementedError:
        with _MetaAllocations():
            return torchvision.models.get_model(name)


@pytest.mark.zoo
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize("name", ZOO, ids=ZOO)
def test_zoo_invariant(name: str) -> None:
    model = _build_on_meta(name)
    assert all(p.is_meta for p in model.parameters())
    for sub in model.modules():
        assert param_formula(sub).value == n_params(sub), type(sub).__qualname__
