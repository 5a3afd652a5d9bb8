"""Tables of real-sized models read right: byte sizes in fitting units, no row widened by one
nested cell, budget lines naming the model the user knows (issue 10)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from netsummary import summary
from netsummary._commandline.cli import main
from netsummary._reporting.render import ELISION, MAX_WIDTH, elide, fit_cells

FIX = Path(__file__).resolve().parent / "cli_fixtures"
FACTORY = str(FIX / "cli_factory.py") + ":create_model"
TINY = str(FIX / "cli_tiny.py")


# ------------------------------------------------------------------------- units of byte sizes


def big_model() -> nn.Module:
    """A 70B-parameter model that takes no memory: seven Linear(100,000, 100,000) on meta."""
    with torch.device("meta"):
        return nn.Sequential(*[nn.Linear(100_000, 100_000) for _ in range(7)])


def totals(text: str) -> dict[str, str]:
    """The Totals section of a tree view: label -> value."""
    lines = text.split("\nTotals\n", 1)[1].splitlines()[1:]
    return {line.rsplit("  ", 1)[0].strip(): line.rsplit("  ", 1)[1].strip() for line in lines}


def test_tree_view_byte_sizes_take_the_unit_that_fits() -> None:
    s = summary(big_model(), (100_000,), verbose=0)
    # params: 7 * (100,000 * 100,000 + 100,000) = 70,000,700,000 float32 = 280,002,800,000 bytes
    assert (s.total_params, s.param_bytes) == (70_000_700_000, 280_002_800_000)
    got = totals(s.render("tree"))
    assert got["Total params"] == "70,000,700,000"
    # 280,002,800,000 / 2**30 = 260.7729... GiB (it was 267031.48 in a "(MiB)" row)
    assert got["Params size"] == "260.77 GiB"
    assert got["Buffers size"] == "0 B"  # Linear has no buffers; plain bytes have no decimals
    # one sample's input: 100,000 float32 = 400,000 bytes = 390.625 KiB, a tie rounded half to even
    assert got["Input size"] == "390.62 KiB"
    # 2 x the leaf outputs: 2 * 7 * 400,000 = 5,600,000 bytes / 2**20 = 5.3405... MiB
    assert got["Forward/backward pass size"] == "5.34 MiB"
    # 280,002,800,000 + 400,000 + 5,600,000 = 280,008,800,000 bytes / 2**30 = 260.7785... GiB
    assert got["Estimated total size"] == "260.78 GiB"
    assert not any("(MiB)" in label for label in got)  # the unit is in the value, not the label
    # markdown and HTML follow the tree view
    assert "| Params size " in s.render("markdown") and "260.77 GiB" in s.render("markdown")
    assert "260.77 GiB" in s.render("html")
    # the classic table keeps torchsummary's MB (= MiB) lines: 280,002,800,000 / 2**20 = 267,031.479...
    classic = s.render("classic").splitlines()
    assert "Params size (MB): 267031.48" in classic
    assert "Estimated Total Size (MB): 267037.20" in classic  # 280,008,800,000 / 2**20 = 267,037.201...
    # JSON and CSV keep bytes
    data = s.to_dict()
    assert (data["param_bytes"], data["input_bytes"]) == (280_002_800_000, 400_000)


def test_small_sizes_read_in_bytes_and_kib() -> None:
    s = summary(nn.Linear(16, 8), (16,), verbose=0)
    got = totals(s.render("tree"))
    assert got["Params size"] == "544 B"  # (16*8 + 8) * 4 = 544 < 1,024
    assert got["Input size"] == "64 B"  # 16 * 4
    assert got["Estimated total size"] == "672 B"  # 544 + 64 + 2 * 8 * 4


# ------------------------------------------------------------------------- width of the tables


class Postprocess(nn.Module):
    """A leaf returning what a detector returns in eval mode: one dict per image."""

    def forward(self, x):
        n = x.shape[0]
        return [{"boxes": x.new_zeros(100, 4), "labels": x.new_zeros(100, dtype=torch.long),
                 "scores": x.new_zeros(100), "masks": x.new_zeros(100, 1, 28, 28)} for _ in range(n)]


class Detector(nn.Module):
    """Mask R-CNN-like: a backbone of many small rows, then a list of dicts."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(*[nn.Conv2d(3, 3, 1) for _ in range(40)])
        self.postprocess = Postprocess()

    def forward(self, images):
        return self.postprocess(self.backbone(images))


DETECTION = {"boxes": (100, 4), "labels": (100,), "scores": (100,), "masks": (100, 1, 28, 28)}


def widths(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def test_a_list_of_dicts_is_elided_and_kept_whole_in_the_data() -> None:
    s = summary(Detector(), input_data=torch.rand(2, 3, 8, 8), verbose=0)
    post = s.layers[-1]
    assert post.name == "postprocess" and post.output_shapes == [DETECTION, DETECTION]
    # the whole structure in one line: 2 dicts of 4 shapes, 147 characters
    full = ("({boxes: [100, 4], labels: [100], scores: [100], masks: [100, 1, 28, 28]}, "
            "{boxes: [100, 4], labels: [100], scores: [100], masks: [100, 1, 28, 28]})")
    for fmt, columns in (("classic", None), ("tree", None), ("tree", ["input_shape", "output_shape", "params"])):
        assert widths(s.render(fmt, columns=columns)) <= MAX_WIDTH, (fmt, columns)  # the backbone folded
        text = s.render(fmt, columns=columns, fold=False)  # the 40 backbone rows, unfolded
        assert widths(text) <= MAX_WIDTH, (fmt, columns)
        assert full not in text and ELISION in text
        assert "({boxes: [100, 4], labels: [100]" in text and "masks: [100, 1, 28, 28]})" in text  # both ends
        assert "[2, 3, 8, 8]" in text  # plain shapes beside it stay whole
    data = s.to_dict()["layers"][-1]["output_shapes"]
    as_json = json.dumps(data)
    assert as_json.count('"masks": [100, 1, 28, 28]') == 2 and as_json.count('"boxes": [100, 4]') == 2
    # CSV holds the full structure too: 2 masks in the root's row, 2 in postprocess's
    assert s.render("csv").count('""masks"":[100,1,28,28]') == 4
    # markdown and HTML keep every cell whole: their viewers wrap
    assert "masks: [100, 1, 28, 28]}, {boxes" in s.render("markdown")


class Speller(nn.Module):
    """Tacotron2-like: an LSTM over a PackedSequence."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 16)
        self.rnn = nn.LSTM(16, 32, batch_first=True)

    def forward(self, x, lengths):
        return self.rnn(pack_padded_sequence(self.embed(x), lengths, batch_first=True))


def test_a_packed_sequence_is_elided_and_kept_whole_in_the_data() -> None:
    s = summary(Speller(), input_data=[torch.rand(2, 5, 8), torch.tensor([5, 3])], verbose=0)
    rnn = next(r for r in s.layers if r.name == "rnn")
    packed, (h, c) = rnn.output_shapes
    assert packed == {"data": (8, 32), "batch_sizes": (5,), "sorted_indices": "NoneType",
                      "unsorted_indices": "NoneType"}  # 5 + 3 = 8 packed steps
    assert h == c == (1, 2, 32)
    for fmt, columns in (("classic", None), ("tree", ["input_shape", "output_shape", "params"])):
        text = s.render(fmt, columns=columns)
        assert widths(text) <= MAX_WIDTH, (fmt, columns)
        assert ELISION in text
        assert "({data: [8, 32], batch_sizes: [5]" in text and "[1, 2, 32]))" in text
    layer = next(x for x in s.to_dict()["layers"] if x["name"] == "rnn")
    assert "unsorted_indices" in json.dumps(layer["output_shapes"])
    assert isinstance(Speller()(torch.rand(2, 5, 8), torch.tensor([5, 3]))[0], PackedSequence)


def test_a_long_plain_shape_is_never_cut() -> None:
    class Reshape(nn.Module):
        def forward(self, x):
            return x.reshape(x.shape[0], *([1] * 40), 3, 4)

    model = nn.Sequential(Reshape(), nn.Identity())
    s = summary(model, (12,), verbose=0)
    shape = "[-1, " + "1, " * 40 + "3, 4]"
    assert len(shape) == 130  # "[-1, " + 40 * "1, " + "3, 4]" = 5 + 120 + 5 = 130 > MAX_WIDTH
    for fmt in ("classic", "tree"):
        text = s.render(fmt)
        assert shape in text and ELISION not in text  # wider than 120, but whole


def test_a_plain_shape_beside_an_elided_structure_stays_whole() -> None:
    class Both(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Identity()
            self.b = nn.Identity()

        def forward(self, x):
            plain = self.a(x.reshape(x.shape[0], *([1] * 20), 12))
            return plain, self.b({f"output_number_{i}": x for i in range(8)})

    s = summary(Both(), (12,), verbose=0)
    shape = "[-1, " + "1, " * 20 + "12]"  # 68 characters
    for fmt in ("classic", "tree"):
        text = s.render(fmt)
        assert widths(text) <= MAX_WIDTH and shape in text
        assert "{output_number_0: [-1, 12]" in text and ELISION in text and "output_number_7: [-1, 12]}" in text


def test_short_cells_are_untouched() -> None:
    # the LSTM's (output, (h, c)) is structured but short: the tree keeps it whole
    class Seq(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(6, 10, batch_first=True)

        def forward(self, x):
            return self.lstm(x)

    for fmt in ("classic", "tree"):
        text = summary(Seq(), (7, 6), verbose=0).render(fmt)
        assert "([-1, 7, 10], ([1, -1, 10], [1, -1, 10]))" in text and ELISION not in text


def test_elide_cuts_between_items() -> None:
    text = "({a: [1, 2], b: [3, 4], c: [5, 6]}, {a: [1, 2], b: [3, 4], c: [5, 6]})"
    out = elide(text, 40)
    assert len(out) <= 40 and out.startswith("({a: [1, 2]") and out.endswith("c: [5, 6]})") and ELISION in out
    assert elide(text, len(text)) == text
    # no separator at all: a last-resort cut by characters, still within the width
    assert len(elide("{" + "x" * 80 + ": [1]}", 48)) == 48
    # fit_cells leaves tables that fit alone, and never shortens plain cells
    rows = [["a", "[1, 2, 3]"], ["b", "(" + ", ".join(["[1, 2]"] * 40) + ")"]]
    assert fit_cells(rows, [1], [5], 10, limit=1000) == rows
    fitted = fit_cells(rows, [1], [5], 10, limit=80)
    assert fitted[0] == rows[0] and len(fitted[1][1]) <= 70 and ELISION in fitted[1][1]


# ---------------------------------------------------------------------------- naming in the CLI


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_budget_lines_name_the_built_model_not_the_factory(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, FACTORY, "--input-size", "16", "--max-params", "100", "-q")
    assert (code, out, err) == (0, "SmallNet: total params 68 <= budget 100 (32.0% headroom)\n", "")  # 1 - 68/100
    code, out, _ = run(capsys, FACTORY, "--kwargs", '{"model_name": "wide"}', "--input-size", "16",
                       "--max-params", "100", "-q")
    assert (code, out) == (1, "WideNet: total params 544 > budget 100 (+444.0%)\n")  # 544/100 - 1
    assert "create_model" not in out


def test_name_flag_names_the_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, FACTORY, "--kwargs", '{"model_name": "wide"}', "--input-size", "16",
                       "--max-params", "1K", "--name", "wide-v2", "-q")
    assert (code, out) == (0, "wide-v2: total params 544 <= budget 1,000 (45.6% headroom)\n")  # 1 - 544/1,000
    base = tmp_path / "base.json"
    assert main([FACTORY, "--input-size", "16", "--format", "json", "--output", str(base)]) == 0
    code, out, _ = run(capsys, FACTORY, "--kwargs", '{"model_name": "wide"}', "--input-size", "16",
                       "--baseline", str(base), "--max-growth", "10%", "--name", "wide-v2", "-q")
    assert code == 1 and out.splitlines()[0] == "wide-v2: total params 68 -> 544 (+700.0%) > max growth 10%"
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "--name NAME" in out


def test_check_names_models_by_their_config_name(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "pyproject.toml"
    config.write_text(f'[tool.netsummary.models.my-small]\ntarget = "{FACTORY}"\ninput-size = [16]\n'
                      'max-params = 100\n')
    code, out, _ = run(capsys, "check", "--config", str(config))
    assert (code, out.splitlines()[0]) == (0, "my-small: total params 68 <= budget 100 (32.0% headroom)")


def test_classes_and_instances_keep_their_class_name(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("Tiny", "instance", "build_tiny"):
        code, out, _ = run(capsys, f"{TINY}:{name}", "--input-size", "16", "--max-params", "100", "-q")
        assert (code, out) == (1, "Tiny: total params 154 > budget 100 (+54.0%)\n")  # 154/100 - 1


def test_an_elided_cell_never_cuts_inside_a_shape() -> None:
    from netsummary._reporting.render import elide

    # two items; the second does not fit: keep the first whole and close the dict
    assert elide("{last_hidden_state: [-1, 16, 64], pooler_output: [-1, 64]}", 39) == "{last_hidden_state: [-1, 16, 64] …}"
    assert elide("{logits: [2, 12, 1000], past_key_values: DynamicCache, encoder_last_hidden_state: [2, 12, 64]}",
                 50) == "{logits: [2, 12, 1000] …}"
