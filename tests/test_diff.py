"""Diffs of two summaries: matching by (name, call_index), totals, growth limits, text and Markdown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from netsummary import InputSpecError, Summary, summary
from netsummary._reporting.diff import Growth, diff_summaries, growth_checks, load_summary, render_diff


@pytest.fixture(scope="module")
def pair() -> tuple[Summary, Summary]:
    """base: Linear(4, 8) + ReLU        = 4*8 + 8 = 40 params; MACs 4*8 = 32
    new:  Linear(4, 16) + Tanh + Linear(16, 2) = (4*16 + 16) + (16*2 + 2) = 80 + 34 = 114; MACs 64 + 32 = 96"""
    base = summary(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), (4,), verbose=0, macs=True)
    new = summary(nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2)), (4,), verbose=0, macs=True)
    return base, new


def test_layers_are_matched_by_name_and_classified(pair: tuple[Summary, Summary]) -> None:
    d = diff_summaries(*pair)
    rows = [(x.label, x.status, x.type_base, x.type_new, x.params_base, x.params_new, x.macs_base, x.macs_new)
            for x in d.layers]
    assert rows == [("0", "changed", "Linear", "Linear", 40, 80, 32, 64),
                    ("1", "changed", "ReLU", "Tanh", 0, 0, 0, 0),  # same params, another type
                    ("2", "added", None, "Linear", None, 34, None, 32)]
    assert d.totals == (("total params", 40, 114), ("trainable params", 40, 114), ("param bytes", 160, 456),
                        ("MACs", 32, 96))  # bytes: 40 * 4 = 160, 114 * 4 = 456
    assert (d.count("changed"), d.count("added"), d.count("removed")) == (2, 1, 0)


def test_removed_rows_come_last(pair: tuple[Summary, Summary]) -> None:
    base, new = pair
    d = diff_summaries(new, base)
    assert [(x.label, x.status) for x in d.layers] == [("0", "changed"), ("1", "changed"), ("2", "removed")]


class Twice(nn.Module):
    """fc called twice (12 params: 3*3 + 3), a root parameter (3), and a matmul in its own forward."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.fc(x)) * self.scale + (x @ x.T).sum()


def test_repeat_calls_own_params_and_container_macs_are_rows() -> None:
    s = summary(Twice(), (3,), verbose=0, macs=True)
    d = diff_summaries(s, s)
    # root's own matmul per sample: x (2, 3) @ x.T (3, 2) = 2*3*2 = 12 MACs for the run batch of 2 -> 6 per sample;
    # fc: 3*3 = 9 MACs per call
    assert [(x.label, x.params_new, x.macs_new, x.status) for x in d.layers] == [
        ("(root)", None, 6, "unchanged"), ("fc", 12, 9, "unchanged"), ("fc #2", 12, 9, "unchanged"),
        ("(root) (own params)", 3, None, "unchanged")]


def test_macs_are_compared_only_when_both_have_them(pair: tuple[Summary, Summary]) -> None:
    base, new = pair
    no_macs = summary(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), (4,), verbose=0)
    d = diff_summaries(no_macs, base)
    assert not d.macs_compared and [q for q, _, _ in d.totals] == ["total params", "trainable params", "param bytes"]
    assert [x.status for x in d.layers] == ["unchanged", "unchanged"]
    assert "(MACs not compared: a summary was made without them)" in render_diff(d)


@pytest.mark.parametrize(
    ("base", "new", "ok", "text"),
    [(100, 102, True, "m: total params 100 -> 102 (+2.0%) <= max growth 2%"),   # exactly 2%: allowed
     (100, 103, False, "m: total params 100 -> 103 (+3.0%) > max growth 2%"),
     (100, 50, True, "m: total params 100 -> 50 (-50.0%) <= max growth 2%"),
     (0, 0, True, "m: total params 0 -> 0 (+0.0%) <= max growth 2%"),
     (0, 1, False, "m: total params 0 -> 1 (new) > max growth 2%"),
     (10_000_000, 10_000_001, True, "m: total params 10,000,000 -> 10,000,001 (+<0.1%) <= max growth 2%")],
    ids=["at-limit", "over", "shrunk", "zero", "from-zero", "tiny"],
)
def test_growth_limit(base: int, new: int, ok: bool, text: str) -> None:
    g = Growth("total params", base, new, 0.02, "m")
    assert (g.ok, g.message) == (ok, text)


def test_growth_checks_params_and_macs(pair: tuple[Summary, Summary]) -> None:
    checks = growth_checks(diff_summaries(*pair), 0.5, "mlp")
    # 114 / 40 - 1 = 185%; 96 / 32 - 1 = 200%
    assert [g.message for g in checks] == ["mlp: total params 40 -> 114 (+185.0%) > max growth 50%",
                                           "mlp: MACs 32 -> 96 (+200.0%) > max growth 50%"]


TEXT = """\
netsummary diff: a.json -> b.json

                    base    new          change
----------------  ------  -----  --------------
total params          40    114   +74 (+185.0%)
trainable params      40    114   +74 (+185.0%)
param bytes        160 B  456 B  +296 (+185.0%)
MACs                  32     96   +64 (+200.0%)

Layers: 2 changed, 1 added, 0 removed, 0 unchanged

status    layer    type            params base    params new    params change    MACs base    MACs new    MACs change
--------  -------  ------------  -------------  ------------  ---------------  -----------  ----------  -------------
changed   0        Linear                   40            80    +40 (+100.0%)           32          64  +32 (+100.0%)
changed   1        ReLU -> Tanh              0             0                0            0           0              0
added     2        Linear                   --            34                            --          32"""

MARKDOWN = """\
### netsummary diff: a.json -> b.json

|                  |   base |   new |         change |
|:-----------------|-------:|------:|---------------:|
| total params     |     40 |   114 |  +74 (+185.0%) |
| trainable params |     40 |   114 |  +74 (+185.0%) |
| param bytes      |  160 B | 456 B | +296 (+185.0%) |
| MACs             |     32 |    96 |  +64 (+200.0%) |

**Layers: 2 changed, 1 added, 0 removed, 0 unchanged**

| status   | layer   | type        |   params base |   params new |      Δ params |   MACs base |   MACs new |        Δ MACs |
|:---------|:--------|:------------|--------------:|-------------:|--------------:|------------:|-----------:|--------------:|
| changed  | `0`     | Linear      |            40 |           80 | +40 (+100.0%) |          32 |         64 | +32 (+100.0%) |
| changed  | `1`     | ReLU → Tanh |             0 |            0 |             0 |           0 |          0 |             0 |
| added    | `2`     | Linear      |            -- |           34 |               |          -- |         32 |               |"""


def test_text_rendering(pair: tuple[Summary, Summary]) -> None:
    # 114 - 40 = 74 params (+185%); bytes 4 * 74 = 296; layer 0: 80 - 40 = 40 params, 64 - 32 = 32 MACs
    assert render_diff(diff_summaries(*pair), "text", "a.json -> b.json") == TEXT


def test_markdown_rendering_is_a_github_table_with_right_aligned_numbers(pair: tuple[Summary, Summary]) -> None:
    assert render_diff(diff_summaries(*pair), "markdown", "a.json -> b.json") == MARKDOWN


def test_unchanged_rows_only_on_request(pair: tuple[Summary, Summary]) -> None:
    base, _ = pair
    assert "unchanged  0" not in render_diff(diff_summaries(base, base))
    assert "unchanged  0" in render_diff(diff_summaries(base, base), show_unchanged=True)
    with pytest.raises(InputSpecError, match=r"diff format: unknown format 'html'; valid formats are text, markdown"):
        render_diff(diff_summaries(base, base), "html")


def test_load_summary_round_trips(tmp_path: Path, pair: tuple[Summary, Summary]) -> None:
    path = tmp_path / "base.json"
    path.write_text(pair[0].to_json())
    assert load_summary(str(path)) == pair[0]


@pytest.mark.parametrize(
    ("content", "match"),
    [(None, r"missing\.json: no such file; save one with: netsummary TARGET"),
     ("{oops", r"missing\.json: not JSON \(Expecting property name"),
     (json.dumps({"a": 1}), r"missing\.json: not a netsummary summary \(expected a netsummary summary"),
     (json.dumps({"schema_version": 1}), r"missing\.json: not a netsummary summary \(.*missing")],
    ids=["missing", "not-json", "not-summary", "incomplete"],
)
def test_load_summary_errors(tmp_path: Path, content: str | None, match: str) -> None:
    path = tmp_path / "missing.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputSpecError, match=match):
        load_summary(str(path))


def test_load_summary_of_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bin.json"
    path.write_bytes(b'{"schema_version": 1, \xff\xfe}')  # 0xff is never valid UTF-8
    with pytest.raises(InputSpecError, match=r"bin\.json: not UTF-8 text \(byte 0xff at offset 22\); expected a "
                                             r"JSON summary \(save one with"):
        load_summary(str(path))


@pytest.mark.parametrize(
    ("edit", "match"),
    [(lambda d: d.update(total_params="lots"), r"total_params is 'lots' \(str\), expected an int"),
     (lambda d: d.update(total_params=True), r"total_params is True \(bool\), expected an int"),
     (lambda d: d.update(param_bytes=1.5), r"param_bytes is 1\.5 \(float\), expected an int"),
     (lambda d: d.update(total_macs="72"), r"total_macs is '72' \(str\), expected an int or null"),
     (lambda d: d["layers"][1].update(params="8"), r"layers\[1\]\.params is '8' \(str\), expected an int"),
     (lambda d: d["layers"][1].update(macs=[1]), r"layers\[1\]\.macs is \[1\] \(list\), expected an int or null"),
     (lambda d: d["layers"][1].update(name=3), r"layers\[1\]\.name is 3 \(int\), expected a string")],
    ids=["total-str", "total-bool", "bytes-float", "macs-str", "layer-params", "layer-macs", "layer-name"],
)
def test_load_summary_checks_field_types(tmp_path: Path, pair: tuple[Summary, Summary], edit, match: str) -> None:
    data = json.loads(pair[0].to_json())
    edit(data)
    path = tmp_path / "base.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputSpecError, match=rf"base\.json: not a netsummary summary \({match}\); save one with"):
        load_summary(str(path))


def test_load_summary_accepts_null_macs(tmp_path: Path, pair: tuple[Summary, Summary]) -> None:
    data = json.loads(pair[0].to_json())
    data["total_macs"] = None  # a summary made without MACs
    for layer in data["layers"]:
        layer["macs"] = None
    path = tmp_path / "base.json"
    path.write_text(json.dumps(data))
    assert load_summary(str(path)).total_macs is None
