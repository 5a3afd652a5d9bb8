"""The KV cache formula against the bytes of a real transformers DynamicCache, and by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from netsummary import InputSpecError, InputTypeError
from netsummary._memory.kvcache import decoder_config, kv_cache

transformers = pytest.importorskip("transformers")


def _cache_bytes(cache) -> int:
    """Bytes of the key and value tensors a DynamicCache holds (the independent measurement)."""
    return sum(t.numel() * t.element_size() for layer in cache.layers
               for t in (getattr(layer, "keys", None), getattr(layer, "values", None)) if t is not None)


def _tiny(cls, **extra):
    base = dict(num_hidden_layers=3, hidden_size=64, intermediate_size=64, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=100)
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(cls(**{**base, **extra})).eval()


def test_llama_formula_by_hand_and_against_a_real_dynamic_cache():
    model = _tiny(transformers.LlamaConfig)
    ids = torch.randint(0, 100, (3, 13))
    with torch.no_grad():
        cache = model(ids, use_cache=True).past_key_values
    kv = kv_cache(model, context=13, batch=3)
    # 3 layers × 2 (k, v) × 2 kv-heads × (64 / 4 = 16) head-dim × 13 tokens × batch 3 × 4 B (float32) = 29,952
    assert kv.bytes == 3 * 2 * 2 * 16 * 13 * 3 * 4 == 29_952
    assert _cache_bytes(cache) == kv.bytes
    assert kv.method == "formula"
    assert kv.formula == "3 layers × 2 × 2 kv-heads × 16 head-dim × 13 tokens × batch 3 × 4 B = 29,952 B (29.25 KiB)"


def test_context_scales_the_cache_as_generate_fills_it():
    model = _tiny(transformers.LlamaConfig)
    ids = torch.randint(0, 100, (2, 5))
    out = model.generate(ids, max_new_tokens=4, do_sample=False, return_dict_in_generate=True, pad_token_id=0)
    # generate feeds 5 prompt tokens, then 3 generated ones (the 4th is never fed back): 8 cached
    kv = kv_cache(model, context=5, batch=2)
    assert _cache_bytes(out.past_key_values) == kv.at(8) == 3 * 2 * 2 * 16 * 8 * 2 * 4  # 12,288
    assert kv.bytes_per_token == 3 * 2 * 2 * 16 * 4  # 768 B per token per sequence


def test_sliding_window_layers_keep_window_minus_one_tokens():
    # Gemma2 alternates sliding (window 8) and full attention; head_dim 32 given explicitly
    model = _tiny(transformers.Gemma2Config, num_hidden_layers=4, head_dim=32, sliding_window=8)
    ids = torch.randint(0, 100, (3, 13))
    with torch.no_grad():
        cache = model(ids, use_cache=True).past_key_values
    kv = kv_cache(model, context=13, batch=3)
    # 2 sliding layers × 2 × 2 × 32 × min(13, 8 − 1) = 7 tokens + 2 full layers × 2 × 2 × 32 × 13, × 3 × 4 B
    assert kv.bytes == (2 * 2 * 2 * 32 * 7 + 2 * 2 * 2 * 32 * 13) * 3 * 4 == 61_440
    assert _cache_bytes(cache) == kv.bytes
    assert "min(13, window 8 − 1) = 7 tokens" in kv.formula


def test_gpt2_reads_heads_from_its_own_config_names():
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100, n_positions=64)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        cache = model(torch.randint(0, 100, (1, 9)), use_cache=True).past_key_values
    # 2 layers × 2 × 4 heads (no GQA) × (32 / 4 = 8) head-dim × 9 tokens × batch 1 × 4 B = 4,608
    assert kv_cache(model, 9).bytes == 4_608 == _cache_bytes(cache)


def test_dtype_follows_the_model_or_is_given():
    model = _tiny(transformers.LlamaConfig).to(torch.bfloat16)
    assert kv_cache(model, 10).dtype_bytes == 2
    assert kv_cache(model.config, 10, dtype_bytes=1).bytes == 3 * 2 * 2 * 16 * 10 * 1


@pytest.mark.parametrize("thing, match", [
    (nn.Linear(4, 4), "got Linear, which has no transformers config"),
    (transformers.BertConfig(num_hidden_layers=1, hidden_size=16, num_attention_heads=2, intermediate_size=16),
     r"got BertConfig, a bidirectional encoder \(bert, is_decoder=False\)"),
    (transformers.T5Config(num_layers=1, d_model=16, num_heads=2, d_ff=16), "an encoder-decoder model"),
], ids=["plain-module", "bert", "t5"])
def test_not_a_decoder_is_refused(thing, match):
    with pytest.raises(InputSpecError, match=match):
        decoder_config(thing)


def test_bad_context():
    cfg = transformers.LlamaConfig(num_hidden_layers=1, hidden_size=16, num_attention_heads=2)
    with pytest.raises(InputSpecError, match="context: expected a positive int, got 0"):
        kv_cache(cfg, 0)
    with pytest.raises(InputTypeError, match=r"context: expected a positive int, got '1k' \(str\)"):
        kv_cache(cfg, "1k")
