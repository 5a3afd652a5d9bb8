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

from netsummary._checkpoint import MAX_NAME_CHARS, MAX_NESTING, natural_key, tensor_entries
from netsummary._cli import main
from netsummary._errors import CheckpointError, NetsummaryError
from netsummary._inspect import MAX_LABEL, MAX_ROWS, MAX_TREE_DEPTH, inspect_checkpoint
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
    import netsummary._checkpoint as checkpoint

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
