"""What recognizing quantized weights costs: one look at each module's own tensors.

Prints the time of counting a Llama-2-70B-shaped model's parameters (built on ``meta``: 80
decoder layers, 68,976,648,192 parameters) with the quantized-weight probe and with the probe
switched off (returning "nothing quantized" for every module), and their ratio; then the same for
a model of 2,000 dynamic-quantized ``Linear`` layers (``torch.ao``), whose probe unpacks each
layer's weight once. Run: ``python benchmarks/quantized_overhead.py``.
"""

from __future__ import annotations

import sys
import time
import warnings

import torch
from torch import nn

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from netsummary._analysis import count, quantized  # noqa: E402


def _time(fn, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _llama70b() -> nn.Module:
    try:
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError:  # without transformers: the same parameter shapes in plain modules
        with torch.device("meta"):
            layer = lambda: nn.ModuleList([nn.Linear(8192, 8192, bias=False), nn.Linear(8192, 1024, bias=False),  # noqa: E731
                                           nn.Linear(8192, 1024, bias=False), nn.Linear(8192, 8192, bias=False),
                                           nn.Linear(8192, 28672, bias=False), nn.Linear(8192, 28672, bias=False),
                                           nn.Linear(28672, 8192, bias=False), nn.RMSNorm(8192), nn.RMSNorm(8192)])
            return nn.ModuleList([nn.Embedding(32000, 8192), *(layer() for _ in range(80)), nn.RMSNorm(8192),
                                  nn.Linear(8192, 32000, bias=False)])
    config = LlamaConfig(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                         num_key_value_heads=8, vocab_size=32000)
    with torch.device("meta"):
        return LlamaForCausalLM(config)


def _ratio(name: str, model: nn.Module) -> None:
    named = list(model.named_modules())
    on = _time(lambda: count.ParamStats(named))
    real = quantized.Probe.module
    quantized.Probe.module = lambda self, m: None  # the probe off: what counting cost before it existed
    try:
        off = _time(lambda: count.ParamStats(named))
    finally:
        quantized.Probe.module = real
    params = count.ParamStats(named).params.numel
    print(f"{name}: {len(named):,} modules, {params:,} params; counting {on * 1e3:.1f} ms with the probe, "
          f"{off * 1e3:.1f} ms without: ratio {on / off:.2f}")


def main() -> None:
    _ratio("Llama-2-70B-shaped (meta)", _llama70b())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        big = nn.Sequential(*(nn.Linear(64, 64) for _ in range(2000)))
        q = torch.ao.quantization.quantize_dynamic(big, {nn.Linear}, dtype=torch.qint8)
    _ratio("2,000 torch.ao dynamic-quantized Linear(64, 64)", q)


if __name__ == "__main__":
    main()
