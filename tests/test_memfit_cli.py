"""The memory flags of the command line and [tool.netsummary]: JSON in bytes with methods, the
train/inference memory budgets and --fits as verdict lines, exit codes, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from netsummary import InputSpecError, check_budget
from netsummary._commandline.cli import main
from netsummary._memory.step import estimate_memory

FIX = Path(__file__).resolve().parent / "cli_fixtures"
TINY = str(FIX / "cli_tiny.py") + ":Tiny"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _tiny():
    import importlib.util

    spec = importlib.util.spec_from_file_location("cli_tiny_memfit", FIX / "cli_tiny.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Tiny()


def test_json_holds_every_category_in_bytes_with_its_method_and_the_verdict(capsys):
    code, out, err = run(capsys, TINY, "--input-size", "16", "--batch-size", "4", "--estimate", "train",
                         "--optimizer", "adamw", "--fits", "1MiB", "--format", "json")
    assert code == 0, err
    memory = json.loads(out)["memory"]
    # an independent run of the same step (same class, same batch): the same measured figures
    direct = estimate_memory(_tiny(), (16,), 4, optimizer="adamw")
    assert memory["peak"]["bytes"] == direct.peak.bytes
    assert memory["parameters"] == {"bytes": 154 * 4, "method": "counted", "note": ""}  # 154 float32 params
    for key in ("parameters", "buffers", "inputs", "gradients", "optimizer_state", "saved_activations", "peak"):
        assert isinstance(memory[key]["bytes"], int) and memory[key]["method"]
    fits = memory["plan"]["fits"]
    assert fits["fits"] is True and fits["capacity_bytes"] == 2**20 and fits["method"] == "formula"
    assert [b for b, _ in fits["measured_batches"]] == [4, 2]
    assert fits["need_bytes"] == direct.peak.bytes + fits["overheads"][0]["bytes"]
    assert "live_curve" not in memory  # one entry per allocation stays out of files
    assert "train peak + overheads on 1.00 MiB" in err  # the verdict line, on stderr beside JSON


def test_memory_budgets_and_fits_exit_1_when_over(capsys):
    peak = estimate_memory(_tiny(), (16,), 4, optimizer="adamw").peak.bytes
    code, out, _ = run(capsys, TINY, "--input-size", "16", "--batch-size", "4", "--max-train-memory", "1KiB", "-q")
    assert code == 1
    assert out == f"Tiny: train memory {peak:,} ({peak / 1024:.2f} KiB) > budget 1,024 (1.00 KiB) (+{100 * (peak / 1024 - 1):.1f}%)\n"
    code, out, _ = run(capsys, TINY, "--input-size", "16", "--batch-size", "4", "--estimate", "train", "--fits", "1KiB",
                       "-q")
    assert code == 1 and out.startswith("Tiny: train peak + overheads on 1.00 KiB ")
    code, out, _ = run(capsys, TINY, "--input-size", "16", "--max-inference-memory", "1GiB", "-q")
    assert code == 0 and out.startswith("Tiny: inference memory ") and "<= budget 1,073,741,824 (1.00 GiB)" in out


def test_classic_output_gains_the_memory_section_only_when_asked(capsys):
    code, out, _ = run(capsys, TINY, "--input-size", "16", "--batch-size", "8", "--estimate", "train",
                       "--world-size", "2", "--strategy", "zero2", "--fits", "64MiB")
    assert code == 0
    assert "Memory, one training step (batch 8, float32, AdamW)" in out
    assert "Per rank, zero2 on 2 ranks (batch 4 per rank of 8)" in out
    assert "Fits in 64.00 MiB on each rank: yes" in out
    code, plain, _ = run(capsys, TINY, "--input-size", "16")
    assert code == 0 and "Memory" not in plain


@pytest.mark.parametrize("argv, match", [
    (["--estimate", "train", "--fits", "24G"], "fits: expected a size .*got '24G'"),
    (["--estimate", "train", "--fits", "cpu"], "cpu memory has no fixed budget"),
    (["--estimate", "train", "--world-size", "0"], "world_size: expected a positive int .the number of ranks., got 0"),
    (["--estimate", "train", "--world-size", "2", "--strategy", "zero3"], "strategy: expected one of 'ddp', 'zero2', 'fsdp'"),
    (["--estimate", "train", "--context", "128"], "context and the KV cache apply to transformers decoder models"),
    (["--fits", "8GiB"], "--fits: needs estimate"),
    (["--estimate", "inference", "--max-train-memory", "1GiB"], "--max-train-memory: needs estimate 'train'"),
    (["--max-train-memory", "1GiB", "--max-inference-memory", "1GiB"], "one model measures one estimate"),
    (["--max-train-memory", "1G"], "max-train-memory: .*'G' is ambiguous"),
], ids=["ambiguous-size", "cpu", "zero-world", "unknown-strategy", "context-not-decoder", "fits-alone",
        "budget-kind-mismatch", "both-budgets", "bad-budget"])
def test_bad_memory_flags_exit_2_in_one_line(capsys, argv, match):
    import re

    code, out, err = run(capsys, TINY, "--input-size", "16", *argv)
    assert code == 2 and out == ""
    assert err.startswith("netsummary: error: ") and err.count("\n") == 1 and re.search(match, err), err


def test_memory_keys_in_pyproject(tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_text(f"""
[tool.netsummary.models.tiny]
target = "{FIX / 'cli_tiny.py'}:Tiny"
input-size = [16]
batch-size = 4
optimizer = "sgd"
world-size = 2
strategy = "ddp"
max-train-memory = "1GiB"

[tool.netsummary.models.tiny-small]
target = "{FIX / 'cli_tiny.py'}:Tiny"
input-size = [16]
max-inference-memory = "512B"  # the peak of one forward of batch 1 is 744 B
""")
    code, out, _ = run(capsys, "check", "--config", str(tmp_path / "pyproject.toml"))
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("tiny: train memory ") and "<= budget 1,073,741,824 (1.00 GiB)" in lines[0]
    assert lines[1].startswith("tiny-small: inference memory ") and "> budget 512 B" in lines[1]
    assert lines[2] == "checked 2 models: 1 ok, 1 over budget, 0 failed"


def test_bad_memory_key_in_pyproject_names_the_key(tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_text(f"""
[tool.netsummary.models.tiny]
target = "{FIX / 'cli_tiny.py'}:Tiny"
input-size = [16]
estimate = "train"
world-size = "four"
""")
    code, _, err = run(capsys, "check", "--config", str(tmp_path / "pyproject.toml"))
    assert code == 2
    assert "tool.netsummary.models.tiny.world-size: expected a positive int (ranks), got 'four'" in err


def test_check_budget_holds_train_memory():
    model = _tiny()
    peak = estimate_memory(model, (16,), 4, optimizer="adamw").peak.bytes
    [v] = check_budget(model, input_size=(16,), batch_size=4, max_train_memory=1024)
    assert (v.quantity, v.value, v.limit) == ("train memory", peak, 1024)
    assert check_budget(model, input_size=(16,), batch_size=4, max_train_memory="1GiB") == []
    with pytest.raises(InputSpecError, match="check them in two calls"):
        check_budget(model, input_size=(16,), max_train_memory="1GiB", max_inference_memory="1GiB")
    assert torch.is_grad_enabled()
