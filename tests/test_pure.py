"""The known-pure fast path (netsummary/_tracing/pure.py): a forward of torch's own stateless
layers runs without the write watch and the MAC counter's dispatch mode, and gives exactly the
summary the watched, counted path gives."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as module_globals

from netsummary import summary
from netsummary._analysis.flops import SHAPE_MACS, MacCounter
from netsummary._analysis.records import _PLAIN_FIELDS, make_plain_record, make_record
from netsummary._summary import LayerRecord
from netsummary._tracing.pure import pure_forward

CPU = torch.device("cpu")


def is_pure(model: nn.Module, *inputs: torch.Tensor, fresh: bool = True, mode: str = "eval") -> bool:
    return pure_forward(list(model.named_modules()), (inputs, {}), fresh, CPU, mode)


def counted(layer: nn.Module, x: torch.Tensor) -> int:
    """MACs the dispatch counter sees for one call of ``layer`` (the independent measurement)."""
    seen: list = []
    with torch.no_grad(), MacCounter(lambda op, macs: seen.append(macs)):
        layer(x)
    assert None not in seen
    return sum(seen)


LAYERS = [
    ("linear-2d", nn.Linear(8, 16), (2, 8)),            # 2 rows * 8 * 16 = 256
    ("linear-1d", nn.Linear(8, 16), (8,)),               # 1 * 8 * 16 = 128
    ("linear-4d", nn.Linear(8, 3, bias=False), (2, 3, 5, 8)),  # 30 rows * 8 * 3 = 720
    ("linear-noncontig", nn.Linear(5, 4), "t"),
    ("linear-empty", nn.Linear(8, 4), (0, 8)),
    ("conv1d", nn.Conv1d(4, 6, 3, stride=2), (2, 4, 17)),
    ("conv2d-groups", nn.Conv2d(4, 8, 3, groups=2, dilation=2, padding=1), (2, 4, 9, 9)),
    ("conv2d-reflect", nn.Conv2d(3, 5, 3, padding=1, padding_mode="reflect"), (2, 3, 8, 8)),
    ("conv2d-unbatched", nn.Conv2d(3, 5, (3, 2)), (3, 8, 8)),
    ("conv3d", nn.Conv3d(2, 3, 2, bias=False), (1, 2, 4, 5, 6)),
    # recurrent layers: rows (T*B) times their 2-D weights' elements, against the counter's steps
    ("gru", nn.GRU(6, 10, batch_first=True), (2, 7, 6)),             # 14 rows * 3*10*(6+10) = 6,720
    ("gru-2layer-bi", nn.GRU(6, 10, num_layers=2, bidirectional=True), (7, 2, 6)),
    ("rnn-relu", nn.RNN(6, 10, nonlinearity="relu", bias=False), (7, 2, 6)),
    ("lstm", nn.LSTM(6, 10, batch_first=True), (2, 7, 6)),
    ("lstm-proj-2layer", nn.LSTM(6, 10, num_layers=2, proj_size=4, batch_first=True), (2, 7, 6)),
    ("lstm-unbatched", nn.LSTM(6, 10), (7, 6)),
    ("gru-packed", nn.GRU(6, 10, batch_first=True), "packed"),
]


@pytest.mark.parametrize("layer, shape", [(lay, shape) for _, lay, shape in LAYERS], ids=[i for i, _, _ in LAYERS])
def test_macs_from_shapes_equal_the_dispatch_counter(layer, shape):
    layer.eval()
    if shape == "packed":  # lengths 7 and 4: 11 rows
        x = nn.utils.rnn.pack_padded_sequence(torch.randn(2, 7, 6), [7, 4], batch_first=True)
    else:
        x = torch.randn(5, 6, 3).transpose(0, 2) if shape == "t" else torch.randn(*shape)
    with torch.no_grad():
        out = layer(x)
    assert SHAPE_MACS[type(layer)](layer, x, out) == counted(layer, x)


def test_macs_by_hand():
    layer = nn.Linear(8, 16)
    x = torch.randn(2, 8)
    assert SHAPE_MACS[nn.Linear](layer, x, layer(x)) == 2 * 8 * 16
    conv = nn.Conv2d(4, 8, 3, groups=2)
    x = torch.randn(1, 4, 5, 5)
    # output 1 x 8 x 3 x 3 = 72 elements, each (4 / 2) * 3 * 3 = 18 products
    assert SHAPE_MACS[nn.Conv2d](conv, x, conv(x)) == 72 * 18
    gru = nn.GRU(6, 10, num_layers=2)
    x = torch.randn(7, 2, 6)
    # 14 rows; layer 0: 3 gates * 10 * (6 + 10) = 480, layer 1: 3 * 10 * (10 + 10) = 600
    assert SHAPE_MACS[nn.GRU](gru, x, gru(x)) == 14 * (480 + 600)


def _recurrent() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.GRU(8, 16, num_layers=2, batch_first=True))


@pytest.mark.parametrize("macs", [False, True])
def test_recurrent_layers_in_eval_take_the_fast_path_with_the_same_summary(macs):
    fast, slow = _recurrent().eval(), _recurrent().eval()
    assert is_pure(fast, torch.zeros(2, 5, 6))
    assert not is_pure(fast, torch.zeros(2, 5, 6), mode="train")  # dropout between layers draws
    slow.register_forward_hook(lambda m, a, o: None)  # turns the fast path off: watched and counted
    a = summary(fast, (5, 6), verbose=0, macs=macs)
    b = summary(slow, (5, 6), verbose=0, macs=macs)
    assert a.to_dict() == b.to_dict()
    if macs:  # per sample, 5 rows: linear 6*8; GRU 3*16*(8+16) + 3*16*(16+16)
        assert a.total_macs == 5 * (6 * 8 + 3 * 16 * 24 + 3 * 16 * 32)


def _stack() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, groups=4), nn.GELU(), nn.Dropout(0.2), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.LayerNorm(32), nn.Sequential(nn.Linear(32, 16), nn.SiLU(), nn.Linear(16, 4)), nn.Softmax(-1),
    )


@pytest.mark.parametrize("macs", [False, True])
def test_the_fast_path_gives_the_watched_counted_summary(macs):
    """The same summary with and without the fast path: a no-op forward hook on the root turns
    it off (hooks can run any code), so that run has the write watch and the MAC counter."""
    fast = _stack()
    assert is_pure(fast, torch.zeros(2, 3, 12, 12))
    slow = _stack()
    slow.register_forward_hook(lambda m, a, o: None)
    assert not is_pure(slow, torch.zeros(2, 3, 12, 12))
    a = summary(fast, (3, 12, 12), verbose=0, macs=macs)
    b = summary(slow, (3, 12, 12), verbose=0, macs=macs)
    assert a.to_dict() == b.to_dict()
    if macs:  # conv 2*8*144*27 + conv 2*8*16*18 + linears 2*(32*16 + 16*4), per sample: / 2
        assert a.total_macs == 8 * 144 * 27 + 8 * 16 * 18 + 32 * 16 + 16 * 4


def test_a_pure_summary_leaves_the_model_bit_identical():
    m = _stack().train()
    state = {k: v.clone() for k, v in m.state_dict().items()}
    flags = [x.training for x in m.modules()]
    rng = torch.get_rng_state()
    summary(m, (3, 12, 12), verbose=0, macs=True)
    assert all(torch.equal(state[k], v) for k, v in m.state_dict().items())
    assert [x.training for x in m.modules()] == flags
    assert torch.equal(torch.get_rng_state(), rng)


def test_train_mode_batchnorm_is_watched_and_restored():
    m = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    assert not is_pure(m, torch.zeros(2, 4), mode="train")
    assert not is_pure(m, torch.zeros(2, 4), mode="same")
    before = m[1].running_mean.clone()
    summary(m, (4,), mode="train", verbose=0)
    assert torch.equal(m[1].running_mean, before) and int(m[1].num_batches_tracked) == 0


class MyLinear(nn.Linear):
    pass


def _foreign_hook(*args):
    return None


@pytest.mark.parametrize("case", ["subclass", "module-hook", "pre-hook", "instance-forward", "max-norm",
                                  "inplace-given", "foreign-global-hook", "function-mode", "subclass-param"])
def test_what_turns_the_fast_path_off(case):
    m = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True))
    x = torch.zeros(2, 4)
    assert is_pure(m, x) and is_pure(m, x, fresh=False) is False  # inplace ReLU on inputs given
    m = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    assert is_pure(m, x, fresh=False)
    fresh = True
    handle = None
    if case == "subclass":
        m[0] = MyLinear(4, 4)
    elif case == "module-hook":
        m[0].register_forward_hook(lambda mod, a, o: None)
    elif case == "pre-hook":
        m[1].register_forward_pre_hook(lambda mod, a: None)
    elif case == "instance-forward":
        m[0].forward = lambda t: t
    elif case == "max-norm":
        m = nn.Sequential(nn.Embedding(10, 4, max_norm=1.0))
        x = torch.zeros(2, 3, dtype=torch.long)
    elif case == "inplace-given":
        m = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True))
        fresh = False
    elif case == "foreign-global-hook":
        handle = module_globals.register_module_forward_hook(_foreign_hook)
    elif case == "subclass-param":
        m[0].weight = nn.Parameter(torch.zeros(4, 4).as_subclass(MyTensor))
    try:
        if case == "function-mode":
            with torch.device("cpu"):
                assert not is_pure(m, x, fresh=fresh)
        else:
            assert not is_pure(m, x, fresh=fresh)
    finally:
        if handle is not None:
            handle.remove()


class MyTensor(torch.Tensor):
    pass


def test_meta_and_subclass_inputs_are_not_pure():
    m = nn.Sequential(nn.Linear(4, 4))
    assert not pure_forward(list(m.named_modules()), ((torch.zeros(2, 4),), {}), True, torch.device("meta"), "eval")
    assert not is_pure(m, torch.zeros(2, 4).as_subclass(MyTensor))


def test_the_record_maker_builds_the_dataclass_record():
    values = dict(index=3, name="a.b", type="Linear", call_index=2, depth=1, parent=0, is_leaf=True,
                  input_shapes=(2, 8), output_shapes=[(2, 8), {"x": (1,)}], input_dtypes=("float32",),
                  output_dtypes=("float32", "int64"), output_bytes=64, params=72, trainable_params=8,
                  param_bytes=288, macs=5, quant_dtype="int8")
    a, b = make_record(**values), LayerRecord(**values)
    assert type(a) is LayerRecord and a == b and repr(a) == repr(b)
    assert dataclasses.asdict(a) == dataclasses.asdict(b)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.name = "c"
    with pytest.raises(TypeError):
        make_record(index=1)  # required fields stay required
    # the positional maker of plain records: the same record from the same values in field order
    plain = {f: values.get(f, LayerRecord.__dataclass_fields__[f].default) for f in _PLAIN_FIELDS}
    plain["quant_dtype"] = None
    c = make_plain_record(*(plain[f] for f in _PLAIN_FIELDS))
    assert c == LayerRecord(**plain) and c.quant_dtype is None and c.shards == ()


def test_user_code_inside_a_stock_forward_turns_the_fast_path_off(monkeypatch):
    """Stock forwards call other methods and torch.nn.functional: user code there could write or
    draw, so it takes the watched path (found by review: each of these used to stay pure)."""
    x = torch.zeros(2, 3, 8, 8)

    conv = nn.Conv2d(3, 4, 3)
    assert is_pure(nn.Sequential(conv), x)
    original = conv._conv_forward

    def writes_and_draws(inp, w, b):
        conv.bias.data.add_(1.0)
        torch.rand(1)
        return original(inp, w, b)

    conv._conv_forward = writes_and_draws  # an instance override of a helper the forward calls
    assert not is_pure(nn.Sequential(conv), x)
    before, rng = conv.bias.detach().clone(), torch.get_rng_state()
    summary(nn.Sequential(conv, nn.ReLU()), (3, 8, 8), verbose=0)
    assert torch.equal(conv.bias, before) and torch.equal(torch.get_rng_state(), rng)  # watched and restored

    bn = nn.BatchNorm1d(4).eval()
    monkeypatch.setattr(nn.BatchNorm1d, "_check_input_dim", lambda self, inp: None)  # a class-level patch
    assert not is_pure(bn, torch.zeros(2, 4))
    monkeypatch.undo()
    assert is_pure(bn, torch.zeros(2, 4))

    lin = nn.Linear(4, 4)
    monkeypatch.setattr(F, "linear", lambda *a, **k: torch.ops.aten.linear(*a, **k))  # F.linear replaced
    assert not is_pure(lin, torch.zeros(2, 4))
    monkeypatch.undo()

    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):  # user code on every save
        assert is_pure(lin, torch.zeros(2, 4))  # eval runs under no_grad: nothing is saved
        assert not is_pure(lin, torch.zeros(2, 4), mode="train")

    original_getattr = nn.Module.__getattr__
    monkeypatch.setattr(nn.Module, "__getattr__", lambda self, name: original_getattr(self, name))
    assert not is_pure(lin, torch.zeros(2, 4))  # nn.Module's own method replaced
    monkeypatch.undo()
    nn.Module.extra_helper_of_some_library = lambda self: None  # added, not replaced: no stock forward calls it
    try:
        assert is_pure(lin, torch.zeros(2, 4))
    finally:
        del nn.Module.extra_helper_of_some_library

    shadowed = nn.Linear(4, 4)
    shadowed.__dict__["weight"] = torch.zeros(4, 4)  # read instead of the parameter
    assert not is_pure(shadowed, torch.zeros(2, 4))
