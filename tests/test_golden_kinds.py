"""One golden table per kind of issue 10's readability fixes (regenerate only with
``pytest --update-golden``): rows in place, batch axes, non-tensor values, modules created in the
forward, models without a forward, wide structured cells, folded blocks and byte units."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from netsummary import summary


class BatchNormAct(nn.BatchNorm2d):
    """timm-style: a BatchNorm that owns its weight and bias and holds an activation child."""

    def __init__(self, c: int) -> None:
        super().__init__(c)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(super().forward(x))


class RowsInPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = BatchNormAct(4)
        self.gamma = nn.Parameter(torch.ones(4))  # used by the root's own forward
        self.head = nn.Linear(4, 2)
        self.unused = nn.Linear(2, 2)  # never called: the only trailing group

    def forward(self, x):
        return self.head((self.bn(self.conv(x)) * self.gamma[:, None, None]).mean((2, 3)))


class ConstantTable(nn.Module):
    """Returns a batch-independent [2, 8] table beside the output (two special tokens)."""

    def __init__(self) -> None:
        super().__init__()
        self.special = nn.Embedding(2, 8)
        self.proj = nn.Linear(8, 8)

    def forward(self, x):
        return self.proj(x), self.special.weight * 1


class Carrier:
    def __init__(self, tensors, mask) -> None:
        self.tensors, self.mask = tensors, mask


class NonTensorValues(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        y = self.lin(x)
        return Carrier(y, y > 0), np.zeros((4, 5), dtype=np.float64)


class LazyHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 6)

    def forward(self, x):
        if not hasattr(self, "head"):
            self.head = nn.Linear(6, 3)  # created on the first forward: outside the totals
        return self.head(self.body(x))


class Detector(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        self.backbone(x)
        d = {"boxes": torch.zeros(100, 4), "labels": torch.zeros(100), "scores": torch.zeros(100),
             "masks": torch.zeros(100, 1, 28, 28)}
        return [d, dict(d)]


def _stack() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), *[nn.Sequential(nn.Linear(16, 16), nn.GELU()) for _ in range(6)])


def _big() -> nn.Module:
    with torch.device("meta"):
        return nn.Sequential(nn.Linear(20_000, 20_000), nn.Linear(20_000, 20_000))


_SHAPES = ["output_shape", "output_bytes", "params"]

CASES = {
    "rows_in_place.classic.txt": lambda: summary(RowsInPlace(), (3, 6, 6), verbose=0).render("classic"),
    # the root's output holds the interesting value: the tree view shows containers' outputs
    "batch_axis.tree.txt": lambda: summary(ConstantTable(), (8,), verbose=0).render("tree", columns=_SHAPES),
    "non_tensor.tree.txt": lambda: summary(NonTensorValues(), (3,), verbose=0).render("tree", columns=_SHAPES),
    "created.classic.txt": lambda: summary(LazyHead(), (4,), verbose=0).render("classic"),
    "no_forward.classic.txt": lambda: summary(nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 2)]), verbose=0).render("classic"),
    "wide_cell.tree.txt": lambda: summary(Detector(), (3, 8, 8), verbose=0).render("tree", columns=_SHAPES),
    "fold.tree.txt": lambda: summary(_stack(), (8,), verbose=0).render("tree"),
    "units.tree.txt": lambda: summary(_big(), (20_000,), device="meta", verbose=0).render("tree"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_table_of_each_kind(golden, name):
    torch.manual_seed(0)
    text = CASES[name]()
    golden(name, text + "\n")
    # within the 120-column limit (the created-module note line excepted: notes are not cut)
    assert max(len(line) for line in text.splitlines() if not line.startswith("1 module created")) <= 120
