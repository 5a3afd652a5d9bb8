"""Measure what MAC counting costs on a forward pass made of thousands of tiny layers.

Example::

    $ python benchmarks/flops_overhead.py            # about 30 s on one CPU thread
    bare forward (median of 20, grad on): 28.1 ms
    MacCounter / bare:       2.08x   (total 256,000 MACs)
    FlopCounterMode / bare: 19.88x   (total 512,000 FLOPs)

The model is ``nn.Sequential`` of 2,000 ``nn.Linear(8, 8)`` on a [2, 8] input (2*8*8 = 128 MACs a
layer, 256,000 in all). Timings are interleaved (bare, MacCounter, FlopCounterMode, bare, ...) so
that load from other processes hits all three alike; each ratio is median / median over ``--runs``
runs after ``--warmup`` runs. ``--grad off`` runs every forward under ``torch.no_grad()``,
``--grad inference`` under ``torch.inference_mode()`` (``nn.Linear`` then reaches dispatch as one
``aten.linear`` instead of ``t`` + ``addmm``).
Raises ``AssertionError`` if a counter's total is not the expected one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from netsummary._analysis.flops import MacCounter  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--grad", choices=["on", "off", "inference"], default="on")
    opts = parser.parse_args(argv)

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(8, 8) for _ in range(opts.layers)])
    x = torch.randn(2, 8)
    expected_macs = opts.layers * 2 * 8 * 8
    grad: Callable[[], AbstractContextManager[object]] = {
        "on": nullcontext, "off": torch.no_grad, "inference": torch.inference_mode}[opts.grad]
    total = [0]

    def count(op: str, macs: int | None) -> None:  # the "trivial callback"
        total[0] += macs or 0

    def bare() -> None:
        with grad():
            model(x)

    def macs() -> None:
        total[0] = 0
        with grad(), MacCounter(count):
            model(x)
        assert total[0] == expected_macs, total[0]

    def flop_counter() -> None:
        with grad(), FlopCounterMode(display=False) as mode:
            model(x)
        assert mode.get_total_flops() == 2 * expected_macs, mode.get_total_flops()

    cases = {"bare": bare, "MacCounter": macs, "FlopCounterMode": flop_counter}
    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(opts.warmup + opts.runs):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            if i >= opts.warmup:
                times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    ratios = {name: med[name] / med["bare"] for name in ("MacCounter", "FlopCounterMode")}
    print(f"bare forward (median of {opts.runs}, grad {opts.grad}): "
          f"{med['bare'] * 1e3:.1f} ms")
    print(f"MacCounter / bare:      {ratios['MacCounter']:5.2f}x   (total {expected_macs:,} MACs)")
    print(f"FlopCounterMode / bare: {ratios['FlopCounterMode']:5.2f}x   (total {2 * expected_macs:,} FLOPs)")
    return ratios


if __name__ == "__main__":
    main()
