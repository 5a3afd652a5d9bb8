"""Repeated blocks fold (issue 10): a run of identical sibling blocks is one row of the tree view,
``0–11 (Sequential) × 12`` with ``N × per block = total`` figures and the first block's rows under
it; ``fold=False`` shows every row; JSON, CSV and the classic table never fold."""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn

from netsummary import InputTypeError, summary
from netsummary._reporting.table import tree_rows

COLS = ["params", "macs", "output_bytes"]


def blocks(widths: list[int], dim: int = 8) -> nn.Sequential:
    """One Sequential(Linear(dim, w), ReLU, Linear(w, dim)) per width, then a Linear(dim, 2) head."""
    return nn.Sequential(*[nn.Sequential(nn.Linear(dim, w), nn.ReLU(), nn.Linear(w, dim)) for w in widths],
                         nn.Linear(dim, 2))


def labels(s, depth=None, fold=True) -> list[str]:
    return [row[0].strip() for row in tree_rows(s, depth, COLS, fold=fold)]


def row(s, label: str, depth=None) -> list[str]:
    return next(r for r in tree_rows(s, depth, COLS) if r[0].strip() == label)


def test_twelve_identical_blocks_fold_to_one_row() -> None:
    m = nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.ReLU()) for _ in range(12)])
    s = summary(m, (8,), verbose=0, macs=True)
    assert labels(s) == ["(root) (Sequential)", "0–11 (Sequential) × 12", "0.0 (Linear)", "0.1 (ReLU)"]
    # per block: Linear(8, 8) = 8*8 + 8 = 72 params, 8*8 = 64 MACs for one sample, its output
    # [8] float32 = 32 bytes; 12 blocks: 12*72 = 864 params, 12*64 = 768 MACs, 12*32 = 384 bytes
    assert row(s, "0–11 (Sequential) × 12")[1:] == ["12 × 72 = 864", "12 × 64 = 768", "12 × 32 = 384"]
    assert row(s, "0.0 (Linear)")[1:] == ["72", "64", "32"]  # the first block's rows: per block
    assert s.total_params == 12 * 72 == 864  # totals come from the unique tensors, unchanged
    text = s.render("tree")
    assert "0–11 (Sequential) × 12" in text and "  1 (Sequential)" not in text
    assert "Total params                                    864" in text


def test_a_different_block_splits_the_run_in_two() -> None:
    s = summary(blocks([4] * 5 + [6] + [4] * 6), (8,), verbose=0, macs=True)
    assert labels(s, depth=1) == ["(root) (Sequential)", "0–4 (Sequential) × 5", "5 (Sequential)",
                                  "6–11 (Sequential) × 6", "12 (Linear)"]
    # width 4: (8*4 + 4) + (4*8 + 8) = 36 + 40 = 76 params; width 6: (8*6 + 6) + (6*8 + 8) = 110
    assert row(s, "0–4 (Sequential) × 5", 1)[1] == "5 × 76 = 380"
    assert row(s, "5 (Sequential)", 1)[1] == "110"
    assert row(s, "6–11 (Sequential) × 6", 1)[1] == "6 × 76 = 456"
    assert s.total_params == 11 * 76 + 110 + (8 * 2 + 2)


def test_same_type_with_other_parameter_shapes_does_not_fold() -> None:
    s = summary(blocks([4, 6] * 3), (8,), verbose=0)
    assert [lb for lb in labels(s, depth=1) if "×" in lb] == []
    # one parameter, same count and same input/output shapes, but (2, 3) against (3, 2)
    class Block(nn.Module):
        def __init__(self, shape):
            super().__init__()
            self.lin = nn.Linear(6, 6)
            self.w = nn.Parameter(torch.zeros(shape))

        def forward(self, x):
            return self.lin(x) + self.w.sum()

    same = summary(nn.Sequential(Block((2, 3)), Block((2, 3))), (6,), verbose=0)
    other = summary(nn.Sequential(Block((2, 3)), Block((3, 2))), (6,), verbose=0, formulas=True)
    assert "0–1 (Block) × 2" in labels(same)
    assert not any("×" in lb for lb in labels(other))  # the formulas tell 2 × 3 from 3 × 2


def test_fold_false_shows_every_row_and_json_csv_classic_never_fold() -> None:
    m = nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.ReLU()) for _ in range(12)])
    printed = []
    s = summary(m, (8,), depth=1, fold=False, print_fn=printed.append)
    assert [f"{i} (Sequential)" in printed[0] for i in range(12)] == [True] * 12 and "0–11" not in printed[0]
    assert labels(s, fold=False) == ["(root) (Sequential)"] + [
        lb for i in range(12) for lb in (f"{i} (Sequential)", f"{i}.0 (Linear)", f"{i}.1 (ReLU)")]
    assert "11 (Sequential)" in s.render("markdown", fold=False) and "0–11" in s.render("markdown")
    assert "0–11 (Sequential) × 12" in s.render("html")
    for fmt in ("json", "csv", "classic"):
        assert s.render(fmt) == s.render(fmt, fold=False) and "0–11" not in s.render(fmt)
    assert len(json.loads(s.to_json())["layers"]) == 1 + 12 * 3
    with pytest.raises(InputTypeError, match="fold: expected True"):
        s.render("tree", fold="no")


def test_shared_or_repeated_parameters_do_not_fold() -> None:
    shared = nn.Linear(8, 8)
    s = summary(nn.Sequential(*[nn.Sequential(shared, nn.ReLU()) for _ in range(3)]), (8,), verbose=0)
    assert not any("×" in lb for lb in labels(s))
    tied = blocks([4] * 4)
    for b in tied[1:4]:
        b[0].weight = tied[0][0].weight
    s = summary(tied, (8,), verbose=0)
    assert not any("×" in lb for lb in labels(s))  # block 0 owns it, blocks 1-3 show it tied


def test_own_parameters_of_folded_blocks_are_listed_once() -> None:
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.scale = nn.Parameter(torch.ones(4))

        def forward(self, x):
            return self.lin(x) * self.scale

    s = summary(nn.Sequential(*[Scaled() for _ in range(3)]), (4,), verbose=0)
    # per block: Linear(4, 4) = 20 params + scale 4 = 24
    assert labels(s) == ["(root) (Sequential)", "0–2 (Scaled) × 3", "0 (Scaled, own params)", "0.lin (Linear)"]
    assert row(s, "0–2 (Scaled) × 3")[1] == "3 × 24 = 72"


def level_sums(rows: list[list[str]], ncols: int) -> dict[int, list[int]]:
    """Per indentation level, each column's sum, a folded row counting its total and every row
    under a folded row counting N times (its figures are per block)."""
    sums: dict[int, list[int]] = {}
    stack: list[tuple[int, int]] = []  # (level, count) of the folded rows above
    for r in rows:
        level = (len(r[0]) - len(r[0].lstrip(" "))) // 2
        stack = [(lv, n) for lv, n in stack if lv < level]
        times = 1
        for _, n in stack:
            times *= n
        got = re.search(r" × (\d+)$", r[0])
        if got:
            stack.append((level, int(got.group(1))))
        values = [int(c.split("=")[-1].replace(",", "").replace("--", "0") or 0) for c in r[1:1 + ncols]]
        acc = sums.setdefault(level, [0] * ncols)
        for i, v in enumerate(values):
            acc[i] += times * v
    return sums


def check_sums(s) -> None:
    deepest = max(r.depth for r in s.layers)
    for depth in range(deepest + 1):
        folded = level_sums(tree_rows(s, depth, COLS), len(COLS))
        assert folded == level_sums(tree_rows(s, depth, COLS, fold=False), len(COLS)), depth
    assert any("×" in r[0] for r in tree_rows(s, None, COLS))


def test_folded_rows_add_up_to_the_unfolded_rows_at_every_depth() -> None:
    check_sums(summary(blocks([4] * 5 + [6] + [4] * 6), (8,), verbose=0, macs=True))
    nested = nn.Sequential(*[nn.Sequential(*[nn.Linear(4, 4) for _ in range(3)], nn.Linear(4, 4)) for _ in range(4)])
    s = summary(nested, (4,), verbose=0, macs=True)
    assert labels(s, depth=2) == ["(root) (Sequential)", "0–3 (Sequential) × 4", "0.0–3 (Linear) × 4"]
    check_sums(s)


def test_torchvision_resnet_blocks_fold() -> None:
    torchvision = pytest.importorskip("torchvision")
    s = summary(torchvision.models.resnet18(), (3, 64, 64), verbose=0, macs=True)
    # layer1's two BasicBlocks match (each calls its parameterless relu twice); layerN.0 downsamples
    assert [lb for lb in labels(s, depth=2) if "×" in lb] == ["layer1.0–1 (BasicBlock) × 2"]
    check_sums(s)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_transformers_decoder_layers_fold(arch: str) -> None:
    transformers = pytest.importorskip("transformers")
    if arch == "llama":
        cfg = transformers.LlamaConfig(num_hidden_layers=3, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                       num_key_value_heads=2, vocab_size=100)
        model, want = transformers.LlamaForCausalLM(cfg), "model.layers.0–2 (LlamaDecoderLayer) × 3"
    else:
        cfg = transformers.GPT2Config(n_layer=4, n_embd=32, n_head=4, vocab_size=100, n_positions=16,
                                      bos_token_id=0, eos_token_id=0)
        model, want = transformers.GPT2Model(cfg), "h.0–3 (GPT2Block) × 4"
    s = summary(model, input_data={"input_ids": torch.zeros(1, 8, dtype=torch.long)}, verbose=0, macs=True)
    assert want in labels(s, depth=2)
    per_block = next(r for r in s.layers if r.name.endswith(".0") and r.type.endswith(("DecoderLayer", "Block")))
    n = int(want.rsplit("× ", 1)[1])
    assert row(s, want, 2)[1] == f"{n} × {per_block.params:,} = {n * per_block.params:,}"
    check_sums(s)


def test_blocks_with_numbered_names_fold():
    from collections import OrderedDict

    blocks = OrderedDict((f"encoder_layer_{i}", nn.Sequential(nn.Linear(8, 8), nn.ReLU())) for i in range(6))
    text = summary(nn.Sequential(blocks), (8,), verbose=0).render("tree", depth=1)
    assert "encoder_layer_0–5 (Sequential) × 6" in text and "6 × 72 = 432" in text  # 8*8 + 8 = 72 per block
