"""Analysis on the torchvision zoo: MACs against the published figures, formulas against params.

torchvision publishes ``_ops`` ("GFLOPS", which are GMACs: matmul-class operators at batch 1 at
the weights' crop size), rounded to 3 decimals. Every classification weight entry is checked.
"""

from __future__ import annotations

import re

import pytest
import zoo

from netsummary import summary

CASES = zoo.vision_cases()


def evaluate(formula: str) -> int:
    """Evaluate a formula's text: ``a × b + c`` arithmetic, ``name[d0, d1]`` = d0 * d1."""

    def numel(match: re.Match) -> str:
        dims = [int(d) for d in match.group(1).split(",") if d.strip()]
        n = 1
        for d in dims:
            n *= d
        return str(n)

    text = re.sub(r"[A-Za-z_][\w.]*\[([\d, ]*)\]", numel, formula)
    assert re.fullmatch(r"[\d\s+×()/*-]*", text), formula
    return eval(text.replace("×", "*"))


@pytest.mark.zoo
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_published_macs_and_formulas(case):
    s = summary(case.build("meta"), case.input_size, batch_size=1, macs=True, formulas=True, verbose=0)
    assert s.total_params == case.num_params
    assert not s.unknown_ops
    published = case.gflops * 1e9
    # within 0.5%, or within the published rounding (3 decimals of GMACs)
    assert abs(s.total_macs - published) <= max(0.005 * published, 0.0005e9), (s.total_macs, published)
    assert sum(r.macs for r in s.layers) == s.total_macs  # every operator on exactly one row
    for r in s.leaf_layers:
        if r.call_index == 1:
            assert evaluate(r.formula) == r.params, (r.name, r.formula)
    for g in s.other_params:
        assert evaluate(g.formula) == g.params, (g.name, g.formula)


def test_evaluate_helper():
    assert evaluate("128 × (3 × 4 × 4) + 128") == 6272
    assert evaluate("weight[64, 3, 7, 7] + bias[64]") == 64 * 147 + 64
    assert evaluate("0") == 0
