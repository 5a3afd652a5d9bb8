"""The command line: main(argv) for every exit code, messages pinned; one run of the console script."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from netsummary import Summary
from netsummary._commandline.cli import main

ROOT = Path(__file__).resolve().parent.parent
FIX = Path(__file__).resolve().parent / "cli_fixtures"
TINY = str(FIX / "cli_tiny.py")
GAN = str(ROOT / "examples" / "discriminator.py") + ":discriminator"
SEED = (Path(__file__).parent / "golden" / "seed_table.txt").read_text()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------ exit 0


def test_summary_prints_the_classic_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, GAN, "--input-size", "3,64,64")
    assert (code, err) == (0, "")
    assert out.rstrip("\n") == SEED.rstrip("\n")


def test_factory_with_kwargs_and_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, f"{TINY}:build_tiny", "--kwargs", '{"hidden": 4}', "--input-size", "16",
                         "--format", "json")
    assert (code, err) == (0, "")
    s = Summary.from_json(out)  # the summary's own to_json(), nothing else on stdout
    assert s.to_json() == out
    assert s.total_params == 78  # (16*4 + 4) + (4*2 + 2) = 68 + 10
    assert s.total_macs == 72  # json counts MACs: 16*4 + 4*2 = 72


def test_module_instance_tree_view_and_output_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "tree.txt"
    code, out, err = run(capsys, f"{TINY}:instance", "--input-size", "16", "--depth", "1",
                         "--columns", "params,macs", "--output", str(target))
    assert (code, out, err) == (0, "", "")
    text = target.read_text()
    assert text.splitlines()[0].split() == ["Layer", "(type)", "Params", "MACs"]
    assert "fc1 (Linear)" in text and "144" in text  # MACs 16*8 + 8*2 = 144


def test_several_inputs_dtypes_batch_and_mode(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = tmp_path / "two.py"
    model.write_text("from torch import nn\nclass Two(nn.Module):\n    def __init__(self):\n"
                     "        super().__init__()\n        self.emb = nn.Embedding(10, 4)\n"
                     "    def forward(self, ids, x):\n        return self.emb(ids).sum(1) + x\n")
    code, out, _ = run(capsys, f"{model}:Two", "--input-size", "5", "--input-size", "4", "--dtypes", "long,float32",
                       "--batch-size", "3", "--mode", "train", "--format", "json")
    s = Summary.from_json(out)
    assert code == 0
    assert (s.input_shapes, s.input_dtypes, s.mode, s.total_params) == ([(3, 5), (3, 4)], ("int64", "float32"),
                                                                         "train", 40)  # 10 * 4


def test_within_budget_prints_the_headroom(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, GAN, "--input-size", "3,64,64", "--max-params", "12M", "--max-macs", "500M", "-q")
    assert (code, err) == (0, "")
    # 1 - 11,038,081 / 12,000,000 = 8.0%; 1 - 408,961,024 / 500,000,000 = 18.2%
    assert out == ("discriminator: total params 11,038,081 <= budget 12,000,000 (8.0% headroom)\n"
                   "discriminator: MACs 408,961,024 <= budget 500,000,000 (18.2% headroom)\n")


def test_help_shows_examples_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "examples:\n  netsummary examples/discriminator.py:discriminator --input-size 3,64,64" in out
    assert "MB = 10**6 bytes, MiB = 2**20 bytes" in out
    for command in ("check", "diff", "inspect"):
        code, out, _ = run(capsys, command, "--help")
        assert code == 0 and out.startswith(f"usage: netsummary {command}")
        assert ("3 the model's forward failed" in out) == (command == "check")  # inspect and diff run no forward
    code, out, _ = run(capsys, "--version")
    assert (code, out) == (0, "netsummary 0.1.0\n")


# ------------------------------------------------------------------------------------ exit 1


def test_over_budget_one_line_per_violation(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, GAN, "--input-size", "3,64,64", "--max-params", "10M", "--max-param-bytes", "40MB",
                         "--max-total-bytes", "100MiB", "--quiet")
    assert (code, err) == (1, "")
    # 11,038,081 / 10,000,000 - 1 = 10.4%; 44,152,324 / 40,000,000 - 1 = 10.4%;
    # total 49,051,156 bytes vs 100 MiB = 104,857,600: 1 - 0.4678 = 53.2% headroom
    assert out.splitlines() == [
        "discriminator: total params 11,038,081 > budget 10,000,000 (+10.4%)",
        "discriminator: param bytes 44,152,324 (42.11 MiB) > budget 40,000,000 (38.15 MiB) (+10.4%)",
        "discriminator: total bytes 49,051,156 (46.78 MiB) <= budget 104,857,600 (100.00 MiB) (53.2% headroom)"]


def test_budget_lines_go_to_stderr_when_stdout_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, f"{TINY}:Tiny", "--input-size", "16", "--format", "json", "--max-macs", "100")
    assert code == 1
    json.loads(out)
    assert err == "Tiny: MACs 144 > budget 100 (+44.0%)\n"  # 144 / 100 - 1


def test_baseline_growth(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    base = tmp_path / "base.json"
    assert main([f"{TINY}:build_tiny", "--kwargs", '{"hidden": 4}', "--input-size", "16", "--format", "json",
                 "--output", str(base)]) == 0
    code, out, _ = run(capsys, f"{TINY}:Tiny", "--input-size", "16", "--baseline", str(base), "--max-growth", "50%",
                       "-q")
    assert code == 1
    # params 78 -> 154: +97.4%; MACs 72 -> 144: +100%
    verdicts = ["Tiny: total params 78 -> 154 (+97.4%) > max growth 50%",
                "Tiny: MACs 72 -> 144 (+100.0%) > max growth 50%"]
    assert out.splitlines() == verdicts  # -q: the verdict lines only, no diff table
    code, out, _ = run(capsys, f"{TINY}:Tiny", "--input-size", "16", "--baseline", str(base), "--max-growth", "50%",
                       "--format", "json", "--output", str(tmp_path / "new.json"))
    lines = out.splitlines()
    assert code == 1 and lines[:2] == verdicts
    assert f"netsummary diff: Tiny: {base} -> now" in lines  # without -q: the diff too
    assert "Layers: 2 changed, 0 added, 0 removed, 1 unchanged" in lines  # fc1, fc2 changed; act not


# ------------------------------------------------------------------------------------ exit 2

# modules (classes and instances) first, then factories; not returns_int (-> int) nor NotAModule
NAMES = "it defines: Tiny, Broken, instance, build_tiny, needs_depth"


@pytest.mark.parametrize(
    ("argv", "message"),
    [([f"{FIX}/nope.py:Net"], rf"invalid target '.*nope\.py:Net': no such file .*nope\.py"),
     ([f"{TINY}:Missing"], rf"cli_tiny\.py has no attribute 'Missing'; {NAMES}"),
     ([f"{TINY}:not_a_model"], r"not_a_model is an int; expected an nn.Module subclass, a factory function"),
     ([f"{TINY}:NotAModule"], r"NotAModule is the class NotAModule, which is not a torch.nn.Module subclass"),
     ([f"{TINY}:returns_int"], r"the factory returns_int\(\) returned an int, expected a torch.nn.Module"),
     ([f"{TINY}:needs_depth", "--kwargs", '{"depth": 7}'],
      r"cannot build the model: needs_depth\(depth=7\) raised ValueError: no weights for depth 7"),
     ([f"{TINY}:instance", "--kwargs", '{"hidden": 4}'], r"instance is an nn.Module instance, so it takes no --kwargs"),
     ([f"{TINY}:Tiny", "--kwargs", "{bad"], r"--kwargs: not valid JSON \(Expecting property name"),
     ([f"{TINY}:Tiny", "--kwargs", "[1]"], r"--kwargs: expected a JSON object such as '\{\"depth\": 50\}', got '\[1\]'"),
     (["nopackage_xyz.models:Net"], r"invalid target 'nopackage_xyz.models:Net': no module named 'nopackage_xyz'"),
     (["just_a_name"], r"invalid target 'just_a_name': expected path/to/file.py:NAME or package.module:NAME"),
     ([f"{TINY}:Tiny", "--max-params", "12X"], r"--max-params: invalid count '12X'"),
     ([f"{TINY}:Tiny", "--max-param-bytes", "12M"], r"--max-param-bytes: invalid size '12M': 'M' is ambiguous"),
     ([f"{TINY}:Tiny", "--dtypes", "float33"], r"--dtypes: unknown dtype 'float33'; expected one of float32"),
     ([f"{TINY}:Tiny", "--format", "yaml"], r"argument --format: invalid choice: 'yaml'.* \(see netsummary --help\)"),
     ([f"{TINY}:Tiny", "--columns", "params,nope"], r"columns: unknown column\(s\) \['nope'\]"),
     ([f"{TINY}:Tiny", "--max-growth", "2%"], r"--max-growth needs --baseline FILE"),
     ([f"{TINY}:Tiny", "--max-growth", "-2%"], r"--max-growth: invalid percentage '-2%': must not be negative"),
     ([f"{TINY}:Tiny", "--baseline", "/nonexistent/base.json"], r"/nonexistent/base\.json: no such file; save one"),
     ([f"{TINY}:Tiny", "--device", "tpu9"], r"device: unknown device 'tpu9'")],
    ids=["missing-file", "missing-name", "not-a-model", "class-not-module", "factory-returns-int",
         "constructor-raises", "kwargs-to-instance", "bad-json", "json-not-object", "missing-module", "no-colon",
         "bad-count", "ambiguous-bytes", "bad-dtype", "bad-format", "bad-column", "growth-without-baseline",
         "negative-growth", "missing-baseline", "bad-device"],
)
def test_usage_and_input_errors_exit_2_with_one_line(capsys: pytest.CaptureFixture[str], argv: list[str],
                                                     message: str) -> None:
    needs_size = "--input-size" not in argv and ":" in argv[0]
    code, out, err = run(capsys, *argv, *(["--input-size", "16"] if needs_size else []))
    assert (code, out) == (2, "")
    assert err.startswith("netsummary: error: ") and err.count("\n") == 1, err  # one line, no traceback
    assert re.search(message, err), err


@pytest.mark.parametrize(
    ("size", "message"),
    [("3,x,64", "netsummary: error: --input-size: invalid input size '3,x,64': expected positive integers "
                "separated by commas, e.g. 3,64,64 (one sample, without the batch)\n")],
    ids=["malformed"],  # no --input-size at all is a parameter-only summary: tests/test_no_forward.py
)
def test_input_size_errors(capsys: pytest.CaptureFixture[str], size: str | None, message: str) -> None:
    code, _, err = run(capsys, GAN, *(["--input-size", size] if size else []))
    assert (code, err) == (2, message)


@pytest.mark.parametrize(
    ("source", "message"),
    [("x = (\n", r"cannot import .*bad\.py: line 1: SyntaxError: '\(' was never closed"),
     ("import os\nimport not_installed_xyz\n", r"line 2: ModuleNotFoundError: No module named 'not_installed_xyz'"),
     ("raise RuntimeError('boom\\nsecond line')\n", r"line 1: RuntimeError: boom second line$")],
    ids=["syntax-error", "import-error", "raises"],
)
def test_a_file_that_fails_to_import(capsys: pytest.CaptureFixture[str], tmp_path: Path, source: str,
                                     message: str) -> None:
    path = tmp_path / "bad.py"
    path.write_text(source)
    code, _, err = run(capsys, f"{path}:Net", "--input-size", "3")
    assert code == 2 and err.count("\n") == 1
    assert re.search(message, err.rstrip("\n")), err
    assert str(tmp_path) not in sys.path  # the file's directory was on sys.path only during its import


def test_package_module_targets_import_from_the_current_directory(capsys: pytest.CaptureFixture[str],
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "cli_pkg_xyz"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "layers.py").write_text("from torch import nn\nclass L(nn.Linear):\n    pass\n")
    (pkg / "models.py").write_text("from .layers import L\ndef build(n=3):\n    return L(n, 2)\n")
    monkeypatch.chdir(tmp_path)
    try:
        code, out, _ = run(capsys, "cli_pkg_xyz.models:build", "--kwargs", '{"n": 4}', "--input-size", "4",
                           "--max-params", "10", "-q")
    finally:  # forget the imported package
        for name in [m for m in sys.modules if m.startswith("cli_pkg_xyz")]:
            del sys.modules[name]
    # named by the built model's class (L), not the factory function
    assert (code, out) == (0, "L: total params 10 <= budget 10 (0.0% headroom)\n")  # 4*2 + 2 = 10
    assert str(tmp_path) not in sys.path
    code, _, err = run(capsys, "cli_pkg_xyz/models.py:build", "--input-size", "3")
    assert code == 2
    assert err.endswith("ImportError: attempted relative import with no known parent package; a file inside a "
                        "package is imported by module name: package.module:NAME\n")


# ------------------------------------------------------------------------------------ exit 3


def test_forward_failure_exits_3_with_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, f"{TINY}:Broken", "--input-size", "16")
    assert (code, out) == (3, "")
    lines = err.splitlines()
    assert lines[0] == ("netsummary: error: the model's forward raised in module 'fc2' (Linear, call 1): "
                        "RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x8 and 4x2)")
    assert "  1 module call(s) completed before the failure; partial summary:" in lines
    assert "Total params: 146" in lines  # (16*8 + 8) + (4*2 + 2) = 136 + 10


# ------------------------------------------------------------------------------------ check


CONFIG = """
[tool.netsummary.models.tiny]
target = "models/cli_tiny.py:Tiny"
input-size = [16]
max-params = "1K"
max-macs = 1000

[tool.netsummary.models.narrow]
target = "models/cli_tiny.py:build_tiny"
kwargs = {{ hidden = 4 }}
input-size = [[16]]
max-params = 50
max-param-bytes = "1KiB"
{extra}"""


def project(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "models").mkdir(exist_ok=True)
    shutil.copy(FIX / "cli_tiny.py", tmp_path / "models" / "cli_tiny.py")
    path = tmp_path / "pyproject.toml"
    path.write_text(CONFIG.format(extra=extra))
    return path


def test_check_runs_every_model_and_exits_with_the_worst(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    config = project(tmp_path)
    monkeypatch.chdir(tmp_path / "models")  # targets resolve against the config's directory, found upwards
    code, out, err = run(capsys, "check")
    assert (code, err) == (1, "")
    # tiny: 1 - 154/1,000 = 84.6%; 1 - 144/1,000 = 85.6%.  narrow: 78/50 - 1 = 56%; 1 - 312/1,024 = 69.5%
    assert out.splitlines() == [
        "tiny: total params 154 <= budget 1,000 (84.6% headroom)",
        "tiny: MACs 144 <= budget 1,000 (85.6% headroom)",
        "narrow: total params 78 > budget 50 (+56.0%)",
        "narrow: param bytes 312 B <= budget 1,024 (1.00 KiB) (69.5% headroom)",
        "checked 2 models: 1 ok, 1 over budget, 0 failed"]
    code, out, _ = run(capsys, "check", "tiny", "--config", str(config))
    assert code == 0 and out.splitlines()[-1] == "checked 1 model: 1 ok, 0 over budget, 0 failed"


def test_check_failures_are_reported_per_model(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    extra = ('\n[tool.netsummary.models.broken]\ntarget = "models/cli_tiny.py:Broken"\ninput-size = [16]\n'
             '\n[tool.netsummary.models.gone]\ntarget = "models/gone.py:Net"\ninput-size = [16]\n')
    code, out, _ = run(capsys, "check", "--config", str(project(tmp_path, extra)))
    assert code == 3  # the worst: a forward failed
    assert "broken: the model's forward raised in module 'fc2' (Linear, call 1)" in out
    assert "gone: error: invalid target 'models/gone.py:Net': no such file" in out
    assert out.splitlines()[-1] == "checked 4 models: 1 ok, 1 over budget, 2 failed"


def test_check_invalid_config_names_the_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = project(tmp_path, '\n[tool.netsummary.models.gan]\ntarget = "m.py:M"\nmax-parms = "12M"\n')
    code, out, err = run(capsys, "check", "--config", str(config))
    assert (code, out) == (2, "")
    assert err.startswith(f"netsummary: error: {config}: tool.netsummary.models.gan.max-parms: unknown key; "
                          "valid keys are target, input-size, dtypes,")
    code, _, err = run(capsys, "check", "nope", "--config", str(config.with_name("missing.toml")))
    assert (code, err) == (2, f"netsummary: error: {config.with_name('missing.toml')}: no such file\n")


def test_check_unknown_model_name(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = project(tmp_path)
    code, _, err = run(capsys, "check", "wide", "--config", str(config))
    assert (code, err) == (2, f"netsummary: error: {config}: no model named 'wide'; its models are tiny, narrow\n")


def test_check_saves_and_compares_baselines(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = project(tmp_path)
    saved = tmp_path / "baselines"
    run(capsys, "check", "--config", str(config), "--save-baselines", str(saved))
    assert sorted(os.listdir(saved)) == ["narrow.json", "tiny.json"]
    assert Summary.from_json((saved / "narrow.json").read_text()).total_macs == 72  # counted for the baseline
    (tmp_path / "models" / "cli_tiny.py").write_text(
        (FIX / "cli_tiny.py").read_text().replace("self.fc2 = nn.Linear(hidden, 2)", "self.fc2 = nn.Linear(hidden, 3)"))
    code, out, _ = run(capsys, "check", "tiny", "--config", str(config), "--baseline", str(saved),
                       "--max-growth", "2%")
    assert code == 1
    # fc2: 8*2 + 2 = 18 -> 8*3 + 3 = 27: 154 -> 163 (+5.8%); MACs 144 -> 152 (+5.6%)
    assert "tiny: total params 154 -> 163 (+5.8%) > max growth 2%" in out.splitlines()
    assert "tiny: MACs 144 -> 152 (+5.6%) > max growth 2%" in out.splitlines()
    code, _, err = run(capsys, "check", "--config", str(config), "--baseline", str(saved / "tiny.json"))
    assert code == 2 and "is one summary but 2 models are checked" in err


def test_check_markdown_report(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    report = tmp_path / "comment.md"
    code, out, _ = run(capsys, "check", "--config", str(project(tmp_path)), "--format", "markdown",
                       "--output", str(report))
    assert (code, out) == (1, "")
    assert report.read_text().startswith("### tiny\n- tiny: total params 154 <= budget 1,000 (84.6% headroom)\n")
    assert "### narrow\n- narrow: total params 78 > budget 50 (+56.0%)\n" in report.read_text()


# ------------------------------------------------------------------------------------ diff


def test_diff_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    base, new = tmp_path / "base.json", tmp_path / "new.json"
    for target, path in ((f"{TINY}:build_tiny", base), (f"{TINY}:Tiny", new)):
        assert main([target, "--input-size", "16", "--format", "json", "--output", str(path)]) == 0
    code, out, _ = run(capsys, "diff", str(base), str(new))
    assert code == 0 and f"netsummary diff: {base} -> {new}" in out
    # build_tiny's hidden defaults to 8 too: the same model
    assert "Layers: 0 changed, 0 added, 0 removed, 3 unchanged" in out
    small = tmp_path / "small.json"
    main([f"{TINY}:build_tiny", "--kwargs", '{"hidden": 2}', "--input-size", "16", "--format", "json",
          "--output", str(small)])
    code, out, _ = run(capsys, "diff", str(small), str(new), "--format", "markdown", "--max-growth", "10%")
    assert code == 1
    # hidden 2: (16*2 + 2) + (2*2 + 2) = 40 params -> 154: +285%; MACs 36 -> 144: +300%
    assert "| total params     |     40 |   154 | +114 (+285.0%) |" in out.splitlines()
    assert out.splitlines()[-2:] == ["- total params 40 -> 154 (+285.0%) > max growth 10%",
                                     "- MACs 36 -> 144 (+300.0%) > max growth 10%"]


def test_diff_of_files_that_are_not_summaries(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    code, _, err = run(capsys, "diff", str(bad), str(bad))
    assert code == 2
    assert err == (f"netsummary: error: {bad}: not a netsummary summary (expected a netsummary summary (a dict with "
                   "'schema_version'), got list); save one with: netsummary TARGET --input-size ... --format json "
                   "--output FILE\n")


# ------------------------------------------------------------------------------------ inspect


def test_inspect_prints_the_tree_and_applies_budgets(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "tiny.safetensors"
    save_file(nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2)).state_dict(), str(path))
    code, out, err = run(capsys, "inspect", str(path), "--depth", "1", "--max-params", "100",
                         "--max-param-bytes", "1KiB")
    assert (code, err) == (1, "")
    lines = out.splitlines()
    assert lines[-2:] == ["tiny.safetensors: total params 154 > budget 100 (+54.0%)",  # 154 / 100 - 1
                          "tiny.safetensors: param bytes 616 B <= budget 1,024 (1.00 KiB) (39.8% headroom)"]
    assert lines[-3].split() == ["Total", "154", "616", "B", "float32"]  # 154 * 4 bytes


def test_inspect_refuses_a_pickle_that_would_run_code(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "config": argparse.Namespace(lr=1)}, path)
    code, out, err = run(capsys, "inspect", str(path))
    assert (code, out) == (2, "")
    assert err.startswith(f"netsummary: error: refusing to load checkpoint '{path}': it is not a weights-only "
                          "checkpoint; loading it would import and run the Python object 'argparse.Namespace'")
    code, _, err = run(capsys, "inspect", str(path), "--max-params", "1X")
    assert (code, err) == (2, "netsummary: error: --max-params: invalid count '1X': expected an integer with an "
                              "optional K/M/G/T suffix (SI, 1K = 1,000), e.g. 12M or 1.5G (also 250k, 11,038,081, "
                              "3e6)\n")


# ------------------------------------------------------------------------------------ user code


HELPER = "from torch import nn\n\nclass Net(nn.Linear):\n    def __init__(self):\n        super().__init__(4, {n})\n"


def test_check_gives_each_file_target_its_own_neighbour_modules(capsys: pytest.CaptureFixture[str],
                                                                 tmp_path: Path) -> None:
    # a/ and b/ each hold a model.py that does `from helper import Net`, with different helpers
    for folder, n in (("a", 10), ("b", 1000)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "helper.py").write_text(HELPER.format(n=n))
        (tmp_path / folder / "model.py").write_text("from helper import Net\n")
    config = tmp_path / "pyproject.toml"
    config.write_text('[tool.netsummary.models.ah]\ntarget = "a/model.py:Net"\ninput-size = [4]\nmax-params = 100\n'
                      '[tool.netsummary.models.bh]\ntarget = "b/model.py:Net"\ninput-size = [4]\nmax-params = 1000\n')
    code, out, _ = run(capsys, "check", "--config", str(config))
    assert code == 1
    # ah: 4*10 + 10 = 50 params, 1 - 50/100 = 50% headroom; bh: 4*1000 + 1000 = 5,000, 5,000/1,000 - 1 = +400%
    assert out.splitlines() == ["ah: total params 50 <= budget 100 (50.0% headroom)",
                                "bh: total params 5,000 > budget 1,000 (+400.0%)",
                                "checked 2 models: 1 ok, 1 over budget, 0 failed"]
    assert "helper" not in sys.modules


def test_a_loaded_model_keeps_working_after_its_neighbours_are_dropped(tmp_path: Path) -> None:
    from netsummary import summary
    from netsummary._commandline.target import load_target

    for folder, n in (("a", 10), ("b", 1000)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "helper.py").write_text(HELPER.format(n=n) + "SIZE = " + str(n) + "\n")
        (tmp_path / folder / "model.py").write_text(
            "import helper\nfrom helper import Net\n\ndef build():\n    assert helper.SIZE == Net().out_features\n"
            "    return Net()\n")
    first = load_target(f"{tmp_path}/a/model.py:build")
    second = load_target(f"{tmp_path}/b/model.py:build")
    assert "helper" not in sys.modules
    assert (first.out_features, second.out_features) == (10, 1000)
    assert summary(first, (4,), verbose=0).total_params == 50  # 4*10 + 10: its classes are still alive
    assert type(first).__module__ == type(second).__module__ == "helper" and type(first) is not type(second)


EXITS = ("import sys\nfrom torch import nn\n{top}\nclass Net(nn.Linear):\n    def __init__(self):\n"
         "        super().__init__(4, 2)\n{init}\n    def forward(self, x):\n"
         "{forward}        return super().forward(x)\n")


@pytest.mark.parametrize(
    ("where", "code", "message"),
    [("top", 2, "netsummary: error: {target} called sys.exit(0) while being loaded\n"),
     ("init", 2, "netsummary: error: {target} called sys.exit(0) while being built (Net())\n"),
     ("forward", 3, "netsummary: error: the model's forward called sys.exit(0)\n")],
    ids=["import", "constructor", "forward"],
)
def test_sys_exit_in_user_code_is_not_netsummarys_exit(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                       where: str, code: int, message: str) -> None:
    path = tmp_path / "exits.py"
    parts = {"top": "", "init": "", "forward": ""}
    parts[where] = "        sys.exit(0)\n" if where != "top" else "sys.exit(0)\n"
    path.write_text(EXITS.format(**parts))
    target = f"{path}:Net"
    assert run(capsys, target, "--input-size", "4") == (code, "", message.format(target=target))


def test_the_library_lets_sys_exit_through_after_restoring_the_model(unchanged) -> None:
    from netsummary import summary

    class Quits(nn.Linear):
        def forward(self, x):
            sys.exit(0)

    model = Quits(4, 2)
    model.train()
    with unchanged(model), pytest.raises(SystemExit):  # training flag, hooks and all restored first
        summary(model, (4,), verbose=0)  # a library call does not swallow the caller's exit


def test_check_isolates_a_model_that_calls_sys_exit(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "exits.py").write_text(EXITS.format(top="", init="", forward="        sys.exit(1)\n"))
    extra = '\n[tool.netsummary.models.quits]\ntarget = "models/exits.py:Net"\ninput-size = [4]\n'
    code, out, _ = run(capsys, "check", "--config", str(project(tmp_path, extra)))
    assert code == 3  # the worst: a forward failed
    lines = out.splitlines()
    assert "quits: the model's forward called sys.exit(1)" in lines
    assert lines[-1] == "checked 3 models: 1 ok, 1 over budget, 1 failed"  # tiny and narrow were still checked


def test_json_on_stdout_stays_parseable_when_the_model_prints(capsys: pytest.CaptureFixture[str],
                                                              tmp_path: Path) -> None:
    path = tmp_path / "chatty.py"
    path.write_text("from torch import nn\nprint('loading')\nclass Net(nn.Linear):\n    def __init__(self):\n"
                    "        print('building')\n        super().__init__(4, 2)\n    def forward(self, x):\n"
                    "        print('forward')\n        return super().forward(x)\n")
    code, out, err = run(capsys, f"{path}:Net", "--input-size", "4", "--format", "json")
    assert code == 0
    assert Summary.from_json(out).total_params == 10  # 4*2 + 2
    assert err.split() == ["loading", "building", "forward", "forward"]  # a second forward settles the batch axis


# ---------------------------------------------------------------------------------- bad inputs


def test_diff_and_baselines_of_unreadable_summaries_exit_2(capsys: pytest.CaptureFixture[str],
                                                           tmp_path: Path) -> None:
    base = tmp_path / "base.json"
    assert main([f"{TINY}:Tiny", "--input-size", "16", "--format", "json", "--output", str(base)]) == 0
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\x89PNG\r\n")  # not UTF-8
    lots = tmp_path / "lots.json"
    lots.write_text(base.read_text().replace('"total_params": 154', '"total_params": "lots"'))
    for argv, bad in [(["diff", str(base), str(binary)], binary), (["diff", str(base), str(lots)], lots),
                      ([f"{TINY}:Tiny", "--input-size", "16", "--baseline", str(binary)], binary)]:
        code, out, err = run(capsys, *argv)
        assert (code, out) == (2, "")
        why = ("not UTF-8 text (byte 0x89 at offset 0); expected a JSON summary" if bad is binary else
               "not a netsummary summary (total_params is 'lots' (str), expected an int)")
        assert err.startswith(f"netsummary: error: {bad}: {why}") and err.count("\n") == 1, err


def test_check_with_a_bad_baseline_still_checks_the_other_models(capsys: pytest.CaptureFixture[str],
                                                                 tmp_path: Path) -> None:
    config = project(tmp_path)
    saved = tmp_path / "baselines"
    run(capsys, "check", "--config", str(config), "--save-baselines", str(saved))
    (saved / "tiny.json").write_bytes(b"\xff\xfe")
    code, out, _ = run(capsys, "check", "--config", str(config), "--baseline", str(saved), "--max-growth", "2%")
    assert code == 2
    lines = out.splitlines()
    assert lines[0].startswith(f"tiny: error: {saved / 'tiny.json'}: not UTF-8 text (byte 0xff at offset 0)")
    assert "narrow: total params 78 -> 78 (+0.0%) <= max growth 2%" in lines  # the next model was still checked
    assert lines[-1] == "checked 2 models: 0 ok, 1 over budget, 1 failed"  # narrow is over its 50-param budget


def test_an_unexpected_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise OverflowError("Python int too large\nto convert to C long")

    monkeypatch.setattr("netsummary._checkpoints.inspect.inspect_checkpoint", broken)
    code, out, err = run(capsys, "inspect", "any.pt")
    assert (code, out) == (2, "")
    assert err == ("netsummary: error: unexpected OverflowError: Python int too large to convert to C long "
                   "(set NETSUMMARY_DEBUG=1 for the traceback)\n")
    monkeypatch.setenv("NETSUMMARY_DEBUG", "1")
    code, _, err = run(capsys, "inspect", "any.pt")
    assert code == 2 and err.startswith("Traceback (most recent call last):") and "in broken" in err
    monkeypatch.delenv("NETSUMMARY_DEBUG")
    # in check, an unexpected error is that model's failure; the others are still checked
    monkeypatch.setattr("netsummary._commandline.cli.evaluate", broken)
    code, out, _ = run(capsys, "check", "--config", str(project(tmp_path)))
    assert code == 2
    assert out.splitlines() == ["tiny: error: unexpected OverflowError: Python int too large to convert to C long",
                                "narrow: error: unexpected OverflowError: Python int too large to convert to C long",
                                "checked 2 models: 0 ok, 0 over budget, 2 failed"]


def test_a_missing_name_lists_what_could_be_a_target(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "torch.nn:Lineer", "--input-size", "4")
    assert code == 2
    # torch.nn's module classes come first (its own factory_kwargs helper is not among the shown 8)
    assert re.fullmatch(r"netsummary: error: invalid target 'torch\.nn:Lineer': torch\.nn has no attribute 'Lineer'; "
                        r"it defines: AdaptiveAvgPool1d, AdaptiveAvgPool2d, .*, \.\.\. \(\d+ in all\); did you mean "
                        r"'Linear'\?\n", err), err
    assert "factory_kwargs" not in err


def test_check_names_each_model_once(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "check", "tiny", "tiny", "--config", str(project(tmp_path)))
    assert code == 0
    assert out.splitlines()[-1] == "checked 1 model: 1 ok, 0 over budget, 0 failed"
    assert len([x for x in out.splitlines() if x.startswith("tiny: total params")]) == 1


def test_check_rejects_a_model_name_that_is_not_a_file_name(capsys: pytest.CaptureFixture[str],
                                                            tmp_path: Path) -> None:
    config = project(tmp_path, '\n[tool.netsummary.models."../x"]\ntarget = "m.py:M"\ninput-size = [3]\n')
    code, out, err = run(capsys, "check", "--config", str(config), "--save-baselines", str(tmp_path / "b"))
    assert (code, out) == (2, "")
    assert err.startswith(f'netsummary: error: {config}: tool.netsummary.models."../x": invalid model name')
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "b").exists()


def test_inspect_reports_the_unwrapped_entry_and_counts_buffers_apart(capsys: pytest.CaptureFixture[str],
                                                                      tmp_path: Path) -> None:
    path = tmp_path / "train.ckpt"
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))  # (4*3 + 3) + (3 + 3) = 21 params
    torch.save({"model": model.state_dict(), "optimizer": {"state": {}}, "epoch": 3}, path)
    code, out, _ = run(capsys, "inspect", str(path), "--depth", "1", "--max-params", "21")
    assert code == 0
    lines = out.splitlines()
    assert lines[-1] == "train.ckpt: total params 21 <= budget 21 (0.0% headroom)"  # buffers (3 + 3 + 1) left out
    assert "Tensors read from the 'model' entry; other entries ignored: optimizer, epoch" in lines


# ------------------------------------------------------------------------------------ end to end


def test_installed_console_script_prints_the_seed_table() -> None:
    script = shutil.which("netsummary")
    if script is None:
        pytest.skip("the console script `netsummary` is not on PATH (pip install -e . creates it)")
    done = subprocess.run([script, "examples/discriminator.py:discriminator", "--input-size", "3,64,64"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (0, "")
    assert "Total params: 11,038,081" in done.stdout
    assert done.stdout.strip("\n") == SEED.strip("\n")


def test_python_dash_m_runs_the_same_main() -> None:
    done = subprocess.run([sys.executable, "-m", "netsummary", f"{TINY}:Tiny", "--input-size", "16", "--max-params",
                           "100", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (1, "Tiny: total params 154 > budget 100 (+54.0%)\n")


def test_no_fold_shows_every_repeated_block(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "stack.py").write_text(
        "from torch import nn\n"
        "def build():\n"
        "    return nn.Sequential(*[nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(6)])\n"
    )
    target = f"{tmp_path / 'stack.py'}:build"
    code, folded, _ = run(capsys, target, "--input-size", "4", "--depth", "1")
    assert code == 0 and "0–5 (Sequential) × 6" in folded  # 6 blocks of 4*4 + 4 = 20 params
    assert "6 × 20 = 120" in folded
    code, expanded, _ = run(capsys, target, "--input-size", "4", "--depth", "1", "--no-fold")
    assert code == 0 and "×" not in expanded.split("Totals")[0]
    assert [line.split()[0] for line in expanded.splitlines() if "(Sequential)" in line][1:] == [str(i) for i in range(6)]


@pytest.mark.parametrize("key", ['"a\\u0000b"', '"a\\u001b[31mred"'], ids=["nul", "esc"])
def test_check_refuses_a_model_name_with_a_control_character_before_saving(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, key: str) -> None:
    config = project(tmp_path, f'\n[tool.netsummary.models.{key}]\ntarget = "models/cli_tiny.py:Tiny"\n'
                               'input-size = [16]\n')
    saved = tmp_path / "b"
    code, out, err = run(capsys, "check", "--config", str(config), "--save-baselines", str(saved))
    assert (code, out) == (2, "")
    assert err.startswith(f"netsummary: error: {config}: tool.netsummary.models.") and "invalid model name" in err
    assert "it holds a control character" in err and len(err.splitlines()) == 1
    assert "\x00" not in err and "\x1b" not in err and "unexpected" not in err
    assert not saved.exists()


def test_a_baseline_file_name_is_checked_where_it_is_made(tmp_path: Path) -> None:
    from netsummary._commandline.cli import _named_file
    from netsummary._commandline.parsers import _UsageError

    assert _named_file(str(tmp_path), "tiny") == str(tmp_path / "tiny.json")
    for name in ("a\x1b[31mred", "a\x00b", "../x", ""):
        with pytest.raises(_UsageError, match="cannot be a file name under"):
            _named_file(str(tmp_path), name)


INTERRUPTING = """
from torch import nn


class Interrupted(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        raise KeyboardInterrupt  # as Ctrl-C during the forward
"""


@pytest.mark.parametrize("command", [[], ["check"]], ids=["summary", "check"])
def test_ctrl_c_is_one_line_and_exit_130(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                         command: list[str]) -> None:
    (tmp_path / "stop.py").write_text(INTERRUPTING)
    if command:
        config = tmp_path / "pyproject.toml"
        config.write_text('[tool.netsummary.models.stop]\ntarget = "stop.py:Interrupted"\ninput-size = [4]\n')
        argv = [*command, "--config", str(config)]
    else:
        argv = [f"{tmp_path / 'stop.py'}:Interrupted", "--input-size", "4"]
    code, out, err = run(capsys, *argv)
    assert (code, out, err) == (130, "", "netsummary: interrupted\n")


def test_ctrl_c_in_a_subprocess_prints_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "stop.py").write_text(INTERRUPTING)
    done = subprocess.run([sys.executable, "-m", "netsummary", f"{tmp_path / 'stop.py'}:Interrupted",
                           "--input-size", "4"], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (130, "", "netsummary: interrupted\n")
