"""What the known-pure checks trust (netsummary/_tracing/pure.py, trust.py), from a review that broke them:
code that passes for torch's own (C wrappers forwarding ``__code__`` or ``__eq__``, caches around
a user's function), patches made while the forward runs (inside the model's own block, or by
another thread), other ways code gets into a stock layer (descriptors, a replaced module global,
a mapping whose reads run code), and inputs whose operators a shape formula does not give
(complex convolutions, forward-mode AD). Each case must give exactly the summary of the fully
watched forward and leave the model as it was."""

from __future__ import annotations

import functools
import sys
import threading
import time
import types
from unittest import mock

import pytest
import torch
import torch.autograd.forward_ad as fwad
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import conv as conv_module
from torch.nn.modules import module as module_globals

import netsummary._api as api
from netsummary import summary
from netsummary._tracing import pure, trust

CPU = torch.device("cpu")
LINEAR = F.linear  # torch's own, kept before any test replaces it


def watched(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fully watched forward: neither the pure path nor paused leaves."""
    monkeypatch.setattr(api, "pure_forward", lambda *a, **k: False)
    monkeypatch.setattr(api, "pure_leaves", lambda *a, **k: frozenset())


def same_as_watched(monkeypatch: pytest.MonkeyPatch, make, *args, **kwargs):
    """The summary of a fresh model from ``make`` equals the watched one's; both leave it as it was."""
    results = []
    for run_watched in (False, True):
        if run_watched:
            watched(monkeypatch)
        m = make()
        before = {k: v.clone() for k, v in m.state_dict().items()}
        results.append(summary(m, *args, verbose=0, **kwargs).to_dict())
        after = m.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before), "the model was changed"
    assert results[0] == results[1]
    return results[0]


def writing_linear(x, weight, bias=None):
    """A user's F.linear that also writes the weight and runs a matmul of its own."""
    with torch.no_grad():
        weight.add_(1.0)
    return LINEAR(x @ torch.eye(x.shape[-1]), weight, bias)


class Seq(nn.Sequential):
    pass


def two_linears():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 3))


class EqualToAnything:
    """Compares equal to every object, as a proxy forwarding ``__eq__`` to what it wraps does."""

    def __init__(self, f):
        self.f = f

    def __eq__(self, other):
        return True

    __hash__ = object.__hash__

    def __call__(self, *args, **kwargs):
        return self.f(*args, **kwargs)


@pytest.mark.parametrize("replacement", [
    EqualToAnything(writing_linear),
    functools.lru_cache(None)(writing_linear),  # a C wrapper around a user's function
], ids=["equal-to-anything", "lru_cache"])
def test_a_replaced_function_that_passes_for_torchs_own_is_not_trusted(monkeypatch, replacement):
    monkeypatch.setattr(F, "linear", replacement)
    assert not trust.namespaces_stock()
    s = same_as_watched(monkeypatch, two_linears, (3,), macs=True)
    # each Linear: rows 2 * (in * in for the user's eye matmul + in * out): 2*(9+12) + 2*(16+12) = 98, per sample 49
    assert s["total_macs"] == 49


def test_a_wrapt_function_wrapper_is_not_trusted(monkeypatch):
    wrapt = pytest.importorskip("wrapt")  # the instrumentation libraries' way of patching
    monkeypatch.setattr(F, "linear", wrapt.FunctionWrapper(F.linear, lambda f, inst, a, k: writing_linear(*a, **k)))
    assert not trust.torch_own(F.linear) and not trust.namespaces_stock()
    assert same_as_watched(monkeypatch, two_linears, (3,), macs=True)["total_macs"] == 49


class TwoLinearBlock(nn.Module):
    """A user's block around two stock Linear(3, 3) children (its forward is the test's)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 3)


class PatchesInside(TwoLinearBlock):
    """A user's block that patches F.linear around one of its stock children."""

    def forward(self, x):
        x = self.a(x)
        with mock.patch.object(F, "linear", writing_linear):
            return self.b(x)


def test_a_patch_made_inside_the_forward_keeps_the_leaf_watched(monkeypatch):
    s = same_as_watched(monkeypatch, PatchesInside, (3,), macs=True)
    assert s["total_macs"] == 9 + (9 + 9)  # a: 3*3; b: the user's 3*3 matmul and 3*3


class ReplacesForward(TwoLinearBlock):
    """A user's block that replaces nn.Linear.forward after the first Linear call."""

    def forward(self, x):
        x = self.a(x)
        original = nn.Linear.forward
        nn.Linear.forward = lambda lin, y: writing_linear(y, lin.weight, lin.bias)
        try:
            return self.b(x)
        finally:
            nn.Linear.forward = original


def test_a_class_forward_replaced_after_its_first_call_is_seen_at_the_next(monkeypatch):
    assert same_as_watched(monkeypatch, ReplacesForward, (3,), macs=True)["total_macs"] == 27


class Descriptor:
    def __get__(self, obj, owner=None):
        return None if obj is None else obj._parameters["weight"]


def conv_forward_of_a_user(self, x, weight, bias):
    return F.conv2d(x, weight + 0, bias)


def _add_module_getattribute(monkeypatch):
    monkeypatch.setattr(nn.Module, "__getattribute__", lambda self, name: object.__getattribute__(self, name),
                        raising=False)


@pytest.mark.parametrize("change", [
    lambda mp: mp.setattr(nn.Conv2d, "_conv_forward", functools.partialmethod(conv_forward_of_a_user)),
    lambda mp: mp.setattr(nn.Linear, "weight", Descriptor(), raising=False),
    lambda mp: mp.setattr(conv_module, "F", types.SimpleNamespace(**vars(F))),
    lambda mp: mp.setattr(F, "torch", types.ModuleType("torch")),
    _add_module_getattribute,
], ids=["partialmethod", "data-descriptor", "conv-module-F", "F.torch-shim", "Module.__getattribute__"])
def test_other_ways_into_a_stock_layer_turn_the_fast_paths_off(monkeypatch, change):
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(16, 2))
    named = list(m.named_modules())
    assert pure.pure_forward(named, ((torch.zeros(2, 3, 4, 4),), {}), True, CPU, "eval")
    change(monkeypatch)
    assert not pure.pure_forward(named, ((torch.zeros(2, 3, 4, 4),), {}), True, CPU, "eval")


def test_a_parameter_mapping_whose_reads_run_code_is_not_stock():
    class Reading(dict):
        def __getitem__(self, key):
            return super().__getitem__(key)

    lin = nn.Linear(3, 3)
    named = [("", lin)]
    assert pure.pure_leaves(named, CPU, "eval") == {id(lin)}
    lin._parameters = Reading(lin._parameters)
    assert pure.pure_leaves(named, CPU, "eval") == frozenset()


@pytest.mark.parametrize("change", ["hook", "train"])
def test_another_threads_hook_or_training_switch_in_a_pure_forward_is_undone(change):
    """The other thread acts once the summary's hooks are in, while its known-pure forward runs:
    a global forward hook that zeroes the last weight, or batch norms put in training mode
    (they would update their running statistics). Both are undone, as on a watched forward."""
    torch.manual_seed(0)
    m = nn.Sequential(*[layer for _ in range(150) for layer in (nn.Linear(128, 128), nn.BatchNorm1d(128))]).eval()
    last = m[-2]
    before = {k: v.clone() for k, v in m.state_dict().items()}
    fired = []

    def hook(mod, args, out):
        if mod is last:
            fired.append(True)
            with torch.no_grad():
                mod.weight.zero_()

    handles = []

    def other_thread():
        deadline = time.monotonic() + 30
        while not module_globals._global_forward_hooks and time.monotonic() < deadline:
            time.sleep(0)  # the summary's tracer is in: its forward is about to run
        if change == "hook":
            handles.append(module_globals.register_module_forward_hook(hook))
        else:
            for layer in m:
                if isinstance(layer, nn.BatchNorm1d):
                    layer.training = True
                    fired.append(True)

    thread = threading.Thread(target=other_thread)
    thread.start()
    try:
        summary(m, (128,), batch_size=64, verbose=0)
    finally:
        thread.join()
        for h in handles:
            h.remove()
    if not fired:
        pytest.skip("the other thread acted after the summary's forward (nothing to check this time)")
    after = m.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(layer.training for layer in m)  # as before the summary (eval)


def complex_conv():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 3, 3, dtype=torch.complex64))


def test_a_complex_convolution_is_counted_as_the_dispatch_counter_counts_it(monkeypatch):
    x = torch.randn(1, 3, 5, 5, dtype=torch.complex64)
    s = same_as_watched(monkeypatch, complex_conv, input_data=x, macs=True)
    # torch runs one complex convolution as three real ones: 3 * (1*3*3*3 outputs * 3*3*3) = 3 * 729
    assert s["total_macs"] == 3 * 729


def test_forward_mode_ad_tangents_are_counted(monkeypatch):
    def make():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(8, 4))

    with fwad.dual_level():
        x = fwad.make_dual(torch.randn(2, 8), torch.randn(2, 8))
        assert not pure.pure_forward(list(make().named_modules()), ((x,), {}), False, CPU, "eval")
        s = same_as_watched(monkeypatch, make, input_data=x, macs=True)
    # the primal 2*8*4 = 64, the tangent's two matmuls 2 * 64: 192 for the batch of 2
    assert s["total_macs"] == 192


def eye_hook(mod, args, out):
    """A global forward hook with a matmul of its own on each Linear's output."""
    if isinstance(mod, nn.Linear):
        return out @ torch.eye(out.shape[-1])


def small_stack():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()


def at_first_linear(action):
    """Run ``action`` once, inside the forward, as the first F.linear is called (a profiler
    callback: what another thread may do at any moment, made deterministic)."""
    done = []

    def profile(frame, event, arg):
        if event == "c_call" and arg is LINEAR and not done:
            done.append(action())

    return profile, done


@pytest.mark.parametrize("change", ["global-hook", "F.linear"])
def test_a_change_made_while_a_pure_forward_runs_is_counted_like_one_made_before(change):
    m = small_stack()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    if change == "global-hook":
        handle = module_globals.register_module_forward_hook(eye_hook)
        try:
            expected = summary(m, (16,), batch_size=1, verbose=0, macs=True).total_macs
        finally:
            handle.remove()
        # Linear(16,32) + Linear(32,4): 512 + 128 = 640; the hook's eye matmuls 32*32 + 4*4 = 1,040
        assert expected == 640 + 1040
        profile, done = at_first_linear(lambda: module_globals.register_module_forward_hook(eye_hook))
    else:
        # the first Linear's F.linear is already under way (torch's: 16*32 = 512); the second runs
        # writing_linear, which first multiplies its (1, 32) input by a 32x32 eye: 32*32 + 32*4
        expected = 512 + 32 * 32 + 128
        patcher = mock.patch.object(F, "linear", writing_linear)
        profile, done = at_first_linear(patcher.start)
    sys.setprofile(profile)
    try:
        s = summary(m, (16,), batch_size=1, verbose=0, macs=True)
    finally:
        sys.setprofile(None)
        if change == "global-hook":
            for h in done:
                h.remove()
        else:
            patcher.stop()
    assert done, "the change was never made"
    assert s.total_macs == expected
    after = m.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # writing_linear's weight write undone


def test_a_hook_registered_between_the_judgement_and_the_forward_is_counted(monkeypatch):
    """A global hook registered after the forward was judged known-pure but before the tracer's
    own hooks are in (made here as the guard is built; another thread may do it at that moment)."""
    handles = []

    class HookingGuard(api.ModelGuard):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            handles.append(module_globals.register_module_forward_hook(eye_hook))

    monkeypatch.setattr(api, "ModelGuard", HookingGuard)
    try:
        s = summary(small_stack(), (16,), batch_size=1, verbose=0, macs=True)
    finally:
        for h in handles:
            h.remove()
    assert handles and s.total_macs == 640 + 1040  # as with the hook registered before (test above)
