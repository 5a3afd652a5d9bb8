"""``netsummary inspect`` of safetensors files and sharded safetensors indexes never imports torch
(issue 11): the header is parsed in Python, and ``import netsummary`` / ``netsummary._commandline.cli`` are
lazy. What the fast reader accepts, the safetensors library accepts the same way; anything else
still goes to the library, so errors read as before. ``.pt`` files still load through torch.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from netsummary._checkpoints.safetensors_header import _SAFETENSORS_DTYPES, _parse_header
from netsummary._commandline.cli import main

# Runs the command line as `python -m netsummary` does, then says on stderr whether torch (and
# numpy) got imported; the exit code is passed through.
_WRAPPER = textwrap.dedent(
    """
    import runpy, sys
    sys.argv = ["netsummary", *sys.argv[1:]]
    try:
        runpy.run_module("netsummary", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as done:
        code = done.code
    sys.stdout.flush()
    print(f"torch imported: {'torch' in sys.modules}; numpy imported: {'numpy' in sys.modules}", file=sys.stderr)
    sys.exit(code)
    """
)


def run_subprocess(*argv: str) -> tuple[int, str, str, bool]:
    """``netsummary *argv`` in a fresh interpreter: exit code, stdout, stderr (without the
    wrapper's line) and whether torch was imported."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, "-c", _WRAPPER, *argv], capture_output=True, text=True, timeout=120,
                         env=env)
    *err, last = out.stderr.splitlines(keepends=True) or [""]
    match = re.fullmatch(r"torch imported: (True|False); numpy imported: (True|False)\n?", last)
    assert match, out.stderr
    return out.returncode, out.stdout, "".join(err), match[1] == "True"


def run_in_process(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_same_without_torch(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The subprocess never imports torch and prints exactly what the in-process command does."""
    code, out, err, imported = run_subprocess(*argv)
    assert not imported, f"`netsummary {' '.join(argv)}` imported torch"
    assert (code, out, err) == run_in_process(capsys, *argv)
    return code, out, err


def write_header(path: Path, header: dict[str, Any], data_size: int) -> Path:
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(blob)) + blob)
        handle.truncate(8 + len(blob) + data_size)
    return path


@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    """A small model as safetensors: conv + batch norm (its buffers) + linear, two dtypes."""
    path = tmp_path / "model.safetensors"
    save_file({"conv.weight": torch.zeros(8, 3, 3, 3), "conv.bias": torch.zeros(8),
               "bn.weight": torch.ones(8), "bn.bias": torch.zeros(8), "bn.running_mean": torch.zeros(8),
               "bn.running_var": torch.ones(8), "bn.num_batches_tracked": torch.tensor(0),
               "head.weight": torch.zeros(10, 8, dtype=torch.bfloat16), "head.bias": torch.zeros(10)},
              str(path), metadata={"format": "pt"})
    return path


# ------------------------------------------------------------------------------ whole command line


def test_import_netsummary_and_its_cli_do_not_import_torch() -> None:
    code = textwrap.dedent(
        """
        import sys
        import netsummary, netsummary._commandline.cli, netsummary._checkpoints.inspect, netsummary._checkpoints.entries, netsummary._checkpoints.safetensors_header, netsummary._checkpoints.pytorch_file, netsummary._commandline.budget
        assert "torch" not in sys.modules, "import netsummary imported torch"
        public = sorted(n for n in dir(netsummary) if not n.startswith("_"))
        assert public == sorted(n for n in netsummary.__all__ if n != "__version__"), public
        assert netsummary.__version__ and "torch" not in sys.modules
        from netsummary import InputSpecError, check_budget  # torch-free parts resolve without torch
        assert "torch" not in sys.modules
        from netsummary import summary, Summary
        assert "torch" in sys.modules and summary.__module__ == "netsummary._api"
        assert netsummary.summary is summary and Summary.__name__ == "Summary"
        try:
            netsummary.not_there
        except AttributeError as err:
            assert "not_there" in str(err)
        else:
            raise AssertionError("no AttributeError")
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout == "ok\n", out.stderr


@pytest.mark.parametrize("options", [[], ["--depth", "1"], ["-q", "--max-params", "1K"]], ids=["tree", "depth", "quiet"])
def test_inspect_safetensors_never_imports_torch(capsys: pytest.CaptureFixture[str], model_file: Path,
                                                 options: list[str]) -> None:
    code, out, _ = assert_same_without_torch(capsys, "inspect", str(model_file), *options)
    assert code == 0 and out


def test_budgets_without_torch(capsys: pytest.CaptureFixture[str], model_file: Path) -> None:
    # params: conv 216 + 8, bn 16, head 80 + 10 = 330; bytes 4 * 250 + 2 * 80 = 1,160 (buffers apart)
    code, out, _ = assert_same_without_torch(capsys, "inspect", str(model_file), "--max-params", "300",
                                             "--max-param-bytes", "2KiB")
    assert code == 1
    assert out.splitlines()[-2:] == ["model.safetensors: total params 330 > budget 300 (+10.0%)",
                                     "model.safetensors: param bytes 1,160 (1.13 KiB) <= budget 2,048 (2.00 KiB) "
                                     "(43.4% headroom)"]


def test_a_sharded_index_without_torch(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    first, second = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    save_file({"a.weight": torch.zeros(4, 4), "a.bias": torch.zeros(4)}, str(tmp_path / first))
    save_file({"b.weight": torch.zeros(2, 4, dtype=torch.float16), "b.running_mean": torch.zeros(2)},
              str(tmp_path / second))
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": {
        "a.weight": first, "a.bias": first, "b.weight": second, "b.running_mean": second}}))
    code, out, _ = assert_same_without_torch(capsys, "inspect", str(index), "--max-params", "28")
    assert code == 0
    assert f"Summed over 2 shards: {first}, {second}" in out
    assert out.splitlines()[-1] == "model.safetensors.index.json: total params 28 <= budget 28 (0.0% headroom)"


def test_every_dtype_without_torch(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    header, offset = {}, 0
    for i, (code, (_, bits)) in enumerate(_SAFETENSORS_DTYPES.items()):
        size = 16 * bits // 8
        header[f"t.{i}.{code.lower()}"] = {"dtype": code, "shape": [4, 4], "data_offsets": [offset, offset + size]}
        offset += size
    path = write_header(tmp_path / "dtypes.safetensors", header, offset)
    code, out, _ = assert_same_without_torch(capsys, "inspect", str(path))
    assert code == 0 and "float8_e4m3fn" in out and "float4_e2m1fn" in out and "float6_e3m2fn" in out


def test_content_detected_safetensors_without_torch(capsys: pytest.CaptureFixture[str], model_file: Path,
                                                    tmp_path: Path) -> None:
    other = tmp_path / "weights"
    other.write_bytes(model_file.read_bytes())
    code, out, _ = assert_same_without_torch(capsys, "inspect", str(other))
    assert code == 0 and "head" in out


@pytest.mark.skipif(__import__("importlib").util.find_spec("numpy") is None, reason="the library reads with numpy")
def test_an_invalid_header_is_the_library_s_error_still_without_torch(capsys: pytest.CaptureFixture[str],
                                                                      tmp_path: Path) -> None:
    path = write_header(tmp_path / "bad.safetensors", {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, 4)
    code, out, err = assert_same_without_torch(capsys, "inspect", str(path))
    assert code == 2 and out == ""
    assert re.fullmatch(r"netsummary: error: cannot inspect checkpoint '.*bad\.safetensors': not a valid "
                        r"safetensors file \(.*\)\n", err), err


def test_pt_files_still_load_through_torch(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"state_dict": {"fc.weight": torch.zeros(3, 4), "fc.bias": torch.zeros(3)}, "epoch": 2}, path)
    code, out, err, imported = run_subprocess("inspect", str(path), "--max-params", "15")
    assert imported and (code, out, err) == run_in_process(capsys, "inspect", str(path), "--max-params", "15")
    assert code == 0 and "Tensors read from the 'state_dict' entry; other entries ignored: epoch" in out


# ------------------------------------------------------------------------- the reader and the library


def _library(path: Path) -> Any:
    """What the safetensors library reads: sorted (name, shape, dtype) and the metadata, or its error."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            entries = sorted((k, tuple(handle.get_slice(k).get_shape()), handle.get_slice(k).get_dtype())
                             for k in handle.keys())
            return entries, dict(handle.metadata() or {})
    except Exception as err:
        return f"error: {err}"


def test_the_dtype_table_is_the_library_s(tmp_path: Path) -> None:
    """Every dtype the installed safetensors knows (its error for an unknown one lists them) is in
    the table, with the bits per element the library validates sizes with, and torch's itemsize
    where torch has the dtype."""
    path = write_header(tmp_path / "x.safetensors", {"w": {"dtype": "NOPE", "shape": [1], "data_offsets": [0, 1]}}, 1)
    listed = re.search(r"expected one of (.*?) at line", _library(path))
    assert listed, _library(path)
    assert set(re.findall(r"`(\w+)`", listed[1])) == set(_SAFETENSORS_DTYPES)
    for code, (name, bits) in _SAFETENSORS_DTYPES.items():
        torch_dtype = getattr(torch, name, None)
        if isinstance(torch_dtype, torch.dtype):
            assert torch_dtype.itemsize * 8 == bits, code
        for count in (8, 16):  # the library takes count * bits / 8 bytes and no other size
            for size in (count * bits // 8, count * bits // 8 + 1):
                header = {"w": {"dtype": code, "shape": [count], "data_offsets": [0, size]}}
                file = write_header(tmp_path / f"{code}.safetensors", header, size)
                blob = file.read_bytes()
                accepted = not isinstance(_library(file), str)
                assert accepted == (size * 8 == count * bits), (code, size)
                parsed = _parse_header(blob[8: 8 + int.from_bytes(blob[:8], "little")],
                                       int.from_bytes(blob[:8], "little"), len(blob))
                assert (parsed is not None) == accepted, (code, size)


def test_a_valid_file_is_read_without_the_library(monkeypatch: pytest.MonkeyPatch, model_file: Path) -> None:
    from netsummary._checkpoints import safetensors_header as _checkpoint
    from netsummary._checkpoints.inspect import inspect_checkpoint

    expected = inspect_checkpoint(model_file)
    monkeypatch.setattr(_checkpoint, "_read_header_with_library", lambda *a: pytest.fail("the library was used"))
    assert inspect_checkpoint(model_file) == expected
    assert expected.metadata == {"format": "pt"}


_W = '"dtype": "F32", "shape": [1], "data_offsets": [0, 4]'
# (header text, data bytes after it, whether the library accepts it): each check the reader makes
HEADERS = {
    "plain": ('{"w": {%s}}' % _W, 4, True),
    "empty": ("{}", 0, True),
    "null-metadata": ('{"__metadata__": null, "w": {%s}}' % _W, 4, True),
    "zero-after-huge-dims": ('{"w": {"dtype": "F64", "shape": [4611686018427387904, 0], "data_offsets": [0, 0]}}', 0,
                             True),
    "escaped-names": ('{"\\u0000": {%s}, "\\ud83d\\ude00": {"dtype": "U8", "shape": [], "data_offsets": [4, 5]}}' % _W,
                      5, True),
    "sub-byte-misaligned": ('{"w": {"dtype": "F4", "shape": [3], "data_offsets": [0, 1]}}', 1, False),
    "minus-zero": ('{"w": {"dtype": "F32", "shape": [-0], "data_offsets": [0, 0]}}', 0, False),
    "negative": ('{"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}}', 4, False),
    "overflow-before-zero": ('{"w": {"dtype": "F32", "shape": [18446744073709551615, 2, 0], "data_offsets": [0, 0]}}',
                             0, False),
    "past-u64": ('{"w": {"dtype": "F32", "shape": [18446744073709551616, 0], "data_offsets": [0, 0]}}', 0, False),
    "bool-dim": ('{"w": {"dtype": "BOOL", "shape": [true], "data_offsets": [0, 1]}}', 1, False),
    "float-dim": ('{"w": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}}', 4, False),
    "three-offsets": ('{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 4]}}', 4, False),
    "one-offset": ('{"w": {"dtype": "F32", "shape": [0], "data_offsets": [0]}}', 0, False),
    "missing-field": ('{"w": {"dtype": "F32", "shape": [0]}}', 0, False),
    "not-an-object": ('{"w": 3}', 0, False),
    "unknown-dtype": ('{"w": {"dtype": "F31", "shape": [1], "data_offsets": [0, 4]}}', 4, False),
    "repeated-invalid-first": ('{"w": {"dtype": "XX", "shape": [1], "data_offsets": [0, 4]}, "w": {%s}}' % _W, 4,
                               False),
    "a-byte-too-many": ('{"w": {%s}}' % _W, 5, False),
    "a-byte-too-few": ('{"w": {%s}}' % _W, 3, False),
    "gap": ('{"a": {%s}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}' % _W, 12, False),
    "overlap": ('{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
                '"b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}', 8, False),
    "end-before-begin": ('{"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}, '
                         '"b": {"dtype": "F32", "shape": [0], "data_offsets": [4, 0]}}', 4, False),
    "nan-metadata": ('{"__metadata__": {"a": NaN}, "w": {%s}}' % _W, 4, False),
    "int-metadata": ('{"__metadata__": {"a": 1}, "w": {%s}}' % _W, 4, False),
    "list-metadata": ('{"__metadata__": ["a"], "w": {%s}}' % _W, 4, False),
    "lone-surrogate-name": ('{"\\ud800": {%s}}' % _W, 4, False),
    "lone-surrogate-metadata": ('{"__metadata__": {"a": "\\udc00"}, "w": {%s}}' % _W, 4, False),
    "trailing-nul": ('{"w": {%s}}\x00' % _W, 4, False),
    "not-json": ('{"w": {%s}' % _W, 4, False),
}


@pytest.mark.parametrize(("text", "data", "valid"), list(HEADERS.values()), ids=list(HEADERS))
def test_the_reader_declines_every_header_the_library_refuses(tmp_path: Path, text: str, data: int,
                                                              valid: bool) -> None:
    blob = text.encode("utf-8", "surrogatepass")
    path = tmp_path / "case.safetensors"
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + bytes(data))
    library = _library(path)
    assert isinstance(library, str) != valid, library  # the case is what it says
    parsed = _parse_header(blob, len(blob), path.stat().st_size)
    assert (parsed is None) if not valid else ((sorted(parsed[0]), parsed[1]) == library), parsed


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_NAMES = st.text(alphabet=st.sampled_from(list("ab.0_-") + ["\n", "\ud800", "é", "\x00", ","]), max_size=5)
_ODD = st.one_of(st.integers(-3, 2**65), st.sampled_from([2**64 - 1, 2**64, 2**63, True]), st.booleans(), st.none(),
                 st.floats(allow_nan=True), st.text(max_size=3))
_DIMS = st.one_of(st.integers(0, 4), st.sampled_from([2**32, 2**62, 2**64 - 1]))  # huge ones overflow before a 0
_CODES = st.one_of(st.sampled_from(list(_SAFETENSORS_DTYPES)), st.sampled_from(["F4", "F6_E2M3", "F6_E3M2"]))
_TENSORS = st.lists(st.tuples(_NAMES, _CODES, st.lists(_DIMS, max_size=3)), max_size=4)
# (which tensor, which field, which item of a list field or None for the whole field, the new value)
_EDITS = st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["dtype", "shape", "data_offsets", "extra"]),
                            st.one_of(st.none(), st.integers(0, 2)), _ODD), max_size=2)
_RARELY = [False, False, False, True]  # one perturbation of several at a time, mostly


@settings(max_examples=int(os.environ.get("NETSUMMARY_FUZZ_EXAMPLES") or 200), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(tensors=_TENSORS, edits=st.one_of(st.just([]), _EDITS), order=st.randoms(use_true_random=False),
       extra=st.sampled_from([0, 0, 0, -1, 1]),
       metadata=st.one_of(st.just("absent"), st.none(), _ODD, st.dictionaries(_NAMES, st.one_of(_NAMES, _ODD), max_size=2)),
       lead=st.sampled_from(["", "", "", " "]), tail=st.sampled_from(["", "", "  ", "\x00"]),
       round_down=st.sampled_from(_RARELY), minus_zero=st.sampled_from(_RARELY))
def test_what_the_reader_accepts_the_library_accepts_alike(tmp_path: Path, tensors: list[Any], edits: list[Any],
                                                          order: Any, extra: int, metadata: Any, lead: str,
                                                          tail: str, round_down: bool, minus_zero: bool) -> None:
    """Valid headers, then perturbed (wrong types, huge or negative numbers, -0, extra fields,
    gaps, overlaps, sub-byte sizes rounded down, a byte too many or too few, odd metadata):
    whenever the Python reader accepts one, the library accepts it with the same tensors and
    metadata."""
    header: dict[str, Any] = {}
    offset = 0
    for name, code, shape in tensors:
        bits = math.prod(shape) * _SAFETENSORS_DTYPES[code][1]
        size = bits // 8 if round_down else -(-bits // 8)
        hypothesis.assume(size < 4096)
        header[name] = {"dtype": code, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    items = list(header.items())
    order.shuffle(items)
    for index, key, item, value in edits:
        if items:
            info = items[index % len(items)][1]
            if item is not None and isinstance(info.get(key), list) and info[key]:
                info[key][item % len(info[key])] = value
            else:
                info[key] = value
    header = dict(items) if metadata == "absent" else {"__metadata__": metadata, **dict(items)}
    text = lead + json.dumps(header) + tail
    blob = (text.replace("[0", "[-0", 1) if minus_zero else text).encode("utf-8", "surrogatepass")
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + bytes(max(0, offset + extra)))
    parsed = _parse_header(blob, len(blob), path.stat().st_size)
    if parsed is not None:
        assert (sorted(parsed[0]), parsed[1]) == _library(path), blob
