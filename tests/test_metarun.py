"""The plain-meta forward of a meta model (netsummary/_tracing/metarun.py): the forward runs on
plain meta stand-ins, switching to fake tensors at the first operator that leaves meta (a CPU
tensor, a random draw from a global generator, a data-dependent read), and the summary must be
exactly the one the FakeTensorMode run gives (the reference here: the same call with the plain
run turned off), with the forward run once and the user's tensors never touched."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import netsummary._tracing.forward as forward
from netsummary import ForwardError, summary
from netsummary._tracing import metarun


@pytest.fixture
def plain_runs(monkeypatch):
    """Each plain run's outcome: 'plain' (used, switched to fake tensors or not) or 'failed' (the
    forward raised: the fake run followed)."""
    seen: list[str] = []
    real = forward.plain_meta_forward

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        seen.append("failed" if out is metarun.FAILED else "plain")
        return out

    monkeypatch.setattr(forward, "plain_meta_forward", spy)
    return seen


def fake_only(monkeypatch, fn):
    """``fn()`` with the plain run turned off: the FakeTensorMode forward, as before it existed."""
    with monkeypatch.context() as m:
        m.setattr(forward, "plain_meta_ok", lambda *a: False)
        return fn()


def both(monkeypatch, fn):
    got = fn()
    return got, fake_only(monkeypatch, fn)


class MetaOnlyNet(nn.Module):
    """Convolution, batch norm, tied linear weights, an isinstance(Parameter) branch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)               # [2,3,8,8] -> [2,4,6,6]
        self.bn = nn.BatchNorm2d(4)
        self.a = nn.Linear(144, 16)
        self.b = nn.Linear(16, 144)
        self.b.weight = nn.Parameter(self.a.weight.t().detach().clone())
        self.c = nn.Linear(16, 16, bias=False)
        self.d = nn.Linear(16, 16, bias=False)
        self.d.weight = self.c.weight               # tied: one 16x16 tensor

    def forward(self, x):
        h = self.bn(self.conv(x)).flatten(1)
        h = self.a(h)
        if isinstance(self.c.weight, nn.Parameter):  # both runs see a Parameter here
            h = self.d(self.c(h))
        return self.b(h).sum() + torch.zeros(1, device=x.device)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_meta_only_forward_runs_plain_and_matches_fake(monkeypatch, plain_runs, mode):
    with torch.device("meta"):
        m = MetaOnlyNet()
    got, ref = both(monkeypatch, lambda: summary(m, (3, 8, 8), device="meta", macs=True, verbose=0, mode=mode))
    assert plain_runs == ["plain"]
    assert got.to_dict() == ref.to_dict()
    # 3*4*9 + 4 (conv) + 8 (bn) + 144*16 + 16 (a) + 16*144 + 144 (b) + 16*16 (c, d tied)
    assert got.total_params == 112 + 8 + 2320 + 2448 + 256
    # per sample (the batch is shown as -1): conv 4*6*6 outputs x 27 MACs; a: 144*16; b: 16*144;
    # c, d: 16*16 each
    assert got.total_macs == 4 * 36 * 27 + 144 * 16 + 16 * 144 + 2 * 16 * 16


def test_users_tensors_untouched(plain_runs):
    with torch.device("meta"):
        m = MetaOnlyNet()
    tensors = [*m.parameters(), *m.buffers()]
    before = [(t, t._version, t.shape, t.stride()) for t in tensors]
    summary(m, (3, 8, 8), device="meta", verbose=0, mode="train")  # batch norm writes its statistics
    assert plain_runs == ["plain"]
    assert [(t, t._version, t.shape, t.stride()) for t in [*m.parameters(), *m.buffers()]] == before
    assert m.c.weight is m.d.weight


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "vit_b_16", "squeezenet1_0"])
def test_torchvision_on_meta_matches_fake(monkeypatch, plain_runs, name):
    with torch.device("meta"):
        m = torchvision.models.get_model(name)
    got, ref = both(monkeypatch, lambda: summary(m, (3, 224, 224), device="meta", macs=True, verbose=0))
    assert plain_runs == ["plain"]
    assert got.to_dict() == ref.to_dict()
    assert got.total_params == sum(p.numel() for p in m.parameters())


def test_transformer_with_batch_probe_matches_fake(monkeypatch, plain_runs):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   intermediate_size=64, vocab_size=100)
    with torch.device("meta"):
        m = transformers.LlamaForCausalLM(cfg)
    # input_size without batch_size: the batch is shown as -1, settled by a probe forward (also plain)
    got, ref = both(monkeypatch, lambda: summary(m, (8,), dtypes=[torch.long], device="meta", macs=True, verbose=0))
    assert "failed" not in plain_runs and plain_runs
    assert got.to_dict() == ref.to_dict()


class CpuRandom(nn.Module):
    """Draws from the global CPU generator in its forward (a fake run draws nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        noise = torch.randn(4)                        # CPU, global generator
        return self.lin(x) + noise.to(x.device)


def test_cpu_draw_goes_fake_before_it_happens(monkeypatch, plain_runs):
    with torch.device("meta"):
        m = CpuRandom()
    state = torch.get_rng_state()
    got = summary(m, (4,), device="meta", verbose=0)
    assert plain_runs == ["plain"]  # randn ran under the fake mode: no draw
    assert torch.equal(torch.get_rng_state(), state)
    assert got.to_dict() == fake_only(monkeypatch, lambda: summary(m, (4,), device="meta", verbose=0)).to_dict()


class CatchesItem(nn.Module):
    """Reads a value, and takes another branch when that fails (on plain meta it always fails)."""

    def __init__(self) -> None:
        super().__init__()
        self.small = nn.Linear(4, 4)
        self.big = nn.Linear(4, 8)

    def forward(self, x):
        try:
            positive = bool((x > 0).all())
        except Exception:
            positive = None
        return self.small(x) if positive is None else self.big(x)


def test_a_caught_failure_is_the_fake_runs(monkeypatch, plain_runs):
    with torch.device("meta"):
        m = CatchesItem()
    got, ref = both(monkeypatch, lambda: summary(m, (4,), device="meta", verbose=0))
    assert plain_runs == ["plain"]
    assert got.to_dict() == ref.to_dict()
    assert [r.name for r in got.layers] == [r.name for r in ref.layers]


class MakesCpuTensor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return self.lin(x) * torch.arange(4).to(x.device)  # arange without device: on CPU


def test_a_cpu_tensor_in_the_forward_goes_fake(monkeypatch, plain_runs):
    with torch.device("meta"):
        m = MakesCpuTensor()
    got, ref = both(monkeypatch, lambda: summary(m, (4,), device="meta", macs=True, verbose=0))
    assert plain_runs == ["plain"]
    assert got.to_dict() == ref.to_dict()
    assert got.total_macs == 4 * 4  # per sample: the linear layer, counted once


class CountsCalls(nn.Module):
    """A first-call path and a NumPy draw before a CPU tensor: a forward run twice would differ."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 1:
            x = self.b(x)
        k = int(np.random.randint(1, 9))
        return self.a(x)[:, :k] * torch.tensor(2.0)   # a CPU 0-dim tensor: the rest runs fake


def test_the_forward_runs_once(monkeypatch, plain_runs):
    def run():
        np.random.seed(0)
        with torch.device("meta"):
            m = CountsCalls()
        return m, summary(m, (8,), device="meta", macs=True, verbose=0)

    (m, got), (m_ref, ref) = both(monkeypatch, run)
    assert plain_runs == ["plain"]
    assert m.calls == m_ref.calls == 1
    assert got.to_dict() == ref.to_dict()
    assert "b" in [r.name for r in got.layers]


class KeepsCache(nn.Module):
    """A meta tensor kept as a plain attribute (no stand-in) and resized in place."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.cache = torch.zeros(4, 8)

    def forward(self, x):
        self.cache.resize_(x.shape[0], 8)
        return self.lin(x) + self.cache


def test_metadata_writes_reach_only_the_runs_own_tensors(monkeypatch, plain_runs):
    with torch.device("meta"):
        m = KeepsCache()
    with pytest.raises(ForwardError) as got:
        summary(m, (8,), device="meta", verbose=0)
    with pytest.raises(ForwardError) as ref:
        fake_only(monkeypatch, lambda: summary(m, (8,), device="meta", verbose=0))
    assert str(got.value) == str(ref.value)  # the fake mode refuses it, as in the fake run
    assert m.cache.shape == (4, 8)


class ReshapesOwn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.register_buffer("grid", torch.zeros(8, 2))

    def forward(self, x):
        h = self.lin(x).t_()          # an output's metadata
        self.grid.t_()                # a stand-in's
        return h.t() @ self.grid.t()


def test_metadata_writes_on_the_runs_own_tensors_stay_plain(monkeypatch, plain_runs):
    with torch.device("meta"):
        m = ReshapesOwn()
    got, ref = both(monkeypatch, lambda: summary(m, (8,), device="meta", macs=True, verbose=0))
    assert plain_runs == ["plain", "plain"]  # the forward and the batch-axis probe
    assert got.to_dict() == ref.to_dict()
    assert m.grid.shape == (8, 2)


class ItemFails(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        h = self.lin(x)
        if h.sum() > 0:  # a data-dependent branch: raises on meta and on fake tensors
            return h
        return -h


def test_a_failing_forward_reports_the_fake_runs_error(monkeypatch, plain_runs):
    with torch.device("meta"):
        m = ItemFails()
    with pytest.raises(ForwardError) as got:
        summary(m, (4,), device="meta", verbose=0)
    assert plain_runs == ["failed"]
    with pytest.raises(ForwardError) as ref:
        fake_only(monkeypatch, lambda: summary(m, (4,), device="meta", verbose=0))
    assert str(got.value) == str(ref.value)
    assert type(got.value.__cause__) is type(ref.value.__cause__)


def test_not_tried_under_a_function_mode_or_with_grad_inputs(plain_runs):
    with torch.device("meta"):
        m = MetaOnlyNet()
        inside = summary(m, (3, 8, 8), device="meta", verbose=0)  # torch.device() is a TorchFunctionMode
    assert plain_runs == []
    x = torch.zeros(2, 3, 8, 8, device="meta", requires_grad=True)
    given = summary(m, input_data=[x], device="meta", verbose=0)
    assert plain_runs == []
    assert inside.total_params == given.total_params == sum(p.numel() for p in m.parameters())


def test_a_cpu_model_summarized_on_meta_runs_plain(monkeypatch, plain_runs):
    m = MetaOnlyNet()
    weights = {k: v.clone() for k, v in m.state_dict().items()}
    got, ref = both(monkeypatch, lambda: summary(m, (3, 8, 8), device="meta", macs=True, verbose=0, mode="train"))
    assert plain_runs == ["plain"]
    assert got.to_dict() == ref.to_dict()
    assert all(torch.equal(v, weights[k]) and v.device.type == "cpu" for k, v in m.state_dict().items())


def test_each_kind_of_operator_that_leaves_meta_goes_fake():
    from torch._subclasses.fake_tensor import FakeTensor

    meta = torch.zeros(2, device="meta")
    mode = metarun._MetaFirst({id(meta): meta})
    with mode:
        out = meta + 1  # meta only: runs plain
    assert mode.fake is None and type(out) is torch.Tensor
    state = torch.get_rng_state()
    for make in (lambda: meta + torch.tensor(1.0), lambda: torch.ones(2), lambda: torch.randn(3)):
        mode = metarun._MetaFirst({id(meta): meta})
        with mode:
            out = make()
            after = meta * 2  # and every later operator
        assert mode.fake is not None and isinstance(out, FakeTensor) and isinstance(after, FakeTensor)
    assert torch.equal(torch.get_rng_state(), state)  # the CPU randn drew nothing
    mode = metarun._MetaFirst({id(meta): meta})
    with pytest.raises(Exception) as raised, mode:
        meta.sum().item()  # raises on meta, and under the fake mode: the fake mode's error
    assert mode.fake is not None and "meta" not in str(raised.value).split("\n")[0].lower()
