"""How fast and how right is ``estimate="train"``? Per model, on CPU, in one process:

- the estimate's time over one real training step's time (both after a warm-up), on real and
  on fake tensors;
- the estimate's error against the peak of a real steady-state step measured by torch.profiler's
  allocator events (``tests/memory_reference.py``, independent of the engine);
- a 70B Llama-shaped config built on ``meta``: the full breakdown's time and the process's peak
  resident memory (targets: under 10 s and under 1 GiB), run in a fresh subprocess so that the
  RSS is its own.

Run: ``python benchmarks/memory.py`` (``--no-70b`` skips the Llama config, ``--only-70b`` runs it alone).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import torch

sys.path.insert(0, ".")
sys.path.insert(0, "tests")
from memory_reference import real_step_peak  # noqa: E402
from netsummary._memory.step import estimate_memory  # noqa: E402
from test_memory_accuracy import CASES, LSTMNet, _inputs  # noqa: E402

CASES = {**CASES, "lstm (lower bound)": (LSTMNet, (32, 64), 8, None)}


def _timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def per_model() -> None:
    print(f"{'model':24s} {'peak MiB':>10s} {'real MiB':>10s} {'error':>7s} {'fake vs real':>12s} "
          f"{'est/step':>9s} {'fake/step':>9s}")
    for name, (build, size, batch, autocast) in CASES.items():
        torch.manual_seed(0)
        model = build()
        x = _inputs(model, size, batch)
        opt = torch.optim.AdamW(model.parameters())

        def step() -> None:
            with torch.autocast("cpu", dtype=autocast) if autocast else torch.autocast("cpu", enabled=False):
                out = model(*x)
            out.sum().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        step()
        t_step = _timed(step)
        est = estimate_memory(model, size, batch_size=batch, autocast=autocast)
        t_est = _timed(lambda: estimate_memory(model, size, batch_size=batch, autocast=autocast))
        fake = estimate_memory(model, size, batch_size=batch, autocast=autocast, fake=True)
        t_fake = _timed(lambda: estimate_memory(model, size, batch_size=batch, autocast=autocast, fake=True))
        real = real_step_peak(build_fresh(build), x, autocast=autocast)
        print(f"{name:24s} {est.peak.bytes / 2**20:10.2f} {real / 2**20:10.2f} {est.peak.bytes / real - 1:+7.1%} "
              f"{fake.peak.bytes / est.peak.bytes - 1:+12.1%} {t_est / t_step:9.1f} {t_fake / t_step:9.1f}")


def build_fresh(build):
    torch.manual_seed(0)
    return build()


LLAMA_70B = textwrap.dedent("""
    import resource, sys, time, torch
    sys.path.insert(0, ".")
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=128256, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                      num_attention_heads=64, num_key_value_heads=8, max_position_embeddings=8192, use_cache=False)
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    from netsummary._memory.step import estimate_memory
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t = time.perf_counter()
    est = estimate_memory(model, (2048,), batch_size=1, dtypes=[torch.long])
    took = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    params = sum(p.numel() for p in model.parameters())
    print(f"Llama-70B-shaped on meta ({params / 1e9:.1f}B params, batch 1 x 2,048 tokens, float32, AdamW): "
          f"breakdown in {took:.1f} s (target < 10 s), peak RSS {rss:.2f} GiB (target < 1 GiB), of which "
          f"{before:.2f} GiB before the estimate (torch, transformers, the meta model)")
    print(est)
""")


def llama_70b() -> None:
    out = subprocess.run([sys.executable, "-c", LLAMA_70B], capture_output=True, text=True, timeout=600)
    print(out.stdout.strip() if out.returncode == 0 else out.stderr[-2000:])


if __name__ == "__main__":
    if "--only-70b" not in sys.argv:
        per_model()
    if "--no-70b" not in sys.argv:
        llama_70b()
