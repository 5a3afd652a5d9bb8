"""Hostile arguments get netsummary's own errors, never torch's or Python's, and the model is left
as it was: self-containing and over-deep input_data, unavailable devices, forwards that need real
values on the meta device, and a hypothesis fuzz over every argument of ``summary()``."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import threading
from typing import Any

import numpy as np
import pytest
import torch
from conftest import assert_unchanged, snapshot
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from netsummary import DeviceError, ForwardError, InputSpecError, NetsummaryError, summary
from netsummary._reporting.failure import needs_real_values
from netsummary._tracing.fakelog import FAKE_TENSOR_LOGGERS, quiet_fake_tensor_logs
from netsummary._tracing.inputs import MAX_INPUT_DEPTH, MAX_INPUT_VALUES

class Counting(nn.Module):
    """A Linear that counts its forwards, so a test can prove that none ran."""

    def __init__(self, params: bool = True):
        super().__init__()
        self.fc = nn.Linear(3, 2) if params else nn.Identity()
        self.forwards = 0

    def forward(self, *args, **kwargs):
        self.forwards += 1
        x = args[0] if args else next(iter(kwargs.values()))
        while isinstance(x, (list, tuple, dict, collections.deque)):
            x = next(iter(x.values())) if isinstance(x, dict) else x[0]
        return self.fc(x)


@contextlib.contextmanager
def rejected_before_forward(model: Counting, error: type, *parts: str):
    """The block raises ``error`` with every one of ``parts`` in its message; no forward ran and
    the model is unchanged."""
    before = snapshot(model)
    with pytest.raises(error) as info:
        yield info
    message = str(info.value)
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    assert isinstance(info.value, NetsummaryError)
    assert model.forwards == 0
    assert_unchanged(before, model)


def nested(depth: int, leaf: Any) -> Any:
    """``leaf`` inside ``depth`` lists."""
    for _ in range(depth):
        leaf = [leaf]
    return leaf


# --- 1. input structures that cannot be walked ---------------------------------------------------


def test_list_that_contains_itself():
    loop = [torch.zeros(2, 3)]
    loop.append(loop)
    model = Counting()
    with rejected_before_forward(model, InputSpecError, "input_data[1]:", "without cycles",
                                 "got a list that contains itself", "(input_data[1] is input_data)") as info:
        summary(model, input_data=loop, verbose=0)
    assert info.value.value is loop


def test_dict_that_contains_itself_deeper_down():
    d: dict = {"x": torch.zeros(2, 3), "more": [1, {}]}
    d["more"][1]["back"] = d
    model = Counting()
    with rejected_before_forward(model, InputSpecError, "input_data['more'][1]['back']:",
                                 "got a dict that contains itself", "is input_data)"):
        summary(model, input_data=d, verbose=0)


def test_cycle_through_a_tuple_a_deque_and_a_dataclass():
    @dataclasses.dataclass
    class Batch:
        x: Any
        owner: Any = None

    b = Batch(torch.zeros(2, 3))
    b.owner = (b,)
    dq = collections.deque([torch.zeros(2, 3)])
    dq.append(dq)
    for data, parts in ((b, ("input_data.owner[0]:", "got a Batch that contains itself")),
                        ([dq], ("input_data[0][1]:", "got a deque that contains itself", "is input_data[0])"))):
        model = Counting()
        with rejected_before_forward(model, InputSpecError, *parts):
            summary(model, input_data=data, verbose=0)


def test_keyword_argument_that_contains_itself():
    loop: list = []
    loop.append(loop)
    model = Counting()
    with rejected_before_forward(model, InputSpecError, "kwargs['extra'][0]:", "contains itself"):
        summary(model, (3,), extra=loop, verbose=0)


def test_list_nested_500_levels():
    model = Counting()
    with rejected_before_forward(model, InputSpecError, f"expected at most {MAX_INPUT_DEPTH} levels of nested containers",
                                 f"got a list at level {MAX_INPUT_DEPTH + 1}", "input_data[0][0]", "more)..."):
        summary(model, input_data=nested(500, torch.zeros(2, 3)), verbose=0)


def test_nesting_up_to_the_limit_runs():
    model = Counting()
    s = summary(model, input_data=[nested(MAX_INPUT_DEPTH - 1, torch.zeros(2, 3))], verbose=0)
    assert s.total_params == 8 and model.forwards == 1
    model, data = Counting(), [nested(MAX_INPUT_DEPTH, torch.zeros(2, 3))]
    with rejected_before_forward(model, InputSpecError, f"level {MAX_INPUT_DEPTH + 1}"):
        summary(model, input_data=data, verbose=0)


def test_shared_containers_are_fine_but_not_exponentially_many():
    t = torch.zeros(2, 3)
    shared = [t, t]
    s = summary(Counting(), input_data=[shared, shared, {"a": shared}], verbose=0)  # a DAG, not a cycle
    assert s.total_params == 8
    doubling: Any = [t]
    for _ in range(40):  # 2**40 paths: pytree would walk them for ever
        doubling = [doubling, doubling]
    model = Counting()
    with rejected_before_forward(model, InputSpecError, f"expected at most {MAX_INPUT_VALUES:,} values",
                                 "a shared container counts each time it appears"):
        summary(model, input_data=doubling, verbose=0)


# --- 2. unavailable devices on a model without parameters ----------------------------------------


def _available(kind: str) -> bool:
    if kind == "mps":
        return torch.backends.mps.is_available()
    module = getattr(torch, kind, None)
    with contextlib.suppress(Exception):
        return bool(module.is_available())
    try:
        torch.empty(0, device=kind)
    except Exception:
        return False
    return True


@pytest.mark.parametrize("device, why", [
    ("xpu", "torch.xpu.is_available() is False"),
    ("xpu:3", "torch.xpu.is_available() is False"),
    ("mtia", "torch.mtia.is_available() is False"),
    ("mps", "torch.backends.mps.is_available() is False"),
    ("hpu", "creating a tensor there raised ModuleNotFoundError"),
    ("privateuseone", "creating a tensor there raised ModuleNotFoundError"),
    ("xla", "creating a tensor there raised NotImplementedError"),
    ("ipu", "creating a tensor there raised NotImplementedError"),
    (torch.device("xpu", 0), "torch.xpu.is_available() is False"),
])
def test_unavailable_device_without_parameters(device, why):
    dev = torch.device(device)
    if _available(dev.type):
        pytest.skip(f"{dev.type} is available here")
    model = Counting(params=False)
    with rejected_before_forward(model, DeviceError, f"device={str(dev)!r} was requested but it is not available on this machine",
                                 why) as info:
        summary(model, (3,), device=device, verbose=0)
    assert info.value.value == dev


def test_cuda_without_parameters():
    model = Counting(params=False)
    if not torch.cuda.is_available():
        for device in ("cuda", "cuda:7"):
            with rejected_before_forward(model, DeviceError, f"device={device!r} was requested but CUDA is not available"):
                summary(model, (3,), device=device, verbose=0)
        return
    n = torch.cuda.device_count()
    with rejected_before_forward(model, DeviceError, f"device='cuda:{n}' was requested but only {n} CUDA device(s) exist"):
        summary(model, (3,), device=f"cuda:{n}", verbose=0)


@pytest.mark.parametrize("device", ["gpu", "foo", "", " cpu", "cuda:-1", "cuda:x", "xpu:cuda"])
def test_nonsense_device_strings(device):
    model = Counting(params=False)
    with rejected_before_forward(model, DeviceError, f"device: unknown device {device!r}"):
        summary(model, (3,), device=device, verbose=0)


def test_availability_check_that_raises_is_a_device_error(monkeypatch):
    def broken():
        raise RuntimeError("driver exploded\nsecond line")

    monkeypatch.setattr(torch.xpu, "is_available", broken)
    model = Counting(params=False)
    with rejected_before_forward(model, DeviceError, "device='xpu' was requested but checking whether it is available "
                                 "raised RuntimeError: driver exploded"):
        summary(model, (3,), device="xpu", verbose=0)


def test_model_with_parameters_keeps_the_device_mismatch_message():
    model = Counting()
    with rejected_before_forward(model, DeviceError, "device='xpu' was requested but the model's parameters and buffers are on cpu",
                                 "call model.to('xpu') first"):
        summary(model, (3,), device="xpu", verbose=0)
    s = summary(Counting(params=False), (3,), device="cpu", verbose=0)
    assert s.total_params == 0 and s.device == "cpu"


# --- 3. forwards that need real values, on meta / fake tensors -----------------------------------


class ReadsValues(nn.Module):
    def __init__(self, how: str):
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.how = how

    def forward(self, x):
        y = self.fc(x)
        if self.how == "item":
            return y * y.sum().item()
        if self.how == "if":
            return y if (y > 0).any() else -y
        if self.how == "tolist":
            return torch.tensor(y.tolist())
        if self.how == "nonzero":
            return torch.nonzero(y)
        if self.how == "mask":
            return y[y > 0]
        if self.how == "unique":
            return torch.unique(y)
        if self.how == "numpy":
            return torch.from_numpy(y.detach().numpy())
        raise AssertionError(self.how)


READS = [
    ("item", "reading a tensor's value (.item()"),
    ("if", "reading a tensor's value"),
    ("tolist", "reading a tensor's value"),
    ("nonzero", "operator aten.nonzero.default (its output shape depends on the values)"),
    ("mask", "operator aten.nonzero.default"),
    ("unique", "operator aten._unique2.default"),
    ("numpy", "this code"),
]


@pytest.mark.parametrize("how, what", READS, ids=[r[0] for r in READS])
def test_meta_forward_that_needs_real_values_says_so(how, what):
    model = ReadsValues(how).train()
    before = snapshot(model)
    with pytest.raises(ForwardError) as info:
        summary(model, (3,), device="meta", verbose=0)
    message = str(info.value)
    assert f"  hint: {what}" in message
    assert "needs real tensor values, which the meta device does not have" in message
    assert 'summarize on a real device instead: device="cpu"' in message
    assert_unchanged(before, model)
    assert summary(model, (3,), device="cpu", verbose=0).total_params == 8  # on real values it runs
    assert_unchanged(before, model)


def test_a_plain_model_error_on_meta_gets_no_real_values_hint():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(5, 1))
    with pytest.raises(ForwardError, match="a and b must have same reduction dim") as info:
        summary(model, (3,), device="meta", verbose=0)
    assert "needs real tensor values" not in str(info.value)


def test_real_values_hint_finds_torch_error_behind_the_models_own():
    from torch._subclasses.fake_tensor import DataDependentOutputException

    try:
        try:
            raise DataDependentOutputException(torch.ops.aten._local_scalar_dense.default)
        except RuntimeError as inner:
            raise ValueError("my model could not decide") from inner
    except ValueError as err:
        hint = needs_real_values(err)
    assert hint is not None and hint.startswith("reading a tensor's value")
    lazy = needs_real_values(RuntimeError("Tensor.item() cannot be called on meta tensors"), lazy=True)
    assert "uninitialized lazy modules" in lazy and "materialize them with one real forward first" in lazy
    assert needs_real_values(KeyError("meta")) is None


class LazyReads(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.LazyLinear(2)

    def forward(self, x):
        return self.fc(x) * self.fc.weight.sum().item()


def test_lazy_model_hint_says_to_materialize_not_to_change_device():
    model = LazyReads()
    with pytest.raises(ForwardError) as info:
        summary(model, (3,), verbose=0)
    assert "uninitialized lazy modules" in str(info.value) and 'device="cpu"' not in str(info.value)


def _meta_mm_failure() -> None:
    """A meta kernel raising inside FakeTensorMode: torch logs the traceback, then re-raises."""
    with FakeTensorMode() as mode:
        a = mode.from_tensor(torch.empty(2, 2, device="meta"))
        b = mode.from_tensor(torch.empty(5, 1, device="meta"))
        with pytest.raises(RuntimeError, match="same reduction dim"):
            a @ b


def test_quiet_fake_tensor_logs_drops_only_this_threads_error_records(capfd):
    loggers = [logging.getLogger(n) for n in FAKE_TENSOR_LOGGERS]
    filters = [list(log.filters) for log in loggers]
    levels = [(log.level, log.propagate, list(log.handlers)) for log in loggers]
    _meta_mm_failure()
    assert "failed while attempting to run meta for aten.mm.default" in capfd.readouterr().err  # torch's own

    seen: list[logging.LogRecord] = []
    catcher = logging.Handler(logging.DEBUG)
    catcher.emit = seen.append
    log = loggers[0]
    log.addHandler(catcher)
    try:
        with quiet_fake_tensor_logs() as quiet, quiet_fake_tensor_logs():  # nested: each its own filter
            _meta_mm_failure()
            log.warning("a warning passes")
            other = threading.Thread(target=log.error, args=("another thread's error passes",))
            other.start()
            other.join()
        assert quiet.dropped == 1
        assert [r.getMessage() for r in seen] == ["a warning passes", "another thread's error passes"]
        seen.clear()
        _meta_mm_failure()  # after the block torch logs again
        assert [r.getMessage() for r in seen] == ["failed while attempting to run meta for aten.mm.default"]
    finally:
        log.removeHandler(catcher)
    capfd.readouterr()
    assert [list(log.filters) for log in loggers] == filters
    assert [(log.level, log.propagate, list(log.handlers)) for log in loggers] == levels


def test_quiet_fake_tensor_logs_removes_its_filter_when_the_block_raises():
    log = logging.getLogger(FAKE_TENSOR_LOGGERS[0])
    before = list(log.filters)
    with pytest.raises(KeyError), quiet_fake_tensor_logs():
        assert len(log.filters) == len(before) + 1
        raise KeyError
    assert log.filters == before


def test_meta_forward_failure_prints_nothing_on_stderr(capfd):
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(5, 1))
    with pytest.raises(ForwardError):
        summary(model, (3,), device="meta", verbose=0)
    assert capfd.readouterr().err == ""


# --- 4. fuzz ---------------------------------------------------------------------------------------
#
# Every argument is drawn valid most of the time and hostile otherwise (each with chance 1/6), so
# the fuzz reaches successful summaries, failing forwards and every validation path.

# Each model with the shape and dtype it takes.
MODELS = {
    "linear": (lambda: nn.Linear(4, 3), (4,), torch.float32),
    "conv": (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten()), (3, 5, 5), torch.float32),
    "batchnorm-train": (lambda: nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).train(), (4,), torch.float32),
    "embedding": (lambda: nn.Embedding(10, 4), (5,), torch.long),
    "lstm": (lambda: nn.LSTM(4, 5, batch_first=True), (3, 4), torch.float32),
}
_TOTAL = int(os.environ.get("NETSUMMARY_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=max(1, _TOTAL // len(MODELS)), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.long, torch.int32, torch.uint8,
          torch.bool, torch.complex64]
# Moderate dims stay small: an LSTM on fake tensors runs step by step, and real tensors must fit.
# Huge ones are refused or fail to allocate at once (2 * 10**13 elements).
dims = st.one_of(st.integers(1, 6), st.sampled_from([0, -1, -7, 10**13, 2**63, 10**20]))
shapes = st.one_of(
    st.tuples(dims), st.tuples(dims, dims), st.tuples(dims, dims, dims), st.just(()),
    st.builds(torch.Size, st.lists(st.integers(1, 5), max_size=3)),
)
bad_input_sizes = st.one_of(
    shapes, st.lists(shapes, min_size=1, max_size=3), st.tuples(shapes, shapes),
    st.sampled_from(["3,64,64", "", 3, 2.5, [], [4], [[4]], [(4,), "x"], ((4,), None), {"x": (4,)}, (4.0,),
                     (True,), ("4",), [[[(4,)]]]]),
)
bad_dtypes = st.one_of(
    st.sampled_from(DTYPES), st.lists(st.sampled_from(DTYPES), max_size=3),
    st.sampled_from(["float32", [torch.float32, "long"], torch.qint8, (torch.long,), 5]),
)
bad_batch_sizes = st.sampled_from([0, -2, 10**13, 2**63, 2.0, "2", True, None, np.int64(2), np.float32(2)])
good_devices = st.sampled_from([None, "cpu", "meta", torch.device("cpu"), torch.device("meta"), torch.device("cpu", 0)])
bad_devices = st.sampled_from(["cpu:0", "meta:0", "cuda", "cuda:7", "xpu", "mps", "hpu", "privateuseone", "gpu", "",
                               "foo:bar", 0, 1.5, torch.device("xpu")])
bad_modes = st.sampled_from(["inference", "", None, 1, "EVAL"])
COLUMN_NAMES = ["input_shape", "output_shape", "params", "params_percent", "kernel_shape", "trainable", "macs",
                "output_bytes", "formula"]
good_columns = st.one_of(st.none(), st.lists(st.sampled_from(COLUMN_NAMES), min_size=1, max_size=4, unique=True))
bad_columns = st.one_of(st.lists(st.sampled_from([*COLUMN_NAMES, "bogus", ""]), max_size=4),
                        st.sampled_from(["params", 3, ()]))
good_formats = st.sampled_from([None, "classic", "tree", "markdown", "html", "json", "csv"])
bad_formats = st.sampled_from(["yaml", 1, "", "TREE"])
bad_depths = st.sampled_from([-1, "2", 1.5, True])


@st.composite
def tensors(draw) -> torch.Tensor:
    """Any small tensor: empty axes, NaN, a transposed view, requiring grad, on meta."""
    shape = draw(st.lists(st.integers(0, 5), max_size=3))
    dtype = draw(st.sampled_from(DTYPES))
    device = draw(st.sampled_from(["cpu", "cpu", "cpu", "meta"]))
    t = torch.full(shape, draw(st.sampled_from([0.0, 1.0, float("nan")])) if dtype.is_floating_point else 1,
                   dtype=dtype, device=device)
    if t.dim() == 2 and draw(st.booleans()):
        t = t.t()
    if (dtype.is_floating_point or dtype.is_complex) and draw(st.booleans()):
        t.requires_grad_()
    return t


def _self_list():
    loop: list = [torch.zeros(2, 4)]
    loop.append(loop)
    return loop


def _self_dict():
    d: dict = {"x": torch.zeros(2, 4)}
    d["d"] = d
    return d


def _doubling():
    x: Any = [torch.zeros(2, 4)]
    for _ in range(30):
        x = [x, x]
    return x


odd_values = st.sampled_from([b"x", range(3), frozenset({1}), Ellipsis, torch.float32, torch.device("meta"), np.zeros(2)])
leaves = st.one_of(tensors(), st.none(), st.integers(-3, 3), st.text(max_size=3), st.floats(), odd_values)
structures = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner),
                            st.dictionaries(st.sampled_from(["x", "input", "a", "b"]), inner, max_size=2),
                            st.builds(collections.OrderedDict, st.dictionaries(st.sampled_from(["x", "a"]), inner, max_size=2)),
                            st.builds(collections.deque, st.lists(inner, max_size=2))),
    max_leaves=6,
)
_SPECIAL_DATA = {
    "self-list": _self_list, "self-dict": _self_dict, "doubling": _doubling,
    "deep": lambda: nested(300, torch.zeros(2, 4)), "int-keys": lambda: {0: torch.zeros(2, 4)},
}
bad_input_datas = st.one_of(tensors(), structures, st.sampled_from([*sorted(_SPECIAL_DATA), "own-parameter"]))


def _bits(t: torch.Tensor) -> bytes:
    return t.detach().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


@pytest.mark.parametrize("name", list(MODELS))
@FUZZ
@given(data=st.data())
def test_fuzz_summary_arguments(name, data):
    build, good_size, good_dtype = MODELS[name]
    model = build()

    def draw(key: str, good: st.SearchStrategy, bad: st.SearchStrategy) -> Any:
        hostile = data.draw(st.sampled_from(range(6)), label=f"{key} hostile?") == 3  # 0 and 5 are drawn more often
        return data.draw(bad if hostile else good, label=key)

    kwargs: dict[str, Any] = {"verbose": 0}
    if data.draw(st.integers(0, 3), label="input_data instead of input_size?") == 0:
        run = data.draw(st.integers(1, 3), label="batch")
        example = (torch.rand(run, *good_size) * 9).to(good_dtype)  # drawn before the snapshot
        if good_dtype.is_floating_point and data.draw(st.booleans(), label="requires_grad"):
            example.requires_grad_()
        value = draw("input_data", st.sampled_from([example, [example], (example,)]), bad_input_datas)
        if isinstance(value, str) and value in _SPECIAL_DATA:
            value = _SPECIAL_DATA[value]()
        elif isinstance(value, str) and value == "own-parameter":  # the model's own weight as its input
            value = [next(model.parameters())]
        kwargs["input_data"] = value
        if data.draw(st.integers(0, 9), label="also input_size?") == 0:
            kwargs["input_size"] = good_size
    else:
        kwargs["input_size"] = draw("input_size", st.just(good_size), bad_input_sizes)
        kwargs["dtypes"] = draw("dtypes", st.sampled_from([None, [good_dtype], good_dtype]), bad_dtypes)
        kwargs["batch_size"] = draw("batch_size", st.integers(1, 4) | st.just(-1), bad_batch_sizes)
    kwargs["device"] = draw("device", good_devices, bad_devices)
    kwargs["mode"] = draw("mode", st.sampled_from(["eval", "train", "same"]), bad_modes)
    kwargs["format"] = draw("format", good_formats, bad_formats)
    kwargs["columns"] = draw("columns", good_columns, bad_columns)
    kwargs["depth"] = draw("depth", st.sampled_from([None, 0, 1, 3]), bad_depths)
    kwargs.update(draw("forward kwargs", st.just({}), st.fixed_dictionaries({"foo": leaves})))

    before = snapshot(model)
    bits = {k: _bits(v) for k, v in model.state_dict().items()}
    try:
        s = summary(model, **kwargs)
    except NetsummaryError as err:
        event(type(err).__name__)
    else:
        event("summary")
        assert s.total_params == sum(p.numel() for p in model.parameters())  # parameters() is unique
    assert_unchanged(before, model)
    assert {k: _bits(v) for k, v in model.state_dict().items()} == bits
