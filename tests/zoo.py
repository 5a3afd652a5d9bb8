"""Model builders for the real-model ("zoo") test suite.

This module does not import netsummary; it only knows how to build models and
what their published totals are, so tests can compare netsummary against an
independent source.

torchvision
    ``vision_cases()`` lists every weights entry of every classification model
    in ``torchvision.models.list_models(module=torchvision.models)``.
    ``VisionCase.build()`` calls ``torchvision.models.get_model(name,
    weights=W)``, so the builder overrides its kwargs from the weights exactly
    as it would for a real user (``num_classes``, ``image_size=518`` for
    ``vit_h_14``/SWAG_E2E, ``aux_logits`` handling of googlenet/inception_v3,
    ...).  No download happens because, inside ``_no_weight_download()``,
    ``WeightsEnum.get_state_dict`` returns ``{}`` and ``nn.Module.load_state_dict``
    is a no-op (RegNet's width helper is also pinned to CPU, see
    ``_no_weight_download``); all are restored in a ``finally``.  The model is
    constructed under ``with torch.device(device)``, so the default ``"meta"``
    allocates nothing (all 115 cases build in roughly 10-20 s together).

    ``input_size`` is ``(3, crop, crop)`` with ``crop`` taken from
    ``weights.transforms().crop_size``: the eval resolution the weights were
    validated at and the one torchvision's ``_ops`` were measured at.
    ``meta["min_size"]`` is only the smallest input the architecture accepts,
    not a published resolution.  ``gflops`` is ``meta["_ops"]``; torchvision
    calls it GFLOPS but it counts multiply-accumulates (GMACs) for batch 1,
    rounded to 3 decimals, so compare with a tolerance.

transformers
    ``transformers_cases()`` builds a few architectures from tiny configs on CPU
    (random init; nothing is downloaded or read from disk) and ready input data
    (batch 2, token ids within the vocabulary).  The expected total is
    ``model.num_parameters()`` (see ``TransformersCase.expected_num_params``).

Random init and input data never disturb the global RNG: construction runs in
``torch.random.fork_rng`` and inputs come from a local ``torch.Generator``.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

__all__ = [
    "VisionCase",
    "TransformersCase",
    "vision_cases",
    "transformers_cases",
    "count_params",
]


def count_params(model: nn.Module) -> int:
    """Total parameters, each shared parameter counted once."""
    return sum(p.numel() for p in model.parameters())


@contextlib.contextmanager
def _no_weight_download() -> Iterator[None]:
    """Make torchvision builders skip fetching and loading the state dict.

    Also runs RegNet's ``BlockParams.from_init_params`` on CPU: it derives the
    stage widths with tensor ops and ``.tolist()`` in the builder (before any
    module exists), which fails under ``torch.device("meta")``.  Everything
    patched here is restored in the ``finally``.
    """
    from torchvision.models import regnet
    from torchvision.models._api import WeightsEnum

    saved_get = WeightsEnum.__dict__["get_state_dict"]
    saved_load = nn.Module.__dict__["load_state_dict"]
    saved_widths = regnet.BlockParams.__dict__["from_init_params"]  # a classmethod

    def empty_state_dict(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {}

    def no_load(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        return nn.modules.module._IncompatibleKeys([], [])

    def widths_on_cpu(cls: type, *args: Any, **kwargs: Any) -> Any:
        with torch.device("cpu"):
            return saved_widths.__func__(cls, *args, **kwargs)

    WeightsEnum.get_state_dict = empty_state_dict  # type: ignore[method-assign]
    nn.Module.load_state_dict = no_load  # type: ignore[method-assign]
    regnet.BlockParams.from_init_params = classmethod(widths_on_cpu)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        WeightsEnum.get_state_dict = saved_get  # type: ignore[method-assign]
        nn.Module.load_state_dict = saved_load  # type: ignore[method-assign]
        regnet.BlockParams.from_init_params = saved_widths  # type: ignore[method-assign]


@dataclass(frozen=True)
class VisionCase:
    id: str  # "<model_name>-<weights_name>", e.g. "resnet18-IMAGENET1K_V1"
    model_name: str
    weights_name: str
    input_size: tuple[int, int, int]  # (3, H, W) from weights.transforms().crop_size
    num_params: int  # weights.meta["num_params"]
    gflops: float | None  # weights.meta["_ops"]: GMACs at input_size, batch 1

    def build(self, device: str = "meta") -> nn.Module:
        """The model exactly as ``get_model(name, weights=W)`` builds it, no weights loaded."""
        import torchvision

        weights = torchvision.models.get_model_weights(self.model_name)[self.weights_name]
        with torch.random.fork_rng(devices=[]), torch.device(device), _no_weight_download():
            return torchvision.models.get_model(self.model_name, weights=weights)


@functools.lru_cache(maxsize=None)
def _vision_cases() -> tuple[VisionCase, ...]:
    import torchvision
    from torchvision.models import get_model_weights, list_models

    cases = []
    for name in list_models(module=torchvision.models):
        for weights in get_model_weights(name):
            crop = list(weights.transforms().crop_size)
            h, w = (crop[0], crop[0]) if len(crop) == 1 else (crop[0], crop[1])
            ops = weights.meta.get("_ops")
            cases.append(
                VisionCase(
                    id=f"{name}-{weights.name}",
                    model_name=name,
                    weights_name=weights.name,
                    input_size=(3, int(h), int(w)),
                    num_params=int(weights.meta["num_params"]),
                    gflops=None if ops is None else float(ops),
                )
            )
    return tuple(cases)


def vision_cases() -> list[VisionCase]:
    """Every weights entry of every classification model in torchvision.models."""
    return list(_vision_cases())


# ---------------------------------------------------------------- transformers


@dataclass(frozen=True)
class TransformersCase:
    id: str
    _factory: Callable[[], tuple[nn.Module, dict[str, torch.Tensor]]]

    def build(self) -> tuple[nn.Module, dict[str, torch.Tensor]]:
        """A fresh (model, input_data) pair; call as ``model(**input_data)``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # deterministic init; global state restored on exit
            return self._factory()

    @staticmethod
    def expected_num_params(model: nn.Module) -> int:
        """The independent expected total: transformers' own ``num_parameters()``."""
        return int(model.num_parameters())  # type: ignore[operator]


_VOCAB, _SEQ, _BATCH = 100, 8, 2


def _ids(gen: torch.Generator, seq: int = _SEQ) -> torch.Tensor:
    return torch.randint(0, _VOCAB, (_BATCH, seq), generator=gen)


def _bert() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=_VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=37, max_position_embeddings=64, attn_implementation="eager")
    gen = torch.Generator().manual_seed(0)
    ids = _ids(gen)
    return BertModel(cfg), {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _gpt2() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=_VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=_VOCAB - 1,
                     eos_token_id=_VOCAB - 1, tie_word_embeddings=True, use_cache=False, attn_implementation="eager")
    model = GPT2LMHeadModel(cfg)
    assert model.lm_head.weight is model.transformer.wte.weight, "GPT-2 embeddings must be tied"
    return model, {"input_ids": _ids(torch.Generator().manual_seed(0))}


def _t5() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(vocab_size=_VOCAB, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_decoder_layers=2,
                   num_heads=4, use_cache=False, attn_implementation="eager")
    gen = torch.Generator().manual_seed(0)
    return T5ForConditionalGeneration(cfg), {"input_ids": _ids(gen), "decoder_input_ids": _ids(gen, 5)}


def _vit() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    from transformers import ViTConfig, ViTModel

    cfg = ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=2, intermediate_size=37, attn_implementation="eager")
    pixels = torch.randn(_BATCH, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return ViTModel(cfg), {"pixel_values": pixels}


def _llama() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=_VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      use_cache=False, attn_implementation="eager")
    return LlamaForCausalLM(cfg), {"input_ids": _ids(torch.Generator().manual_seed(0))}


def transformers_cases() -> list[TransformersCase]:
    """Tiny BERT, GPT-2 (tied lm_head), T5 (tied), ViT and Llama (GQA), built on CPU."""
    return [
        TransformersCase("bert", _bert),
        TransformersCase("gpt2-tied", _gpt2),
        TransformersCase("t5", _t5),
        TransformersCase("vit", _vit),
        TransformersCase("llama", _llama),
    ]
