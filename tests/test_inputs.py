"""Bad input gets a clear error before any forward runs, and the model is left unchanged."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_unchanged, snapshot
from torch import nn

from netsummary import DeviceError, InputSpecError, InputTypeError, NetsummaryError, summary


class CountingNet(nn.Module):
    """Counts its forwards, so tests can prove no forward ran."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.bn = nn.BatchNorm1d(2)
        self.forwards = 0

    def forward(self, x):
        self.forwards += 1
        return self.bn(self.fc(x))


BAD = [
    ("negative-dim", dict(input_size=(3, -1)), InputSpecError, r"dimensions must be positive, got -1 in \(3, -1\)"),
    ("zero-dim", dict(input_size=(0,)), InputSpecError, r"must be positive, got 0"),
    ("float-dim", dict(input_size=(3.0,)), InputTypeError, r"dimensions must be integers, got 3.0"),
    ("str-dim", dict(input_size=("3",)), InputTypeError, r"dimensions must be integers, got str '3'"),
    ("bool-dim", dict(input_size=(True,)), InputTypeError, r"must be integers, got True"),
    ("list-of-ints", dict(input_size=[3]), InputSpecError, r"for one input pass a tuple \(3,\)"),
    ("string", dict(input_size="3,64,64"), InputTypeError, r"expected a tuple such as \(3, 64, 64\).*got str"),
    ("int", dict(input_size=3), InputTypeError, r"got int 3"),
    ("empty-list", dict(input_size=[]), InputSpecError, r"got an empty list"),
    ("nested-bad", dict(input_size=[(3,), "x"]), InputTypeError, r"input_size\[1\]: expected a shape"),
    ("dtypes-length", dict(input_size=(3,), dtypes=[torch.float, torch.long]), InputSpecError,
     r"one dtype per input \(1 input\), got 2"),
    ("dtypes-type", dict(input_size=(3,), dtypes=["float32"]), InputTypeError, r"list of torch.dtype"),
    ("batch-zero", dict(input_size=(3,), batch_size=0), InputSpecError, r"batch_size: expected -1 .* got 0"),
    ("batch-float", dict(input_size=(3,), batch_size=2.0), InputTypeError, r"batch_size: expected -1 or a positive int"),
    # no input at all (not even kwargs) is a parameter-only summary: tests/test_no_forward.py
    ("both", dict(input_size=(3,), input_data=torch.zeros(2, 3)), InputSpecError, r"got both"),
    ("mode", dict(input_size=(3,), mode="inference"), InputSpecError, r"mode: expected one of 'eval', 'train', 'same', got 'inference'"),
    ("device-unknown", dict(input_size=(3,), device="gpu"), DeviceError, r"unknown device 'gpu'"),
    ("device-type", dict(input_size=(3,), device=0.5), DeviceError, r"got float 0.5"),
    ("print-fn", dict(input_size=(3,), print_fn="stdout"), InputTypeError, r"print_fn: expected a callable"),
    ("verbose", dict(input_size=(3,), verbose="1"), InputTypeError, r"verbose: expected 0 \(silent\) or 1"),
    ("huge", dict(input_size=(10**13,)), InputSpecError, r"input 0: cannot create a float32 tensor of shape \(2, 10000000000000\)"),
    ("overflow-dim", dict(input_size=(10**20,)), InputSpecError, r"dimension 100000000000000000000 is larger than a tensor can have"),
    ("overflow-batch", dict(input_size=(3,), batch_size=10**20), InputSpecError, r"positive int below 2\*\*63"),
    ("quantized-dtype", dict(input_size=(3,), dtypes=[torch.qint8]), InputSpecError, r"cannot create a qint8 tensor"),
    ("dict-int-keys", dict(input_data={0: torch.zeros(2, 3)}), InputSpecError, r"its keys must be strings; got 0"),
    ("meta-data-cpu-model", dict(input_data=torch.zeros(2, 3, device="meta")), DeviceError,
     r"input_data: a tensor on meta cannot be moved to cpu"),
    ("kwargs-only", dict(x=torch.zeros(2, 3)), InputSpecError, r"got neither \(keyword arguments \['x'\] go to forward"),
]


@pytest.mark.parametrize("kwargs, error, match", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_rejected_before_the_forward(kwargs, error, match):
    model = CountingNet().train()
    before = snapshot(model)
    with pytest.raises(error, match=match) as info:
        summary(model, **{"verbose": 0, **kwargs})
    assert isinstance(info.value, NetsummaryError)
    assert model.forwards == 0
    assert_unchanged(before, model)


def test_error_classes_are_catchable_as_builtins():
    with pytest.raises(ValueError):
        summary(nn.Linear(3, 2), (0,), verbose=0)
    with pytest.raises(TypeError):
        summary(nn.Linear(3, 2), "3", verbose=0)
    with pytest.raises(InputTypeError, match="expected a torch.nn.Module, got function"):
        summary(lambda x: x, (3,), verbose=0)


def test_error_carries_the_offending_value():
    with pytest.raises(InputSpecError) as info:
        summary(nn.Linear(3, 2), (3, -1), verbose=0)
    assert info.value.value == (3, -1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", torch.device("cuda", 0)], ids=str)
def test_cuda_without_cuda_is_an_error_not_a_fallback(device):
    with pytest.raises(DeviceError, match="CUDA is not available"):
        summary(nn.Linear(3, 2), (3,), device=device, verbose=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_model_on_cpu_with_device_cuda_names_both_devices():
    with pytest.raises(DeviceError, match=r"device='cuda' was requested but the model's parameters .* are on cpu"):
        summary(nn.Linear(3, 2), (3,), device="cuda", verbose=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_model_inferred_and_unchanged():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).cuda().train()
    before = snapshot(model)
    for device in (None, "cuda", "cuda:0", torch.device("cuda")):
        s = summary(model, (3,), device=device, verbose=0)
        assert s.device == "cuda:0" and s.total_params == 3 * 4 + 4 + 2 * 4
    assert_unchanged(before, model)


def test_meta_model_and_meta_device_match_cpu(unchanged):
    def build(device):
        with torch.device(device):
            return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.LazyLinear(5))

    cpu = summary(build("cpu"), (3, 8, 8), verbose=0)
    meta = summary(build("meta"), (3, 8, 8), verbose=0)
    model = build("cpu")
    with unchanged(model):  # a lazy model is summarized through a shape-only copy: it stays lazy
        meta_of_cpu = summary(model, (3, 8, 8), device="meta", verbose=0)
    assert type(model[3]) is nn.LazyLinear
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert meta.device == meta_of_cpu.device == "meta"
    for s in (meta, meta_of_cpu):
        assert s.total_params == cpu.total_params == 8 * 27 + 8 + 16 + 5 * 8 * 36 + 5  # lazy: 288 in
        assert [r.output_shapes for r in s.layers] == [r.output_shapes for r in cpu.layers]
        assert (s.param_bytes, s.output_bytes) == (cpu.param_bytes, cpu.output_bytes)


def test_dtype_follows_the_model_and_bytes_follow_the_dtype():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
    half = summary(nn.Sequential(nn.Linear(8, 8), nn.ReLU()).to(torch.bfloat16), (8,), verbose=0)
    full = summary(model, (8,), verbose=0)
    assert half.input_dtypes == ("bfloat16",) and full.input_dtypes == ("float32",)
    assert full.param_bytes == 72 * 4 and half.param_bytes == 72 * 2  # 8*8 + 8 = 72 elements
    assert half.output_bytes * 2 == full.output_bytes


def test_numpy_ints_and_tuple_of_shapes_are_accepted():
    import numpy as np

    s = summary(nn.Bilinear(3, 2, 1), ((3,), (2,)), batch_size=np.int64(3), verbose=0)
    assert s.layers[0].input_shapes == [(3, 3), (3, 2)] and s.total_params == 3 * 2 + 1  # 1*3*2 + 1


def test_batch_size_positive_is_shown_and_used():
    s = summary(nn.Linear(4, 2), (4,), batch_size=5, verbose=0)
    assert s.layers[0].output_shapes == (5, 2)
    assert s.input_bytes == 5 * 4 * 4  # five samples of four float32
    assert "[5, 2]" in str(s)


def test_input_data_nested_structures_and_non_tensors_pass_through():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, batch, name=None, scale=1):
            assert name == "x" and scale == 3
            return {"y": self.fc(batch["a"][0]) * scale, "extra": None, "tag": name}

    data = [{"a": (torch.zeros(2, 3), None)}]
    s = summary(Net(), input_data=data, name="x", scale=3, verbose=0)
    assert s.layers[0].output_shapes == {"y": (2, 2), "extra": "NoneType", "tag": "str"}
    assert s.input_shapes == [{"a": [(2, 3), "NoneType"]}, {"name": "str", "scale": "int"}]  # keywords by name
    assert s.input_bytes == 2 * 3 * 4


def test_print_fn_routes_the_table_once(capsys):
    lines = []
    s = summary(nn.Linear(6, 3), (6,), print_fn=lines.append)
    assert len(lines) == 1 and lines[0] == str(s)
    assert capsys.readouterr().out == ""
    summary(nn.Linear(6, 3), (6,))
    assert capsys.readouterr().out == str(s) + "\n"
    summary(nn.Linear(6, 3), (6,), print_fn=None)
    summary(nn.Linear(6, 3), (6,), verbose=0)
    assert capsys.readouterr().out == ""
    assert repr(s) == "<Summary of Linear: 21 params, 1 leaf rows>"  # a REPL shows this, not the table again


def test_distributed_prints_on_rank_zero_only(monkeypatch):
    import torch.distributed as dist

    lines = []
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 1)
    s = summary(nn.Linear(2, 2), (2,), print_fn=lines.append)
    assert lines == [] and s.total_params == 6  # rank 1: no table, same data
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 0)
    summary(nn.Linear(2, 2), (2,), print_fn=lines.append)
    assert len(lines) == 1
