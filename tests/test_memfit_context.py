"""The fit verdict at a given context (``context=``) and per rank: the largest batch is derived at the
context the yes/no line is for, never contradicts it, and FSDP's optimizer step runs on shards."""

from __future__ import annotations

import math

import pytest
import torch

from netsummary import summary
from netsummary._memory.verdict import fit_verdict, parse_fits

transformers = pytest.importorskip("transformers")

MIB = 2**20


def _llama(**over):
    cfg = dict(num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, hidden_size=64,
               intermediate_size=128, vocab_size=500, max_position_embeddings=4096)
    cfg.update(over)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg))


def _fit(model, batch, **keywords):
    s = summary(model, (16,), dtypes=[torch.long], batch_size=batch, verbose=0, **keywords)
    return s.memory.plan.fit


def test_largest_batch_is_derived_at_the_verdicts_context():
    model = _llama()
    plain = _fit(model, 2, estimate="inference", fits="64MiB")  # the 16-token run's own fit
    fit = _fit(model, 2, estimate="inference", fits="64MiB", context=256)
    # the measured forward keeps its KV cache (use_cache), so all of a sample's bytes scale with
    # tokens: at 256 tokens a sample holds 256 / 16 = 16 × the measured 16-token slope
    assert fit.fixed_bytes == plain.fixed_bytes
    assert abs(fit.per_sample_bytes - 16 * plain.per_sample_bytes) <= 16
    assert fit.lines_context == 256
    # (64 MiB / 1.1 − fixed) / per-sample, fixed 702,400 B, 854,016 B a sample: (61,008,055 − 702,400) / 854,016 = 70.6
    assert fit.largest_batch == math.floor((64 * MIB / 1.1 - fit.fixed_bytes) / fit.per_sample_bytes) == 70
    # was 1,129 (the 16-token slope) before the fix; the same verdict measured at the answer and one past it
    at, past = (_fit(model, b, estimate="inference", fits="64MiB", context=256) for b in (70, 71))
    assert at.fits and not past.fits
    text = str(fit)
    assert "largest batch at 256 tokens that fits: 70" in text


def test_a_no_verdict_comes_with_a_smaller_largest_batch_per_rank():
    model = _llama()
    fit = _fit(model, 4, estimate="train", fits="8MiB", context=256, world_size=2, strategy="fsdp")
    assert not fit.fits
    assert fit.batch_size == 2  # ⌈4 / 2⌉ per rank
    assert fit.largest_batch < fit.batch_size  # printed "2" before the fix, under the "no" line
    if fit.largest_batch:
        assert _fit(model, 2 * fit.largest_batch, estimate="train", fits="8MiB", context=256, world_size=2,
                    strategy="fsdp").fits


@pytest.mark.parametrize("capacity", [3 * MIB, 5 * MIB, 9 * MIB, 40 * MIB])
def test_verdict_and_largest_batch_use_one_arithmetic(capacity):
    # 1 MiB + 1 MiB × b at the verdict's context, the verdict at batch 4 (5 MiB): need = 5 MiB + ⌈10%⌉
    lines = [(float(MIB), float(MIB), "backward"), (2.5 * MIB, 0.0, "optimizer")]
    peak = 5 * MIB
    fit = fit_verdict(peak, parse_fits(capacity), ((4, peak), (2, 3 * MIB)), 4, lines=lines, lines_context=512)
    assert fit.fits == (fit.largest_batch >= 4)
    # capacity 9 MiB: (9 / 1.1 − 1) = 7.18 → 7 samples; 40 MiB: 35.36 → 35; 3 MiB: 1.72 → 1; 5 MiB: 3.54 → 3
    assert fit.largest_batch == {3 * MIB: 1, 5 * MIB: 3, 9 * MIB: 7, 40 * MIB: 35}[capacity]


def test_fsdp_optimizer_step_holds_no_all_gathered_unit():
    # A large root unit (untied embedding + lm_head, 2 × 8,000 × 64 × 4 B = 4,096,000 B) and tiny
    # activations: before the fix every moment of optimizer.step() carried the all-gathered root
    # (params + grads, 8+ MB) on top of the shards, and the largest context at batch 1 was "none".
    with torch.device("meta"):
        model = _llama(vocab_size=8000, num_hidden_layers=2)  # 70B on 8 ranks had the same fault
    s = summary(model, (64,), dtypes=[torch.long], batch_size=1, estimate="train", context=128, world_size=8,
                strategy="fsdp", fits="4MiB", verbose=0)
    est, sh, fit = s.memory, s.memory.plan.sharded, s.memory.plan.fit
    from netsummary._memory.plan import _rank_curve

    curve = _rank_curve(est, sh)
    opt = max(live for live, _, phase in curve if phase == "optimizer")
    # per rank in the step: ⌈P/8⌉ + ⌈G/8⌉ + ⌈O/8⌉ (O = 2P for AdamW) + buffers + inputs + the step's
    # temporaries of one shard (single-tensor AdamW: at most 2 × the largest parameter's shard)
    p = est.parameters.bytes
    largest = max(t.numel() * t.element_size() for t in model.parameters())
    bound = 4 * math.ceil(p / 8) + est.buffers.bytes + est.inputs.bytes + 2 * math.ceil(largest / 8)
    assert opt <= bound + 1024  # + 0-dim scalars (the step counters, bias corrections)
    assert sh.all_gathered.bytes > bound - 4 * math.ceil(p / 8)  # what the old curve added on top
    # what is left of "none, not even 1 token" says why: the step without tokens needs more than 4 MiB
    assert fit.largest_context == 0 and fit.context_floor_bytes > 4 * MIB
    assert "already needs" in str(fit).split("largest context")[1].splitlines()[1]


@pytest.mark.parametrize("batch, ranks, per_rank", [(4, 3, 2), (4, 8, 1)])
def test_a_batch_that_does_not_divide_over_the_ranks_is_stated(batch, ranks, per_rank):
    from torch import nn

    model = nn.Sequential(nn.Linear(8, 8))
    s = summary(model, (8,), batch_size=batch, estimate="train", world_size=ranks, strategy="ddp", verbose=0)
    sh = s.memory.plan.sharded
    assert sh.rank_batch == per_rank == math.ceil(batch / ranks)  # ⌈4 / 3⌉ = 2, ⌈4 / 8⌉ = 1
    text = str(s.memory.plan)
    # 2 × 3 = 6 samples (2 repeated), 1 × 8 = 8 samples (4 repeated), as DistributedSampler pads
    padded = per_rank * ranks
    assert f"{batch} samples do not split evenly over {ranks} ranks" in text
    assert f"({padded} samples in all, as DistributedSampler pads by repeating {padded - batch})" in text
    even = summary(model, (8,), batch_size=6, estimate="train", world_size=3, strategy="ddp", verbose=0)
    assert "do not split evenly" not in str(even.memory.plan)


def test_wording_of_the_verdict_and_its_refusals():
    from netsummary import InputSpecError

    with pytest.raises(InputSpecError) as meta:
        parse_fits("meta")
    assert "meta tensors hold no memory" in str(meta.value) and "swap" not in str(meta.value)
    with pytest.raises(InputSpecError) as abc:
        parse_fits("abc")
    assert str(abc.value).count("expected a size with a unit") == 1
    sdpa = _llama(attn_implementation="sdpa")
    eager = _llama(attn_implementation="eager")
    notes = [_fit(m, 1, estimate="inference", fits="64MiB", context=64).context_note for m in (sdpa, eager)]
    assert "squared" not in notes[0] and "eager attention's scores grow with tokens squared" in notes[1]


def test_the_memory_sections_prose_lines_wrap_at_100_columns():
    from torch import nn

    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 10))
    s = summary(model, (256,), batch_size=8, estimate="train", world_size=2, strategy="fsdp", fits="80GB",
                verbose=0)
    text = s.render("memory")
    # the notes (the foreach note on meta was 286 columns) and "At the peak" (123-161) wrap
    prose = [ln for ln in text.splitlines() if ln.lstrip().startswith(("Note:", "At the peak:", "largest", "from"))]
    assert prose and max(len(ln) for ln in prose) <= 100
    assert "foreach" in text.replace("\n", " ")
