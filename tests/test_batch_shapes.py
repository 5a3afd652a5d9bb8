"""Batch axes and bytes of tensors whose sizes collide with the run batch (2), and shapes of
values that are not tensors: NumPy arrays, objects carrying tensors (issue 10).

With ``batch_size=-1`` the forward runs on 2 samples; figures are per sample only for tensors
that grow linearly with the batch along one axis (see ``netsummary/_tracing/batch.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from netsummary import summary
from netsummary._tracing.batch import ambiguous
from netsummary._tracing.structure import describe


def _row(s, name):
    return next(r for r in s.layers if r.name == name)


class WithTable(nn.Module):
    """Real output beside an embedding table of 2 special tokens (not one row per sample)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.special = nn.Embedding(2, 8)

    def forward(self, x):
        return self.fc(x), self.special(torch.arange(2, device=x.device))


def test_constant_table_beside_the_output_is_not_the_batch():
    s = summary(WithTable(), (4,), verbose=0)
    root = s.layers[0]
    assert root.output_shapes == [(2, 3), (2, 8)] and root.output_batch_axes == (0, None)
    assert "([-1, 3], [2, 8])" in s.render("tree")
    # per sample: fc 3 * 4 bytes = 12; the table as run: 2 * 8 * 4 = 64, not halved to 32
    assert root.output_bytes == 12 + 64
    emb = _row(s, "special")
    assert emb.input_batch_axes == (None,) and emb.output_batch_axes == (None,) and emb.output_bytes == 64
    assert s.output_bytes == 12 + 64  # the leaves: fc and special


class Table(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(2, 8))

    def forward(self):
        return self.w * 1


class UsesTable(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 8)
        self.table = Table()

    def forward(self, x):
        return self.fc(x) + self.table().sum(0)


def test_table_made_from_no_input_is_not_the_batch():
    # Table() receives no tensor, so its leading 2 cannot be the batch: a second run confirms it
    s = summary(UsesTable(), (4,), verbose=0)
    table = _row(s, "table")
    assert table.output_shapes == (2, 8) and table.output_batch_axes == (None,)
    assert table.output_bytes == 2 * 8 * 4  # 64, as run
    assert _row(s, "fc").output_batch_axes == (0,) and _row(s, "fc").output_bytes == 8 * 4  # 32 per sample
    assert "[2, 8]" in str(s) and "[-1, 8]" in str(s)


class Similarity(nn.Module):
    def forward(self, e):
        return e @ e.T  # (B, B): both axes are the batch


def test_batch_by_batch_similarity_is_shown_and_counted_as_run():
    s = summary(nn.Sequential(nn.Linear(4, 8), Similarity()), (4,), verbose=0)
    sim = _row(s, "1")
    # run [2, 2] -> probe [3, 3]: two axes grow, the bytes grow with B**2 (16 -> 36), not
    # linearly: no -1, bytes as run = 2 * 2 * 4 = 16 (not 8, nor a made-up 4 "per sample")
    assert sim.output_shapes == (2, 2) and sim.output_batch_axes == (None,) and sim.output_bytes == 16
    assert sim.input_batch_axes == (0,)  # its input [2, 8] -> [3, 8] is the batch
    assert s.output_bytes == 8 * 4 + 16  # Linear per sample 32 + similarity as run 16


def test_lstm_h_n_keeps_the_batch_in_the_middle():
    s = summary(nn.LSTM(8, 16, num_layers=2, batch_first=True), (5, 8), verbose=0)
    lstm = s.layers[0]
    assert "([-1, 5, 16], ([2, -1, 16], [2, -1, 16]))" in str(s)
    assert lstm.output_batch_axes == (0, 1, 1)
    # per sample: out 5 * 16 * 4 = 320; h_n and c_n 2 layers * 16 * 4 = 128 each
    assert lstm.output_bytes == 320 + 128 + 128


class ToNumpy(nn.Module):
    def forward(self, x):
        return x.detach().cpu().numpy().astype(np.float64)


class FromNumpy(nn.Module):
    def forward(self, a):
        return torch.from_numpy(a).float()


def test_numpy_arrays_have_shapes_dtypes_and_bytes():
    s = summary(nn.Sequential(nn.Linear(4, 3), ToNumpy(), FromNumpy()), (4,), verbose=0)
    to_np, from_np = _row(s, "1"), _row(s, "2")
    assert to_np.output_shapes == (2, 3) and to_np.output_dtypes == ("float64",)
    assert to_np.output_batch_axes == (0,) and to_np.output_bytes == 3 * 8  # float64, per sample: 24
    assert from_np.input_shapes == [(2, 3)] and from_np.input_dtypes == ("float64",)
    assert "ndarray" not in str(s) and "[-1, 3]" in str(s)
    # the leaves: Linear 3 * 4 + ToNumpy 3 * 8 + FromNumpy 3 * 4 bytes per sample
    assert s.output_bytes == 12 + 24 + 12


def test_describe_numpy_array():
    d = describe([np.zeros((2, 5), dtype=np.int16), np.float32(1.0)])
    assert d.tree == [(2, 5), "float32"]  # a NumPy scalar stays a type name
    assert d.dtypes == ("int16",) and d.nbytes == 2 * 5 * 2  # 20 == arr.nbytes


class NestedTensor:  # DETR's: a padded batch and its mask
    def __init__(self, tensors, mask):
        self.tensors = tensors
        self.mask = mask


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return NestedTensor(self.conv(x), torch.zeros(x.shape[0], 8, 8, dtype=torch.bool, device=x.device))


def test_nested_tensor_object_shows_its_tensors():
    s = summary(Backbone(), (3, 8, 8), verbose=0)
    root = s.layers[0]
    assert root.output_shapes == {"tensors": (2, 4, 8, 8), "mask": (2, 8, 8)}
    assert root.output_dtypes == ("float32", "bool") and root.output_batch_axes == (0, 0)
    assert "{tensors: [-1, 4, 8, 8], mask: [-1, 8, 8]}" in s.render("tree")
    assert root.output_bytes == 4 * 8 * 8 * 4 + 8 * 8 * 1  # per sample: 1,024 + 64 = 1,088


class Result:
    def __init__(self, logits):
        self.logits = logits
        self.label = "cls"  # no tensor: left out
        self.parts = [logits.sum(-1)]
        self.owner = self  # a cycle, no tensor: left out


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return Result(self.fc(x))


class Plain:
    def __init__(self):
        self.name = "nothing"


def test_user_object_with_tensor_attributes():
    s = summary(Head(), (4,), verbose=0)
    root = s.layers[0]
    assert root.output_shapes == {"logits": (2, 3), "parts": [(2,)]}
    assert "{logits: [-1, 3], parts: ([-1])}" in s.render("tree")
    assert root.output_bytes == 3 * 4 + 1 * 4  # per sample: logits 12 + sums 4
    assert describe(Plain()).tree == "Plain"  # no tensor attributes: its class name, as before
    assert describe(nn.Linear(2, 2)).tree == "Linear"  # a module's parameters are not a value


def test_objects_are_looked_into_one_level():
    outer = Plain()
    outer.inner = NestedTensor(torch.zeros(1), torch.zeros(1))  # an object among the attributes
    outer.x = torch.zeros(3)
    assert describe(outer).tree == {"x": (3,)}  # 'inner' holds tensors only through an object
    del outer.x
    assert describe(outer).tree == "Plain"
    # containers among the attributes are walked, with their arrays
    outer.items = {"a": [np.zeros(4, dtype=np.uint8)]}
    d = describe(outer)
    assert d.tree == {"items": {"a": [(4,)]}} and d.nbytes == 4 and d.dtypes == ("uint8",)


def test_plain_chain_is_not_ambiguous_but_two_batch_tensors_are():
    x, y = describe(torch.zeros(2, 4)), describe(torch.zeros(2, 3))
    assert not ambiguous([x, y, y, describe(torch.zeros(2, 5))], 2)  # one forward is enough
    assert ambiguous([x, describe((torch.zeros(2, 3), torch.zeros(2, 8)))], 2)
    assert ambiguous([describe([]), y], 2)  # an output with a 2 from a call given nothing
    assert not ambiguous([describe([]), describe(torch.zeros(5, 8))], 2)


class SelfAttention(nn.Module):
    """``attn(x, x, x)``: one tensor passed three times (ViT's encoder blocks)."""

    def __init__(self, distinct: bool):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.distinct = distinct
        self.forwards = 0

    def forward(self, x):
        self.forwards += 1
        kv = x + 0 if self.distinct else x  # a different tensor of the same shape
        return self.attn(x, kv, kv, need_weights=False)[0]


def test_the_same_tensor_passed_twice_needs_no_second_forward():
    # [2, 5, 8] three times is one tensor with the batch first: as clear as a single input
    q = describe([torch.zeros(2, 5, 8)] * 3)
    assert q.repeats == {1, 2} and not ambiguous([q, describe(torch.zeros(2, 5, 8))], 2)
    one, two = SelfAttention(distinct=False), SelfAttention(distinct=True)
    a, b = summary(one, (5, 8), verbose=0), summary(two, (5, 8), verbose=0)
    assert one.forwards == 1  # the probe with 3 samples never ran
    # two different tensors with 2 rows: torch's own attention layer puts the batch on its documented
    # axes (batch_first), so no probe either (a user's layer given two such tensors gets one: below)
    assert two.forwards == 1
    # and both read the same: every tensor has the batch first
    for s in (a, b):
        attn = _row(s, "attn")
        assert attn.input_batch_axes == (0, 0, 0) and attn.output_batch_axes == (0,)  # (out, None)
        assert attn.output_bytes == 5 * 8 * 4  # one sample's [5, 8] float32 (the weights are None)
    assert str(a) == str(b)


class AddTwo(nn.Module):
    def forward(self, a, b):
        return a + b


class ConstantTwice(nn.Module):
    """A buffer of 2 rows passed twice: one tensor, but a constant, not the batch."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.add = AddTwo()
        self.register_buffer("table", torch.ones(2, 8))

    def forward(self, x):
        return self.lin(x) + self.add(self.table, self.table).sum()


def test_a_parameter_or_buffer_passed_twice_is_still_probed():
    s = summary(ConstantTwice(), (8,), verbose=0)
    add = _row(s, "add")
    assert add.input_batch_axes == (None, None) and add.output_batch_axes == (None,)
    assert "[2, 8]" in str(s) and add.output_bytes == 2 * 8 * 4  # as run: the table does not grow
    t = torch.ones(2, 8)
    d = describe([t, t], constants={id(t)})
    assert d.repeats == {1} and d.constants == {0, 1} and ambiguous([d, describe(torch.ones(2, 8))], 2)


class Counted(nn.Module):
    """Counts the forwards the summary runs (a second one is the batch-axis probe)."""

    def __init__(self, inner: nn.Module, call) -> None:
        super().__init__()
        self.inner, self.call, self.forwards = inner, call, 0

    def forward(self, x):
        self.forwards += 1
        return self.call(self.inner, x)


STOCK_CASES = [  # each returns a value whose own batch axis is clear ([2, ...] alone)
    # h_n [layers * directions, batch, hidden]: [2, 2, 16] has two axes of size 2
    ("lstm-2layer", nn.LSTM(6, 16, num_layers=2, batch_first=True), lambda m, x: m(x)[0], (7, 6)),
    ("lstm-seq-first", nn.LSTM(6, 16, num_layers=2), lambda m, x: m(x.transpose(0, 1))[1][0].sum(0), (7, 6)),
    ("gru-bi-hx", nn.GRU(6, 16, bidirectional=True, batch_first=True),
     lambda m, x: m(x, torch.zeros(2, x.shape[0], 16))[1].sum(0), (5, 6)),
    ("rnn", nn.RNN(6, 2, batch_first=True), lambda m, x: m(x)[1].sum(0).sum(1), (7, 6)),  # hidden size 2 too
    ("mha-weights", nn.MultiheadAttention(8, 2), lambda m, x: m(*(x.transpose(0, 1),) * 3)[1], (5, 8)),
    ("mha-per-head", nn.MultiheadAttention(8, 2, batch_first=True),
     lambda m, x: m(x, x + 0, x + 0, average_attn_weights=False)[1].sum(1), (5, 8)),
]


@pytest.mark.parametrize("layer, call, size", [c[1:] for c in STOCK_CASES], ids=[c[0] for c in STOCK_CASES])
def test_stock_recurrent_and_attention_layers_need_no_probe(monkeypatch, layer, call, size):
    """Their outputs carry the batch on documented axes (batch_axes.stock_axes): one forward,
    and the same summary the probe forward gives."""
    import netsummary._tracing.forward as forward_module

    model = Counted(layer, call).eval()
    fast = summary(model, size, verbose=0)
    assert model.forwards == 1
    monkeypatch.setattr(forward_module, "stock_axes", lambda *args: None)  # the general rules: a probe
    model.forwards = 0
    probed = summary(model, size, verbose=0)
    assert model.forwards == 2
    assert fast.to_dict() == probed.to_dict() and str(fast) == str(probed)


def test_a_users_layer_given_two_batch_tensors_is_probed():
    class Pair(nn.Module):
        def forward(self, a, b):
            return a * b

    model = Counted(Pair(), lambda m, x: m(x, x + 0))
    s = summary(model, (3,), verbose=0)
    assert model.forwards == 2  # which of [2, 3] and [2, 3] is the batch cannot be read off them
    assert _row(s, "inner").input_batch_axes == (0, 0)
