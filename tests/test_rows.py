"""Classic-table rows of modules that are not plain leaves (issue 10).

- A called module that holds parameters and also has children (timm's ``BatchNormAct2d``, a
  block's layer-scale ``gamma``, a root's class/position tokens) gets its row in call order with
  its own parameters; only never-called modules' parameters trail the table, ``(not called)``.
- A module the forward creates (a head built on first use, a throwaway layer) gets a marked row,
  outside the totals, with a note under them.
"""

from __future__ import annotations

import threading

import torch
from torch import nn

from netsummary import Summary, summary
from netsummary._reporting.render import classic_entries


def rows_of(table: str) -> list[list[str]]:
    """The classic table's body rows as [label, shape, params] (split on runs of 2+ spaces)."""
    lines = table.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("="))) + 1
    end = lines.index(next(line for line in lines[start:] if line.startswith("=")), start)
    import re

    return [re.split(r"\s{2,}", line.strip()) for line in lines[start:end]]


def assert_rows_add_up(s: Summary) -> None:
    """Every model row's parameters, minus what it shares, plus the trailing groups, is the total;
    the created modules' rows are the note's count; no called module's parameters trail."""
    entries, trailing = classic_entries(s)
    shown = sum(p - sh for r, p, sh in entries if not r.created)
    assert shown + sum(g.params for g in trailing) == s.total_params
    assert all(not g.called for g in trailing)
    rows = sum(r.params - r.shared_params for r in s.leaf_layers if not r.created)
    assert rows + sum(g.params for g in s.other_params) == s.total_params


# -- a module with parameters and a child: BatchNormAct ----------------------------------------
class BatchNormAct2d(nn.BatchNorm2d):
    def __init__(self, c: int) -> None:
        super().__init__(c)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(super().forward(x))


class SmallConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = BatchNormAct2d(8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.pool(self.bn1(self.conv(x))).flatten(1))


def test_batchnorm_act_row_in_place():
    s = summary(SmallConvNet(), (3, 6, 6), verbose=0)
    table = str(s)
    assert "own params" not in table
    assert rows_of(table) == [
        ["Conv2d-1", "[-1, 8, 6, 6]", "216"],
        ["BatchNormAct2d-2", "[-1, 8, 6, 6]", "16"],  # 2 * C: weight and bias
        ["ReLU-3", "[-1, 8, 6, 6]", "0"],
        ["AdaptiveAvgPool2d-4", "[-1, 8, 1, 1]", "0"],
        ["Linear-5", "[-1, 2]", "18"],
    ]
    assert s.total_params == 216 + 16 + 18
    assert_rows_add_up(s)
    # the name column is no wider than the longest row label needs
    assert len(table.splitlines()[0]) == 20 + 25 + 15 + 4


# -- a block that uses its own parameter directly: ConvNeXt's layer scale ----------------------
class ConvNeXtBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.pw = nn.Conv2d(c, c, 1)
        self.gamma = nn.Parameter(torch.full((c,), 1e-6))

    def forward(self, x):
        return x + self.pw(self.dw(x)) * self.gamma.view(1, -1, 1, 1)


def test_layer_scale_gamma_on_the_blocks_row():
    model = nn.Sequential(ConvNeXtBlock(4), ConvNeXtBlock(4))
    s = summary(model, (4, 5, 5), verbose=0)
    rows = rows_of(str(s))
    assert [r[0] for r in rows] == ["ConvNeXtBlock-1", "Conv2d-2", "Conv2d-3", "ConvNeXtBlock-4", "Conv2d-5", "Conv2d-6"]
    assert rows[0] == ["ConvNeXtBlock-1", "[-1, 4, 5, 5]", "4"]  # gamma: its own 4
    assert rows[1][2] == str(4 * 9 + 4) and rows[2][2] == str(4 * 4 + 4)
    assert "own params" not in str(s) and "not called" not in str(s)
    assert_rows_add_up(s)


def test_repeated_block_with_own_params_is_a_repeat_row():
    block = ConvNeXtBlock(2)
    model = nn.Sequential(block, block)
    s = summary(model, (2, 3, 3), verbose=0)
    rows = rows_of(str(s))
    assert rows[0] == ["ConvNeXtBlock-1", "[-1, 2, 3, 3]", "2"]
    assert rows[3] == ["ConvNeXtBlock-4", "[-1, 2, 3, 3]", "2 (repeat)"]
    # 2 (gamma) + 20 (dw) + 6 (pw) shown again on the second call, counted once
    assert "Shared params shown in several rows, counted once: 28" in str(s)
    assert_rows_add_up(s)


# -- a root with class and position tokens: ViT ------------------------------------------------
class TinyViT(nn.Module):
    def __init__(self, dim: int = 8, tokens: int = 4) -> None:
        super().__init__()
        self.proj = nn.Linear(6, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens + 1, dim))
        self.head = nn.Linear(dim, 3)
        self.unused = nn.Linear(dim, 5)  # never called

    def forward(self, x):
        x = self.proj(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(x[:, 0])


def test_root_tokens_on_the_root_row_and_never_called_module_trails():
    s = summary(TinyViT(), (4, 6), verbose=0)
    rows = rows_of(str(s))
    assert rows[0] == ["TinyViT-1", "[-1, 3]", str(8 + 5 * 8)]  # cls 8 + pos 40
    assert [r[0] for r in rows[1:3]] == ["Linear-2", "Linear-3"]
    assert rows[-1] == ["Linear (unused: not called)", "--", str(8 * 5 + 5)]
    assert "own params" not in str(s)
    (group,) = classic_entries(s)[1]
    assert (group.name, group.called) == ("unused", False)
    assert_rows_add_up(s)


# -- modules created during the forward --------------------------------------------------------
class LazyHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 3)

    def forward(self, x):
        x = self.body(x)
        if not hasattr(self, "head"):
            self.head = nn.Linear(3, 3)  # 12 params, built on first use
        return self.head(x)


def test_lazily_created_head_is_marked_and_outside_the_totals():
    model = LazyHead()
    s = summary(model, (4,), verbose=0)
    table = str(s)
    rows = rows_of(table)
    assert rows[-1] == ["Linear-2 (created in forward)", "[-1, 3]", "12"]
    (head,) = [r for r in s.layers if r.created]
    assert (head.name, head.type, head.params) == ("head", "Linear (created in forward)", 12)
    assert s.total_params == 15  # body only: the head was not part of the model at the start
    assert ("1 module created during the forward (12 params) is not in the totals: it was not part "
            "of the model before the forward") in table
    assert table.index("Non-trainable params") < table.index("1 module created")
    assert_rows_add_up(s)
    assert hasattr(model, "head")  # the guard keeps what the forward registered
    # it is part of the model now: a second summary counts it like any other layer
    again = summary(model, (4,), verbose=0)
    assert again.total_params == 27 and not any(r.created for r in again.layers)
    assert "created" not in str(again)


class Throwaway(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 3)

    def forward(self, x):
        x = self.body(x)
        return nn.Linear(3, 2)(x) + nn.Linear(3, 2)(x)  # made and dropped each forward


def test_throwaway_modules_are_marked_with_their_parents_name():
    s = summary(nn.Sequential(Throwaway()), (4,), verbose=0)
    made = [r for r in s.layers if r.created]
    assert [(r.name, r.type, r.params, r.parent) for r in made] == [
        ("0.<created>", "Linear (created in forward)", 8, 1), ("0.<created>", "Linear (created in forward)", 8, 1)]
    table = str(s)
    assert ("2 modules created during the forward (16 params) are not in the totals: they were not "
            "part of the model before the forward") in table
    assert s.total_params == 15
    assert_rows_add_up(s)
    # the data keeps the mark through JSON (written only when true) and CSV's type column
    back = Summary.from_json(s.to_json())
    assert back == s and str(back) == table
    assert '"created": true' in s.to_json() and "(created in forward)" in s.render("csv")
    assert "created" not in s.render("csv").splitlines()[0]  # no new CSV column


def test_created_module_in_the_tree_view():
    s = summary(LazyHead(), (4,), verbose=0)
    assert [r.name for r in s.layers if r.created] == ["head"]
    assert "head (Linear (created in forward))" in s.render("tree")


def test_modules_made_and_called_by_another_thread_are_not_recorded():
    started, stop = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def other():
        try:
            while not stop.is_set():
                nn.Linear(3, 3)(torch.zeros(1, 3))  # made and called in another thread
                started.set()
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)
            started.set()

    class Slow(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            for _ in range(20):
                x = self.fc(x)
                torch.cat([x] * 50).sum()  # give the other thread time to run
            return x

    t = threading.Thread(target=other)
    t.start()
    try:
        started.wait(5)
        s = summary(Slow(), (3,), verbose=0)
    finally:
        stop.set()
        t.join()
    assert not errors
    assert not any(r.created for r in s.layers)
    assert [r.name for r in s.layers] == ["", *["fc"] * 20]
