"""MACs in the summary: exact per row, attributed to the innermost module, nothing lost or doubled.

Convention: MACs = multiply-accumulates of matmul-class operators; FLOPs = 2 x MACs. Expected
values are derived by hand below each model.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from netsummary import summary


def macs_by_name(s):
    return {r.name: r.macs for r in s.layers}


def run(model, size, **kw):
    return summary(model, size, batch_size=1, macs=True, verbose=0, **kw)


CASES = [
    # Conv2d(4, 8, 3, stride=2, groups=2, dilation=2) on [1, 4, 11, 11]: out 8 x 4 x 4;
    # each output sums (4/2) * 3 * 3 = 18 products: 8 * 16 * 18 = 2,304
    ("conv-groups-stride-dilation", nn.Conv2d(4, 8, 3, stride=2, groups=2, dilation=2), (4, 11, 11), 2304),
    # ConvTranspose2d(4, 2, 3, stride=2) on [1, 4, 5, 5]: every input pixel scatters 4*2*3*3 products: 25 * 72
    ("conv-transpose", nn.ConvTranspose2d(4, 2, 3, stride=2), (4, 5, 5), 1800),
    ("linear-2d", nn.Linear(8, 16), (8,), 8 * 16),  # 1 row * 8 * 16
    ("linear-3d", nn.Linear(8, 16), (5, 8), 5 * 8 * 16),  # 5 rows
    ("linear-4d", nn.Linear(8, 16), (3, 5, 8), 3 * 5 * 8 * 16),  # 15 rows
    ("embedding", nn.Embedding(10, 4), (7,), 0),  # a lookup, no products
    # LSTM(6, 10), 7 steps: 4 gates * 10 * (6 + 10) per step = 640 * 7
    ("lstm", nn.LSTM(6, 10, batch_first=True), (7, 6), 4480),
    # bidirectional, 2 layers: layer 0: 2 dirs * 7 * 4*10*(6+10); layer 1 input 20: 2 * 7 * 4*10*(20+10)
    ("lstm-bi-2layer", nn.LSTM(6, 10, num_layers=2, bidirectional=True, batch_first=True), (7, 6), 8960 + 16800),
    # GRU(6, 10): 3 gates * 10 * (6 + 10) = 480 per step * 7
    ("gru", nn.GRU(6, 10, batch_first=True), (7, 6), 3360),
    # GRU bidirectional 2 layers: 2*7*3*10*16 + 2*7*3*10*30 = 6,720 + 12,600
    ("gru-bi-2layer", nn.GRU(6, 10, num_layers=2, bidirectional=True, batch_first=True), (7, 6), 19320),
]


@pytest.mark.parametrize("module, size, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_layer_macs_by_hand(module, size, expected):
    s = run(module, size, dtypes=[torch.long] if isinstance(module, nn.Embedding) else None)
    assert s.total_macs == expected
    assert s.layers[0].macs == expected


def test_attention_in_a_containers_own_forward_lands_on_its_row():
    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(16, 48)
            self.out = nn.Linear(16, 16)

        def forward(self, x):
            b, n, _ = x.shape
            q, k, v = self.qkv(x).view(b, n, 3, 2, 8).permute(2, 0, 3, 1, 4)
            y = F.scaled_dot_product_attention(q, k, v)  # the container's own operator
            return self.out(y.transpose(1, 2).reshape(b, n, 16))

    s = run(Attention(), (5, 16))
    m = macs_by_name(s)
    assert m["qkv"] == 5 * 16 * 48  # 3,840
    assert m["out"] == 5 * 16 * 16  # 1,280
    # q k^T and attn @ v: 2 heads * 5 * 5 * 8 each = 400 + 400
    assert m[""] == 800
    assert s.total_macs == 3840 + 1280 + 800  # each operator once


def test_multihead_attention_counted_with_rows_for_its_parts():
    mha = nn.MultiheadAttention(16, 2, batch_first=True)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = mha

        def forward(self, x):
            return self.attn(x, x, x, need_weights=False)[0]

    s = run(Net(), (5, 16))  # eval + no_grad: the conditions of the fused fast path
    # in-projection 5*16*48 = 3,840; scores and mixing 2 * 2 heads*5*5*8 = 800; out-proj 5*16*16 = 1,280
    assert s.total_macs == 3840 + 800 + 1280
    assert torch.backends.mha.get_fastpath_enabled()  # restored after the summary


def test_multihead_attention_keeps_its_fast_path_and_the_same_summary():
    """A model holding only nn.MultiheadAttention runs the fused path the user's own eval forward
    runs (out_proj is never called on either path, so no row is lost); the summary equals the
    one made with the fast path forced off, MACs included. The switch other threads see is
    left alone."""
    from netsummary._tracing.switches import MHA_FASTPATH_OFF

    seen = []

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(16, 2, batch_first=True)

        def forward(self, x):
            seen.append(torch.backends.mha.get_fastpath_enabled())
            return self.attn(x, x, x, need_weights=False)[0]

    if not torch.backends.mha.get_fastpath_enabled():
        pytest.skip("the fast path is switched off in this process")
    net = Net()
    fast = run(net, (5, 16))
    with MHA_FASTPATH_OFF.held():
        slow = run(net, (5, 16))
    assert seen == [True, False]
    assert fast.to_dict() == slow.to_dict()
    assert fast.total_macs == 3840 + 800 + 1280  # as in the test above


def test_transformer_encoder_layer_turns_the_fast_path_off_during_its_summary():
    seen = []
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    layer.register_forward_pre_hook(lambda m, a: seen.append(torch.backends.mha.get_fastpath_enabled()))
    run(layer, (5, 16))
    assert seen == [False]  # else the fused kernel would run instead of self_attn, linear1, ...


def test_transformer_encoder_layer_shows_its_submodules():
    s = run(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), (5, 16))
    names = [r.name for r in s.layers]
    assert {"self_attn", "linear1", "linear2", "norm1", "norm2"} <= set(names)
    # attention 5,920 as above; linear1 5*16*32 = 2,560; linear2 5*32*16 = 2,560
    assert s.total_macs == 5920 + 2560 + 2560


def test_rows_add_up_to_the_total_and_batch_minus_one_is_per_sample():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    one = summary(model, (3, 8, 8), macs=True, verbose=0)  # runs 2 samples, shows one
    four = summary(model, (3, 8, 8), batch_size=4, macs=True, verbose=0)
    # conv: 4 * 36 outputs * 27 = 3,888; linear 144 * 5 = 720
    assert one.total_macs == 3888 + 720
    assert four.total_macs == 4 * (3888 + 720)
    assert sum(r.macs for r in one.layers) == one.total_macs


def test_unknown_operator_is_reported_not_zero():
    class Sparse(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("adj", torch.eye(4).to_sparse())
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(torch.sparse.mm(self.adj, x[0])).unsqueeze(0)

    s = run(Sparse(), (4, 3))
    root, fc = s.layers
    assert root.macs == 0 and root.unknown_ops == ("aten._sparse_addmm",)  # a lower bound, marked
    assert fc.macs == 4 * 3 * 3
    assert s.unknown_ops == ("aten._sparse_addmm",) and s.total_macs == 36
    tree = s.render("tree")
    assert "36 + ?" in tree  # the root's subtree: 36 counted, one operator without a formula
    assert "at least 36" in tree and "MACs not counted (no formula) for" in tree and "aten._sparse_addmm" in tree


def test_weight_only_products_are_shared_out_per_sample():
    class LowRank(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.zeros(32, 4))
            self.b = nn.Parameter(torch.zeros(4, 32))

        def forward(self, x):
            return F.linear(x, self.a @ self.b)

    # batch 1: a @ b = 32*4*32 = 4,096; x @ w.T = 32*32 = 1,024
    assert summary(LowRank(), (32,), batch_size=1, macs=True, verbose=0).total_macs == 5120
    # batch -1 runs two samples and divides by 2: the weight-only product is halved too (documented)
    assert summary(LowRank(), (32,), macs=True, verbose=0).total_macs == (2 * 1024 + 4096) // 2


def test_macs_off_and_auto():
    model = nn.Linear(4, 2)
    assert summary(model, (4,), verbose=0).total_macs is None  # classic default: not counted
    assert summary(model, (4,), verbose=0, format="tree").total_macs == 8
    assert summary(model, (4,), verbose=0, format="tree", macs=False).total_macs is None


def test_meta_device_counts_the_same():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=8))
    cpu = run(model, (3, 16, 16))
    meta = run(model, (3, 16, 16), device="meta")
    # conv1: 8 * 256 * 27 = 55,296; depthwise: 8 * 196 * 9 = 14,112
    assert cpu.total_macs == meta.total_macs == 55296 + 14112
