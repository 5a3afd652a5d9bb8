"""Fuzzing the file readers (issue 7): whatever the bytes, a valid result or a netsummary error.

``inspect_checkpoint`` gets random bytes, mutated safetensors headers, mutated torch.save archives
and random sharded-checkpoint indexes; ``Summary.from_json`` / ``from_dict`` get random JSON and
mutated valid summaries. A result must then render without an error, its text free of control
characters; any exception but a :class:`~netsummary.NetsummaryError` subclass fails the test.

A few hundred examples in all by default (well under 30 s); set ``NETSUMMARY_FUZZ_EXAMPLES=N`` for
N examples per test. Examples are not stored (no ``.hypothesis`` folder is written).
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from netsummary import NetsummaryError, Summary, check_budget  # noqa: E402
from netsummary._reporting.diff import diff_summaries, render_diff  # noqa: E402
from netsummary._checkpoints.inspect import inspect_checkpoint  # noqa: E402

_ENV = os.environ.get("NETSUMMARY_FUZZ_EXAMPLES", "").strip()
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def fuzz(examples: int) -> Any:
    """Hypothesis settings: ``examples`` by default, NETSUMMARY_FUZZ_EXAMPLES when set."""
    return settings(max_examples=int(_ENV) if _ENV else examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def assert_printable(text: str) -> None:
    assert UNSAFE.search(text) is None, f"unescaped control character {UNSAFE.search(text)[0]!r}"


def inspect_or_error(data: bytes, name: str, extra: dict[str, bytes] | None = None) -> None:
    """Write ``data`` as ``name`` (and ``extra`` files beside it) and inspect it: a summary that
    renders, or a NetsummaryError."""
    with tempfile.TemporaryDirectory() as folder:
        for other, content in (extra or {}).items():
            Path(folder, other).write_bytes(content)
        path = Path(folder, name)
        path.write_bytes(data)
        try:
            summary = inspect_checkpoint(path)
        except NetsummaryError as err:
            assert str(err)
            return
        for depth in (None, 1):
            assert_printable(summary.render(depth))
        assert summary.total_params >= 0 and summary.total_bytes >= 0


# ------------------------------------------------------------------ inspect: random and mutated files

SUFFIXES = st.sampled_from(["model.safetensors", "model.pt", "model.bin", "weights", "x.index.json"])
PREFIXES = st.sampled_from([b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x04\x95", b"{", b"\x08\x00\x00\x00\x00\x00\x00\x00{"])


@fuzz(120)
@given(prefix=PREFIXES, body=st.binary(max_size=300), name=SUFFIXES)
def test_inspect_random_bytes(prefix: bytes, body: bytes, name: str) -> None:
    inspect_or_error(prefix + body, name)


DTYPES = ["F32", "F16", "BF16", "I64", "U8", "BOOL", "F8_E4M3", "F4", "C64"]
NAMES = st.text(alphabet=st.sampled_from(list("ab.0123456789_") + ["\n", "\x1b", "\u2028", "\x00", "é", "\ud800"]),
                max_size=40)
INTS = st.one_of(st.integers(0, 64), st.integers(-5, 2**70))
ENTRY = st.fixed_dictionaries(
    {"dtype": st.one_of(st.sampled_from(DTYPES), st.text(max_size=6)),
     "shape": st.one_of(st.lists(st.integers(0, 6), max_size=4), st.lists(INTS, max_size=3), st.text(max_size=3)),
     "data_offsets": st.one_of(st.tuples(st.integers(0, 64), st.integers(0, 64)).map(list), st.lists(INTS, max_size=3))})
HEADERS = st.dictionaries(NAMES, st.one_of(ENTRY, st.integers(), st.none()), max_size=6)


def safetensors_bytes(header: dict[str, Any], data: bytes, length: int | None = None) -> bytes:
    blob = json.dumps(header).encode("utf-8", "surrogatepass")
    blob += b" " * (-len(blob) % 8)
    return struct.pack("<Q", len(blob) if length is None else length) + blob + data


@fuzz(150)
@given(header=HEADERS, data=st.binary(max_size=128),
       metadata=st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.one_of(st.text(max_size=5), st.integers()))),
       length=st.one_of(st.none(), st.integers(0, 2**64 - 1)), cut=st.one_of(st.none(), st.integers(0, 200)))
def test_inspect_mutated_safetensors(header: dict[str, Any], data: bytes, metadata: Any, length: int | None,
                                     cut: int | None) -> None:
    if metadata is not None:
        header = {"__metadata__": metadata, **header}
    blob = safetensors_bytes(header, data, length)
    inspect_or_error(blob if cut is None else blob[:cut], "model.safetensors")


def _valid_torch_file() -> bytes:
    buffer = io.BytesIO()
    t = torch.arange(6, dtype=torch.float32)
    torch.save({"state_dict": {"fc.weight": t.view(2, 3), "fc.bias": t[:2], "bn.running_mean": t}, "epoch": 3}, buffer)
    return buffer.getvalue()


TORCH_FILE = _valid_torch_file()


@fuzz(60)
@given(flips=st.lists(st.tuples(st.integers(0, len(TORCH_FILE) - 1), st.integers(0, 255)), max_size=6),
       cut=st.one_of(st.none(), st.integers(0, len(TORCH_FILE))))
def test_inspect_mutated_torch_archives(flips: list[tuple[int, int]], cut: int | None) -> None:
    data = bytearray(TORCH_FILE)
    for position, value in flips:
        data[position] = value
    inspect_or_error(bytes(data if cut is None else data[:cut]), "model.pt")


JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                              st.text(max_size=8)),
                    lambda inner: st.one_of(st.lists(inner, max_size=4),
                                            st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                    max_leaves=20)
SHARD = safetensors_bytes({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(8))


@fuzz(60)
@given(index=st.one_of(JSON, st.fixed_dictionaries({"weight_map": st.dictionaries(
    NAMES, st.one_of(st.sampled_from(["shard.safetensors", "../shard.safetensors", "x.json", "", "gone.bin"]),
                     JSON), max_size=4)})))
def test_inspect_random_sharded_indexes(index: Any) -> None:
    text = json.dumps(index).encode("utf-8", "surrogatepass")
    inspect_or_error(text, "model.safetensors.index.json", {"shard.safetensors": SHARD})


# ------------------------------------------------------------------ Summary.from_json / from_dict


def _valid_summary() -> dict[str, Any]:
    from torch import nn

    from netsummary import summary

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    return summary(model, (1, 4, 4), verbose=0, macs=True).to_dict()


VALID = _valid_summary()


def use_or_error(data: Any) -> None:
    """``Summary.from_dict(data)``: an InputSpecError, or a summary that every consumer takes."""
    try:
        s = Summary.from_dict(data)
    except NetsummaryError as err:
        assert str(err)
        return
    for fmt in ("classic", "tree", "markdown", "html", "json", "csv"):
        text = s.render(fmt)
        if fmt in ("classic", "tree", "markdown"):
            assert_printable(text)
    assert Summary.from_json(s.to_json()) == s
    check_budget(s, max_params=10**6, max_param_bytes="1MiB")
    assert_printable(render_diff(diff_summaries(s, s), "text", show_unchanged=True))


@fuzz(80)
@given(data=JSON)
def test_from_dict_of_random_json(data: Any) -> None:
    use_or_error(data)
    use_or_error({"schema_version": 1, **data} if isinstance(data, dict) else data)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*path, i))
    return out


PATHS = _paths(VALID)[1:]


@fuzz(200)
@given(edits=st.lists(st.tuples(st.sampled_from(PATHS), st.one_of(JSON, st.just("<delete>"),
                                                                  st.sampled_from([-1, 0, 1, 2, 10**6, True])),
                                ), min_size=1, max_size=3))
def test_from_dict_of_a_mutated_summary(edits: list[tuple[tuple[Any, ...], Any]]) -> None:
    data = json.loads(json.dumps(VALID))
    for path, value in edits:
        target = data
        try:
            for step in path[:-1]:
                target = target[step]
            if value == "<delete>" and isinstance(target, dict):
                target.pop(path[-1], None)
            else:
                target[path[-1]] = value
        except (KeyError, IndexError, TypeError):  # an earlier edit changed the path
            continue
    use_or_error(data)


@fuzz(60)
@given(text=st.one_of(st.text(max_size=60), st.binary(max_size=60),
                      st.builds(lambda a, b: a + json.dumps(VALID)[:b], st.text(max_size=3), st.integers(0, 4000))))
def test_from_json_of_random_text(text: str | bytes) -> None:
    try:
        s = Summary.from_json(text)
    except NetsummaryError:
        return
    assert isinstance(s, Summary)
