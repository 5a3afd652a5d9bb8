"""Do large models stay cheap? Summary time and peak RSS over the import baseline, meta-built.

Two configs built on ``meta`` (no weights in memory) and summarized with MACs counted at 128
tokens, batch 1, every check switched on (mixture of experts, adapters, the grouped-matmul
stand-in), each in a fresh subprocess so that one's memory high-water mark cannot hide the
other's:

* a Llama-2-70B-shaped ``LlamaForCausalLM`` (68,976,648,192 parameters; 8,816,762,552,320 MACs);
* a Mixtral-8x7B-shaped ``MixtralForCausalLM`` in float32 (46,702,792,704 parameters, of which
  12,879,925,248 active; 1,636,114,104,320 MACs).

The baseline is the peak RSS (``ru_maxrss``) after importing torch, transformers and netsummary
and building the model on meta; the figure is the summary's growth over it. Target: 2-4 s and
about 10-20 MiB over the baseline for both.

Run: ``python benchmarks/scale.py``
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, ".")
import torch, transformers
from netsummary import summary
which = sys.argv[1]
if which == "llama-2-70b":
    cfg = transformers.LlamaConfig(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                                   num_attention_heads=64, num_key_value_heads=8, vocab_size=32000)
    cls = transformers.LlamaForCausalLM
else:
    cfg = transformers.MixtralConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                     num_attention_heads=32, num_key_value_heads=8, vocab_size=32000,
                                     num_local_experts=8, num_experts_per_tok=2)
    cls = transformers.MixtralForCausalLM
with torch.device("meta"):
    model = cls(cfg)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t0 = time.perf_counter()
s = summary(model, (128,), dtypes=[torch.long], batch_size=1, macs=True, verbose=0)
took = time.perf_counter() - t0
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
print(json.dumps(dict(seconds=took, rss_mib=grew / 2**20, params=s.total_params, macs=s.total_macs,
                      active=s.active_params, unknown=list(s.unknown_ops))))
"""


def run(which: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, which], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    for which in ("llama-2-70b", "mixtral-8x7b"):
        r = run(which)
        ok = r["seconds"] <= 4 and r["rss_mib"] <= 20
        active = f", active {r['active']:,}" if r["active"] is not None else ""
        print(f"{which}: summary {r['seconds']:.2f} s, peak RSS +{r['rss_mib']:.1f} MiB over the import baseline "
              f"(target <= 4 s and <= 20 MiB: {'met' if ok else 'NOT met'}); params {r['params']:,}{active}; "
              f"MACs {r['macs']:,}" + (f" (no formula: {', '.join(r['unknown'])})" if r["unknown"] else ""))


if __name__ == "__main__":
    main()
