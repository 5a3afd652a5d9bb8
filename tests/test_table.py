"""Tree view, columns and every export format: golden files, exact aggregates, clear errors."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
from test_cases import Agent, SeqClassifier, TinyTiedLM
from test_render import load_discriminator
from torch import nn

from netsummary import InputSpecError, InputTypeError, Summary, summary
from netsummary._reporting.formats import FORMATS

ALL_COLUMNS = ["input_shape", "output_shape", "params", "params_percent", "kernel_shape", "trainable", "macs",
               "output_bytes", "formula"]


def models():
    torch.manual_seed(0)
    return {
        "discriminator": (load_discriminator()(), (3, 64, 64), {}),
        "agent": (Agent(), (8,), {}),
        "lstm": (SeqClassifier(), (7, 6), {}),
        "tied": (TinyTiedLM(), (10,), {"dtypes": [torch.long]}),
    }


EXT = {"classic": "txt", "tree": "txt", "markdown": "md", "html": "html", "json": "json", "csv": "csv"}


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("name", ["discriminator", "agent", "lstm", "tied"])
def test_golden_files(name, fmt, golden):
    model, size, kw = models()[name]
    s = summary(model, size, verbose=0, macs=True, formulas=True, **kw)
    columns = ALL_COLUMNS if fmt in ("tree", "markdown") and name != "discriminator" else None
    golden(f"{name}.{fmt}.{EXT[fmt]}", s.render(fmt, columns=columns) if columns else s.render(fmt))


def test_output_is_deterministic():
    texts = {summary(SeqClassifier(), (7, 6), verbose=0, macs=True).to_json() for _ in range(3)}
    assert len(texts) == 1


def test_json_round_trips_and_holds_base_units():
    s = summary(Agent(), (8,), verbose=0, macs=True, formulas=True)
    data = json.loads(s.to_json())
    assert data["schema_version"] == 1
    assert data["total_params"] == 281 and data["total_macs"] == 8 * 16 + 16 * 4  # 128 + 64
    assert data["layers"][1]["name"] == "body" and data["layers"][1]["output_shapes"] == [2, 16]
    assert Summary.from_json(s.to_json()) == s
    assert Summary.from_dict(s.to_dict()) == s
    nested = summary(SeqClassifier(), (7, 6), verbose=0)
    assert Summary.from_json(nested.to_json()).layers[1].output_shapes == [(2, 7, 10), [(1, 2, 10), (1, 2, 10)]]


def test_bad_switches():
    with pytest.raises(InputTypeError, match=r"macs: expected True, False or None"):
        summary(nn.Linear(2, 2), (2,), verbose=0, macs="yes")


def test_from_dict_rejects_foreign_data():
    with pytest.raises(InputSpecError, match="not a complete netsummary summary"):
        Summary.from_dict({"schema_version": 1, "total_params": 3})
    with pytest.raises(InputSpecError, match="schema_version"):
        Summary.from_dict({"total_params": 3})
    with pytest.raises(InputSpecError, match="unsupported summary schema_version 99"):
        Summary.from_dict({"schema_version": 99})


def test_csv_one_row_per_call_numbers_unformatted():
    s = summary(load_discriminator()(), (3, 64, 64), verbose=0, macs=True)
    rows = list(csv.DictReader(io.StringIO(s.render("csv"))))
    assert len(rows) == len(s.layers) == 14  # the root and 13 leaves
    assert rows[3]["name"] == "conv2" and rows[3]["params"] == "524544"  # 256 * (128*4*4) + 256
    assert rows[3]["macs"] == str(256 * 16 * 16 * 128 * 4 * 4)  # 134,217,728 per sample
    assert json.loads(rows[3]["output_shapes"]) == [2, 256, 16, 16]


def test_tree_depth_folds_subtrees_into_containers():
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), nn.Sequential(nn.Linear(8, 2)))
    s = summary(model, (4,), verbose=0, macs=True)
    rows = s.render("tree", depth=1).split("\n\n")[0].splitlines()[2:]
    assert len(rows) == 3  # root, 0, 1
    # container "0" aggregates Linear(4, 8): 4*8 + 8 = 40 params, 4*8 = 32 MACs per sample
    assert rows[1].split() == ["0", "(Sequential)", "[-1,", "8]", "40", "32"]
    assert rows[0].split()[-2:] == ["58", "48"]  # 40 + 18 params; 32 + 16 MACs
    assert len(s.render("tree", depth=0).split("\n\n")[0].splitlines()) == 3  # header, rule, root


def test_depth_or_columns_alone_mean_tree(capsys):
    summary(nn.Linear(4, 2), (4,), depth=1)
    out = capsys.readouterr().out
    assert out.startswith("Layer (type)") and "MACs" in out


def test_trainable_column_yes_no_partial():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2), nn.ReLU())
    model[1].requires_grad_(False)
    model[2].bias.requires_grad_(False)
    table = summary(model, (2,), verbose=0).render(columns=["trainable"])
    cells = [line.split()[-1] for line in table.split("\n\n")[0].splitlines()[3:]]
    assert cells == ["yes", "no", "(4)", "--"]  # partial (4): Linear(2,2) weight 4 of 6
    assert "partial (4)" in table


def test_formula_column_evaluates_to_params():
    s = summary(load_discriminator()(), (3, 64, 64), verbose=0, formulas=True)
    for r in s.leaf_layers:
        assert eval(r.formula.replace("×", "*")) == r.params, (r.name, r.formula)
    assert s.leaf_layers[0].formula == "128 × (3 × 4 × 4) + 128"  # the seed document's 6,272


def test_columns_that_were_not_recorded_are_an_error():
    s = summary(nn.Linear(2, 2), (2,), verbose=0)  # classic default: no MACs, no formulas
    assert "MACs" not in s.render("tree")  # the default tree columns leave MACs out then
    with pytest.raises(InputSpecError, match=r"'macs' needs MACs counted: summary\(..., macs=True\)"):
        s.render(columns=["macs"])
    with pytest.raises(InputSpecError, match=r"'formula' needs formulas recorded"):
        s.render(columns=["formula"])


def test_depth_hides_deeper_own_params_rows_and_shows_them_under_their_module():
    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(x) * self.scale

    model = nn.Sequential(Inner(), nn.ReLU())
    s = summary(model, (3,), verbose=0)
    shallow = s.render("tree", depth=1).split("\n\n")[0]
    assert "own params" not in shallow  # the 3 are inside row "0" (3 + 12 = 15 params)
    deep = s.render("tree").split("\n\n")[0].splitlines()
    labels = [line.split("  ")[0].strip() if line.startswith("(") else line.strip().split(" (")[0] for line in deep[2:]]
    assert labels[:4] == ["(root) (Sequential)", "0", "0", "0.fc"]  # the own-params row right under "0"
    assert "0 (Inner, own params)" in deep[4]


def test_markdown_escapes_pipes_and_indents_visibly():
    model = nn.Sequential()
    model.add_module("a|b", nn.Sequential(nn.Linear(2, 2)))
    md = summary(model, (2,), verbose=0).render("markdown")
    assert "· a\\|b (Sequential)" in md and "· · a\\|b.0 (Linear)" in md


def test_macs_label_names_the_batch():
    data = summary(nn.Linear(4, 3), input_data=torch.zeros(5, 4), verbose=0, macs=True).render("tree")
    assert "Total MACs (the input_data batch; FLOPs = 2 × MACs)" in data  # 5 * 4 * 3 = 60
    assert summary(nn.Linear(4, 3), (4,), batch_size=5, verbose=0, macs=True).total_macs == 60


def test_wide_tables_cut_names_never_shapes():
    class Deep(nn.Module):
        def __init__(self):
            super().__init__()
            self.a_really_quite_long_submodule_name_for_wrapping = nn.Sequential(nn.Linear(3, 3))

        def forward(self, x):
            return self.a_really_quite_long_submodule_name_for_wrapping(x)

    table = summary(Deep(), (3,), verbose=0).render("tree")
    assert "    a_really_quite_long_submodule_name_for_wrapping.0 (Linear)" in table  # fits: whole
    Deep.a = None
    deeper = Deep()
    long = "x" * 150  # a name that alone is wider than the 120-column limit
    deeper.add_module(long, deeper._modules.pop("a_really_quite_long_submodule_name_for_wrapping"))
    deeper.forward = lambda x: getattr(deeper, long)(x)
    table = summary(deeper, (3,), verbose=0).render("tree")
    body = table.split("\n\n")[0].splitlines()
    assert max(len(line) for line in body) <= 120
    assert "[-1, 3]" in table  # shapes whole
    assert "    …xxx" in table and "x.0 (Linear)" in table  # indented, keeps its specific end


BAD = [
    ("format", dict(format="yaml"), InputSpecError, r"unknown format 'yaml'; valid formats are classic, tree, markdown"),
    ("column", dict(columns=["params", "flops"]), InputSpecError, r"unknown column\(s\) \['flops'\]; valid columns are input_shape"),
    ("columns-str", dict(columns="params"), InputTypeError, r"expected a list of column names"),
    ("depth-negative", dict(depth=-1), InputSpecError, r"depth: expected a non-negative int .* got -1"),
    ("depth-float", dict(depth=1.5), InputTypeError, r"depth: expected a non-negative int"),
    ("classic-depth", dict(format="classic", depth=2), InputSpecError, r"depth and columns apply to the tree formats"),
    ("format-list", dict(format=["tree"]), InputSpecError, r"unknown format \['tree'\]"),
    ("columns-twice", dict(columns=["params", "params"]), InputSpecError, r"'params' is listed twice"),
    ("columns-empty", dict(columns=[]), InputSpecError, r"at least one column"),
]


@pytest.mark.parametrize("kwargs, error, match", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_view_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        summary(nn.Linear(2, 2), (2,), verbose=0, **kwargs)
    s = summary(nn.Linear(2, 2), (2,), verbose=0)
    with pytest.raises(error, match=match):
        s.render(kwargs.get("format"), depth=kwargs.get("depth"), columns=kwargs.get("columns"))


def test_notebook_shows_the_table_once():
    printed = summary(nn.Linear(2, 2), (2,), print_fn=lambda text: None)
    silent = summary(nn.Linear(2, 2), (2,), verbose=0)
    assert printed._repr_html_() is None  # already shown as text
    assert silent._repr_html_().startswith("<table>")


XSS = "<img src=x onerror=alert(1)>"


def _hostile_model(out: int) -> nn.Module:
    evil = type(XSS, (nn.Linear,), {})
    model = nn.Sequential()
    model.add_module("a|<b>&c", evil(4, out))
    return model


def test_markdown_escapes_html_in_names_and_types() -> None:
    text = summary(_hostile_model(3), (4,), verbose=0).render("markdown")
    assert "<" not in text and ">" not in text
    assert "| · a\\|&lt;b&gt;&amp;c (&lt;img src=x onerror=alert(1)&gt;) |" in text
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert {line.replace("\\|", "").count("|") for line in rows[:4]} == {4}  # no name adds a column


def test_markdown_diff_escapes_html_in_names_and_types() -> None:
    from netsummary._reporting.diff import diff_summaries, render_diff

    base, new = (summary(_hostile_model(n), (4,), verbose=0) for n in (3, 5))
    text = render_diff(diff_summaries(base, new), "markdown", "<b>base</b>.json -> new.json")
    assert "### netsummary diff: &lt;b>base&lt;/b>.json -> new.json" in text
    row = next(line for line in text.splitlines() if line.startswith("| changed"))
    assert "`a\\|<b>&c`" in row  # a code span shows its text as written: no HTML there
    assert "&lt;img src=x onerror=alert(1)&gt;" in row and XSS not in row
    assert render_diff(diff_summaries(base, new), "text").count(XSS) == 1  # text output is unchanged


def test_markdown_code_spans_cannot_be_closed_by_a_name() -> None:
    from netsummary._safeio import markdown_cell, markdown_code

    assert markdown_code("a`<img>`b") == "`` a`<img>`b ``"
    assert markdown_cell("x`<img>`") == "x\\`&lt;img&gt;\\`"
    assert markdown_cell("layers.0 (Linear)") == "layers.0 (Linear)"
