"""Tests for netsummary._checkpoints.inspect: reading checkpoints without the model's code."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import struct
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from netsummary._errors import InputSpecError, NetsummaryError
from netsummary._checkpoints.inspect import (
    CheckpointError,
    CheckpointSummary,
    MissingDependencyError,
    PrefixRow,
    TensorEntry,
    inspect_checkpoint,
)


def small_state_dict() -> dict[str, torch.Tensor]:
    """fc: Linear(16, 8) in float32, emb: Embedding(10, 4) in float16."""
    return {
        "fc.weight": torch.randn(8, 16),  # 8*16 = 128 elements, 128*4 = 512 bytes
        "fc.bias": torch.randn(8),  # 8 elements, 32 bytes
        "emb.weight": torch.randn(10, 4, dtype=torch.float16),  # 40 elements, 40*2 = 80 bytes
    }


# 128 + 8 + 40 = 176 elements; 512 + 32 + 80 = 624 bytes
SMALL_PARAMS = 176
SMALL_BYTES = 624


def write_safetensors_header(path: Path, header: dict[str, object], data_size: int) -> None:
    """Write a safetensors file by hand: u64 header length, JSON header, then ``data_size`` zero bytes.

    The data is made with ``truncate``, so on Linux it is a sparse file taking no disk space.
    """
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)  # the format pads the header to 8 bytes
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(blob)))
        handle.write(blob)
        handle.truncate(8 + len(blob) + data_size)


# ----------------------------------------------------------------------------------- safetensors


def test_safetensors_totals_shapes_and_dtypes(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file(small_state_dict(), str(path), metadata={"format": "pt"})

    summary = inspect_checkpoint(path)

    assert summary.format == "safetensors"
    assert summary.path == str(path)
    assert summary.total_params == SMALL_PARAMS
    assert summary.total_bytes == SMALL_BYTES
    assert summary.dtypes == {"float32": 136, "float16": 40}  # 128 + 8 = 136 float32 elements
    assert summary.metadata == {"format": "pt"}
    assert summary.state_dict_key is None
    by_name = {entry.name: entry for entry in summary.tensors}
    assert by_name["fc.weight"] == TensorEntry("fc.weight", (8, 16), "float32", 128, 512)
    assert by_name["emb.weight"] == TensorEntry("emb.weight", (10, 4), "float16", 40, 80)


@pytest.mark.parametrize(
    ("dtype", "name", "itemsize"),
    [
        pytest.param(torch.bfloat16, "bfloat16", 2, id="bfloat16"),
        pytest.param(torch.float64, "float64", 8, id="float64"),
        pytest.param(torch.int8, "int8", 1, id="int8"),
        pytest.param(torch.int64, "int64", 8, id="int64"),
        pytest.param(torch.uint8, "uint8", 1, id="uint8"),
        pytest.param(torch.bool, "bool", 1, id="bool"),
        pytest.param(torch.float8_e4m3fn, "float8_e4m3fn", 1, id="float8_e4m3fn"),
    ],
)
def test_safetensors_dtype_names_and_itemsize(
    tmp_path: Path, dtype: torch.dtype, name: str, itemsize: int
) -> None:
    path = tmp_path / "one.safetensors"
    save_file({"t": torch.zeros(3, 5).to(dtype)}, str(path))

    (entry,) = inspect_checkpoint(path).tensors

    assert (entry.dtype, entry.numel, entry.nbytes) == (name, 15, 15 * itemsize)  # 3*5 = 15 elements


def test_safetensors_sub_byte_dtype_counts_bits(tmp_path: Path) -> None:
    path = tmp_path / "fp4.safetensors"
    # 4*2 = 8 four-bit elements = 4 bytes
    write_safetensors_header(path, {"w": {"dtype": "F4", "shape": [4, 2], "data_offsets": [0, 4]}}, 4)

    (entry,) = inspect_checkpoint(path).tensors

    assert (entry.dtype, entry.numel, entry.nbytes) == ("float4_e2m1fn", 8, 4)


def test_safetensors_sorts_names_numerically(tmp_path: Path) -> None:
    path = tmp_path / "layers.safetensors"
    save_file({f"layer.{i}.w": torch.zeros(1) for i in (10, 2, 1)}, str(path))

    names = [entry.name for entry in inspect_checkpoint(path).tensors]

    assert names == ["layer.1.w", "layer.2.w", "layer.10.w"]


def test_safetensors_is_detected_by_content_whatever_the_extension(tmp_path: Path) -> None:
    path = tmp_path / "pytorch_model.bin"
    save_file(small_state_dict(), str(path))

    summary = inspect_checkpoint(str(path))

    assert (summary.format, summary.total_params) == ("safetensors", SMALL_PARAMS)


def test_safetensors_reads_only_the_header(tmp_path: Path) -> None:
    # The header declares 2**31 bfloat16 elements = 2**32 bytes (4 GiB) of data. The data is a sparse
    # hole: reading it would take seconds, parsing the header takes milliseconds.
    path = tmp_path / "huge.safetensors"
    header = {"big": {"dtype": "BF16", "shape": [2**15, 2**16], "data_offsets": [0, 2**32]}}
    write_safetensors_header(path, header, 2**32)
    if getattr(os.stat(path), "st_blocks", 2**32) * 512 > 2**20:
        pytest.skip("this filesystem does not make sparse files")

    start = time.perf_counter()
    summary = inspect_checkpoint(path)
    elapsed = time.perf_counter() - start

    assert summary.total_params == 2**31  # 32,768 * 65,536
    assert summary.total_bytes == 2**32  # 2**31 elements * 2 bytes
    assert elapsed < 0.5, f"inspecting a 4 GiB safetensors file took {elapsed:.2f}s; is it reading the data?"


def test_missing_safetensors_package_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.safetensors"
    save_file(small_state_dict(), str(path))
    monkeypatch.setitem(sys.modules, "safetensors", None)  # makes `import safetensors` raise ImportError

    install_hint = r"pip install safetensors.*netsummary\[safetensors\]"
    with pytest.raises(MissingDependencyError, match=install_hint) as info:
        inspect_checkpoint(path)

    assert isinstance(info.value, ImportError)
    assert isinstance(info.value, NetsummaryError)
    assert isinstance(info.value.__cause__, ImportError)


# --------------------------------------------------------------------------------------- pytorch


def test_pytorch_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(small_state_dict(), path)

    summary = inspect_checkpoint(path)

    assert summary.format == "pytorch"
    assert summary.total_params == SMALL_PARAMS
    assert summary.total_bytes == SMALL_BYTES
    assert summary.dtypes == {"float32": 136, "float16": 40}
    assert [entry.name for entry in summary.tensors] == ["fc.weight", "fc.bias", "emb.weight"]  # saved order
    assert summary.state_dict_key is None


def test_pytorch_legacy_format_without_mmap(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pth"
    shared = torch.randn(4, 4)  # 16 elements, saved twice
    torch.save({"a": shared, "b": shared, **small_state_dict()}, path, _use_new_zipfile_serialization=False)

    summary = inspect_checkpoint(path)

    assert summary.total_params == SMALL_PARAMS + 16  # 176 + 16 = 192: "b" is "a" again
    assert summary.tensors[1].tied_to == "a"


@pytest.mark.parametrize(("zip_format", "mmap"), [(True, True), (False, False)], ids=["zip-mmap", "legacy-read"])
def test_pytorch_load_is_weights_only_and_mapped_when_possible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, zip_format: bool, mmap: bool
) -> None:
    path = tmp_path / "model.pt"
    torch.save(small_state_dict(), path, _use_new_zipfile_serialization=zip_format)
    calls: list[dict[str, object]] = []
    real_load = torch.load

    def recording_load(*args: object, **kwargs: object) -> object:
        calls.append(kwargs)
        return real_load(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch, "load", recording_load)
    assert inspect_checkpoint(path).total_params == SMALL_PARAMS

    assert [(call["weights_only"], call["mmap"]) for call in calls] == [(True, mmap)]


@pytest.mark.parametrize("key", ["state_dict", "model", "model_state_dict"])
def test_pytorch_wrapped_state_dict_is_unwrapped(tmp_path: Path, key: str) -> None:
    path = tmp_path / "training.ckpt"
    optimizer = {"state": {0: {"exp_avg": torch.zeros(100)}}, "param_groups": [{"lr": 0.1}]}
    torch.save({key: small_state_dict(), "optimizer": optimizer, "epoch": 3}, path)

    summary = inspect_checkpoint(path)

    assert summary.state_dict_key == key
    assert summary.total_params == SMALL_PARAMS  # the optimizer's 100 elements are not the model's
    assert {entry.name for entry in summary.tensors} == {"fc.weight", "fc.bias", "emb.weight"}
    assert summary.ignored == ("optimizer", "epoch")
    assert summary.render().splitlines()[-1] == (
        f"Tensors read from the '{key}' entry; other entries ignored: optimizer, epoch")


def test_pytorch_nested_wrappers(tmp_path: Path) -> None:
    path = tmp_path / "nested.pt"
    torch.save({"model": {"state_dict": small_state_dict()}, "step": 10}, path)

    summary = inspect_checkpoint(path)

    assert (summary.state_dict_key, summary.total_params) == ("model.state_dict", SMALL_PARAMS)
    assert summary.ignored == ("step",)


def test_pytorch_nested_containers_flatten_with_dotted_keys(tmp_path: Path) -> None:
    path = tmp_path / "nested.pt"
    blocks = [{"w": torch.zeros(2, 3)}, {"w": torch.zeros(3, 4)}]  # 6 + 12 elements
    encoder = {"blocks": blocks, "norm": (torch.zeros(5),)}  # + 5 elements
    torch.save({"encoder": encoder, "name": "enc", "size": torch.Size([2])}, path)  # non-tensors are skipped

    summary = inspect_checkpoint(path)

    names = [entry.name for entry in summary.tensors]
    assert names == ["encoder.blocks.0.w", "encoder.blocks.1.w", "encoder.norm.0"]
    assert summary.total_params == 23  # 6 + 12 + 5


def test_pytorch_tied_weights_counted_once(tmp_path: Path) -> None:
    path = tmp_path / "tied.pt"
    embedding = torch.randn(10, 4)  # 40 elements, 160 bytes
    torch.save({"embed.weight": embedding, "lm_head.weight": embedding, "lm_head.bias": torch.zeros(10)}, path)

    summary = inspect_checkpoint(path)

    assert summary.total_params == 50  # 40 + 10: lm_head.weight is the same storage as embed.weight
    assert summary.total_bytes == 200  # 50 * 4
    assert [entry.tied_to for entry in summary.tensors] == [None, "embed.weight", None]
    # Each module still shows its own parameters; only the total counts the shared storage once.
    assert [(row.name, row.params) for row in summary.tree(depth=1)] == [("embed", 40), ("lm_head", 50)]


def test_pytorch_partial_views_of_one_storage_are_each_counted(tmp_path: Path) -> None:
    path = tmp_path / "views.pt"
    whole = torch.randn(4, 4)
    torch.save({"whole": whole, "half": whole[2:]}, path)  # 16 and 8 elements of one storage

    summary = inspect_checkpoint(path)

    assert summary.total_params == 24  # 16 + 8: only exact aliases are deduplicated
    assert all(entry.tied_to is None for entry in summary.tensors)


def test_pytorch_cyclic_containers_do_not_hang(tmp_path: Path) -> None:
    path = tmp_path / "cycle.pt"
    state: dict[str, object] = {"w": torch.zeros(3)}
    state["self"] = state
    torch.save(state, path)

    summary = inspect_checkpoint(path)

    assert [entry.name for entry in summary.tensors] == ["w"]


class Payload:
    """Unpickling this runs os.makedirs(marker): the side effect that must never happen."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.makedirs, (str(self.marker),))


class PlainObject:
    """An ordinary class instance: loading it would import this module."""

    def __init__(self) -> None:
        self.value = 1


def test_code_executing_pickle_is_refused_and_never_run(tmp_path: Path) -> None:
    # Control: the payload is live, a plain unpickle really creates its marker.
    control = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(Payload(control)))
    assert control.exists()

    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "payload": Payload(marker)}, path)

    refused = r"refusing to load checkpoint .*evil\.pt'.*netsummary never executes pickled code"
    with pytest.raises(CheckpointError, match=refused) as info:
        inspect_checkpoint(path)

    assert not marker.exists()
    assert "makedirs'" in str(info.value)  # names what it refused to run
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)
    assert info.value.path == str(path)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_pickled_class_instance_is_refused(tmp_path: Path, zip_format: bool) -> None:
    path = tmp_path / "object.pt"
    checkpoint = {"weight": torch.zeros(2), "config": PlainObject()}
    torch.save(checkpoint, path, _use_new_zipfile_serialization=zip_format)

    with pytest.raises(CheckpointError, match=r"would import and run the Python object '[\w.]*PlainObject'"):
        inspect_checkpoint(path)


# ---------------------------------------------------------------------------------------- errors


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated_torch_file(path: Path) -> Path:
    torch.save(small_state_dict(), path)
    data = path.read_bytes()
    return _write(path, data[: len(data) // 2])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        pytest.param(lambda tmp: tmp / "missing.pt", r"missing\.pt': no such file", id="missing"),
        pytest.param(lambda tmp: tmp, r"it is a directory; pass the checkpoint file inside it", id="directory"),
        pytest.param(lambda tmp: _write(tmp / "empty.pt", b""), r"empty\.pt': the file is empty", id="empty"),
        pytest.param(
            lambda tmp: _write(tmp / "notes.pt", b"just some text, not a checkpoint"),
            r"notes\.pt': not a valid PyTorch checkpoint \(neither a torch\.save zip archive nor a pickle",
            id="text-file",
        ),
        pytest.param(
            lambda tmp: _write(tmp / "broken.pt", b"\x80\x02garbage"),
            r"broken\.pt': not a valid weights-only PyTorch checkpoint \(Unsupported operand",
            id="corrupt-pickle",
        ),
        pytest.param(
            lambda tmp: _truncated_torch_file(tmp / "half.pt"),
            r"half\.pt': not a valid PyTorch checkpoint \(a damaged or truncated zip archive",
            id="truncated-zip",
        ),
        pytest.param(
            lambda tmp: _write(tmp / "bad.safetensors", b"not a safetensors file"),
            r"bad\.safetensors': not a valid safetensors file",
            id="bad-safetensors",
        ),
    ],
)
def test_invalid_paths_raise_checkpoint_error(tmp_path: Path, make: object, match: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]

    with pytest.raises(CheckpointError, match=match) as info:
        inspect_checkpoint(path)

    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, NetsummaryError)
    assert info.value.path == str(path)


def test_checkpoint_without_tensors_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "lr": 0.1}, path)

    with pytest.raises(CheckpointError, match=r"meta\.pt': it holds no tensors"):
        inspect_checkpoint(path)


def test_non_torch_zip_is_an_error(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "archive.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")

    expected = r"archive\.pt': not a valid PyTorch checkpoint \(a zip archive torch\.load cannot read"
    with pytest.raises(CheckpointError, match=expected):
        inspect_checkpoint(path)


# ------------------------------------------------------------------------------- tree and render


def nested_summary(tmp_path: Path) -> CheckpointSummary:
    path = tmp_path / "nested.pt"
    torch.save(
        {
            "encoder.0.weight": torch.zeros(8, 16),  # 128 elements, 512 bytes
            "encoder.0.bias": torch.zeros(8),  # 8 elements, 32 bytes
            "encoder.2.weight": torch.zeros(4, 8, dtype=torch.float16),  # 32 elements, 64 bytes
            "cls_token": torch.zeros(4),  # 4 elements, 16 bytes
        },
        path,
    )
    return inspect_checkpoint(path)


def test_tree_rows_depth_first_in_checkpoint_order(tmp_path: Path) -> None:
    rows = nested_summary(tmp_path).tree()

    assert [(row.name, row.depth, row.params, row.nbytes, row.is_tensor) for row in rows] == [
        ("encoder", 0, 168, 608, False),  # 128 + 8 + 32 = 168 elements; 512 + 32 + 64 = 608 bytes
        ("encoder.0", 1, 136, 544, False),
        ("encoder.0.weight", 2, 128, 512, True),
        ("encoder.0.bias", 2, 8, 32, True),
        ("encoder.2", 1, 32, 64, False),
        ("encoder.2.weight", 2, 32, 64, True),
        ("cls_token", 0, 4, 16, True),
    ]
    assert rows[0].dtypes == {"float32": 136, "float16": 32}


def test_tree_rows_of_one_depth_add_up_to_the_total(tmp_path: Path) -> None:
    summary = nested_summary(tmp_path)

    top = summary.tree(depth=1)

    assert [row.name for row in top] == ["encoder", "cls_token"]
    assert sum(row.params for row in top) == summary.total_params == 172  # 168 + 4
    assert sum(row.nbytes for row in top) == summary.total_bytes == 624  # 608 + 16
    assert summary.tree(depth=0) == []
    assert isinstance(top[0], PrefixRow)


@pytest.mark.parametrize("depth", [-1, 1.5, True], ids=["negative", "float", "bool"])
def test_tree_rejects_bad_depth(tmp_path: Path, depth: object) -> None:
    with pytest.raises(InputSpecError, match=r"invalid depth .*: expected None or an integer >= 0"):
        nested_summary(tmp_path).tree(depth)  # type: ignore[arg-type]


def test_render_table(tmp_path: Path) -> None:
    text = nested_summary(tmp_path).render(depth=2)

    assert text == (
        "Module       Params    Bytes  Dtypes\n"
        "---------  --------  -------  ----------------\n"
        "encoder         168    608 B  float32, float16\n"
        "  0             136    544 B  float32\n"
        "  2              32     64 B  float16\n"
        "cls_token         4     16 B  float32\n"
        "---------  --------  -------  ----------------\n"
        "Total           172    624 B  float32, float16"
    )


def test_render_marks_shared_storage_and_uses_units(tmp_path: Path) -> None:
    path = tmp_path / "tied.pt"
    embedding = torch.zeros(1000, 300)  # 300,000 elements, 1,200,000 bytes = 1.14 MiB
    torch.save({"embed.weight": embedding, "head.weight": embedding}, path)

    lines = inspect_checkpoint(path).render().splitlines()

    assert lines[-3].split() == [
        "weight", "(shares", "storage", "with", "embed.weight)", "300,000", "1.14", "MiB", "float32"
    ]
    assert lines[-3].startswith("  weight")  # indented under "head"
    assert lines[-1].split() == ["Total", "300,000", "1.14", "MiB", "float32"]


def test_summary_is_frozen_and_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = nested_summary(tmp_path)
    summary.render()

    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.total_params = 0  # type: ignore[misc]
    assert not hasattr(summary, "__dict__")  # slots=True
    assert capsys.readouterr() == ("", "")


# ------------------------------------------------------------------------------ params and buffers


def test_normalization_buffers_are_not_params_resnet18(tmp_path: Path) -> None:
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pt"
    torch.save(model.state_dict(), path)

    summary = inspect_checkpoint(path)

    # an independent source: the model's own parameters (11,689,512, torchvision's num_params)
    assert summary.total_params == sum(p.numel() for p in model.parameters()) == 11_689_512
    assert summary.param_bytes == 4 * 11_689_512  # float32
    # 20 BatchNorm2d: running_mean + running_var (2 x channels) + num_batches_tracked (1) = 9,620
    assert summary.buffer_elements == sum(b.numel() for b in model.buffers()) == 9_620
    assert summary.buffer_bytes == sum(b.numel() * b.element_size() for b in model.buffers())
    assert summary.total_bytes == summary.param_bytes + summary.buffer_bytes
    lines = summary.render(depth=1).splitlines()
    assert lines[0].split() == ["Module", "Params", "Buffers", "Bytes", "Dtypes"]
    assert lines[2].split()[:3] == ["conv1", "9,408", "0"]  # 64 * 3 * 7 * 7; no buffers
    assert lines[3].split()[:3] == ["bn1", "128", "129"]  # weight + bias 2 * 64; 2 * 64 + 1
    assert lines[-1] == ("Params 11,689,512 (44.59 MiB) leave out 9,620 buffer elements (37.66 KiB): tensors named "
                         "running_mean, running_var or num_batches_tracked; Bytes include them")


def test_tree_counts_buffers_apart(tmp_path: Path) -> None:
    path = tmp_path / "bn.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).state_dict(), path)

    rows = {row.name: row for row in inspect_checkpoint(path).tree()}

    assert (rows["0"].params, rows["0"].buffers) == (15, 0)  # 4*3 + 3
    assert (rows["1"].params, rows["1"].buffers) == (6, 7)  # weight 3 + bias 3; 3 + 3 + 1
    assert rows["1.running_var"].is_tensor and (rows["1.running_var"].params, rows["1.running_var"].buffers) == (0, 3)
    assert rows["1"].nbytes == 6 * 4 + 6 * 4 + 8  # float32 weight/bias/stats, int64 num_batches_tracked


# -------------------------------------------------------------------------------- sharded index


def _shards(tmp_path: Path) -> Path:
    """Two safetensors shards and their index: a (4*4 + 4 = 20) in one, b (2*4 = 8) and a
    BatchNorm buffer (2) in the other."""
    save_file({"a.weight": torch.zeros(4, 4), "a.bias": torch.zeros(4)},
              str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({"b.weight": torch.zeros(2, 4), "bn.running_mean": torch.zeros(2)},
              str(tmp_path / "model-00002-of-00002.safetensors"))
    first, second = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 120}, "weight_map": {
        "a.weight": first, "a.bias": first, "b.weight": second, "bn.running_mean": second}}))
    return index


def test_a_sharded_index_sums_its_shards(tmp_path: Path) -> None:
    summary = inspect_checkpoint(_shards(tmp_path))

    assert summary.shards == ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
    assert (summary.format, summary.total_params, summary.buffer_elements) == ("safetensors", 28, 2)  # 20 + 8
    assert summary.total_bytes == 120  # (28 + 2) * 4
    assert [e.name for e in summary.tensors] == ["a.bias", "a.weight", "b.weight", "bn.running_mean"]
    assert summary.render().splitlines()[-1] == (
        "Summed over 2 shards: model-00001-of-00002.safetensors, model-00002-of-00002.safetensors")


def test_a_sharded_index_without_its_shards_says_so(tmp_path: Path) -> None:
    index = _shards(tmp_path)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()

    with pytest.raises(CheckpointError, match=r"it is the index of a sharded checkpoint \(2 shard files: "
                                              r"model-00001-of-00002\.safetensors, model-00002-of-00002\.safetensors\) "
                                              r"and shard 'model-00002-of-00002\.safetensors' is not next to it in "
                                              r".*; download every shard there, or inspect each shard file on its own"):
        inspect_checkpoint(index)


@pytest.mark.parametrize(
    ("text", "match"),
    [('{"a": 1}', r"not a checkpoint; expected a sharded checkpoint index such as model\.safetensors\.index\.json"),
     ("{oops", r"a \.json file that cannot be read as JSON \(Expecting property name"),
     ('{"weight_map": {"w": "../other/model.safetensors"}}', r"its weight_map names '\.\./other/model\.safetensors'; "
                                                             r"expected shard file names next to the index")],
    ids=["no-weight-map", "not-json", "shard-elsewhere"],
)
def test_json_files_that_are_not_sharded_indexes(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(CheckpointError, match=match):
        inspect_checkpoint(path)


def test_a_refused_plain_pickle_raises_no_torch_warning(tmp_path: Path) -> None:
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"w": [1, 2]}, protocol=4))  # torch warns about protocol 4, then refuses it
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        with pytest.raises(CheckpointError, match=r"not a valid weights-only PyTorch checkpoint"):
            inspect_checkpoint(path)
