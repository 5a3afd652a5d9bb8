"""Paused leaves (netsummary/_tracing/pure.py: pure_leaves, netsummary/_tracing/trace.py): in a
forward that is watched as a whole, the write watch or MAC counter is paused inside the leaves
that are torch's own stateless layers, and their MACs come from their shapes. The summary must be
exactly the one the fully watched forward gives, writes outside those leaves must still be
undone, and the pause must never outlive its call or leak into another thread."""

from __future__ import annotations

import functools
import threading

import pytest
import torch
import torchvision
from torch import nn

import netsummary._api as api
from netsummary import ForwardError, summary
from netsummary._analysis.flops import MacCounter
from netsummary._tracing.guard import ModelGuard
from netsummary._tracing import pure
from netsummary._tracing.pure import pure_call_check, pure_leaves
from netsummary._tracing.trace import Tracer

CPU = torch.device("cpu")


class Block(nn.Module):
    """A user's block (so the forward is watched) around torch's own leaves."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)              # [2,3,6,6] -> [2,4,4,4]
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU()
        self.lin = nn.Linear(64, 8)                 # [2,64] -> [2,8]
        self.w = nn.Parameter(torch.randn(8, 5))    # the block's own matmul: [2,8] @ [8,5]
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lin(self.act(self.bn(self.conv(x))).flatten(1))
        self.calls += 1  # a write by the user's own code, between paused leaves
        return y @ self.w


def unpaused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "pure_leaves", lambda named, dev, mode: frozenset())


def test_macs_by_hand_and_the_same_summary_as_unpaused(monkeypatch):
    m = Block().eval()
    s = summary(m, (3, 6, 6), batch_size=2, verbose=0, macs=True)
    # conv: 2*4*4*4 outputs * 3*3*3 = 3,456; lin: 2 rows * 64 * 8 = 1,024; matmul: 2 * 8 * 5 = 80
    by_name = {r.name: r.macs for r in s.layers}
    assert by_name["conv"] == 3456 and by_name["lin"] == 1024 and by_name["bn"] == 0
    assert s.total_macs == 3456 + 1024 + 80
    assert float(m.calls) == 0.0  # the block's own write was undone
    unpaused(monkeypatch)
    assert summary(m, (3, 6, 6), batch_size=2, verbose=0, macs=True).to_dict() == s.to_dict()


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "squeezenet1_0"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_torchvision_models_give_the_unpaused_summary(monkeypatch, name, mode):
    m = getattr(torchvision.models, name)()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    paused = summary(m, (3, 64, 64), verbose=0, macs=True, mode=mode)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    unpaused(monkeypatch)
    assert summary(m, (3, 64, 64), verbose=0, macs=True, mode=mode).to_dict() == paused.to_dict()


def ops_seen(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The operators the MAC counter's dispatch mode receives."""
    seen: list[str] = []
    original = MacCounter.__torch_dispatch__

    def spy(self, func, types, args=(), kwargs=None):
        seen.append(str(func))
        return original(self, func, types, args, kwargs)

    monkeypatch.setattr(MacCounter, "__torch_dispatch__", spy)
    return seen


def test_the_counter_never_sees_inside_a_paused_leaf(monkeypatch):
    seen = ops_seen(monkeypatch)
    summary(Block().eval(), (3, 6, 6), verbose=0, macs=True)
    assert "aten.mm.default" in seen  # the block's own y @ w
    assert not any("convolution" in op or "addmm" in op or "batch_norm" in op for op in seen), seen


def test_what_keeps_a_leaf_watched(monkeypatch):
    m = Block().eval()
    named = list(m.named_modules())
    assert {id(m.conv), id(m.bn), id(m.act), id(m.lin)} == set(pure_leaves(named, CPU, "eval"))
    m.lin.register_forward_hook(lambda mod, args, out: None)  # user code runs in its call
    m.act.inplace = True  # it writes its input, which may be a model tensor
    assert pure_leaves(named, CPU, "eval") == {id(m.conv), id(m.bn)}
    assert pure_leaves(named, torch.device("meta"), "eval") == frozenset()
    gru = nn.GRU(4, 4)  # its hx may come as a keyword, which the pre-hook cannot see
    assert pure_leaves(list(nn.Sequential(Block(), gru).named_modules()), CPU, "eval").isdisjoint({id(gru)})
    with MacCounter(lambda op, macs: None):  # another dispatch mode is active: nothing is paused
        assert pure_leaves(named, CPU, "eval") == frozenset()
    check = pure_call_check()  # at each call: batch norm writes its statistics in training
    assert check(m.bn) and not check(m.bn.train())


def test_a_hooked_leaf_writing_a_buffer_is_restored():
    m = Block().eval()
    def hook(mod: nn.Module, args: tuple, out: torch.Tensor) -> None:
        m.calls.add_(10)

    m.lin.register_forward_hook(hook)
    s = summary(m, (3, 6, 6), verbose=0, macs=True)
    assert float(m.calls) == 0.0 and s.total_macs == 3456 // 2 + 1024 // 2 + 80 // 2  # per sample


class WritesThroughReLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.act = nn.ReLU(inplace=True)
        self.register_buffer("table", torch.tensor([-1.0, 2.0, -3.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act(self.table).sum()  # relu_ on a model buffer


def test_an_inplace_leaf_on_a_model_buffer_is_restored():
    m = WritesThroughReLU()
    summary(m, (3,), verbose=0, macs=True)
    assert m.table.tolist() == [-1.0, 2.0, -3.0]


class Subclass(torch.Tensor):
    pass


class PassesSubclass(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.as_subclass(Subclass))


def test_a_leaf_given_a_tensor_subclass_stays_counted(monkeypatch):
    seen = ops_seen(monkeypatch)
    s = summary(PassesSubclass(), (4,), batch_size=2, verbose=0, macs=True)
    assert any("addmm" in op for op in seen)
    assert s.total_macs == 2 * 4 * 4


class Mismatch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 4)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.lin(x)  # x has 3 features, the layer wants 5


def test_a_paused_leaf_that_raises_leaves_no_mode_behind():
    m = Mismatch()
    for _ in range(2):
        with pytest.raises(ForwardError, match="lin"):
            summary(m, (3,), verbose=0, macs=True)
        assert torch._C._len_torch_dispatch_stack() == 0
        assert float(m.calls) == 0.0
    assert summary(nn.Sequential(Block()), (3, 6, 6), verbose=0, macs=True).total_macs == (3456 + 1024 + 80) // 2


def test_a_pause_that_never_reports_back_is_undone_on_exit():
    """Ctrl-C inside a paused leaf skips torch's always-called hooks (they catch Exception only):
    the tracer's exit puts the paused mode back before it removes the counter."""
    m = Block().eval()
    named = list(m.named_modules())
    guard = ModelGuard(m, [x for _, x in named])
    tracer = Tracer(m, named, count_macs=True, guard=guard, pausable=pure_leaves(named, CPU, "eval"))
    with guard:
        depth = torch._C._len_torch_dispatch_stack()
        with tracer:
            pre_hook = next(h for h in torch.nn.modules.module._global_forward_pre_hooks.values()
                            if getattr(h, "__netsummary_hook__", False))
            pre_hook(m, (torch.zeros(1, 3, 6, 6),))  # the block's call, then the leaf's: paused
            pre_hook(m.conv, (torch.zeros(1, 3, 6, 6),))
            assert torch._C._len_torch_dispatch_stack() == depth - 1
        assert torch._C._len_torch_dispatch_stack() == depth
    assert torch._C._len_torch_dispatch_stack() == 0


def test_the_pause_stays_in_the_summarizing_thread():
    """Another thread runs the same model while it is summarized: its dispatch-mode stack stays
    empty (a pause ending in its call must not push this thread's mode there)."""
    m = Block().eval()
    stop = threading.Event()
    leaked: list[int] = []

    def other() -> None:
        x = torch.randn(2, 3, 6, 6)
        while not stop.is_set():
            with torch.no_grad():
                m.lin(m.act(m.bn(m.conv(x))).flatten(1))
            if torch._C._len_torch_dispatch_stack():
                leaked.append(torch._C._len_torch_dispatch_stack())

    t = threading.Thread(target=other)
    t.start()
    try:
        results = {summary(m, (3, 6, 6), verbose=0, macs=True).total_macs for _ in range(20)}
    finally:
        stop.set()
        t.join()
    assert not leaked
    assert results == {(3456 + 1024 + 80) // 2}


def test_records_of_identical_calls_do_not_share_their_shape_lists():
    """The tracer shares one description between calls that saw the same (shape, dtype); a list
    a user edits on one record stays on that record."""
    s = summary(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4)), (4,), verbose=0)
    first, second = s.layers[1], s.layers[2]
    assert first.input_shapes == second.input_shapes == [(2, 4)]  # as run: 2 samples
    first.input_shapes.append("edited")
    assert second.input_shapes == [(2, 4)]


class NestedBlock(nn.Module):
    def __init__(self, hooked: bool) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        if hooked:  # user code in its call: counted operator by operator
            self.lin.register_forward_hook(lambda mod, args, out: None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x).relu()


@pytest.mark.parametrize("hooked", [False, True], ids=["paused", "counted"])
def test_a_nested_tensor_input_is_counted_either_way(hooked):
    """A nested (ragged) tensor has no sizes: the counter's memo must not ask for them (it made
    the forward fail before)."""
    nt = torch.nested.nested_tensor([torch.randn(2, 4), torch.randn(3, 4)])
    s = summary(NestedBlock(hooked), input_data=nt, verbose=0, macs=True)
    assert s.total_macs == (2 + 3) * 4 * 4  # 5 rows * 4 in * 4 out
    assert s.layers[-1].output_shapes == [(2, 4), (3, 4)]


# What the forward itself may change after the pre-forward check (found by review): each must keep
# the leaf's call watched, so that the model comes back unchanged.

class KeepsDropoutOn(nn.Module):
    """MC dropout: its train() override keeps batch norm and dropout training under mode="eval"."""

    def __init__(self) -> None:
        super().__init__()
        self.lin, self.bn, self.drop = nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)

    def train(self, mode: bool = True) -> "KeepsDropoutOn":
        super().train(mode)
        self.bn.training = self.drop.training = True
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.bn(self.lin(x)))


class SwitchesToTraining(KeepsDropoutOn):
    def train(self, mode: bool = True) -> "SwitchesToTraining":
        return nn.Module.train(self, mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.bn.train()
        self.drop.train()
        return self.drop(self.bn(self.lin(x)))


@pytest.mark.parametrize("cls", [KeepsDropoutOn, SwitchesToTraining])
def test_a_leaf_training_at_its_call_stays_watched(cls):
    m = cls()
    rng = torch.get_rng_state()
    summary(m, (4,), verbose=0)
    assert int(m.bn.num_batches_tracked) == 0 and torch.equal(m.bn.running_mean, torch.zeros(4))
    assert torch.equal(rng, torch.get_rng_state())  # dropout's draw was undone


class HooksItsLeaf(nn.Module):
    def __init__(self, global_hook: bool) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.global_hook = global_hook
        self.register_buffer("n", torch.zeros(()))

    def bump(self, *args: object) -> None:
        self.n.add_(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.global_hook:
            with _global_hook(self.bump):
                return self.lin(x)
        handle = self.lin.register_forward_pre_hook(self.bump)
        try:
            return self.lin(x)
        finally:
            handle.remove()


class _global_hook:
    def __init__(self, fn) -> None:
        self.fn = fn

    def __enter__(self) -> None:
        self.handle = torch.nn.modules.module.register_module_forward_pre_hook(lambda mod, args: self.fn())

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


@pytest.mark.parametrize("global_hook", [False, True], ids=["module hook", "global hook"])
def test_a_hook_installed_by_the_forward_keeps_the_leaf_watched(global_hook):
    m = HooksItsLeaf(global_hook)
    summary(m, (4,), verbose=0)
    assert float(m.n) == 0.0


class Bumps(torch.overrides.TorchFunctionMode):
    def __init__(self, buf: torch.Tensor) -> None:
        super().__init__()
        self.buf = buf

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.nn.functional.linear:
            with torch.no_grad():
                self.buf.add_(1)
        return func(*args, **(kwargs or {}))


class EntersModes(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.lin, self.kind = nn.Linear(4, 4), kind
        self.register_buffer("n", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "function mode":
            with Bumps(self.n):
                return self.lin(x)

        def pack(t: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                self.n.add_(1)
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            return self.lin(x)


@pytest.mark.parametrize("kind, mode", [("function mode", "eval"), ("saved-tensor hooks", "train")])
def test_a_mode_entered_inside_the_forward_keeps_the_leaf_watched(kind, mode):
    m = EntersModes(kind)
    summary(m, (4,), verbose=0, mode=mode)
    assert float(m.n) == 0.0


class Bumping(torch.Tensor):
    """A tensor subclass whose __torch_function__ writes a model buffer (user code in a leaf)."""

    buf: torch.Tensor | None = None

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if Bumping.buf is not None:
            with torch.no_grad():
                torch.Tensor.add_(Bumping.buf, 1)
        return super().__torch_function__(func, types, args, kwargs or {})


class SubclassByKeyword(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(4, 4)
        self.register_buffer("n", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        Bumping.buf = self.n
        try:
            out, _ = self.rnn(x, hx=torch.zeros(1, x.shape[1], 4).as_subclass(Bumping))
        finally:
            Bumping.buf = None
        return out.as_subclass(torch.Tensor)


class SubclassAsAttribute(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.register_buffer("n", torch.zeros(()))
        weight = self.lin.weight.detach().clone().as_subclass(Bumping)
        del self.lin.weight
        self.lin.weight = weight  # a plain attribute now, not a registered parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        Bumping.buf = self.n
        try:
            return self.lin(x).as_subclass(torch.Tensor)
        finally:
            Bumping.buf = None


@pytest.mark.parametrize("cls, size", [(SubclassByKeyword, (2, 4)), (SubclassAsAttribute, (4,))])
def test_a_subclass_reaching_a_leaf_another_way_keeps_it_watched(cls, size):
    m = cls()
    summary(m, size, verbose=0)
    assert float(m.n) == 0.0


def test_patched_torch_code_is_not_trusted(monkeypatch):
    """Torch functions stock forwards call, replaced by code from outside torch, even wrapped with
    functools.wraps (which copies __module__), or a stock forward wrapped before netsummary was
    imported: the leaves stay watched."""
    m = nn.Sequential(Block())
    m[0].register_buffer("n", torch.zeros(()))

    def bump() -> None:
        m[0].n.add_(1)

    layer_norm = torch.layer_norm
    gelu = torch.nn.functional.gelu
    flatten = torch.Tensor.flatten
    forward = nn.Linear.forward

    @functools.wraps(forward)
    def wrapped_forward(self, x):
        bump()
        return forward(self, x)

    cases = [
        (torch.nn.functional, "relu", functools.wraps(torch.nn.functional.relu)(
            lambda *a, **k: (bump(), torch.relu(a[0]))[1])),
        (torch, "conv2d", lambda *a, **k: (bump(), torch._C._VariableFunctions.conv2d(*a, **k))[1]),
        (torch.Tensor, "flatten", lambda self, *a: (bump(), flatten(self, *a))[1]),
    ]
    for owner, name, patched in cases:
        with monkeypatch.context() as patch:
            patch.setattr(owner, name, patched)
            summary(m, (3, 6, 6), verbose=0, macs=True)
        assert float(m[0].n) == 0.0, name
    with monkeypatch.context() as patch:  # as if a library had wrapped it before netsummary's import
        patch.setattr(nn.Linear, "forward", wrapped_forward)
        patch.setitem(pure._STOCK, nn.Linear, wrapped_forward)
        summary(m, (3, 6, 6), verbose=0, macs=True)
    assert float(m[0].n) == 0.0
    assert (layer_norm, gelu) == (torch.layer_norm, torch.nn.functional.gelu)


def test_linear_macs_come_from_its_weight():
    """A Linear whose weight was swapped for another shape (layer surgery) runs that weight:
    rows * weight.shape[1] * weight.shape[0], as the counter sees it."""
    lin = nn.Linear(16, 16)
    lin.weight = nn.Parameter(torch.randn(4, 16))
    lin.bias = nn.Parameter(torch.randn(4))
    for model in (nn.Sequential(lin), nn.Sequential(Wrapper(lin))):  # the known-pure path, a paused leaf
        assert summary(model, (16,), batch_size=1, verbose=0, macs=True).total_macs == 16 * 4


class Wrapper(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


class CatchesCtrlC(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(1024, 1024)
        self.register_buffer("n", torch.zeros(()))
        self.stack_after_catch: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        try:
            for _ in range(10_000):  # Ctrl-C lands in the paused leaf (nearly all the time is spent there)
                y = self.lin(x)
        except KeyboardInterrupt:
            self.stack_after_catch = torch._C._len_torch_dispatch_stack()
        self.n.add_(1)  # watched again: restored after the summary
        return y


def test_ctrl_c_inside_a_paused_leaf_puts_the_mode_back_before_it_is_raised():
    """torch's always-called hooks catch Exception only: a KeyboardInterrupt the model catches
    would leave the rest of its forward unwatched, unless the mode goes back first."""
    import os
    import signal

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    m = CatchesCtrlC()
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        summary(m, (1024,), verbose=0)
    finally:
        timer.cancel()
    assert m.stack_after_catch == 1  # the write watch, back on this thread's stack
    assert float(m.n) == 0.0
    assert torch._C._len_torch_dispatch_stack() == 0
