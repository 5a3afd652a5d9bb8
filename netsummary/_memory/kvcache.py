"""The KV cache of a ``transformers`` decoder model: bytes at a given context and batch, by formula.

Every attention layer that caches keys and values holds two tensors of shape
``(batch, kv_heads, tokens, head_dim)``, so the cache is

    Σ over caching layers of  2 × kv_heads × head_dim × tokens × batch × dtype bytes

where ``tokens`` is the context for a full-attention layer and ``min(context, window − 1)`` for a
sliding-window layer: transformers' ``DynamicSlidingWindowLayer`` keeps the last ``window − 1``
tokens between forwards (``transformers/cache_utils.py``). For a model whose layers are all alike
this is the familiar ``layers × 2 × kv-heads × head-dim × context × batch × dtype bytes``.

Figures come from the model's config (method ``"formula"``), read as transformers itself reads it
to build a ``DynamicCache``: ``num_hidden_layers``, ``num_key_value_heads`` (default:
``num_attention_heads``, i.e. no grouped-query attention), ``head_dim`` (default: ``hidden_size //
num_attention_heads``), and per layer ``layer_types`` / ``sliding_window`` through
``transformers.cache_utils.get_layer_types_and_kwargs``. The test suite checks them against the
bytes of a real ``DynamicCache`` filled by a forward with ``use_cache=True``.

>>> from transformers import LlamaConfig
>>> cfg = LlamaConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2)
>>> kv = kv_cache(cfg, context=1024, batch=1, dtype_bytes=2)   # 2 layers × 2 × 2 heads × 16 × 1,024 × 1 × 2 B
>>> kv.bytes, kv.bytes_per_token
(262144, 256)
>>> print(kv.formula)
2 layers × 2 × 2 kv-heads × 16 head-dim × 1,024 tokens × batch 1 × 2 B = 262,144 B (256.00 KiB)

Raises :class:`~netsummary._errors.InputSpecError` for a model or config that is not a
transformers decoder (an encoder such as BERT, an encoder-decoder such as T5, a plain module), and
for a context or batch that is not a positive int (:class:`~netsummary._errors.InputTypeError`
for the wrong type).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._errors import InputSpecError, InputTypeError
from .._units import format_bytes

__all__ = ["KVCache", "decoder_config", "kv_cache"]

# layer types of transformers' cache whose tensors are (batch, kv_heads, tokens, head_dim) keys and values
_ATTENTION = {"full_attention": False, "sliding_attention": True, "chunked_attention": True}
_EMPTY = {"dummy"}  # layers that cache nothing (MoE/MLP-only layers, KV-sharing consumers)


@dataclass(frozen=True, slots=True)
class KVCache:
    """The KV cache of one decoder at ``context`` tokens and ``batch`` sequences (method: formula).

    ``layers`` holds one ``(kv_heads, head_dim, window)`` per caching layer, ``window`` ``None``
    for full attention. ``bytes`` is the whole cache; ``bytes_per_token`` what one more token of
    context adds for one sequence while no sliding window is full (the full-attention layers only
    once every window is full). All sizes in bytes.
    """

    context: int
    batch: int
    dtype_bytes: int
    layers: tuple[tuple[int, int, int | None], ...]
    model_type: str = ""
    method: str = "formula"

    @property
    def bytes(self) -> int:
        """``Σ 2 × kv_heads × head_dim × tokens × batch × dtype_bytes`` over the caching layers."""
        return self.at(self.context, self.batch)

    @property
    def bytes_per_token(self) -> int:
        """Bytes one token adds for one sequence, counting every caching layer (full and windowed)."""
        return sum(2 * h * d for h, d, _ in self.layers) * self.dtype_bytes

    def at(self, context: int, batch: int | None = None) -> int:
        """The cache's bytes at another ``context`` (tokens) and ``batch`` (default: this one)."""
        batch = self.batch if batch is None else batch
        total = 0
        for heads, dim, window in self.layers:
            tokens = context if window is None else min(context, max(window - 1, 0))
            total += 2 * heads * dim * tokens
        return total * batch * self.dtype_bytes

    @property
    def formula(self) -> str:
        """The arithmetic, e.g. ``22 layers × 2 × 4 kv-heads × 64 head-dim × 2,048 tokens × batch 1 × 2 B = ...``;
        one term per group of alike layers."""
        groups: dict[tuple[int, int, int | None], int] = {}
        for layer in self.layers:
            groups[layer] = groups.get(layer, 0) + 1
        terms = []
        for (heads, dim, window), n in groups.items():
            if window is None:
                tokens = f"{self.context:,} tokens"
            else:
                tokens = f"min({self.context:,}, window {window:,} − 1) = {min(self.context, max(window - 1, 0)):,} tokens"
            terms.append(f"{n} layer{'s' * (n != 1)} × 2 × {heads} kv-heads × {dim} head-dim × {tokens}")
        total = self.bytes
        shown = f"{total:,} B" + (f" ({format_bytes(total)})" if total >= 1024 else "")
        if not terms:
            return f"no caching layers = {shown}"
        body = terms[0] if len(terms) == 1 else "[" + " + ".join(f"({t})" for t in terms) + "]"
        return f"{body} × batch {self.batch:,} × {self.dtype_bytes} B = {shown}"


def decoder_config(model_or_config: Any) -> Any:
    """The decoder's text config of a transformers decoder model (or of its config).

    A decoder is a ``transformers`` model whose config is not encoder-decoder, is not a
    bidirectional encoder (configs that carry ``is_decoder``, such as BERT's, must set it), and
    whose model type has a causal-LM class (``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES``) or whose model
    can generate.

    Raises:
        InputSpecError: anything else, saying what was expected and what was received.
    """
    config = getattr(model_or_config, "config", model_or_config)
    got = type(model_or_config).__name__
    expected = ("context and the KV cache apply to transformers decoder models (a causal LM such as "
                "LlamaForCausalLM or GPT2LMHeadModel, or its config)")
    try:
        from transformers import PreTrainedConfig
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    except ImportError:  # without transformers no model can be a transformers decoder
        raise InputSpecError(f"{expected}; got {got} (transformers is not installed)", model_or_config) from None
    if not isinstance(config, PreTrainedConfig):
        raise InputSpecError(f"{expected}; got {got}, which has no transformers config", model_or_config)
    if config.is_encoder_decoder:
        raise InputSpecError(f"{expected}; got {got}, an encoder-decoder model ({config.model_type})", model_or_config)
    if not getattr(config, "is_decoder", True):
        raise InputSpecError(f"{expected}; got {got}, a bidirectional encoder ({config.model_type}, "
                             "is_decoder=False)", model_or_config)
    can_generate = getattr(model_or_config, "can_generate", None)
    causal = config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or (callable(can_generate) and can_generate())
    if not causal:
        raise InputSpecError(f"{expected}; got {got} ({config.model_type}), which has no causal-LM class",
                             model_or_config)
    return config.get_text_config(decoder=True)


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputTypeError(f"{name}: expected a positive int, got {value!r} ({type(value).__name__})", value)
    if value < 1:
        raise InputSpecError(f"{name}: expected a positive int, got {value}", value)
    return value


def kv_cache(model_or_config: Any, context: int, batch: int = 1, dtype_bytes: int | None = None) -> KVCache:
    """The KV cache of a transformers decoder at ``context`` tokens for ``batch`` sequences.

    ``dtype_bytes``: bytes per cached element; default: the model's first floating parameter's
    (keys and values are the projections' outputs), else the config's ``dtype``, else float32.
    Pass 2 for a bfloat16 cache under autocast.

    Raises:
        InputSpecError: not a transformers decoder (see :func:`decoder_config`), a layer type
            whose cache is not keys and values (linear attention, convolution states, compressed
            attention), or ``context`` / ``batch`` below 1.
        InputTypeError: ``context`` or ``batch`` not an int.
    """
    config = decoder_config(model_or_config)
    context, batch = _positive("context", context), _positive("batch", batch)
    from transformers.cache_utils import get_layer_types_and_kwargs

    types, kwargs = get_layer_types_and_kwargs(config)
    layers = []
    for i, (kind, layer_config, extra) in enumerate(zip(types, config.per_layer_config, kwargs)):
        if kind in _EMPTY:
            continue
        if kind not in _ATTENTION:
            raise InputSpecError(f"layer {i} of {config.model_type} caches {kind!r} states; the KV cache formula "
                                 f"covers {', '.join(_ATTENTION)} layers", kind)
        heads = getattr(layer_config, "num_attention_heads")
        kv_heads = getattr(layer_config, "num_key_value_heads", None) or heads
        head_dim = getattr(layer_config, "head_dim", None) or layer_config.hidden_size // heads
        window = extra.get("sliding_window") if _ATTENTION[kind] else None
        layers.append((int(kv_heads), int(head_dim), None if window is None else int(window)))
    if dtype_bytes is None:
        dtype_bytes = _dtype_bytes(model_or_config, config)
    return KVCache(context, batch, int(dtype_bytes), tuple(layers), config.model_type)


def _dtype_bytes(model_or_config: Any, config: Any) -> int:
    import torch

    params = getattr(model_or_config, "parameters", None)
    if callable(params):
        for p in params():
            if p.is_floating_point():
                return p.element_size()
    dtype = getattr(config, "dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype.itemsize if isinstance(dtype, torch.dtype) else 4
