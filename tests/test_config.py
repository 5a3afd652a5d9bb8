"""[tool.netsummary] tables and model specs: parsing, defaults, and errors that name the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from netsummary._commandline.config import KEYS, ModelSpec, build_spec, find_config, load_config, parse_dtypes, parse_size
from netsummary._errors import ConfigError, InputSpecError

VALID = """
[project]
name = "demo"

[tool.netsummary.models.discriminator]
target = "examples/discriminator.py:discriminator"
input-size = [[3, 64, 64]]
dtypes = ["float32"]
max-params = "12M"
max-macs = "500M"

[tool.netsummary.models.encoder]
target = "pkg.models:build"
input-size = [[16], [16]]
dtypes = "long,long"
batch-size = 4
device = "meta"
mode = "train"
kwargs = { depth = 2 }
max-param-bytes = "50MiB"
max-total-bytes = "1GB"
max-trainable-params = 1000
baseline = "baselines/encoder.json"
max-growth = "2%"
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "pyproject.toml"
    path.write_text(text)
    return str(path)


def test_models_in_file_order_with_units_parsed(tmp_path: Path) -> None:
    specs = load_config(write(tmp_path, VALID))
    assert list(specs) == ["discriminator", "encoder"]
    d = specs["discriminator"]
    assert d == ModelSpec("discriminator", "examples/discriminator.py:discriminator", [(3, 64, 64)], [torch.float32],
                          limits={"max_params": 12_000_000, "max_macs": 500_000_000}, base_dir=str(tmp_path))
    e = specs["encoder"]
    assert (e.input_size, e.dtypes, e.batch_size, e.device, e.mode, e.kwargs) == (
        [(16,), (16,)], [torch.int64, torch.int64], 4, "meta", "train", {"depth": 2})
    # 50 MiB = 50 * 2**20 = 52,428,800 bytes; 1 GB = 10**9 bytes
    assert e.limits == {"max_trainable_params": 1000, "max_param_bytes": 52_428_800, "max_total_bytes": 10**9}
    assert e.baseline == str(tmp_path / "baselines" / "encoder.json")  # relative to the config's directory
    assert e.max_growth == 0.02


@pytest.mark.parametrize(
    ("raw", "sizes"),
    [("[3, 64, 64]", [(3, 64, 64)]), ("[[3, 64, 64], [10]]", [(3, 64, 64), (10,)]), ('"3,64,64"', [(3, 64, 64)]),
     ('["3,64,64", "10"]', [(3, 64, 64), (10,)])],
    ids=["one-list", "lists", "string", "strings"],
)
def test_input_size_forms(tmp_path: Path, raw: str, sizes: list) -> None:
    text = f'[tool.netsummary.models.m]\ntarget = "m.py:M"\ninput-size = {raw}\n'
    assert load_config(write(tmp_path, text))["m"].input_size == sizes


def test_unknown_key_is_named_with_the_valid_keys(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace('max-macs = "500M"', "max-parms = 3"))
    key = "tool.netsummary.models.discriminator.max-parms"
    with pytest.raises(ConfigError, match=rf"pyproject\.toml: {key}: unknown key; valid keys are target, input-size,") as info:
        load_config(path)
    assert info.value.key == key
    assert str(info.value).endswith(", ".join(KEYS))


M = "tool.netsummary.models.m"


@pytest.mark.parametrize(
    ("body", "match"),
    [("", rf"{M}\.target: missing; expected a string such as"),
     ('target = "nocolon"', rf"{M}\.target: got 'nocolon'; expected a string"),
     ('target = "m.py:M"\ninput-size = [3, 4.5]', rf"{M}\.input-size: expected a list of ints such as \[3, 64, 64\], got \[3, 4\.5\]"),
     ('target = "m.py:M"\ninput-size = [[3], 4]', rf"{M}\.input-size: expected a list of ints per input such as"),
     ('target = "m.py:M"\ninput-size = "3,x,64"', rf"{M}\.input-size: invalid input size '3,x,64'"),
     ('target = "m.py:M"\ninput-size = [0, 4]', rf"{M}\.input-size: invalid input size '0,4'"),
     ('target = "m.py:M"\ndtypes = ["float33"]', rf"{M}\.dtypes: unknown dtype 'float33'; expected one of float32"),
     ('target = "m.py:M"\ndtypes = 3', rf"{M}\.dtypes: expected a list of dtype names"),
     ('target = "m.py:M"\nbatch-size = "2"', rf"{M}\.batch-size: expected int, got '2'"),
     ('target = "m.py:M"\nbatch-size = 0', rf"{M}\.batch-size: expected -1 \(any\) or a positive int, got 0"),
     ('target = "m.py:M"\nmode = "test"', rf"{M}\.mode: expected one of eval, train, same, got 'test'"),
     ('target = "m.py:M"\nkwargs = 3', rf"{M}\.kwargs: expected a table, got 3"),
     ('target = "m.py:M"\nmax-params = "12X"', rf"{M}\.max-params: invalid count '12X'"),
     ('target = "m.py:M"\nmax-param-bytes = "5M"', rf"{M}\.max-param-bytes: invalid size '5M': 'M' is ambiguous"),
     ('target = "m.py:M"\nmax-growth = 2', rf"{M}\.max-growth: expected a percentage string such as \"2%\""),
     ('target = "m.py:M"\nmax-growth = "2"', rf"{M}\.max-growth: invalid percentage '2'")],
    ids=["no-target", "target-form", "size-item", "size-mixed", "size-text", "size-zero", "dtype-name", "dtype-type",
         "batch-type", "batch-zero", "mode", "kwargs", "count", "bytes", "growth-number", "growth-sign"],
)
def test_invalid_values_name_the_key(tmp_path: Path, body: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, f"[{M}]\n{body}\n"))


@pytest.mark.parametrize(
    ("text", "match"),
    [("[project]\nname = 'x'\n", r"no \[tool\.netsummary\] table; add one"),
     ("[tool.netsummary]\nmodel = 1\n", r"tool\.netsummary\.model: unknown key; \[tool\.netsummary\] holds only models"),
     ("[tool.netsummary.models]\n", r"tool\.netsummary\.models: expected at least one model table"),
     ("[tool.netsummary.models]\nm = 3\n", r"tool\.netsummary\.models\.m: expected a table of keys"),
     ("[tool.netsummary\n", r"cannot read it as TOML \(.*line 1")],
    ids=["no-table", "top-level-key", "no-models", "model-not-table", "not-toml"],
)
def test_invalid_files(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, text))


def test_a_model_without_input_size_names_the_missing_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"pyproject\.toml: {M}: missing key input-size; expected one sample's "
                                          r"shape without the batch, e\.g\. input-size = \[3, 224, 224\]") as info:
        load_config(write(tmp_path, f'[{M}]\ntarget = "m.py:M"\nmax-params = "1M"\n'))
    assert info.value.key == f"{M}.input-size"


@pytest.mark.parametrize(
    ("key", "name"),
    [('"../evil"', "../evil"), ('"a/b"', "a/b"), ('"a\\\\b"', "a\\b"), ('"a..b"', "a..b"), ('".hidden"', ".hidden"),
     ('""', "")],
    ids=["parent", "slash", "backslash", "dot-dot", "leading-dot", "empty"],
)
def test_model_names_must_be_safe_file_names(tmp_path: Path, key: str, name: str) -> None:
    text = f'[tool.netsummary.models.{key}]\ntarget = "m.py:M"\ninput-size = [3]\n'
    with pytest.raises(ConfigError, match=r"pyproject\.toml: tool\.netsummary\.models\.\".*\": invalid model name "
                                          r".*; the name is also its file name NAME\.json under --save-baselines"
                                          ) as info:
        load_config(write(tmp_path, text))
    assert info.value.key == f'tool.netsummary.models."{name}"'.replace("\\", "\\\\")  # TOML/JSON quoting


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: no such file"):
        load_config(str(tmp_path / "nope.toml"))


def test_find_config_walks_up(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    deeper = tmp_path / "a" / "b"
    deeper.mkdir(parents=True)
    assert find_config(str(deeper)) == path


def test_find_config_without_any(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.path.isfile", lambda p: False)
    with pytest.raises(ConfigError, match=r"no pyproject\.toml in .* or its parents; pass --config FILE"):
        find_config(str(tmp_path))


def test_build_spec_labels_command_line_flags() -> None:
    with pytest.raises(InputSpecError, match=r"^--max-params: invalid count '1\.5x'"):
        build_spec("m", {"target": "m.py:M", "max-params": "1.5x"}, lambda k: f"--{k}", error=InputSpecError)


def test_parse_size_and_dtypes() -> None:
    assert parse_size(" 3, 224,224 ") == (3, 224, 224)
    assert parse_dtypes(["torch.float16", "LONG", "bool"]) == [torch.float16, torch.int64, torch.bool]
    with pytest.raises(InputSpecError, match=r"invalid input size '3,,4': expected positive integers"):
        parse_size("3,,4")


@pytest.mark.parametrize(
    ("key", "name", "why"),
    [('"a\\u0000b"', "a\x00b", r"it holds a control character \(\\x00\)"),
     ('"a\\u001b[31mred"', "a\x1b[31mred", r"it holds a control character \(\\x1b\)"),
     ('"a\\nb"', "a\nb", r"it holds a control character \(\\n\)"),
     ('"a\\u007fb"', "a\x7fb", r"it holds a control character \(\\x7f\)"),
     ('"evil\\u202egpj"', "evil\u202egpj", r"it holds a control character \(\\u202e\)"),
     (f'"{"m" * 251}"', "m" * 251, r"it is 251 bytes of UTF-8, over the limit of 250")],
    ids=["nul", "esc", "newline", "del", "bidi-override", "too-long"],
)
def test_model_names_with_control_characters_are_refused(tmp_path: Path, key: str, name: str, why: str) -> None:
    text = f'[tool.netsummary.models.{key}]\ntarget = "m.py:M"\ninput-size = [3]\n'
    with pytest.raises(ConfigError, match=rf"pyproject\.toml: tool\.netsummary\.models\.\".*\": invalid model name "
                                          rf".* \({why}\); the name is also its file name NAME\.json") as info:
        load_config(write(tmp_path, text))
    assert info.value.key == f"tool.netsummary.models.{json.dumps(name)}"
    assert not any(c in str(info.value) for c in "\x00\x1b\n\x7f\u202e")  # the message shows them escaped


def test_ordinary_model_names_are_accepted(tmp_path: Path) -> None:
    names = ["discriminator", "resnet-50_v2", "gan.generator", "modèle", "m" * 250]
    text = "".join(f'[tool.netsummary.models."{n}"]\ntarget = "m.py:M"\ninput-size = [3]\n' for n in names)
    assert list(load_config(write(tmp_path, text))) == names
