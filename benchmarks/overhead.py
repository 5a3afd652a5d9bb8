"""How much does a summary cost next to a bare forward? Prints issue 11's table and its verdicts.

In one process, for each workload, the median over ``--repeats`` interleaved runs of
summary-time / bare-forward-time, both as **thread CPU time** (``time.thread_time``: other
processes on a shared machine do not count), torch pinned to one thread, ``gc.collect()`` before
every timed run:

* a ``Sequential`` of 2,000 ``Linear(8, 8)``: ``summary(verbose=0)`` then ``total_params`` and
  every record's ``output_shapes`` read (target <= 1.5x); the classic table printed into a sink
  (<= 2.5x); ``macs=True`` (<= 3x); and the peers on it, each on its own fresh copy of the model
  (some leave hooks behind): torchinfo, torchsummary, ``FlopCounterMode``, when installed;
* a GPT-2-style model, 48 layers, d=128, 64 tokens: classic / MACs (<= 1.2x / <= 1.6x);
* resnet50, ViT-B/16 (224 x 224) and BERT-base (128 tokens), MACs (<= 1.1x; skipped with
  ``--quick``: each forward takes seconds on a small machine), and BERT-base through
  ``input_size`` (the batch shown as ``-1``: one probe forward more), without a target.

Rows marked ``(floor)`` time the tracing mechanism alone, doing nothing (no-op global forward
hooks; a ``TorchDispatchMode`` that only runs each operator), and on the 2,000-Linear model the
least a summary built on hooks does (:func:`minimal_summary`: a record per call, unique
parameters counted, nothing checked): no summary built on them can cost less than that.

Then, each in a fresh process: the first ``macs=True`` summary minus a second one (<= 0.1 s) and
a Llama-2-70B-shaped config built on meta, ``macs=True`` at 128 tokens (<= 1.5 s). The
safetensors ``inspect`` and the guard-memory rows have their own scripts
(``benchmarks/inspect_startup.py``, ``benchmarks/guard_memory.py``), run here unless ``--quick``.

Run: ``python benchmarks/overhead.py [--repeats 9] [--quick]``
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import io
import json
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn

sys.path.insert(0, ".")
from netsummary import summary  # noqa: E402

warnings.filterwarnings("ignore")


def ratio(fn: Callable[[], object], bare: Callable[[], object], repeats: int) -> float:
    """Median over interleaved runs of fn's / bare's thread CPU time (gc collected before each)."""
    with torch.no_grad():
        bare()
    fn()
    out = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.thread_time()
        with torch.no_grad():
            bare()
        t1 = time.thread_time()
        gc.collect()
        t2 = time.thread_time()
        fn()
        t3 = time.thread_time()
        out.append((t3 - t2) / (t1 - t0))
    return statistics.median(out)


def read_all(s) -> None:
    """What a user reads off the data: the totals and every record's shapes."""
    s.total_params
    for r in s.layers:
        r.output_shapes


def sink(text: str) -> None:
    io.StringIO().write(text)


ROWS: list[tuple[str, float | None, float, str]] = []  # (workload, measured, target, unit)


def row(label: str, value: float | None, target: float, unit: str = "x") -> None:
    ROWS.append((label, value, target, unit))
    shown = "skipped" if value is None else f"{value:7.2f}{unit}"
    verdict = "" if value is None else ("met" if value <= target else "NOT met")
    print(f"{label:62s} {shown:>10s}   target <= {target:g}{unit}   {verdict}", flush=True)


def peer(label: str, run: Callable[[nn.Module], object], make: Callable[[], nn.Module], x: torch.Tensor,
         repeats: int) -> None:
    model = make()  # a fresh copy: some peers leave hooks behind
    try:
        r = ratio(lambda: run(model), lambda: model(x), repeats)
    except ImportError:
        print(f"{label:62s}    skipped (not installed)")
        return
    print(f"{label:62s} {r:9.2f}x   (peer)", flush=True)


def floor(label: str, fn: Callable[[], object], bare: Callable[[], object], repeats: int) -> None:
    """A lower bound of any summary built the same way: only the mechanism, doing nothing, under
    ``torch.no_grad()`` as both the bare forward and an eval-mode summary run."""

    def quiet() -> object:
        with torch.no_grad():
            return fn()

    print(f"{label:62s} {ratio(quiet, bare, repeats):9.2f}x   (floor)", flush=True)


def hooked(run: Callable[[], object]) -> object:
    """``run()`` with a global forward pre-hook and forward hook (kwargs, always_call) that do
    nothing: what every module call pays for being traced at all (torch's slow ``_call_impl``)."""
    from torch.nn.modules import module as m

    pre = m.register_module_forward_pre_hook(lambda mod, args: None)
    post = m.register_module_forward_hook(lambda mod, args, kwargs, out=None: None, with_kwargs=True,
                                          always_call=True)
    try:
        return run()
    finally:
        pre.remove()
        post.remove()
        m._global_forward_hooks_with_kwargs.pop(post.id, None)


def watched(run: Callable[[], object]) -> object:
    """``run()`` under a ``TorchDispatchMode`` that only runs each operator: what a write watch
    (or a MAC counter) seeing every operator costs at the least."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Nothing(TorchDispatchMode):
        @classmethod
        def _should_skip_dynamo(cls) -> bool:
            return False

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    with Nothing():
        return run()


def minimal_summary(model: nn.Module, x: torch.Tensor) -> int:
    """The least any summary built on global hooks does: one record per module call (its name,
    type and output shape), each unique parameter counted once, nothing checked or restored.
    A floor for the 2,000-Linear rows, not a summary (no guard, no thread check, no dtypes,
    bytes or trainability)."""
    from torch.nn.modules import module as m

    names = {id(mod): n for n, mod in model.named_modules()}
    calls: list = []
    pre = m.register_module_forward_pre_hook(lambda mod, args: None)
    post = m.register_module_forward_hook(lambda mod, args, out: calls.append((mod, out.shape)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        pre.remove()
        post.remove()
    seen: set[int] = set()
    total = 0
    records = []
    for mod, shape in calls:
        n = 0
        for p in mod._parameters.values():
            if p is not None and id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
        total += n
        records.append((names[id(mod)], type(mod).__name__, [-1, *shape[1:]], n))
    return total


def deep_linear(repeats: int) -> None:
    torch.manual_seed(0)
    base = nn.Sequential(*[nn.Linear(8, 8) for _ in range(2000)]).eval()
    model = copy.deepcopy(base)
    x = torch.rand(2, 8)

    def bare():
        return model(x)

    label = "2,000 x Linear(8,8)"
    row(f"{label}, verbose=0, totals + every output_shapes read",
        ratio(lambda: read_all(summary(model, (8,), verbose=0)), bare, repeats), 1.5)
    row(f"{label}, classic table printed", ratio(lambda: summary(model, (8,), print_fn=sink), bare, repeats), 2.5)
    row(f"{label}, macs=True", ratio(lambda: read_all(summary(model, (8,), verbose=0, macs=True)), bare, repeats), 3)

    def torchinfo_run(m):
        import torchinfo
        return torchinfo.summary(m, input_size=(2, 8), verbose=0)

    def torchsummary_run(m):
        import torchsummary
        with contextlib.redirect_stdout(io.StringIO()):
            return torchsummary.summary(m, (8,), device="cpu")

    def flop_counter_run(m):
        from torch.utils.flop_counter import FlopCounterMode
        with FlopCounterMode(display=False), torch.no_grad():
            return m(x)

    make = lambda: copy.deepcopy(base)  # noqa: E731
    floor(f"{label}, two no-op global forward hooks alone", lambda: hooked(bare), bare, repeats)
    floor(f"{label}, minimal hook summarizer, no checks", lambda: minimal_summary(model, x), bare, repeats)
    peer(f"{label}, torchinfo.summary", torchinfo_run, make, x, repeats)
    peer(f"{label}, torchsummary.summary", torchsummary_run, make, x, repeats)
    peer(f"{label}, FlopCounterMode alone", flop_counter_run, make, x, repeats)


def gpt2(repeats: int) -> None:
    try:
        from transformers import GPT2Config, GPT2Model
    except ImportError:
        print("GPT-2: skipped (transformers not installed)")
        return
    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=48, n_embd=128, n_head=4, vocab_size=128, n_positions=64)
    model = GPT2Model(cfg).eval()
    ids = torch.randint(0, 128, (2, 64), generator=torch.Generator().manual_seed(0))
    data = {"input_ids": ids}

    def bare():
        return model(**data)

    row("GPT-2 48 layers d=128 T=64, classic (verbose=0, all read)",
        ratio(lambda: read_all(summary(model, input_data=data, verbose=0)), bare, repeats), 1.2)
    row("GPT-2 48 layers d=128 T=64, macs=True",
        ratio(lambda: read_all(summary(model, input_data=data, verbose=0, macs=True)), bare, repeats), 1.6)
    floor("GPT-2 48 layers, a do-nothing TorchDispatchMode alone", lambda: watched(bare), bare, repeats)
    floor("GPT-2 48 layers, that mode and no-op global hooks", lambda: hooked(lambda: watched(bare)), bare,
          repeats)


def large(repeats: int) -> None:
    try:
        import torchvision
        from transformers import BertConfig, BertModel
    except ImportError:
        print("resnet50 / ViT-B / BERT-base: skipped (torchvision or transformers not installed)")
        return
    torch.manual_seed(0)
    img = torch.rand(2, 3, 224, 224)
    for name in ("resnet50", "vit_b_16"):
        model = torchvision.models.get_model(name).eval()
        row(f"{name} 224x224, macs=True",
            ratio(lambda: read_all(summary(model, (3, 224, 224), verbose=0, macs=True)), lambda: model(img), repeats),
            1.1)
        if name == "resnet50":  # 229 operators, yet the do-nothing mode costs about 6%: the kernels slow down
            floor(f"{name}, a do-nothing TorchDispatchMode alone", lambda: watched(lambda: model(img)),
                  lambda: model(img), repeats)
    model = BertModel(BertConfig()).eval()
    data = {"input_ids": torch.randint(0, 30522, (2, 128), generator=torch.Generator().manual_seed(0))}
    row("BERT-base T=128, macs=True",
        ratio(lambda: read_all(summary(model, input_data=data, verbose=0, macs=True)), lambda: model(**data), repeats),
        1.1)
    # not in the table: input_size shows the batch as -1, and BERT's layers receive two
    # batch tensors (states, mask), so a probe forward on 3 samples settles the axes (real tensors:
    # see netsummary/_tracing/forward.py for why not fake ones)
    r = ratio(lambda: read_all(summary(model, (128,), dtypes=[torch.long], verbose=0, macs=True)),
              lambda: model(**data), repeats)
    print(f"{'BERT-base T=128 via input_size (batch shown -1), macs=True':62s} {r:9.2f}x   (no target)", flush=True)


FIRST_MACS = r"""
import sys, time; sys.path.insert(0, ".")
import torch; from torch import nn; from netsummary import summary
m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 30 * 30, 10))
t0 = time.perf_counter(); summary(m, (3, 32, 32), verbose=0, macs=True); t1 = time.perf_counter()
summary(m, (3, 32, 32), verbose=0, macs=True); t2 = time.perf_counter()
print((t1 - t0) - (t2 - t1))
"""

LLAMA_META = r"""
import sys, time, warnings; warnings.filterwarnings("ignore"); sys.path.insert(0, ".")
import torch, transformers; from netsummary import summary
cfg = transformers.LlamaConfig(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                               num_attention_heads=64, num_key_value_heads=8, vocab_size=32000)
with torch.device("meta"):
    model = transformers.LlamaForCausalLM(cfg)
t0 = time.perf_counter()
summary(model, (128,), dtypes=[torch.long], batch_size=1, macs=True, verbose=0)
print(time.perf_counter() - t0)
"""


def fresh(code: str) -> float | None:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode:
        print(done.stderr[-2000:])
        return None
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="skip the large models and the other scripts")
    args = parser.parse_args()
    torch.set_num_threads(1)
    deep_linear(args.repeats)
    gpt2(args.repeats)
    if not args.quick:
        large(max(3, args.repeats // 3))
    row("first macs=True summary in a fresh process, minus a second", fresh(FIRST_MACS), 0.1, " s")
    try:
        import transformers  # noqa: F401
        row("Llama-2-70B-shaped config on meta, macs=True", fresh(LLAMA_META), 1.5, " s")
    except ImportError:
        print("Llama-2-70B-shaped config: skipped (transformers not installed)")
    if not args.quick:
        for script in ("benchmarks/inspect_startup.py", "benchmarks/guard_memory.py"):
            done = subprocess.run([sys.executable, script], capture_output=True, text=True)
            print(f"{script}: {(done.stdout.strip().splitlines() or [done.stderr[-500:]])[-1]}")
    met = [r for r in ROWS if r[1] is not None and r[1] <= r[2]]
    missed = [r for r in ROWS if r[1] is not None and r[1] > r[2]]
    print(f"\ntargets met: {len(met)} of {len(met) + len(missed)}"
          + ("".join(f"\n  not met: {r[0]}: {r[1]:.2f}{r[3]} (target <= {r[2]:g}{r[3]})" for r in missed)))
    print(json.dumps({r[0]: r[1] for r in ROWS}))


if __name__ == "__main__":
    main()
