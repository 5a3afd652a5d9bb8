"""The plan on real measured steps: two-batch fits checked by measuring again, per-rank activations
measured at the per-rank batch, the KV cache of a decoder, and the keywords' errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from netsummary import InputSpecError, summary
from netsummary._memory.plan import check_plan, measured_tokens, plan_memory, remeasurer
from netsummary._memory.step import estimate_memory
from netsummary._memory.verdict import FRAGMENTATION

from conftest import assert_unchanged, snapshot


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def _plan(model, size, batch, kind="train", data=None, **keywords):
    args = check_plan(model, kind, **keywords)
    measure = dict(kind=kind, optimizer="adamw")
    if data is None:
        est = estimate_memory(model, size, batch, **measure)
    else:
        est = estimate_memory(model, input_data=data, **measure)
    return est, plan_memory(model, est, remeasurer(model, size, data, batch, **measure), args,
                            measured_tokens(model, size, data))


def test_largest_batch_holds_when_measured_again():
    model = _mlp()
    before = snapshot(model)
    est, plan = _plan(model, (64,), 16, fits="8MiB")
    fit = plan.fit
    at = {b: estimate_memory(model, (64,), b, optimizer="adamw").peak.bytes for b in (16, 8)}
    assert plan.measured == ((16, at[16]), (8, at[8]))  # the user's batch, then half of it
    assert fit.peak_bytes == at[16] == est.peak.bytes
    # at these batches the peak is the optimizer step's (its temporaries), growing by only the inputs'
    # 64 × 4 = 256 B per sample; the backward's moment grows by 4,352 B per sample and sets the limit
    assert (at[16] - at[8]) / 8 == 256
    assert (fit.per_sample_bytes, fit.limit_phase) == (4352, "backward")
    b = fit.largest_batch
    assert b > 16
    # measured again at the answer and one past it: the first fits with its margin, the second does not
    below, above = (estimate_memory(model, (64,), n, optimizer="adamw").peak.bytes for n in (b, b + 1))
    assert below * (1 + FRAGMENTATION) <= 8 * 2**20 < above * (1 + FRAGMENTATION)
    assert_unchanged(before, model)


def test_sharded_activations_are_measured_at_the_per_rank_batch():
    model = _mlp()
    est, plan = _plan(model, (64,), 8, world_size=4, strategy="ddp")
    rank = estimate_memory(model, (64,), 2, optimizer="adamw")  # ⌈8 / 4⌉ = 2 per rank, measured on its own
    parts = dict(rank.peak_parts)
    sh = plan.sharded
    # DDP adds a constant (its buckets = the gradients) to every moment: the per-rank peak is the
    # rank run's peak + the gradients, and what is live besides the model's state is the same
    assert sh.rank_batch == 2 and sh.peak.bytes == rank.peak.bytes + est.gradients.bytes
    assert sh.activations.bytes == rank.peak.bytes - sum(
        parts[k] for k in ("parameters", "buffers", "gradients", "optimizer_state"))
    assert plan.fit is None and plan.kv_cache is None


def test_fsdp_transient_is_the_largest_unit_and_the_next():
    model = _mlp()
    est, plan = _plan(model, (64,), 8, world_size=4, strategy="fsdp")
    sh = plan.sharded
    assert sh.parameters.bytes == math.ceil(est.parameters.bytes / 4)
    # units: 0 = Linear(64, 256): (64*256 + 256) * 4 = 66,560 B; 2 = Linear(256, 256): 263,168 B;
    # 4 = Linear(256, 10): 10,280 B. Transient: 263,168 (largest) + 66,560 (prefetched) + 263,168 (its grads)
    assert sh.unit == "2" and sh.all_gathered.bytes == 263_168 + 66_560 + 263_168


def test_sharded_fit_is_per_rank():
    model = _mlp()
    _, plan = _plan(model, (64,), 8, world_size=2, strategy="ddp", fits="4MiB")
    sh, fit = plan.sharded, plan.fit
    assert fit.peak_bytes == sh.peak.bytes and fit.batch_size == 4
    assert [b for b, _ in fit.batches] == [4, 8]  # the per-rank batch and the whole batch, both measured


@pytest.mark.parametrize("kind", ["inference", "train"])
def test_decoder_context_against_a_run_at_that_context(kind):
    transformers = pytest.importorskip("transformers")
    from netsummary._memory.kvcache import kv_cache

    cfg = transformers.LlamaConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=100, max_position_embeddings=4096)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg)
    data = {"input_ids": torch.randint(0, 100, (2, 16))}
    _, plan = _plan(model, None, 2, kind=kind, data=data, context=512, fits="64MiB")
    fit = plan.fit
    assert fit.context == 512 and fit.context_limit == 4096 and fit.fits
    # the peak derived at 512 tokens from runs at 16 tokens, against a run at 512 tokens (SDPA attention:
    # linear in tokens; measured when written: 0.979 for inference, 0.994 for training)
    real = estimate_memory(model, input_data={"input_ids": torch.randint(0, 100, (2, 512))}, kind=kind).peak.bytes
    assert abs(fit.peak_bytes / real - 1) < 0.05
    assert fit.largest_context > 512
    if kind == "inference":
        # 2 layers × 2 × 2 kv-heads × 16 head-dim × 512 tokens × batch 2 × 4 B = 524,288
        assert plan.kv_cache.bytes == kv_cache(model, 512, 2).bytes == 524_288
        assert str(plan).startswith("KV cache (512 tokens, batch 2): 512.00 KiB  formula\n  2 layers × 2 × 2 kv-heads")
    else:
        assert plan.kv_cache is None  # a training step keeps no cache between steps
    assert all(len(line) <= 120 for line in str(plan).splitlines())


@pytest.mark.parametrize("keywords, match", [
    (dict(estimate=None, fits="8GiB"), "fits: needs estimate='train' or estimate='inference'"),
    (dict(estimate="train", context=128), "context and the KV cache apply to transformers decoder models.*got Sequential"),
    (dict(estimate="train", strategy="fsdp"), r"strategy='fsdp': needs world_size=N"),
    (dict(estimate="train", strategy="foo"), r"strategy: expected one of 'ddp', 'zero2', 'fsdp'.*got 'foo'"),
    (dict(estimate="train", world_size=0), "world_size: expected a positive int"),
    (dict(estimate="train", fits="8 gigs"), "fits: expected a size"),
], ids=["no-estimate", "context-not-decoder", "strategy-alone", "unknown-strategy-alone", "zero-world", "bad-fits"])
def test_bad_keywords(keywords, match):
    model = _mlp()
    before = snapshot(model)
    estimate = keywords.pop("estimate")
    with pytest.raises(InputSpecError, match=match):
        check_plan(model, estimate, **keywords)
    assert_unchanged(before, model)


# -- through summary() --------------------------------------------------------------------------------

def test_summary_puts_the_plan_on_s_memory_and_prints_it():
    from netsummary import summary

    model = _mlp()
    before = snapshot(model)
    printed = []
    s = summary(model, (64,), batch_size=16, estimate="train", fits="8MiB", world_size=2, strategy="zero2",
                print_fn=printed.append)
    plan = s.memory.plan
    assert plan.sharded.strategy == "zero2" and plan.sharded.rank_batch == 8
    assert plan.fit.batch_size == 8 and plan.fit.fits
    # the per-rank activations are those measured at batch 8 (an independent run of the same step)
    rank = estimate_memory(model, (64,), 8, optimizer="adamw")
    parts = dict(rank.peak_parts)
    assert plan.sharded.activations.bytes == rank.peak.bytes - sum(
        parts[k] for k in ("parameters", "buffers", "gradients", "optimizer_state"))
    [text] = printed
    assert "Per rank, zero2 on 2 ranks (batch 8 per rank of 16)" in text
    assert "Fits in 8.00 MiB on each rank: yes" in text and "largest batch per rank that fits" in text
    assert s.to_dict()["memory"]["plan"]["per_rank"]["strategy"] == "zero2"
    from netsummary import Summary

    loaded = Summary.from_dict(s.to_dict())  # the plan is written, not read back; the rest round-trips
    assert loaded == s and loaded.memory.plan is None
    assert_unchanged(before, model)


def test_summary_refuses_bad_plan_keywords_before_any_forward():
    from netsummary import summary

    calls = []
    model = _mlp()
    model.register_forward_hook(lambda *a: calls.append(1))
    before = snapshot(model)
    with pytest.raises(InputSpecError, match=r"fits: got 'cpu'; cpu memory has no fixed budget"):
        summary(model, (64,), estimate="train", fits="cpu", verbose=0)
    with pytest.raises(InputSpecError, match="fits: needs estimate='train' or estimate='inference'"):
        summary(model, (64,), fits="8GiB", verbose=0)
    assert calls == []
    assert_unchanged(before, model)


def test_a_forward_taking_context_still_gets_it_without_an_estimate():
    from netsummary import summary

    class CrossAttention(nn.Module):  # forward(x, context): a common name for the attended sequence
        def __init__(self):
            super().__init__()
            self.q = nn.Linear(8, 8)

        def forward(self, x, context=None):
            return self.q(x) + context.mean()

    s = summary(CrossAttention(), (8,), context=torch.ones(3), verbose=0)
    assert s.total_params == 72  # 8 * 8 + 8; the forward ran with the context it was given
    with pytest.raises(InputSpecError, match="context and the KV cache apply to transformers decoder models"):
        summary(CrossAttention(), (8,), estimate="inference", context=128, verbose=0)


def test_real_input_data_is_cut_to_the_second_batch():
    from netsummary import summary

    model = _mlp()
    s = summary(model, input_data=torch.randn(16, 64), estimate="train", fits="8MiB", verbose=0)
    at8 = estimate_memory(model, (64,), 8, optimizer="adamw").peak.bytes  # the first 8 rows, as generated inputs
    assert s.memory.plan.measured == ((16, s.memory.peak.bytes), (8, at8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fits_on_the_cuda_device_the_model_lives_on():
    from netsummary import summary

    model = _mlp().cuda()
    s = summary(model, (64,), batch_size=16, estimate="train", fits="cuda:0", verbose=0)
    fit = s.memory.plan.fit
    free, total = torch.cuda.mem_get_info(0)
    assert fit.capacity.device == "cuda:0" and fit.capacity.total_bytes == total
    assert fit.overheads[1].bytes == torch.backends.cuda.cublas_workspace_size()
    assert fit.fits and fit.largest_batch > 16
    assert "Fits in cuda:0 (" in str(s.memory.plan)


def test_per_rank_table_lines_stay_within_100_columns():
    """A long method note (DDP's buckets) continues on its own line under itself, never past 100
    columns; the bytes column is unchanged (DDP buckets = the gradients: 534.04 KiB =
    (256*512 + 512 + 512*10 + 10) * 4 bytes = 546,856 bytes)."""
    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 10))
    s = summary(model, (256,), batch_size=8, estimate="train", optimizer="adam", world_size=2, strategy="ddp",
                verbose=0)
    text = str(s.memory.plan)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert s.memory.plan.sharded.ddp_buckets.bytes == (256 * 512 + 512 + 512 * 10 + 10) * 4
    assert "  DDP buckets             534.04 KiB  = gradients: DDP copies them into buckets" in text
