"""Models with no forward, and summaries with no input (issue 10): a parameter-only summary.

``nn.ModuleList``, ``nn.ModuleDict``, ``nn.ParameterList`` and modules holding only parameters
define no ``forward``; ``summary(model)`` without any input runs none either. Both give the module
tree with exact parameter counts, ``forward_ran=False``, and tables that say shapes and MACs are
not known, instead of an error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from netsummary import InputSpecError, Summary, summary
from netsummary._commandline.cli import main
from netsummary._reporting.render import NO_FORWARD


def _linears() -> nn.ModuleList:
    # Linear(4, 8): 4*8 + 8 = 40; Linear(8, 2): 8*2 + 2 = 18; total 58
    return nn.ModuleList([nn.Linear(4, 8), nn.Linear(8, 2)])


def test_module_list_of_linears(unchanged) -> None:
    model = _linears()
    with unchanged(model):
        s = summary(model, verbose=0)
    assert not s.forward_ran and s.complete
    assert (s.total_params, s.trainable_params, s.non_trainable_params) == (58, 58, 0)
    assert s.param_bytes == 58 * 4 and s.total_macs is None
    assert [(r.name, r.type, r.depth, r.parent, r.is_leaf, r.params) for r in s.layers] == [
        ("", "ModuleList", 0, None, False, 58), ("0", "Linear", 1, 0, True, 40), ("1", "Linear", 1, 0, True, 18)]
    assert all(r.output_shapes is None and r.macs is None for r in s.layers)
    text = str(s)
    assert [line.split() for line in text.splitlines()[3:5]] == [["Linear-1", "--", "40"], ["Linear-2", "--", "18"]]
    assert NO_FORWARD in text
    assert "Input size (MB): --" in text and "Forward/backward pass size (MB): --" in text
    assert "Params size (MB): 0.00" in text and "Estimated Total Size (MB): --" in text
    assert repr(s) == "<Summary of ModuleList: 58 params, 2 leaf rows, no forward>"


def test_a_module_list_given_an_input_runs_nothing(unchanged) -> None:
    model = _linears()
    with unchanged(model):
        s = summary(model, (4,), verbose=0)  # ModuleList.forward raises NotImplementedError: not called
    assert not s.forward_ran and s.total_params == 58
    with pytest.raises(InputSpecError):  # a wrong input is still an error
        summary(model, (0,), verbose=0)


def test_module_dict_tree_view() -> None:
    # conv: 3*8*3*3 + 8 = 224; norm: 8 weight + 8 bias = 16 (and 8 + 8 + 1 buffer elements)
    model = nn.ModuleDict({"conv": nn.Conv2d(3, 8, 3), "norm": nn.BatchNorm2d(8)})
    s = summary(model, verbose=0)
    assert s.total_params == 240 and (s.buffer_count, s.buffer_bytes) == (17, 16 * 4 + 8)
    assert [(r.name, r.kernel_shape) for r in s.layers] == [("", None), ("conv", (3, 3)), ("norm", None)]
    tree = s.render("tree")
    assert tree.splitlines()[0].split() == ["Layer", "(type)", "Params", "Trainable", "Params", "(bytes)"]
    assert tree.splitlines()[3].split() == ["conv", "(Conv2d)", "224", "yes", "896"]
    assert tree.endswith("\n\n" + NO_FORWARD)
    footer = dict(re.split(r"\s{2,}", line.strip()) for line in tree.splitlines()[-12:-2])
    assert footer["Input size"] == footer["Forward/backward pass size"] == footer["Estimated total size"] == "--"
    assert footer["Params size"] == "960 B" and footer["Total params"] == "240"
    shapes = s.render("tree", columns=["output_shape", "params", "macs"])  # asked for: shown as not run
    assert shapes.splitlines()[3].split() == ["conv", "(Conv2d)", "--", "224", "--"]
    assert s.render("markdown").endswith("\n\n" + NO_FORWARD)
    assert s.render("html").endswith("<p>" + NO_FORWARD + "</p>")


def test_parameter_list_only_module() -> None:
    class Scales(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scales = nn.ParameterList([nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(2, 5))])

    s = summary(Scales(), verbose=0)  # 3 + 2*5 = 13
    assert s.total_params == 13 and not s.forward_ran
    assert [(r.name, r.type, r.params) for r in s.leaf_layers] == [("scales", "ParameterList", 13)]
    assert str(s).splitlines()[3].split() == ["ParameterList-1", "--", "13"]
    assert summary(nn.ParameterList([nn.Parameter(torch.ones(4))]), verbose=0).total_params == 4


def test_module_with_only_parameter_attributes() -> None:
    class Table(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(6, 4))  # 24
            self.offset = nn.Parameter(torch.zeros(4), requires_grad=False)  # 4, frozen

    s = summary(Table(), verbose=0)
    assert (s.total_params, s.trainable_params, s.non_trainable_params, s.param_bytes) == (28, 24, 4, 112)
    assert str(s).splitlines()[3].split() == ["Table-1", "--", "28"]
    assert s.render("tree").splitlines()[2].split() == ["(root)", "(Table)", "28", "partial", "(24)", "112"]


def test_resnet18_without_input(unchanged) -> None:
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18()
    with unchanged(model):
        s = summary(model, verbose=0)
    assert s.total_params == 11_689_512  # torchvision's published num_params for resnet18
    assert not s.forward_ran and s.total_macs is None and s.input_bytes == s.output_bytes == 0
    assert len(s.layers) == len(list(model.named_modules()))
    entries = sum(int(line.split()[-1].replace(",", "")) for line in str(s).splitlines()[3:]
                  if line.strip().split()[0].rsplit("-", 1)[-1].isdigit())
    assert entries == 11_689_512  # the classic rows add up to the total


def test_a_model_with_a_forward_but_no_input(unchanged) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU())  # 3*4 + 4 = 16
    with unchanged(model):
        s = summary(model, verbose=0)
    assert not s.forward_ran and s.total_params == 16
    with pytest.raises(InputSpecError, match="dtypes applies to input_size"):
        summary(model, dtypes=[torch.float32], verbose=0)
    with pytest.raises(InputSpecError, match=r"got neither \(keyword arguments"):  # forward arguments: an input
        summary(model, x=torch.zeros(2, 3), verbose=0)


def test_tied_weights_counted_once() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 4)  # 40
            self.head = nn.Linear(4, 10, bias=False)  # its weight is embed's: 0 more
            self.head.weight = self.embed.weight

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.embed(x))

    s = summary(Tied(), verbose=0)
    assert s.total_params == 40 and s.shared_params == 40
    assert [(r.name, r.params, r.shared_params) for r in s.leaf_layers] == [("embed", 40, 0), ("head", 40, 40)]
    text = str(s)
    assert "40 (tied)" in text and "Shared params shown in several rows, counted once: 40" in text


def test_json_round_trip() -> None:
    s = summary(nn.ModuleDict({"a": nn.Linear(2, 3), "b": nn.ModuleList([nn.Linear(3, 3)])}), verbose=0)
    data = json.loads(s.to_json())
    assert data["forward_ran"] is False
    back = Summary.from_json(s.to_json())
    assert back == s and not back.forward_ran and str(back) == str(s)
    ran = summary(nn.Linear(2, 3), (2,), verbose=0)
    assert ran.forward_ran and "forward_ran" not in ran.to_dict()  # written only when false
    assert Summary.from_dict(ran.to_dict()).forward_ran
    with pytest.raises(InputSpecError, match=r"forward_ran is 'no' \(str\), expected true or false"):
        Summary.from_dict({**data, "forward_ran": "no"})


def _module_list_file(tmp_path: Path) -> str:
    path = tmp_path / "blocks.py"
    path.write_text("from torch import nn\n\ndef blocks():\n    return nn.ModuleList([nn.Linear(4, 8), nn.Linear(8, 2)])\n")
    return f"{path}:blocks"


def test_cli_without_input_size(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = _module_list_file(tmp_path)
    code = main([target, "--max-params", "100", "--max-param-bytes", "1KiB"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert NO_FORWARD in out and "Linear-2" in out
    assert "ModuleList: total params 58 <= budget 100" in out
    assert main([target, "--max-params", "50", "-q"]) == 1  # over: 58 > 50
    assert capsys.readouterr().out.startswith("ModuleList: total params 58 > budget 50")
    assert main([target, "--format", "json"]) == 0
    assert Summary.from_json(capsys.readouterr().out).total_params == 58


@pytest.mark.parametrize("budget", ["--max-macs", "--max-total-bytes"])
def test_cli_forward_budgets_without_a_forward_are_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                           budget: str) -> None:
    value = "1G" if budget == "--max-macs" else "1GiB"
    code = main(["torch.nn:Linear", "--kwargs", '{"in_features": 2, "out_features": 3}', budget, value])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.startswith(f"netsummary: error: {budget}: ") and err.count("\n") == 1
    assert "but no --input-size was given" in err
    if budget == "--max-macs":
        assert "MACs need an input" in err
    code = main([_module_list_file(tmp_path), "--input-size", "4", budget, value])  # an input, but no forward
    out, err = capsys.readouterr()
    assert (code, out) == (2, "") and "but ModuleList defines no forward" in err
