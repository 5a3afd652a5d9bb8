"""Faults users reported against older summarizers, each as a model and its right values.

Every expected number is derived by hand (arithmetic beside it) or from ``model.parameters()``;
every test also proves the model is left bit-identical.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_unchanged, snapshot
from torch import nn

from netsummary import ForwardError, summary
from netsummary._reporting.render import classic_entries


def by_name(s, name):
    return [r for r in s.layers if r.name == name]


def unique_params(model):
    return sum(p.numel() for p in model.parameters())


def rows_reconcile(s) -> bool:
    """Leaf rows, minus what they share, plus the other-params groups, add up to the total; so do
    the classic table's rows (a called container's own parameters on its row) plus its trailing
    (never-called) groups. Rows of modules created during the forward are outside the totals."""
    rows = sum(r.params - r.shared_params for r in s.leaf_layers if not r.created)
    entries, trailing = classic_entries(s)
    shown = sum(params - shared for r, params, shared in entries if not r.created)
    return (rows + sum(g.params for g in s.other_params) == s.total_params
            and shown + sum(g.params for g in trailing) == s.total_params
            and not any(g.called for g in trailing))


# -- nested tuple outputs (LSTM) -------------------------------------------------------------
class SeqClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(input_size=6, hidden_size=10, batch_first=True)
        self.head = nn.Linear(10, 3)

    def forward(self, x):
        out, (h, c) = self.lstm(x)
        return self.head(out[:, -1])


def test_lstm_nested_tuple_output(unchanged):
    model = SeqClassifier()
    with unchanged(model):
        s = summary(model, (7, 6), verbose=0)
    # LSTM 4*10*(6+10) + 2*4*10 = 720; Linear 10*3 + 3 = 33
    assert (s.total_params, s.trainable_params, s.param_bytes) == (753, 753, 753 * 4)
    (lstm,) = by_name(s, "lstm")
    assert lstm.params == 720
    assert lstm.output_shapes == [(2, 7, 10), [(1, 2, 10), (1, 2, 10)]]  # h/c are not batch-first
    table = str(s)
    assert "([-1, 7, 10], ([1, -1, 10], [1, -1, 10]))" in table  # batch shown only where it is
    assert s.input_bytes == 7 * 6 * 4  # one sample


# -- one module called twice ------------------------------------------------------------------
class Siamese(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(4, 1)

    def forward(self, a, b):
        return self.head(torch.abs(self.encoder(a) - self.encoder(b)))


def test_shared_module_counted_once(unchanged):
    model = Siamese()
    with unchanged(model):
        s = summary(model, [(1, 12, 12), (1, 12, 12)], verbose=0)
    assert s.total_params == 45  # Conv2d 1*4*3*3 + 4 = 40; Linear 4 + 1 = 5
    first, second = by_name(s, "encoder.0")
    assert (first.call_index, second.call_index) == (1, 2)
    assert (first.params, first.shared_params) == (40, 0)
    assert (second.params, second.shared_params) == (40, 40)
    assert rows_reconcile(s)
    assert "40 (repeat)" in str(s)
    assert s.input_bytes == (144 + 144) * 4  # two inputs added, not multiplied: 1,152 bytes


# -- several inputs of different sizes ----------------------------------------------------------
class RGBD(nn.Module):
    def __init__(self):
        super().__init__()
        self.rgb = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.depth = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, 2)

    def forward(self, rgb, depth):
        return self.head(torch.cat([self.rgb(rgb), self.depth(depth)], dim=1))


@pytest.mark.parametrize("sizes", [[(3, 64, 64), (1, 32, 32)], [(3, 64, 64), (1, 32, 32)]], ids=["per-sample", "again"])
def test_multi_input_bytes(sizes):
    s = summary(RGBD(), sizes, verbose=0)
    assert s.input_bytes == (3 * 64 * 64 + 1 * 32 * 32) * 4  # 53,248 bytes per sample
    assert s.total_params == 338  # 3*8*9+8 = 224; 1*8*9+8 = 80; 16*2+2 = 34
    assert "Input size (MB): 0.05" in str(s)


def test_multi_input_real_tensors():
    x = torch.randn(2, 3, 64, 64), torch.randn(2, 1, 32, 32)
    s = summary(RGBD(), input_data=x, verbose=0)
    assert s.input_bytes == 106_496  # 2 * 53,248: the real batch
    assert by_name(s, "rgb.0")[0].output_shapes == (2, 8, 32, 32)


# -- parameters not named weight/bias, and a Parameter on the root ------------------------------
class NoisyLinear(nn.Module):
    def __init__(self, fan_in, fan_out):
        super().__init__()
        self.w_mu = nn.Parameter(torch.randn(fan_out, fan_in) * 0.1)
        self.w_sigma = nn.Parameter(torch.full((fan_out, fan_in), 0.01))
        self.b_mu = nn.Parameter(torch.zeros(fan_out))
        self.b_sigma = nn.Parameter(torch.full((fan_out,), 0.01))

    def forward(self, x):
        w = self.w_mu + self.w_sigma * torch.randn_like(self.w_sigma)
        b = self.b_mu + self.b_sigma * torch.randn_like(self.b_sigma)
        return F.linear(x, w, b)


class Agent(nn.Module):
    def __init__(self):
        super().__init__()
        self.temperature = nn.Parameter(torch.ones(1))
        self.body = nn.Linear(8, 16)
        self.act = nn.ReLU()
        self.noisy = NoisyLinear(16, 4)

    def forward(self, x):
        return self.noisy(self.act(self.body(x))) / self.temperature


def test_custom_param_names_and_root_parameter(unchanged):
    model = Agent()
    with unchanged(model):  # includes the RNG state: the forward draws noise
        s = summary(model, (8,), verbose=0)
    # body 8*16 + 16 = 144; noisy 2*(4*16) + 2*4 = 136; temperature 1
    assert s.total_params == 281 == unique_params(model)
    assert by_name(s, "noisy")[0].params == 136
    (root_group,) = s.other_params
    assert (root_group.name, root_group.type, root_group.params, root_group.called) == ("", "Agent", 1, True)
    assert rows_reconcile(s)
    assert "own params" not in str(s)  # the root ran: its temperature is on its row, first
    assert str(s).splitlines()[3].split() == ["Agent-1", "[-1,", "4]", "1"]


# -- integer inputs -----------------------------------------------------------------------------
class TextCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 8)
        self.conv = nn.Conv1d(8, 6, 3)
        self.pool = nn.AdaptiveMaxPool1d(1)
        self.fc = nn.Linear(6, 2)

    def forward(self, tokens):
        x = self.emb(tokens).transpose(1, 2)
        return self.fc(self.pool(torch.relu(self.conv(x))).squeeze(-1))


def test_integer_inputs_get_valid_token_ids():
    s = summary(TextCNN(), (12,), dtypes=[torch.long], verbose=0)
    assert s.total_params == 564  # 50*8 = 400; 8*6*3 + 6 = 150; 6*2 + 2 = 14
    assert s.input_bytes == 12 * 8  # one sample of int64
    assert s.input_dtypes == ("int64",)
    assert by_name(s, "emb")[0].output_shapes == (2, 12, 8)


def test_token_ids_valid_for_the_smallest_table():
    model = nn.Sequential(nn.Embedding(3, 4), nn.Flatten(), nn.Linear(4 * 5, 1))
    s = summary(model, (5,), dtypes=[torch.int32], verbose=0)  # ids must be < 3
    assert s.total_params == 3 * 4 + 20 + 1


# -- dict and dataclass outputs -----------------------------------------------------------------
class HeadBank(nn.Module):
    def __init__(self):
        super().__init__()
        self.cls = nn.Linear(16, 3)
        self.reg = nn.Linear(16, 1)

    def forward(self, h):
        return {"logits": self.cls(h), "box": self.reg(h)}


class Detector(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(10, 16), nn.ReLU())
        self.heads = HeadBank()

    def forward(self, x):
        return self.heads(self.trunk(x))


def test_dict_output():
    s = summary(Detector(), (10,), verbose=0)
    assert s.total_params == 244  # 10*16+16 = 176; 16*3+3 = 51; 16+1 = 17
    (heads,) = by_name(s, "heads")
    assert heads.params == 68 and not heads.is_leaf
    assert heads.output_shapes == {"logits": (2, 3), "box": (2, 1)}


@dataclasses.dataclass
class Encoded:
    hidden: torch.Tensor
    pooled: torch.Tensor
    attn: torch.Tensor | None = None


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 6)

    def forward(self, x):
        h = torch.relu(self.proj(x))
        return Encoded(hidden=h, pooled=h.mean(dim=1))


class Wrapper(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = Encoder()
        self.cls = nn.Linear(6, 1)

    def forward(self, x):
        return self.cls(self.enc(x).pooled)


def test_dataclass_output():
    s = summary(Wrapper(), input_data=torch.randn(2, 5, 4), verbose=0)
    assert s.total_params == 37  # 4*6 + 6 = 30; 6 + 1 = 7
    assert by_name(s, "enc")[0].output_shapes == {"hidden": (2, 5, 6), "pooled": (2, 6), "attn": "NoneType"}


class Pool(nn.Module):  # a leaf returning a dataclass: its row in the classic table shows every field
    def forward(self, h):
        return Encoded(hidden=h, pooled=h.mean(dim=1))


def test_dataclass_output_row():
    table = str(summary(Pool(), (5, 6), verbose=0))
    assert "{hidden: [-1, 5, 6], pooled: [-1, 6], attn: None}" in table


# -- per-tensor trainability --------------------------------------------------------------------
class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.act(self.bn(self.conv(x))))))


def test_bias_only_finetune(unchanged):
    model = Classifier()
    for name, p in model.named_parameters():
        p.requires_grad_(name.endswith("bias"))
    with unchanged(model):
        s = summary(model, (3, 16, 16), verbose=0)
    # conv 3*8*9 + 8 = 224; bn 8 + 8 = 16; fc 8*5 + 5 = 45 -> 285; trainable biases 8 + 8 + 5 = 21
    assert (s.total_params, s.trainable_params, s.non_trainable_params) == (285, 21, 264)
    assert [(r.name, r.params, r.trainable_params) for r in s.leaf_layers if r.params] == [
        ("conv", 224, 8), ("bn", 16, 8), ("fc", 45, 5)
    ]


# -- device handling ----------------------------------------------------------------------------
def test_device_inferred_and_accepted_forms():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 8))
    for device in (None, "cpu", torch.device("cpu")):
        s = summary(model, (3, 8, 8), device=device, verbose=0)
        assert (s.device, s.total_params) == ("cpu", 488)  # 3*8*9 + 8 = 224; 32*8 + 8 = 264


# -- BatchNorm state and train mode -------------------------------------------------------------
class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.pool(self.drop(torch.relu(self.bn(self.conv(x))))).flatten(1))


@pytest.mark.parametrize("mode", ["eval", "train", "same"])
def test_batchnorm_statistics_untouched_in_every_mode(mode, unchanged):
    model = BNNet()
    with torch.no_grad():
        model.bn.running_mean.fill_(0.25)
        model.bn.running_var.fill_(2.0)
    model.train()
    with unchanged(model):
        s = summary(model, (3, 10, 10), mode=mode, verbose=0)
    assert s.total_params == 130  # conv 3*4*9 + 4 = 112; bn 4 + 4 = 8; fc 4*2 + 2 = 10
    assert (s.buffer_count, s.buffer_bytes) == (9, 4 * 4 + 4 * 4 + 8)  # mean 4, var 4, int64 count 1
    assert s.mode == mode


# -- the model is one leaf, or has no parameters -------------------------------------------------
def test_leaf_module_as_model():
    s = summary(nn.Linear(6, 3), (6,), verbose=0)
    (row,) = s.layers
    assert (row.name, row.is_leaf, row.params, row.output_shapes) == ("", True, 21, (2, 3))  # 6*3 + 3
    assert s.param_bytes == 84


def test_parameter_free_model():
    s = summary(nn.Sequential(nn.ReLU(), nn.Flatten()), (3, 4), verbose=0)
    assert (s.total_params, s.param_bytes) == (0, 0)
    assert "Total params: 0" in str(s)


# -- submodule called with keyword arguments only ----------------------------------------------
class Gate(nn.Module):
    def forward(self, x, gate):
        return x * torch.sigmoid(gate)


class GatedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.gate_proj = nn.Linear(8, 8)
        self.gate = Gate()
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        return self.out(self.gate(x=self.proj(x), gate=self.gate_proj(x)))


def test_keyword_only_submodule_call():
    s = summary(GatedNet(), (8,), verbose=0)
    (gate,) = by_name(s, "gate")
    assert gate.input_shapes == [(2, 8), (2, 8)]
    assert gate.output_shapes == (2, 8)
    assert s.total_params == 162  # 8*8+8 = 72 twice; 8*2 + 2 = 18


# -- one module registered under two parents -----------------------------------------------------
class Aliased(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.features = nn.Sequential(self.stem, self.body)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.pool(self.features(x)).flatten(1))


def test_module_registered_twice():
    s = summary(Aliased(), (1, 8, 8), verbose=0)
    assert s.total_params == 198  # 1*4*9+4 = 40; 4*4*9+4 = 148; 4*2+2 = 10
    assert [len(by_name(s, n)) for n in ("stem.0", "body.0", "head")] == [1, 1, 1]
    assert len(s.leaf_layers) == 6  # conv, relu, conv, relu, pool, linear: each call once


# -- tied weights -------------------------------------------------------------------------------
class TinyTiedLM(nn.Module):
    def __init__(self, vocab=120, dim=16, ctx=10):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(ctx, dim)
        self.mix = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, ids):
        h = self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        return self.head(self.norm(torch.relu(self.mix(h)) + h))


def test_tied_weights_counted_once():
    model = TinyTiedLM()
    s = summary(model, input_data=torch.randint(0, 120, (2, 10)), verbose=0)
    # tok 120*16 = 1,920; pos 10*16 = 160; mix 16*16+16 = 272; norm 2*16 = 32; head tied: 0 new
    assert s.total_params == 2384 == unique_params(model)
    assert s.param_bytes == 2384 * 4
    (head,) = by_name(s, "head")
    assert (head.params, head.shared_params, head.output_shapes) == (1920, 1920, (2, 10, 120))
    assert by_name(s, "pos")[0].output_shapes == (10, 16)
    assert rows_reconcile(s)
    assert "1,920 (tied)" in str(s)


def test_batch_axis_shown_only_on_batched_tensors():
    s = summary(TinyTiedLM(), (10,), dtypes=[torch.long], verbose=0)
    table = str(s)
    assert "[-1, 10, 120]" in table and "[10, 16]" in table  # positions carry no batch


# -- keyword-only forward with non-tensor options -------------------------------------------------
class KeywordOnlyEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(16, 5)
        self.proj = nn.Linear(5, 4)

    def forward(self, *, ids, attention_mask, pooling="mean", temperature=1.0):
        h = self.emb(ids) * attention_mask.unsqueeze(-1)
        h = h.max(dim=1).values if pooling == "max" else h.sum(dim=1) / attention_mask.sum(1, keepdim=True)
        return self.proj(h) / temperature


def test_keyword_only_forward_with_python_values():
    data = {"ids": torch.randint(0, 16, (2, 5)), "attention_mask": torch.ones(2, 5, dtype=torch.long),
            "pooling": "max"}
    s = summary(KeywordOnlyEncoder(), input_data=data, temperature=0.5, verbose=0)
    assert s.input_bytes == 2 * 5 * 8 + 2 * 5 * 8  # ids + mask, int64; the str and float add nothing
    assert s.total_params == 104  # 16*5 = 80; 5*4 + 4 = 24
    assert s.layers[0].output_shapes == (2, 4)


# -- partially frozen model --------------------------------------------------------------------
class FineTune(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3))
        self.head = nn.Linear(4, 2)
        self.gate = nn.Parameter(torch.ones(4))
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.head.bias.requires_grad_(False)

    def forward(self, x):
        return self.head(self.backbone(x).mean(dim=(2, 3)) * self.gate)


def test_frozen_parts_and_root_parameter_bytes():
    s = summary(FineTune(), (3, 8, 8), verbose=0)
    # backbone 112 + 8 + 148 = 268 frozen; head weight 8 trainable, bias 2 frozen; gate 4 trainable
    assert (s.total_params, s.trainable_params, s.non_trainable_params) == (282, 12, 270)
    assert s.param_bytes == 282 * 4  # the root's gate included
    assert (s.buffer_count, s.buffer_bytes) == (9, 40)
    assert by_name(s, "backbone")[0].output_shapes == (2, 4, 4, 4)
    assert rows_reconcile(s)


# -- forward raises -----------------------------------------------------------------------------
class BrokenNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 8)
        self.b = nn.Linear(5, 2)  # bug: should be Linear(8, 2)

    def forward(self, x):
        return self.b(F.relu(self.a(x)))


def test_forward_error_names_module_and_shows_partial_table():
    model = BrokenNet().train()
    before = snapshot(model)
    with pytest.raises(ForwardError, match=r"module 'b' \(Linear, call 1\)") as info:
        summary(model, (4,), verbose=0)
    assert_unchanged(before, model)
    err = info.value
    assert isinstance(err.__cause__, RuntimeError) and "mat1 and mat2" in str(err.__cause__)
    assert isinstance(err, RuntimeError)
    assert (err.module_name, err.module_type) == ("b", "Linear")
    assert "it received: arg0=[2, 8] float32" in str(err)
    assert err.partial is not None and not err.partial.complete
    assert err.partial.total_params == 52  # 4*8 + 8 = 40; 5*2 + 2 = 12: countable without a forward
    assert [(r.name, r.output_shapes) for r in err.partial.leaf_layers if r.completed] == [("a", (2, 8))]
    assert "(failed here)" in str(err)


def test_partial_summary_is_per_sample_and_in_the_requested_view():
    model = nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.ReLU(), nn.Linear(7, 2)))
    with pytest.raises(ForwardError) as info:
        summary(model, (4,), depth=1, verbose=0)
    partial = info.value.partial
    assert partial.total_macs == 4 * 8  # one sample: the 2-sample run's 64 MACs halved
    assert partial.output_bytes == 8 * 4 + 8 * 4  # Linear and ReLU outputs, one sample each
    assert "Total MACs (one sample" in str(info.value) and "Layer (type)" in str(info.value).splitlines()[3]


def test_batchnorm_restore_keeps_a_saved_graph_usable():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).eval()
    loss = model(torch.randn(5, 3)).sum()  # eval BatchNorm saves its running stats for backward
    summary(model, (3,), mode="train", verbose=0)  # moves them, then restores the values
    loss.backward()  # no "modified by an inplace operation"


def test_forward_error_in_keyword_only_call_reports_kwargs():
    class Bad(nn.Module):
        def forward(self, x, gate):
            return x @ gate

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.bad = Bad()

        def forward(self, x):
            return self.bad(x=x, gate=x)

    with pytest.raises(ForwardError, match=r"x=\[2, 3\] float32, gate=\[2, 3\] float32"):
        summary(Net(), (3,), verbose=0)


def test_keyboard_interrupt_leaves_model_unchanged():
    class Interrupt(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(3)

        def forward(self, x):
            self.bn(x)
            raise KeyboardInterrupt

    model = Interrupt().train()
    before = snapshot(model)
    with pytest.raises(KeyboardInterrupt):
        summary(model, (3,), mode="train", verbose=0)
    assert_unchanged(before, model)
