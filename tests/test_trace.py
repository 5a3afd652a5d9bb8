"""Tracing: which calls are recorded, in what order, with which structure; hooks never linger."""

from __future__ import annotations

import warnings
from collections import namedtuple

import torch
from torch import nn
from torch.nn.modules import module as module_globals
from torch.nn.utils.rnn import pack_padded_sequence

from netsummary import summary
from netsummary._tracing.structure import describe


def test_call_order_depth_and_parent():
    model = nn.Sequential(nn.Sequential(nn.Linear(2, 3), nn.ReLU()), nn.Linear(3, 1))
    s = summary(model, (2,), verbose=0)
    assert [(r.name, r.depth, r.parent, r.is_leaf) for r in s.layers] == [
        ("", 0, None, False), ("0", 1, 0, False), ("0.0", 2, 1, True), ("0.1", 2, 1, True), ("1", 1, 0, True),
    ]
    assert s.layers[1].params == 2 * 3 + 3  # a container's params are its subtree's


def test_user_hooks_survive_and_still_run():
    model = nn.Linear(4, 3)  # [2, 4] -> [2, 3]: the batch axis is plain, so one forward runs
    seen = []
    model.register_forward_hook(lambda m, a, o: seen.append("local"))
    handle = module_globals.register_module_forward_hook(lambda m, a, o: seen.append("global"))
    try:
        summary(model, (4,), verbose=0)
        assert seen == ["global", "local"]
        seen.clear()
        summary(nn.Sequential(model, nn.Linear(3, 2)), (4,), verbose=0)  # [2, 2] is ambiguous:
        assert seen.count("local") == 2  # a second forward settled the batch axis
        assert len(model._forward_hooks) == 1 and len(module_globals._global_forward_hooks) == 1
    finally:
        handle.remove()


def test_weight_norm_parametrization_counted_on_its_module():
    model = nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Linear(4, 3)), nn.ReLU())
    s = summary(model, (4,), verbose=0)
    assert [r.name for r in s.leaf_layers] == ["0", "1"]  # no rows for the parametrization itself
    # original0 (g) [3, 1] + original1 (v) [3, 4] + bias [3] = 3 + 12 + 3
    assert s.leaf_layers[0].params == 18 == s.total_params == sum(p.numel() for p in model.parameters())
    assert not s.other_params


def test_exception_caught_inside_the_model_does_not_confuse_the_stack():
    class Flaky(nn.Module):
        def forward(self, x):
            raise ValueError("nope")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.flaky = Flaky()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            try:
                self.flaky(x)
            except ValueError:
                pass
            return self.fc(x)

    s = summary(Net(), (2,), verbose=0)
    flaky, fc = s.layers[1], s.layers[2]
    assert (flaky.name, flaky.completed, flaky.output_shapes) == ("flaky", False, None)
    assert (fc.name, fc.parent, fc.output_shapes) == ("fc", 0, (2, 2))
    assert s.layers[0].output_shapes == (2, 2)


def test_modules_created_in_forward_are_marked_rows():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return nn.ReLU()(self.fc(x))  # created on the fly: not part of the model

    s = summary(Net(), (2,), verbose=0)
    assert [(r.name, r.type, r.created) for r in s.layers] == [
        ("", "Net", False), ("fc", "Linear", False), ("<created>", "ReLU (created in forward)", True)]


def test_recursive_module_calls():
    class Tree(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x, depth=2):
            return self.fc(x) if depth == 0 else self(x, depth - 1)

    s = summary(Tree(), (2,), verbose=0)
    assert [(r.name, r.call_index, r.depth) for r in s.layers] == [("", 1, 0), ("", 2, 1), ("", 3, 2), ("fc", 1, 3)]


Pair = namedtuple("Pair", "left right")


def test_structures_namedtuple_packed_sequence_distribution():
    packed = pack_padded_sequence(torch.zeros(3, 2, 4), lengths=[3, 2])
    d = describe(packed)
    assert d.tree == {"data": (5, 4), "batch_sizes": (3,), "sorted_indices": "NoneType", "unsorted_indices": "NoneType"}
    assert describe(Pair(torch.zeros(1), 3)).tree == {"left": (1,), "right": "int"}
    normal = torch.distributions.Normal(torch.zeros(2, 3), torch.ones(2, 3))
    assert describe(normal).tree == {"loc": (2, 3), "scale": (2, 3)}
    assert describe([torch.zeros(2, dtype=torch.float16)]).nbytes == 4


def test_plain_values_are_named_and_a_subclass_carrying_a_tensor_is_still_looked_into():
    values = [None, True, 1, 2.0, 1j, "s", b"b", ..., torch.float16, torch.device("cpu"), torch.strided]
    assert describe(values).tree == ["NoneType", "bool", "int", "float", "complex", "str", "bytes", "ellipsis",
                                     "dtype", "device", "layout"]

    class Tagged(int):  # an int subclass may carry attributes: its tensors are found as for any object
        pass

    tagged = Tagged(3)
    tagged.mask = torch.zeros(2, 5)
    assert describe([tagged]).tree == [{"mask": (2, 5)}]


def test_lstm_with_packed_sequence_input():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(4, 5)

        def forward(self, x):
            out, h = self.rnn(pack_padded_sequence(x, lengths=[3, 2]))
            return h

    s = summary(Net(), input_data=torch.zeros(3, 2, 4), verbose=0)
    rnn = s.layers[1]
    assert rnn.output_shapes[0]["data"] == (5, 5) and rnn.output_shapes[1] == (1, 2, 5)
    assert s.total_params == 3 * 5 * (4 + 5) + 2 * 3 * 5  # 3 gates * 5 * (4 + 5) + 2 bias vectors = 165


def test_runs_under_fake_tensor_mode():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(), warnings.catch_warnings():
        warnings.simplefilter("error")  # no "data pointer of FakeTensor" warning from the write watch
        model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
        s = summary(model, (4,), mode="train", verbose=0)
    assert s.total_params == 4 * 8 + 8 + 2 * 8 + 8 * 2 + 2
    assert [r.output_shapes for r in s.leaf_layers] == [(2, 8), (2, 8), (2, 2)]


# --- hostile output structures: bounded work, a clear shape tree ------------------------------------


class _SelfListing(nn.Module):
    def forward(self, x):
        out = [x]
        out += [out, out]  # contains itself twice
        return out


class _SelfDeque(nn.Module):
    def forward(self, x):
        import collections

        out = collections.deque([x])  # a pytree node type, not a list
        out.append(out)
        return out


class _SharedEverywhere(nn.Module):
    def forward(self, x):
        v = [x]
        for _ in range(40):  # 2**40 paths through 40 shared lists
            v = [v, v]
        return v


def test_an_output_that_contains_itself_is_described_with_a_cycle_marker():
    s = summary(_SelfListing(), (3,), verbose=0)
    assert s.layers[0].output_shapes == [(2, 3), "<list: cycle>", "<list: cycle>"]
    s = summary(_SelfDeque(), (3,), verbose=0)
    assert s.layers[0].output_shapes == [(2, 3), "<deque: cycle>"]


def test_an_output_shared_at_every_level_is_described_in_bounded_work():
    from netsummary._tracing import structure as _structure

    s = summary(_SharedEverywhere(), (3,), verbose=0)
    tree, depth = s.layers[0].output_shapes, 0
    while isinstance(tree, list):
        tree, depth = tree[0], depth + 1
    assert tree == "list" and depth == _structure._MAX_DEPTH + 1  # cut at the depth bound, by name
