"""The classic table: torchsummary's layout byte for byte, and readable on any structure."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from netsummary import summary
from netsummary._reporting.render import MIB, format_tree, shown_shape

ROOT = Path(__file__).resolve().parent.parent


def load_discriminator():
    spec = importlib.util.spec_from_file_location("discriminator_example", ROOT / "examples" / "discriminator.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.discriminator


def test_seed_table_byte_for_byte(golden):
    model = load_discriminator()(d=128, input_shape=[64, 64])
    lines = []
    s = summary(model, input_size=(3, 64, 64), print_fn=lines.append)
    golden("seed_table.txt", lines[0] + "\n")
    # the numbers behind it, derived by hand:
    assert s.total_params == 11_038_081  # 6,272 + 524,544 + 512 + 2,097,664 + 1,024 + 8,389,632 + 2,048 + 16,385
    assert s.layers[1].params == 128 * (4 * 4 * 3) + 128  # 6,272
    assert s.input_bytes == 3 * 64 * 64 * 4  # 0.05 MiB
    # one sample's leaf outputs: 2*131,072 + 3*65,536 + 3*32,768 + 3*16,384 + 1 + 1 = 606,210 float32
    assert s.output_bytes == 606_210 * 4
    assert f"{2 * s.output_bytes / MIB:.2f}" == "4.63"
    assert s.buffer_count == 2 * (256 + 512 + 1024) + 3  # running mean/var + num_batches_tracked


def test_example_script_prints_the_seed_table(golden):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "discriminator.py")], capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout
    golden("seed_table.txt", out)


def test_long_cells_widen_columns_without_breaking_alignment():
    class AVeryLongModuleClassNameForTesting(nn.Module):
        def forward(self, x):
            return {"first_output": x, "second_output": (x, x)}

    table = str(summary(AVeryLongModuleClassNameForTesting(), (3,), verbose=0))
    rows = table.splitlines()
    header, row = rows[1], rows[3]
    assert len(header) == len(row) == len(rows[0]) - 1  # every row as wide as the rules
    assert row.lstrip().startswith("AVeryLongModuleClassNameForTesting-1")


def test_format_tree_forms():
    assert format_tree((2, 3)) == "[2, 3]"
    assert format_tree(()) == "[]"  # a 0-dim tensor
    assert format_tree([(2,), "int", "NoneType"]) == "([2], int, None)"
    assert format_tree({"a": [(1,), {"b": (2,)}]}) == "{a: ([1], {b: [2]})}"


def test_shown_shape_marks_the_given_axes():
    tree = [(2, 7, 10), [(1, 2, 10), (10, 16)]]
    assert shown_shape(tree, (0, 1, None)) == [(-1, 7, 10), [(1, -1, 10), (10, 16)]]
    assert shown_shape(tree, ()) == tree  # explicit batch or real input_data: shapes as they ran


@pytest.mark.parametrize(
    "module, size, expected",
    [
        # 2 layers x 1 direction = 2 = the run batch: only a second run tells the axes apart
        (nn.LSTM(8, 16, num_layers=2, batch_first=True), (5, 8), "([-1, 5, 16], ([2, -1, 16], [2, -1, 16]))"),
        (nn.GRU(8, 16, bidirectional=True, batch_first=True), (5, 8), "([-1, 5, 32], [2, -1, 16])"),
    ],
    ids=["lstm-2-layers", "gru-bidirectional"],
)
def test_batch_axis_is_exact_when_sizes_collide(module, size, expected):
    assert expected in str(summary(module, size, verbose=0))


def test_batch_axis_not_marked_on_batch_free_tensors():
    class Consts(nn.Module):
        def forward(self, x):
            return x.new_zeros(5, 2), x.new_zeros(2, 7), torch.nn.functional.linear(x, torch.zeros(2, 4))

    assert "([5, 2], [2, 7], [-1, 2])" in str(summary(Consts(), (4,), verbose=0))


def test_other_params_rows_and_shared_line():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))
            self.fc = nn.Linear(3, 3)
            self.unused = nn.Linear(3, 1)

        def forward(self, x):
            return self.fc(self.fc(x)) * self.scale

    s = summary(Net(), (3,), verbose=0)
    table = str(s)
    # the root ran: its own parameter is on its row, first; only the never-called module trails
    assert "Net-1                    [-1, 3]               3" in table and "own params" not in table
    assert table.index("Net-1") < table.index("Linear-2") < table.index("Linear (unused: not called)")
    assert "12 (repeat)" in table  # 3*3 + 3 = 12, second call of fc
    assert "Shared params shown in several rows, counted once: 12" in table
    assert s.total_params == 3 + 12 + 4  # scale 3; fc 12; unused 3*1 + 1 = 4
