"""How much memory does the guard add on a model with large buffers, in one process?

A nanoGPT-style model holds a causal-mask buffer of 1 x T x T float32 (192 MiB for T = 7,094)
that every forward reads and none writes. The guard copies only tensors the forward writes
(``netsummary._tracing.watch``), so a summary should add next to nothing over a bare forward; before,
it cloned every dense buffer (+1x buffer bytes). Prints the peak resident-memory growth of a
summary over the bare forward's (``ru_maxrss``, measured) as a fraction of the buffer bytes.
Target: at most +1%.

Run: ``python benchmarks/guard_memory.py``
"""

from __future__ import annotations

import resource
import sys
import time

import torch
from torch import nn

sys.path.insert(0, ".")
from netsummary import summary  # noqa: E402


class Masked(nn.Module):
    def __init__(self, t: int) -> None:
        super().__init__()
        self.register_buffer("mask", torch.ones(t, t).tril_().view(1, t, t))  # no temporary copy
        self.proj = nn.Linear(8, 8)

    def forward(self, x):
        n = x.shape[1]
        return self.proj(x).masked_fill(self.mask[:, :n, :n] == 0, 0.0)


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def main() -> None:
    torch.set_num_threads(1)
    summary(Masked(64), (8, 8), mode="train", verbose=0)  # warm-up (imports, tables) on a small copy
    model = Masked(7094).eval()
    buffer_bytes = model.mask.numel() * model.mask.element_size()
    x = torch.rand(2, 8, 8)
    base = peak_rss()  # ru_maxrss is a high-water mark: nothing before may have used more
    with torch.no_grad():
        t0 = time.thread_time()
        model(x)
        bare = time.thread_time() - t0
    after_bare = peak_rss()
    t0 = time.thread_time()
    summary(model, (8, 8), mode="train", verbose=0)
    took = time.thread_time() - t0
    growth = peak_rss() - after_bare
    print(f"mask buffer {buffer_bytes / 2**20:,.1f} MiB; peak RSS growth of a summary over a bare forward: "
          f"{growth / 2**20:,.2f} MiB = {growth / buffer_bytes:+.2%} of the buffer (target <= +1%: "
          f"{'met' if growth <= 0.01 * buffer_bytes else 'NOT met'}); summary {took * 1e3:.1f} ms, "
          f"bare forward {bare * 1e3:.2f} ms; baseline peak {base / 2**20:,.0f} MiB")


if __name__ == "__main__":
    main()
