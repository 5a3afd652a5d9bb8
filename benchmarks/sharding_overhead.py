"""What do the sharded-model checks cost a summary of a model with no sharded parameters?

Once ``torch.distributed.tensor`` is imported (transformers imports it), every summary looks for
DTensor parameters: the process-group check before a forward, FSDP2 detection on ``meta``, the
write watch's DTensor shards, the reshard after the forward, and a DTensor / ZeRO-3 test per
parameter in the counting pass. Each is one walk over the modules' parameter dicts (cost grows
with the number of tensors, never with their elements). This prints their time beside a whole
``summary()`` of a Llama-2-70B-shaped config on ``meta`` (68,976,648,192 parameters, 128 tokens)
and the ratio; the target is under 1% of the summary.

Run: ``python benchmarks/sharding_overhead.py [--repeats 5]`` (needs transformers)
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

sys.path.insert(0, ".")
from netsummary import summary  # noqa: E402
from netsummary._analysis.sharding import dtensor_class, shard_of  # noqa: E402
from netsummary._tracing.distributed import check_process_groups, dtensor_locals, has_fsdp  # noqa: E402
from netsummary._tracing.model import walk_modules  # noqa: E402


def best(f, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from transformers import LlamaConfig, LlamaForCausalLM

    import torch.distributed.fsdp  # noqa: F401  (so that every check does its walk)
    import torch.distributed.tensor  # noqa: F401

    config = LlamaConfig(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                         num_key_value_heads=8, vocab_size=32000)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    named = walk_modules(model)
    params = list(model.parameters())
    dtensor = dtensor_class()

    def checks() -> None:
        check_process_groups(named)
        has_fsdp(named)
        dtensor_locals(params)
        for p in params:
            shard_of(p, dtensor)

    def whole() -> None:
        summary(model, (128,), dtypes=[torch.long], batch_size=1, device="meta", verbose=0)

    whole()  # warm-up: imports, caches
    t_checks, t_summary = best(checks, args.repeats * 10), best(whole, args.repeats)
    print(f"Llama-2-70B-shaped on meta: {len(named):,} modules, {len(params):,} parameter tensors")
    print(f"sharding checks {t_checks * 1e3:.3f} ms, summary {t_summary:.2f} s, ratio {t_checks / t_summary:.5f}")


if __name__ == "__main__":
    main()
