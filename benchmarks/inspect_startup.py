"""How long does ``netsummary inspect model.safetensors`` take, as a whole process?

A safetensors header is a few kB of JSON: reading it takes milliseconds, and the command should
cost little more than Python's own start. Before issue 11 the command imported torch (several
seconds and ~700 MiB resident) to read the header. Writes a 7B-parameter-style checkpoint (32
layers, 291 bf16 tensors; the data is a sparse hole, so the file takes no disk space), then
times, in fresh processes (median of ``--runs``, default 7):

* ``netsummary inspect FILE --max-params 8G`` (the console script, when it is on PATH),
* ``python -m netsummary inspect FILE --max-params 8G``,
* ``python -c "import torch"``, for reference,

with each one's peak resident memory. Target: the command within 0.3 s.

Run: ``python benchmarks/inspect_startup.py [--runs N]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

TARGET_S = 0.3
TORCH = 'python -c "import torch"'


def write_checkpoint(path: str) -> int:
    """A Llama-7B-shaped safetensors header over a sparse data hole; returns the param count."""
    shapes = {"model.embed_tokens.weight": [32000, 4096], "model.norm.weight": [4096], "lm_head.weight": [32000, 4096]}
    for i in range(32):
        p = f"model.layers.{i}"
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[f"{p}.self_attn.{name}.weight"] = [4096, 4096]
        for name, shape in (("gate_proj", [11008, 4096]), ("up_proj", [11008, 4096]), ("down_proj", [4096, 11008])):
            shapes[f"{p}.mlp.{name}.weight"] = shape
        shapes[f"{p}.input_layernorm.weight"] = [4096]
        shapes[f"{p}.post_attention_layernorm.weight"] = [4096]
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = params = 0
    for name, shape in shapes.items():
        count = 1
        for dim in shape:
            count *= dim
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + 2 * count]}
        offset += 2 * count
        params += count
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(blob)) + blob)
        handle.truncate(8 + len(blob) + offset)  # a hole: no data is written
    return params


def timed(argv: list[str], runs: int) -> tuple[float, float, int]:
    """Median and minimum wall seconds of ``argv`` over ``runs`` fresh processes, and the largest
    peak resident memory (bytes); output is discarded, a failure raises."""
    times, peak = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)
        times.append(time.perf_counter() - start)
        child.returncode = os.waitstatus_to_exitcode(status)
        err = child.stderr.read().decode() if child.stderr else ""
        if child.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(argv)} failed with exit code {child.returncode}: {err.strip()}")
        peak = max(peak, usage.ru_maxrss * 1024)  # KiB on Linux
    return statistics.median(times), min(times), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.safetensors")
        params = write_checkpoint(path)
        print(f"checkpoint: {params:,} params, {os.path.getsize(path) / 2**30:.1f} GiB (sparse), "
              f"header {int.from_bytes(open(path, 'rb').read(8), 'little'):,} bytes")
        commands = []
        script = shutil.which("netsummary")
        if script:
            commands.append(("netsummary inspect", [script, "inspect", path, "--max-params", "8G"]))
        commands.append(("python -m netsummary inspect", [sys.executable, "-m", "netsummary", "inspect", path,
                                                          "--max-params", "8G"]))
        commands.append((TORCH, [sys.executable, "-c", "import torch"]))
        results = {}
        for label, argv in commands:
            timed(argv, 1)  # warm the file cache
            median, best, peak = timed(argv, args.runs)
            results[label] = median
            print(f"{label:32s} median {median:6.3f} s  min {best:6.3f} s  peak RSS {peak / 2**20:6.1f} MiB")
        inspect = results.get("netsummary inspect", results["python -m netsummary inspect"])
        verdict = "met" if inspect <= TARGET_S else "NOT met"
        print(f"target: netsummary inspect <= {TARGET_S} s: {verdict} ({inspect:.3f} s median; importing torch "
              f"alone takes {results[TORCH]:.3f} s)")


if __name__ == "__main__":
    main()
