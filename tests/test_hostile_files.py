"""Hostile and odd input files (issue 7): each one a clear netsummary error, in bounded time and memory.

Every file is made here, in tmp_path. Commands that could hang on a regression (a FIFO blocks an
open() until a writer comes) run in a daemon thread joined with a timeout, so that a regression
fails fast instead of hanging the test run; no test is timed otherwise.
"""

from __future__ import annotations

import json
import os
import re
import struct
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from netsummary._checkpoints.entries import natural_key
from netsummary._checkpoints.pytorch_file import MAX_NAME_CHARS, MAX_NESTING, tensor_entries
from netsummary._commandline.cli import main
from netsummary._errors import CheckpointError, NetsummaryError
from netsummary._checkpoints.inspect import inspect_checkpoint
from netsummary._checkpoints.summary import MAX_LABEL, MAX_ROWS, MAX_TREE_DEPTH
from netsummary._safeio import escape

HANG = 60.0  # seconds: generous; only a hang (a regression) gets anywhere near it
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")  # "\n" ends lines


def bounded(fn: Callable[[], Any], fifo: Path | None = None) -> Any:
    """``fn()`` in a daemon thread, failing the test if it does not return within HANG seconds.

    On a hang at a FIFO's open(), the FIFO is opened for writing and closed, which lets the
    blocked reader see end-of-file, so the thread ends instead of lingering.
    """
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as err:  # reported in the test's thread
            result["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(HANG)
    if thread.is_alive():
        if fifo is not None:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"still running after {HANG:g} s: it hangs (a FIFO or device read, or superlinear work)")
    if "error" in result:
        raise result["error"]
    return result.get("value")


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str, fifo: Path | None = None) -> tuple[int, str, str]:
    code = bounded(lambda: main(list(argv)), fifo)
    out, err = capsys.readouterr()
    return code, out, err


def write_safetensors(path: Path, header: dict[str, Any], data: bytes = b"") -> Path:
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return path


def f32(offset: int, count: int = 1) -> dict[str, Any]:
    """A header entry for ``count`` float32 elements starting at byte ``offset`` of the data."""
    return {"dtype": "F32", "shape": [count], "data_offsets": [offset, offset + 4 * count]}


def assert_printable(text: str) -> None:
    """Nothing that drives a terminal or splits a line: only "\\n" between lines."""
    assert UNSAFE.search(text) is None, f"unescaped control character {UNSAFE.search(text)[0]!r}"


# ------------------------------------------------------------------ flattening is linear, nesting bounded


class Counting(Mapping):
    """A dict that counts how often it is iterated: each pass over a container is one count."""

    def __init__(self, data: dict[Any, Any]) -> None:
        self.data = data
        self.passes = 0

    def __iter__(self) -> Iterator[Any]:
        self.passes += 1
        return iter(self.data)

    def __getitem__(self, key: Any) -> Any:
        return self.data[key]

    def __len__(self) -> int:
        return len(self.data)


def test_unwrapping_and_flattening_visit_each_container_a_bounded_number_of_times() -> None:
    # 90 wrapper levels ({"model": {"model": ...}}), each with 20 ignored entries, around a state dict
    # of 500 sub-dicts: the old code flattened the whole subtree again at each level (quadratic)
    t = torch.zeros(1)
    containers = []
    state = Counting({f"block{i}": Counting({"weight": t, "bias": t}) for i in range(500)})
    containers += [state, *state.data.values()]
    obj: Any = state
    for _ in range(90):
        junk = {f"junk{j}": Counting({"x": j}) for j in range(20)}
        obj = Counting({"model": obj, **junk})
        containers += [obj, *junk.values()]
    entries, key, ignored = tensor_entries(obj, "nested.pt")
    assert len(entries) == 1000 and entries[0].name == "block0.weight"
    assert key == ".".join(["model"] * 90) and len(ignored) == 90 * 20
    assert max(c.passes for c in containers) <= 4  # a constant, not the 90 levels above each container


def deep_dict(depth: int, key: str = "model", leaf: Any = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"w": torch.zeros(1) if leaf is None else leaf}
    for _ in range(depth - 1):
        obj = {key: obj}
    return obj


def save_deep(path: Path, obj: Any) -> Path:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))  # pickling recurses once per level
    try:
        torch.save(obj, path)
    finally:
        sys.setrecursionlimit(limit)
    return path


def test_nesting_deeper_than_the_limit_is_a_checkpoint_error(tmp_path: Path) -> None:
    ok = save_deep(tmp_path / "ok.pt", deep_dict(MAX_NESTING, key="a"))
    assert inspect_checkpoint(ok).tensors[0].name == ".".join(["a"] * (MAX_NESTING - 1) + ["w"])
    for depth, key in ((MAX_NESTING + 1, "a"), (3000, "model"), (3000, "a")):
        path = save_deep(tmp_path / f"deep{depth}{key}.pt", deep_dict(depth, key))
        with pytest.raises(CheckpointError, match=rf"deep{depth}{key}\.pt': its dicts and lists are nested more "
                                                  rf"than {MAX_NESTING} levels deep"):
            bounded(lambda p=path: inspect_checkpoint(p))


def test_a_few_megabytes_of_nested_wrappers_inspect_correctly(tmp_path: Path) -> None:
    # ~2 MB: 90 wrapper levels of 100 ignored entries each around 40,000 tensors sharing one storage
    t = torch.zeros(2)
    obj: Any = {f"layer{i}.weight": t for i in range(40_000)}
    for level in range(90):
        obj = {"model": obj, **{f"opt{j}": {"step": j} for j in range(100)}}
    path = tmp_path / "nested.pt"
    torch.save(obj, path)
    assert path.stat().st_size > 1_000_000
    s = bounded(lambda: inspect_checkpoint(path))
    assert (len(s.tensors), s.total_params, s.total_bytes) == (40_000, 2, 8)  # one storage, counted once
    assert s.state_dict_key == ".".join(["model"] * 90) and len(s.ignored) == 9_000


def test_the_names_flattening_builds_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import netsummary._checkpoints.pytorch_file as checkpoint

    monkeypatch.setattr(checkpoint, "MAX_NAME_CHARS", 10_000)
    long_key = "k" * 1_000  # one string, shared by every dict: the pickle stays small, the names do not
    obj = {f"{i}": {long_key: torch.zeros(1)} for i in range(20)}
    with pytest.raises(CheckpointError, match=r"its tensor names, nested keys joined with dots, come to more than "
                                              r"10,000 characters in all"):
        tensor_entries(obj, "big.pt")
    assert MAX_NAME_CHARS == 2**26


def test_odd_keys_make_bounded_names(tmp_path: Path) -> None:
    path = tmp_path / "keys.pt"
    torch.save({2**2000: torch.zeros(1), (1, (2, (3, (4, (5, (6,)))))): torch.zeros(2), 7: torch.zeros(3)}, path)
    names = [e.name for e in inspect_checkpoint(path).tensors]
    assert names == ["<int of 2,001 bits>", "(1, (2, (3, (4, (...)))))", "7"]


def test_natural_sort_of_a_name_part_of_thousands_of_digits() -> None:
    huge = "9" * 5000  # int() of it raises ValueError (too many digits) on Python >= 3.11
    assert sorted([f"a.{huge}", "a.10", "a.9"], key=natural_key) == ["a.9", "a.10", f"a.{huge}"]


# ------------------------------------------------------------------ the tree output is bounded


def test_a_name_of_20000_parts_folds_into_one_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = "a." * 20_000 + "weight"  # a 40 KB header; printed level by level it made 800 MB
    path = write_safetensors(tmp_path / "deep.safetensors", {name: f32(0)}, bytes(4))
    code, out, err = run_cli(capsys, "inspect", str(path))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 2 + MAX_TREE_DEPTH + 2 + 2  # header, 16 rows, rule + Total, 2 notes
    assert len(out) < 10_000
    rows = lines[2:2 + MAX_TREE_DEPTH]
    assert [r.split()[0] for r in rows[:-1]] == ["a"] * (MAX_TREE_DEPTH - 1)
    last = rows[-1].strip()
    # the 16th level holds the other 19,985 levels: "a.a. ... .a.weight", cut to MAX_LABEL characters
    assert re.fullmatch(r"(a\.){24}a?\.?….*a\.weight \(\+19,985 levels\)\s+1\s+4 B\s+float32", last)
    assert lines[-2:] == [f"1 row folds a name deeper than {MAX_TREE_DEPTH} levels: the rest of the name is one "
                          "row, (+N levels) says how many it folds",
                          f"Names longer than {MAX_LABEL} characters are cut in the middle (…)"]
    rows = inspect_checkpoint(path).tree()
    assert len(rows) == MAX_TREE_DEPTH and rows[-1].folded == 19_985 and rows[-1].is_tensor
    assert rows[-1].name == name and rows[-1].params == 1


def test_depth_up_to_the_limit_truncates_as_before(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "deep.safetensors", {"a." * 30 + "w": f32(0)}, bytes(4))
    s = inspect_checkpoint(path)
    assert [(r.depth, r.folded, r.is_tensor) for r in s.tree(2)] == [(0, 0, False), (1, 0, False)]
    deep = s.tree(100)  # beyond MAX_TREE_DEPTH: folded there
    assert len(deep) == MAX_TREE_DEPTH and deep[-1].folded == 31 - MAX_TREE_DEPTH


def test_rows_past_the_limit_are_elided_and_counted(tmp_path: Path) -> None:
    header = {f"t{i:02d}": f32(4 * i) for i in range(30)}
    s = inspect_checkpoint(write_safetensors(tmp_path / "wide.safetensors", header, bytes(4 * 30)))
    lines = s.render(max_rows=5).splitlines()
    assert [x.split()[0] for x in lines[2:7]] == ["t00", "t01", "t02", "t03", "t04"]
    assert lines[8].split() == ["Total", "30", "120", "B", "float32"]  # the total counts every tensor
    assert lines[9] == ("25 more rows not shown: the table stops at 5 rows; the Total counts every tensor "
                        "(--depth N shows fewer levels)")
    assert len(s.render(max_rows=None).splitlines()) == 2 + 30 + 2
    assert MAX_ROWS == 10_000


def test_the_cli_prints_at_most_max_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n = MAX_ROWS + 7
    header = {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(n)}
    code, out, _ = run_cli(capsys, "inspect", str(write_safetensors(tmp_path / "many.safetensors", header)))
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2 + MAX_ROWS + 2 + 1
    assert lines[-1].startswith("7 more rows not shown: the table stops at 10,000 rows")


# ------------------------------------------------------------------ names are printed escaped


def test_control_characters_in_tensor_names_are_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    forged = "fc.weight\nTotal                            999,999,999"
    header = {forged: f32(0, 2), "\x1b[2J\x1b[Hclear": f32(8), "odd\u2028line\r\x85": f32(12)}
    path = write_safetensors(tmp_path / "evil.safetensors", header, bytes(16))
    code, out, err = run_cli(capsys, "inspect", str(path), "--max-params", "10")
    assert (code, err) == (0, "")
    assert_printable(out)
    lines = out.splitlines()
    assert [x for x in lines if x.startswith("Total")] == [lines[-3]]  # only the real total
    assert lines[-3].split() == ["Total", "4", "16", "B", "float32"]
    assert "  weight\\nTotal                            999,999,999" in out
    assert "\\x1b[2J\\x1b[Hclear" in out and "odd\\u2028line\\r\\x85" in out
    assert lines[-2] == "Control characters in names are shown escaped (\\n, \\x1b, \\u2028)"
    assert lines[-1] == "evil.safetensors: total params 4 <= budget 10 (60.0% headroom)"


def test_escaped_names_in_ignored_entries_and_shared_storage(tmp_path: Path) -> None:
    t = torch.zeros(3)
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {"emb\x1b[31m": t, "head\n": t}, "opt\nTotal 1": {"x": 1}}, path)
    text = inspect_checkpoint(path).render()
    assert_printable(text)
    assert "head\\n (shares storage with emb\\x1b[31m)" in text
    assert text.splitlines()[-1] == "Tensors read from the 'state_dict' entry; other entries ignored: opt\\nTotal 1"


def test_escape_keeps_printable_text_and_escapes_every_control() -> None:
    assert escape("encoder.layer.0.注意.weight") == "encoder.layer.0.注意.weight"
    assert escape("a\tb\x00c\x7f\x9bd\u202ee\ud800") == "a\\tb\\x00c\\x7f\\x9bd\\u202ee\\ud800"
    assert escape(escape("x\ny")) == "x\\ny"


# ------------------------------------------------------------------ saved summaries: one validator


@pytest.fixture(scope="module")
def saved() -> dict[str, Any]:
    """A summary of Linear(4, 8) + ReLU as to_dict() makes it: 40 params, layers root, 0, 1."""
    from torch import nn

    from netsummary import summary

    return summary(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), (4,), verbose=0, macs=True).to_dict()


def edited(data: dict[str, Any], edit: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    copy = json.loads(json.dumps(data))
    edit(copy)
    return copy


def nest(levels: int) -> Any:
    shape: Any = [2]
    for _ in range(levels):
        shape = {"seq": [shape]}
    return shape


BAD_SUMMARIES = [
    (lambda d: d.update(total_params=True), r"total_params is True \(bool\), expected an int"),
    (lambda d: d.update(total_params=-40, trainable_params=-40),
     r"total_params is -40 \(int\), expected an int >= 0"),
    (lambda d: d.update(total_macs=-1), r"total_macs is -1 \(int\), expected an int >= 0"),
    (lambda d: d.update(param_bytes="160"), r"param_bytes is '160' \(str\), expected an int"),
    (lambda d: d.update(batch_size=0), r"batch_size is 0 \(int\), expected -1 \(any\) or an int >= 1"),
    (lambda d: d.update(total_params=41), r"trainable_params 40 \+ non_trainable_params 0 is not total_params 41"),
    (lambda d: d.update(layers={"0": {}}), r"layers is \{'0': \{\}\} \(dict\), expected a list of records"),
    (lambda d: d.update(layers=[1, 2]), r"layers is \[1, 2\] \(list\), expected a list of records"),
    (lambda d: d.update(input_dtypes="float32"), r"input_dtypes is 'float32' \(str\), expected a list of strings"),
    (lambda d: d.update(complete=1), r"complete is 1 \(int\), expected true or false"),
    (lambda d: d.update(schema_version=True), r"unsupported summary schema_version True"),
    (lambda d: d.pop("model_type"), r"not a complete netsummary summary: missing model_type"),
    (lambda d: d["layers"][1].pop("params"), r"not a complete netsummary LayerRecord record \(layers\[1\]\): "
                                             r"missing params"),
    (lambda d: d["layers"][1].update(params=True), r"layers\[1\]\.params is True \(bool\), expected an int"),
    (lambda d: d["layers"][1].update(macs=-5), r"layers\[1\]\.macs is -5 \(int\), expected an int >= 0"),
    (lambda d: d["layers"][1].update(call_index=0), r"layers\[1\]\.call_index is 0 \(int\), expected an int >= 1"),
    (lambda d: d["layers"][2].update(parent=7), r"layers\[2\]\.parent is 7 \(int\), expected null or the index of "
                                                r"an earlier layer \(0 to 1\)"),
    (lambda d: d["layers"][1].update(parent=1), r"layers\[1\]\.parent is 1 \(int\), expected null or the index"),
    (lambda d: d["layers"][0].update(parent=-1), r"layers\[0\]\.parent is -1 \(int\), expected an int >= 0 or null"),
    (lambda d: d["layers"][1].update(index=5), r"layers\[1\]\.index is 5 \(int\), expected 1, its position"),
    (lambda d: d["layers"][1].update(depth=10**9), r"layers\[1\]\.depth is 1000000000 \(int\), expected 1, one "
                                                   r"more than its parent's"),
    (lambda d: d["layers"][0].update(depth=3), r"layers\[0\]\.depth is 3 \(int\), expected 0 for a layer without"),
    (lambda d: d["layers"][1].update(output_shapes=[2, -8]), r"layers\[1\]\.output_shapes is \[2, -8\] \(list\), "
                                                             r"expected a tensor shape: a list of ints >= 0"),
    (lambda d: d["layers"][1].update(output_shapes={"seq": 3}), r"layers\[1\]\.output_shapes is \{'seq': 3\} "
                                                                r"\(dict\), expected a shape tree"),
    (lambda d: d["layers"][1].update(output_shapes=nest(150)), r"layers\[1\]\.output_shapes(\[0\])+: a shape tree "
                                                               r"nested more than 100 levels deep"),
    (lambda d: d["layers"][1].update(kernel_shape=["3"]), r"layers\[1\]\.kernel_shape is \['3'\] \(list\), "
                                                          r"expected a list of ints or null"),
    (lambda d: d["other_params"].append({"name": "x"}), r"not a complete netsummary ParamGroup record "
                                                        r"\(other_params\[0\]\): missing type"),
]


@pytest.mark.parametrize(("edit", "match"), BAD_SUMMARIES)
def test_from_dict_and_from_json_reject_invalid_fields(saved: dict[str, Any], edit: Any, match: str) -> None:
    from netsummary import InputSpecError, Summary

    data = edited(saved, edit)
    with pytest.raises(InputSpecError, match=match):
        Summary.from_dict(data)
    with pytest.raises(InputSpecError, match=match):
        Summary.from_json(json.dumps(data))


@pytest.mark.parametrize(("edit", "match"), BAD_SUMMARIES[:3] + BAD_SUMMARIES[16:17])
def test_the_cli_loader_uses_the_same_validator(tmp_path: Path, saved: dict[str, Any], edit: Any, match: str) -> None:
    from netsummary import InputSpecError
    from netsummary._reporting.diff import load_summary

    path = tmp_path / "base.json"
    path.write_text(json.dumps(edited(saved, edit)))
    with pytest.raises(InputSpecError, match=rf"base\.json: not a netsummary summary \({match}"):
        load_summary(str(path))


HUGE = 10**400  # finite for JSON and Python, past what a float holds: it overflowed the renderers
BOUND = r"expected an int of at most 9,223,372,036,854,775,807 \(2\*\*63 - 1\)"
HUGE_SHOWN = r"100000\.\.\.000000 \(401 digits\) \(int\)"  # not the 401 digits themselves


@pytest.mark.parametrize("edit", [
    lambda d: d.update(param_bytes=HUGE), lambda d: d.update(input_bytes=HUGE),
    lambda d: d.update(output_bytes=HUGE), lambda d: d.update(buffer_bytes=HUGE),
    lambda d: d.update(buffer_count=HUGE), lambda d: d.update(total_macs=HUGE),
    lambda d: d.update(total_params=HUGE, trainable_params=HUGE),
    lambda d: d.update(non_trainable_params=HUGE),
    lambda d: d["layers"][1].update(params=HUGE), lambda d: d["layers"][1].update(macs=HUGE),
    lambda d: d["layers"][1].update(output_bytes=HUGE), lambda d: d["layers"][1].update(param_bytes=HUGE),
], ids=["param_bytes", "input_bytes", "output_bytes", "buffer_bytes", "buffer_count", "total_macs",
        "total_params", "non_trainable_params", "layer-params", "layer-macs", "layer-output_bytes",
        "layer-param_bytes"])
def test_counts_beyond_int64_are_refused_with_a_short_message(saved: dict[str, Any], edit: Any) -> None:
    from netsummary import InputSpecError, Summary

    data = edited(saved, edit)
    for load in (lambda: Summary.from_dict(data), lambda: Summary.from_json(json.dumps(data))):
        with pytest.raises(InputSpecError, match=rf" is {HUGE_SHOWN}, {BOUND}$") as info:
            load()
        assert len(str(info.value)) < 200


def test_ints_beyond_int64_in_shapes_and_lists_are_refused(saved: dict[str, Any]) -> None:
    from netsummary import InputSpecError, Summary

    for edit, match in [
        (lambda d: d["layers"][1].update(output_shapes=[2, 2**63]), r"layers\[1\]\.output_shapes is \[2, "
         r"9223372036854775808\] \(list\), expected a tensor shape: a list of ints of at most"),
        (lambda d: d["layers"][1].update(kernel_shape=[HUGE]), r"layers\[1\]\.kernel_shape is \[100000\.\.\.000000 \(401 digits\)\] "
         r"\(list\), expected ints of at most 9,223,372,036,854,775,807"),
        (lambda d: d.update(batch_size=-(2**70)), r"batch_size is -1180591620717411303424 \(int\), expected -1"),
    ]:
        with pytest.raises(InputSpecError, match=match):
            Summary.from_dict(edited(saved, edit))


def test_counts_at_the_int64_bound_load_and_render_in_every_format(saved: dict[str, Any]) -> None:
    from netsummary import Summary
    from netsummary._reporting.diff import diff_summaries, render_diff
    from netsummary._reporting.load import MAX_COUNT

    data = edited(saved, lambda d: d.update(total_params=MAX_COUNT, trainable_params=MAX_COUNT,
                                            non_trainable_params=0, **dict.fromkeys(
                                                ("param_bytes", "buffer_count", "buffer_bytes", "input_bytes",
                                                 "output_bytes", "total_macs"), MAX_COUNT)))
    for layer in data["layers"]:
        layer.update(dict.fromkeys(("params", "trainable_params", "param_bytes", "output_bytes", "macs"), MAX_COUNT))
        layer["output_shapes"] = [MAX_COUNT, MAX_COUNT]
    s = Summary.from_dict(data)
    for fmt in ("classic", "tree", "markdown", "html", "json", "csv"):
        assert s.render(fmt)
    small = Summary.from_dict(saved)
    for a, b in ((small, s), (s, small)):
        for fmt in ("text", "markdown"):
            assert render_diff(diff_summaries(a, b), fmt)


def test_diff_of_a_huge_count_is_one_line_naming_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          saved: dict[str, Any]) -> None:
    base, huge = tmp_path / "base.json", tmp_path / "huge.json"
    base.write_text(json.dumps(saved))
    huge.write_text(json.dumps(edited(saved, lambda d: d.update(param_bytes=HUGE))))
    assert main(["diff", str(base), str(huge)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "OverflowError" not in err
    assert re.search(rf"huge\.json: not a netsummary summary \(param_bytes is {HUGE_SHOWN}, {BOUND}\)", err)


def test_an_invalid_summary_never_reaches_a_budget_check(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         saved: dict[str, Any]) -> None:
    # total_params -1 would be "within" any budget; a bool total would be 1
    for edit in (lambda d: d.update(total_params=-1, trainable_params=-1), lambda d: d.update(total_params=True)):
        path = tmp_path / "base.json"
        path.write_text(json.dumps(edited(saved, edit)))
        code, out, err = run_cli(capsys, "diff", str(path), str(path), "--max-growth", "0%")
        assert (code, out) == (2, "") and "not a netsummary summary (total_params is" in err


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"schema_version": 1, "x": ' + "[" * 50_000,
                                  '{"schema_version": 1, "total_params": ' + "9" * 5000 + "}", "{oops", "", "\ud800"])
def test_from_json_of_text_that_is_not_json_is_an_input_spec_error(text: str) -> None:
    from netsummary import InputSpecError, Summary

    with pytest.raises(InputSpecError, match=r"^not JSON \("):
        Summary.from_json(text)


def test_from_json_of_something_that_is_not_text() -> None:
    from netsummary import InputTypeError, Summary

    with pytest.raises(InputTypeError, match=r"expected JSON text \(a str\), got int"):
        Summary.from_json(3)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match=r"expected a netsummary summary \(a dict with 'schema_version'\), got "
                                             r"list"):
        Summary.from_dict([1])  # type: ignore[arg-type]


def test_from_json_over_the_size_limit(monkeypatch: pytest.MonkeyPatch, saved: dict[str, Any]) -> None:
    import netsummary._reporting.load as load
    from netsummary import InputSpecError, Summary

    text = json.dumps(saved)
    monkeypatch.setattr(load, "MAX_JSON_BYTES", len(text) - 1)
    with pytest.raises(InputSpecError, match=rf"{len(text):,} characters of JSON, over the limit of "
                                             rf"{len(text) - 1:,}"):
        Summary.from_json(text)


def test_loaded_names_are_escaped_and_valid_summaries_round_trip(saved: dict[str, Any]) -> None:
    from netsummary import Summary

    s = Summary.from_dict(saved)
    assert Summary.from_json(s.to_json()) == s and s.to_dict() == saved

    def forge(d: dict[str, Any]) -> None:
        d["model_type"] = "Net\x1b[2J"
        d["layers"][1]["name"] = "0\nTotal params: 999,999,999"
        d["layers"][1]["type"] = "Linear\u2028"
        d["layers"][1]["output_shapes"] = {"map": {"out\r": [2, 8], "aux": {"type": "None\x1b"}}}

    loaded = Summary.from_dict(edited(saved, forge))
    assert loaded.model_type == "Net\\x1b[2J"
    assert (loaded.layers[1].name, loaded.layers[1].type) == ("0\\nTotal params: 999,999,999", "Linear\\u2028")
    assert loaded.layers[1].output_shapes == {"out\\r": (2, 8), "aux": "None\\x1b"}
    for fmt in ("classic", "tree", "markdown", "html", "csv"):
        assert_printable(loaded.render(fmt))
    assert [x for x in loaded.render("classic").splitlines() if x.startswith("Total params")] == ["Total params: 40"]


def test_diff_escapes_names_and_markdown_pipes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               saved: dict[str, Any]) -> None:
    def forge(d: dict[str, Any]) -> None:
        d["layers"][1]["name"] = "fc\nadded     evil   Linear"
        d["layers"][2]["type"] = "ReLU | 0 | 0"

    base, new = tmp_path / "base.json", tmp_path / "new\x1b[2J.json"
    base.write_text(json.dumps(saved))
    new.write_text(json.dumps(edited(saved, forge)))
    code, out, err = run_cli(capsys, "diff", str(base), str(new))
    assert (code, err) == (0, "")
    assert_printable(out)
    assert f"netsummary diff: {base} -> {tmp_path}/new\\x1b[2J.json" in out
    assert "added     fc\\nadded     evil   Linear  Linear" in out
    code, out, _ = run_cli(capsys, "diff", str(base), str(new), "--format", "markdown")
    assert code == 0 and "ReLU \\| 0 \\| 0" in out and "ReLU | 0" not in out


# ------------------------------------------------------------------ FIFOs, devices, sizes


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    path = tmp_path / "pipe.json"
    os.mkfifo(path)
    return path


def test_diff_refuses_a_fifo_without_opening_it(capsys: pytest.CaptureFixture[str], fifo: Path) -> None:
    code, out, err = run_cli(capsys, "diff", str(fifo), str(fifo), fifo=fifo)
    assert (code, out) == (2, "")
    assert err == (f"netsummary: error: {fifo}: it is a FIFO (named pipe), not a regular file; netsummary reads a "
                   "JSON summary only from a regular file\n")


def test_inspect_refuses_a_fifo_without_opening_it(capsys: pytest.CaptureFixture[str], fifo: Path) -> None:
    code, out, err = run_cli(capsys, "inspect", str(fifo), fifo=fifo)
    assert (code, out) == (2, "")
    assert err == (f"netsummary: error: cannot inspect checkpoint '{fifo}': it is a FIFO (named pipe), not a "
                   "regular file; netsummary reads a checkpoint only from a regular file\n")


def test_a_fifo_as_the_target_file_is_refused_without_importing_it(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    path = tmp_path / "model.py"
    os.mkfifo(path)
    code, out, err = run_cli(capsys, f"{path}:Model", "--input-size", "3", fifo=path)
    assert (code, out) == (2, "")
    assert err == (f"netsummary: error: invalid target '{path}:Model': {path}: it is a FIFO (named pipe), not a "
                   "regular file; netsummary reads a target's code only from a regular file\n")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
@pytest.mark.parametrize(("argv", "what"), [(["diff", "/dev/zero", "/dev/zero"], "/dev/zero: it is a character device"),
                                            (["inspect", "/dev/zero"], "'/dev/zero': it is a character device")])
def test_a_device_is_refused_without_reading_it(capsys: pytest.CaptureFixture[str], argv: list[str], what: str) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert (code, out) == (2, "") and what in err and "not a regular file" in err


def test_a_summary_file_over_the_limit_is_refused_unread(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from netsummary._safeio import MAX_JSON_BYTES

    path = tmp_path / "huge.json"
    with open(path, "wb") as handle:
        handle.truncate(MAX_JSON_BYTES + 1)  # sparse: no disk space, and it is never read
    code, _, err = run_cli(capsys, "diff", str(path), str(path))
    assert code == 2
    assert err == (f"netsummary: error: {path}: it is 67,108,865 bytes, over the limit of 67,108,864 bytes (64 MiB) "
                   "for a JSON summary\n")


def test_a_sharded_index_that_is_hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import netsummary._checkpoints.inspect as inspect_module

    deep = tmp_path / "deep.index.json"
    deep.write_text('{"weight_map": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(CheckpointError, match=r"a \.json file that cannot be read as JSON \(nested too deeply\)"):
        inspect_checkpoint(deep)
    big = tmp_path / "big.index.json"
    big.write_text(json.dumps({"weight_map": {"w": "a.safetensors"}}))
    monkeypatch.setattr(inspect_module, "MAX_JSON_BYTES", 10)
    with pytest.raises(CheckpointError, match=r"big\.index\.json': it is 38 bytes, over the limit of 10 bytes for a sharded checkpoint index$"):
        inspect_checkpoint(big)
    monkeypatch.undo()
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"w": "pipe.safetensors"}}))
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.safetensors")
        with pytest.raises(CheckpointError, match=r"pipe\.safetensors' is not next to it"):
            bounded(lambda: inspect_checkpoint(index), tmp_path / "pipe.safetensors")


@pytest.mark.parametrize(("length", "match"), [
    (2**63, r"its header length field says 9,223,372,036,854,775,808 bytes, over the limit of 100,000,000 bytes"),
    (1 << 20, r"its header length field says 1,048,576 bytes, but 8 bytes follow it: truncated, or not safetensors"),
    (0, r"its header length field says 0 bytes, too few for a JSON header")])
def test_the_safetensors_header_length_is_checked(tmp_path: Path, length: int, match: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", length) + b"{}      ")
    with pytest.raises(CheckpointError, match=rf"bad\.safetensors': not a valid safetensors file \({match}\)"):
        inspect_checkpoint(path)
def test_a_budget_line_escapes_the_file_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m\x1b[2J.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    code, out, _ = run_cli(capsys, "inspect", str(path), "-q", "--max-params", "1")
    assert code == 1 and out == "m\\x1b[2J.safetensors: total params 2 > budget 1 (+100.0%)\n"


def test_an_error_is_one_line_whatever_the_path_holds(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "gone\nnetsummary: ok\x1b[2J.pt"
    code, out, err = run_cli(capsys, "inspect", str(path))
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "\x1b" not in err and "gone\\nnetsummary: ok\\x1b[2J.pt" in err


# ------------------------------------------------------------------ [tool.netsummary] configs

FIX = Path(__file__).resolve().parent / "cli_fixtures"


def test_check_escapes_a_model_name_that_would_forge_its_last_line(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    shutil.copy(FIX / "cli_tiny.py", tmp_path / "cli_tiny.py")
    forged = "tiny\\nchecked 1 model: 1 ok, 0 over budget, 0 failed\\u001b[2K"  # TOML escapes: a newline, an ESC
    config = tmp_path / "pyproject.toml"
    config.write_text(f'[tool.netsummary.models."{forged}"]\ntarget = "cli_tiny.py:Tiny"\ninput-size = [16]\n'
                      'max-params = 100\n')
    # such a name is refused by the config (it is also a file name under --save-baselines), in one
    # printable line that shows the name escaped; nothing reaches stdout to be forged
    for extra in ((), ("--format", "markdown")):
        code, out, err = run_cli(capsys, "check", "--config", str(config), *extra)
        assert (code, out) == (2, "")
        assert_printable(err)
        assert len(err.splitlines()) == 1 and "checked 1 model" in err and "invalid model name" in err
        assert "tiny\\nchecked 1 model: 1 ok, 0 over budget, 0 failed\\x1b[2K" in err


def test_check_escapes_a_failing_model_s_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "pyproject.toml"
    config.write_text('[tool.netsummary.models.gone]\ntarget = "gone\\nchecked 9 models.py:Net"\ninput-size = [16]\n')
    code, out, _ = run_cli(capsys, "check", "--config", str(config))
    assert code == 2 and len(out.splitlines()) == 2 and "gone\\nchecked 9 models.py:Net" in out
    assert out.splitlines()[-1] == "checked 1 model: 0 ok, 0 over budget, 1 failed"


@pytest.mark.parametrize(("make", "match"), [
    (lambda p: p.write_text("tool = 1\n"), r"pyproject\.toml: tool: expected a table, got int"),
    (lambda p: p.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n"),
     r"pyproject\.toml: cannot read it as TOML \(nested too deeply for the parser\)"),
    (lambda p: p.write_bytes(b'[tool.netsummary]\nx = "\xff"\n'),
     r"pyproject\.toml: cannot read it as TOML \(not UTF-8: byte 0xff at offset 23\)"),
    (lambda p: open(p, "wb").truncate(2**20 + 1),  # sparse, never read
     r"pyproject\.toml: it is 1,048,577 bytes, over the limit of 1,048,576 bytes \(1 MiB\) for a TOML config$"),
], ids=["tool-not-a-table", "deep", "not-utf8", "too-large"])
def test_hostile_configs_are_config_errors(tmp_path: Path, make: Any, match: str) -> None:
    from netsummary._commandline.config import load_config
    from netsummary._errors import ConfigError

    path = tmp_path / "pyproject.toml"
    make(path)
    with pytest.raises(ConfigError, match=match):
        bounded(lambda: load_config(str(path)))


def test_check_refuses_a_fifo_or_a_device_as_its_config(capsys: pytest.CaptureFixture[str], fifo: Path) -> None:
    code, out, err = run_cli(capsys, "check", "--config", str(fifo), fifo=fifo)
    assert (code, out) == (2, "")
    assert err == (f"netsummary: error: {fifo}: it is a FIFO (named pipe), not a regular file; netsummary reads a "
                   "TOML config only from a regular file\n")
    if os.path.exists("/dev/zero"):
        code, _, err = run_cli(capsys, "check", "--config", "/dev/zero")
        assert code == 2 and err.startswith("netsummary: error: /dev/zero: it is a character device, not a regular")


def test_a_fifo_or_a_device_as_a_baseline(capsys: pytest.CaptureFixture[str], fifo: Path) -> None:
    target = str(FIX / "cli_tiny.py") + ":Tiny"
    for baseline in (str(fifo), "/dev/zero"):
        code, out, err = run_cli(capsys, target, "--input-size", "16", "--baseline", baseline, fifo=fifo)
        assert (code, out) == (2, "") and "not a regular file; netsummary reads a JSON summary only" in err


def test_a_compressed_pickle_that_would_expand_too_far_is_refused(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import zipfile

    import netsummary._checkpoints.pytorch_file as checkpoint

    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(3), "pad": [0] * 100_000}, buffer)  # a pickle of ~200 KB, mostly repeats
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            out.writestr(info.filename, src.read(info.filename))
    pickle_size = zipfile.ZipFile(path).getinfo("archive/data.pkl").file_size
    assert pickle_size > 10 * path.stat().st_size
    assert inspect_checkpoint(path).total_params == 3  # within the limit: torch.load reads it
    monkeypatch.setattr(checkpoint, "MAX_PICKLE_BYTES", 100_000)
    with pytest.raises(CheckpointError, match=rf"bomb\.pt': its entry 'archive/data\.pkl' is a pickle compressed from "
                                              rf"{pickle_size:,} to [\d,]+ bytes; loading it would take more memory"):
        inspect_checkpoint(path)
