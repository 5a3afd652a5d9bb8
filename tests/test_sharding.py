"""Per-rank memory of DDP, ZeRO-2 and FSDP against hand arithmetic (the ZeRO paper's table)."""

from __future__ import annotations

import pytest
from torch import nn

from netsummary import InputSpecError, InputTypeError
from netsummary._memory.sharding import check_sharding, fsdp_units, shard_memory

MIB = 2**20
FIGURES = dict(parameters=400 * MIB, gradients=400 * MIB, optimizer_state=800 * MIB, buffers=2 * MIB,
               rest=1000 * MIB, batch_size=32, rank_batch=8, unit=("layers.3", 60 * MIB, 50 * MIB))


@pytest.mark.parametrize("strategy, params, grads, optim, extra", [
    # ddp: everything replicated + DDP's buckets (= gradients, 400)
    ("ddp", 400, 400, 800, 400),
    # zero2: gradients 400 / 4 = 100, optimizer 800 / 4 = 200 sharded; parameters replicated
    ("zero2", 400, 100, 200, 0),
    # fsdp: all three / 4; the unit: 2 × 60 (running + prefetched) + 50 gradients = 170
    ("fsdp", 100, 100, 200, 170),
], ids=["ddp", "zero2", "fsdp"])
def test_per_rank_figures_by_hand(strategy, params, grads, optim, extra):
    sh = shard_memory(**FIGURES, world_size=4, strategy=strategy)
    assert (sh.parameters.bytes, sh.gradients.bytes, sh.optimizer_state.bytes) == (params * MIB, grads * MIB,
                                                                                   optim * MIB)
    assert sh.buffers.bytes == 2 * MIB  # replicated everywhere
    assert sh.ddp_buckets.bytes + sh.all_gathered.bytes == extra * MIB
    # peak = params + buffers 2 + grads + optimizer + extra + rest 1,000
    assert sh.peak.bytes == (params + 2 + grads + optim + extra + 1000) * MIB
    assert all(item.method == "formula" for _, item in sh.items)


def test_shards_round_up_and_peak_uses_the_parts_live_at_the_peak():
    # 10 bytes over 4 ranks: ⌈10 / 4⌉ = 3 per rank; at the peak only 6 bytes of gradients were live
    sh = shard_memory(parameters=10, gradients=10, optimizer_state=20, buffers=0, rest=5, world_size=4,
                      strategy="zero2", batch_size=4, rank_batch=1, live={"gradients": 6})
    assert (sh.parameters.bytes, sh.gradients.bytes, sh.optimizer_state.bytes) == (10, 3, 5)
    assert sh.peak.bytes == 10 + 2 + 5 + 5  # params 10 + ⌈6 / 4⌉ = 2 + ⌈20 / 4⌉ = 5 + rest 5


def test_inference_has_no_gradients_buckets_or_unit_gradients():
    sh = shard_memory(**{**FIGURES, "gradients": 0, "optimizer_state": 0}, world_size=2, strategy="fsdp", train=False)
    assert sh.all_gathered.bytes == 2 * 60 * MIB  # two units' parameters, no gradients
    ddp = shard_memory(**FIGURES, world_size=2, strategy="ddp", train=False)
    assert ddp.ddp_buckets.bytes == 0
    assert [name for name, _ in ddp.items] == ["parameters", "buffers", "activations", "peak"]


def test_fsdp_units_are_the_blocks_and_add_up_to_the_model():
    model = nn.Sequential()
    model.add_module("embed", nn.Embedding(10, 8))                          # 80 params
    model.add_module("layers", nn.ModuleList([nn.Linear(8, 8) for _ in range(3)]))  # 72 each
    model.add_module("head", nn.Linear(8, 2))                                # 18
    model.embed.weight.requires_grad_(False)
    units = fsdp_units(model)
    # the root is a Sequential of 3 children: those are the units (no nested list is looked at)
    assert units == [("embed", 320, 0), ("layers", 864, 864), ("head", 72, 72)]
    inner = nn.Module()
    inner.embed, inner.layers = model.embed, model.layers
    assert fsdp_units(inner) == [("", 320, 0), ("layers.0", 288, 288), ("layers.1", 288, 288), ("layers.2", 288, 288)]
    assert sum(u[1] for u in fsdp_units(inner)) == sum(p.numel() * 4 for p in inner.parameters())


@pytest.mark.parametrize("world, strategy, error, match", [
    (0, "ddp", InputSpecError, "world_size: expected a positive int .the number of ranks., got 0"),
    (-2, "ddp", InputSpecError, "got -2"),
    (2.0, "ddp", InputTypeError, r"got 2.0 \(float\)"),
    (2, "zero3", InputSpecError, r"strategy: expected one of 'ddp', 'zero2', 'fsdp' .*got 'zero3'"),
    (2, None, InputTypeError, r"got None \(NoneType\)"),
], ids=["zero", "negative", "float", "unknown-strategy", "none-strategy"])
def test_bad_sharding_input(world, strategy, error, match):
    with pytest.raises(error, match=match):
        check_sharding(world, strategy)


def test_fsdp_prefetches_the_second_largest_unit():
    # the root unit (embeddings + head, 60 MiB) is the largest; the blocks are 20 MiB: 60 + 20 + 50 grads
    sh = shard_memory(**{**FIGURES, "unit": ("", 60 * MIB, 50 * MIB)}, prefetched=20 * MIB, world_size=4,
                      strategy="fsdp")
    assert sh.all_gathered.bytes == 130 * MIB
    assert sh.all_gathered.note == "largest unit (root): 60.00 MiB params + 20.00 MiB prefetched + 50.00 MiB grads"
