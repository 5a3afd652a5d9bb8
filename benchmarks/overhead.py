"""How much slower is ``summary()`` than a bare forward of the same model, in one process?

Prints, for a ``Sequential`` of 2,000 ``Linear(8, 8)`` layers and a 48-layer GPT-2-style model,
the median of ``summary()`` time / bare-forward time (threads pinned, runs interleaved so that
machine noise hits both alike), and the same ratio for torchinfo and torchsummary when they are
installed. Targets on the 2,000-layer model: at most 1.5x without MACs and 4x with MACs
(torchinfo is about 21x there, ``FlopCounterMode`` alone about 19x: benchmarks/flops_overhead.py).

Run: ``python benchmarks/overhead.py [--repeats 15]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

sys.path.insert(0, ".")
from netsummary import summary  # noqa: E402


def deep_linear() -> tuple[nn.Module, tuple[int, ...], Callable[[], object]]:
    model = nn.Sequential(*[nn.Linear(8, 8) for _ in range(2000)]).eval()
    x = torch.rand(2, 8)
    return model, (8,), lambda: model(x)


def gpt2_48() -> tuple[nn.Module, tuple[int, ...], Callable[[], object]] | None:
    try:
        from transformers import GPT2Config, GPT2Model
    except ImportError:
        return None
    cfg = GPT2Config(n_layer=48, n_embd=64, n_head=4, vocab_size=128, n_positions=64)
    model = GPT2Model(cfg).eval()
    ids = torch.randint(0, 128, (2, 32), generator=torch.Generator().manual_seed(0))
    return model, ids, lambda: model(input_ids=ids)


def median_ratio(fn: Callable[[], object], bare: Callable[[], object], repeats: int) -> float:
    """Median over interleaved runs of fn-time / bare-time."""
    with torch.no_grad():
        bare()
    fn()
    ratios = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            bare()
        t1 = time.perf_counter()
        fn()
        t2 = time.perf_counter()
        ratios.append((t2 - t1) / (t1 - t0))
    return statistics.median(ratios)


def tools(model: nn.Module, spec) -> dict[str, Callable[[], object]]:
    is_ids = isinstance(spec, torch.Tensor)
    out: dict[str, Callable[[], object]] = {
        "netsummary": (lambda: summary(model, input_data={"input_ids": spec}, verbose=0))
        if is_ids
        else (lambda: summary(model, spec, verbose=0)),
        "netsummary+MACs": (lambda: summary(model, input_data={"input_ids": spec}, verbose=0, macs=True))
        if is_ids
        else (lambda: summary(model, spec, verbose=0, macs=True)),
    }
    try:
        import torchinfo

        out["torchinfo"] = (
            (lambda: torchinfo.summary(model, input_data={"input_ids": spec}, verbose=0))
            if is_ids
            else (lambda: torchinfo.summary(model, input_size=(2, *spec), verbose=0))
        )
    except ImportError:
        pass
    if not is_ids:
        try:
            import torchsummary

            out["torchsummary"] = lambda: torchsummary.summary(model, spec, device="cpu")
        except ImportError:
            pass
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for label, make in [("Sequential of 2,000 Linear(8, 8)", deep_linear), ("GPT-2 style, 48 layers", gpt2_48)]:
        built = make()
        if built is None:
            print(f"{label}: skipped (transformers not installed)")
            continue
        model, spec, bare = built
        for tool, fn in tools(model, spec).items():
            quiet = tool == "torchsummary"  # it always prints: send it nowhere
            if quiet:
                import contextlib
                import io

                def fn(fn=fn):
                    with contextlib.redirect_stdout(io.StringIO()):
                        return fn()

            print(f"{label:34s} {tool:16s} {median_ratio(fn, bare, args.repeats):6.2f}x bare forward")


if __name__ == "__main__":
    main()
