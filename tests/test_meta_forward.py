"""A model on meta runs its forward on fake stand-ins of its tensors, from the first operator to
the last (netsummary/_tracing/forward.py). A cheaper run on plain meta stand-ins was tried and
dropped: code can tell the two apart without any operator showing it (transformers' mask code
asks ``is_fake`` and, on plain meta, reads a value where the fake run skips it), and switching
to fake tensors mid-forward left ``out=`` results resized on the fake copy only. These tests
hold the forward to what the fake run gives."""

from __future__ import annotations

import torch
from torch import nn
from torch._subclasses.fake_tensor import is_fake

from netsummary import summary


class AsksIsFake(nn.Module):
    """Takes another branch on fake tensors, as transformers' ``is_tracing`` mask check does."""

    def __init__(self) -> None:
        super().__init__()
        self.traced = nn.Linear(8, 8)
        self.eager = nn.Linear(8, 4)

    def forward(self, x):
        return self.traced(x) if is_fake(x) and is_fake(self.traced.weight) else self.eager(x)


def test_the_forward_sees_fake_tensors_throughout():
    with torch.device("meta"):
        m = AsksIsFake()
    s = summary(m, (8,), device="meta", verbose=0)
    assert [r.name for r in s.layers] == ["", "traced"]
    assert s.layers[0].output_shapes == (2, 8)  # as run: the traced branch, 8 features


class OutResizesEarlyTensor(nn.Module):
    """An ``out=`` that resizes a tensor made before a CPU constant enters the forward."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)

    def forward(self, x):
        buf = torch.empty(0, device=x.device)
        y = self.a(x) * torch.tensor(2.0)          # a CPU 0-dim constant
        torch.add(y, 1, out=buf)                   # buf resized to y's shape
        return self.b(buf.view(-1, 8))


def test_an_out_resize_is_seen_by_the_next_layer():
    with torch.device("meta"):
        m = OutResizesEarlyTensor()
    s = summary(m, (8,), device="meta", batch_size=2, macs=True, verbose=0)
    b = next(r for r in s.layers if r.name == "b")
    assert b.input_shapes == [(2, 8)]
    assert s.total_macs == 2 * (2 * 8 * 8)          # a and b: 2 rows x 8 x 8 each
