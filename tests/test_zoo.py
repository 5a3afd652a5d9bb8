"""Real-model zoo: netsummary against independent totals (torchvision, transformers).

Expected numbers never come from netsummary itself: torchvision's published
``weights.meta["num_params"]`` and ``len(weights.meta["categories"])``,
transformers' ``model.num_parameters()`` and config sizes, and
``sum(p.numel() for p in model.parameters())``.

Every test also checks that the summary leaves the model as it found it (conftest's
:func:`snapshot` / :func:`assert_unchanged`).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo
from conftest import assert_unchanged, snapshot
from netsummary import ForwardError, summary
from netsummary._reporting.render import classic_entries

pytestmark = pytest.mark.zoo

# The documented contract of summary(): batch_size=-1 runs a batch of 2 and shows it as -1.
RUN_BATCH = 2

def test_state_helper_detects_changes() -> None:
    """The helper is not vacuous: a raw train-mode forward, a flag, a hook or the RNG is noticed."""
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).train()
    changes = [
        lambda: model(torch.randn(5, 3)),  # BatchNorm running stats (and the RNG)
        lambda: model[1].eval(),
        lambda: model[0].weight.requires_grad_(False),
        lambda: model[0].register_forward_hook(lambda *a: None),
        lambda: torch.rand(1),
    ]
    for change in changes:
        before = snapshot(model)
        change()
        with pytest.raises(AssertionError):
            assert_unchanged(before, model)


def assert_rows_reconcile(s) -> None:
    """Leaf rows (each shared parameter once) plus the "other" groups add up to the total, and
    so do the classic table's rows (own-parameter rows of called containers in place) plus its
    trailing never-called groups; no called module's parameters trail the table."""
    rows = sum(r.params - r.shared_params for r in s.leaf_layers if not r.created)
    others = sum(g.params for g in s.other_params)
    assert rows + others == s.total_params
    entries, trailing = classic_entries(s)
    shown = sum(params - shared for r, params, shared in entries if not r.created)
    assert shown + sum(g.params for g in trailing) == s.total_params
    assert not [g.name for g in trailing if g.called]


def root(s):
    (r,) = [r for r in s.layers if r.parent is None]
    assert r.name == "" and r.depth == 0 and r.index == 0
    return r


# ------------------------------------------------------------------ torchvision, on meta

VISION = zoo.vision_cases()


def _num_classes(case: zoo.VisionCase) -> int:
    import torchvision

    weights = torchvision.models.get_model_weights(case.model_name)[case.weights_name]
    categories = weights.meta.get("categories")
    return len(categories) if categories else 1000


@pytest.mark.parametrize("case", VISION, ids=lambda c: c.id)
def test_vision_meta(case: zoo.VisionCase) -> None:
    model = case.build(device="meta")
    before = snapshot(model)

    s = summary(model, case.input_size, verbose=0)

    assert_unchanged(before, model)
    assert s.device == "meta"
    assert s.total_params == case.num_params  # torchvision's published number
    assert s.total_params == zoo.count_params(model)
    assert s.trainable_params + s.non_trainable_params == s.total_params
    assert (s.batch_size, s.run_batch_size) == (-1, RUN_BATCH)
    assert root(s).output_shapes == (RUN_BATCH, _num_classes(case))
    assert_rows_reconcile(s)
    assert f"Total params: {case.num_params:,}" in str(s)


# ------------------------------------------------------------------ torchvision, real values on CPU

_CPU_VISION_IDS = ("resnet18-IMAGENET1K_V1", "mobilenet_v3_small-IMAGENET1K_V1", "squeezenet1_1-IMAGENET1K_V1")
CPU_VISION = [c for c in VISION if c.id in _CPU_VISION_IDS]


def test_cpu_vision_cases_exist() -> None:
    assert sorted(c.id for c in CPU_VISION) == sorted(_CPU_VISION_IDS)


@pytest.mark.parametrize("mode", ["eval", "train", "same"])
@pytest.mark.parametrize("case", CPU_VISION, ids=lambda c: c.id)
def test_vision_cpu_values_untouched(case: zoo.VisionCase, mode: str) -> None:
    """A model left in train mode; mode="train"/"same" run BatchNorm in training (running stats
    and num_batches_tracked move during the forward) and must be restored bit for bit."""
    model = case.build("cpu").train()
    before = snapshot(model)
    assert all(flag for _, flag in before["training"])
    assert all(p.grad is None for p in model.parameters())

    s = summary(model, case.input_size, mode=mode, verbose=0)

    assert_unchanged(before, model)
    assert all(p.grad is None for p in model.parameters())
    assert s.device == "cpu" and s.mode == mode
    assert s.total_params == case.num_params
    assert s.trainable_params == case.num_params and s.non_trainable_params == 0
    assert root(s).output_shapes == (RUN_BATCH, _num_classes(case))
    assert_rows_reconcile(s)


# ------------------------------------------------------------------ transformers, on CPU

TRANSFORMERS = zoo.transformers_cases()


def _expected_root_shapes(model: nn.Module, data: dict) -> dict[str, tuple[int, ...]]:
    """The main output fields' shapes from the config and the inputs (not from netsummary)."""
    cfg = model.config
    batch = next(iter(data.values())).shape[0]
    if "pixel_values" in data:  # ViT: one token per patch plus [CLS]
        seq = (cfg.image_size // cfg.patch_size) ** 2 + 1
    else:
        seq = data.get("decoder_input_ids", data["input_ids"]).shape[1]
    if hasattr(model, "lm_head"):
        return {"logits": (batch, seq, cfg.vocab_size)}
    return {"last_hidden_state": (batch, seq, cfg.hidden_size)}


def _real_output_shapes(model: nn.Module, data: dict) -> dict:
    """The model's own output, run here (eval, no grad), as {field: shape} for tensor fields."""
    model.eval()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        out = model(**data)
    return {k: tuple(v.shape) for k, v in out.items() if isinstance(v, torch.Tensor)}


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("case", TRANSFORMERS, ids=lambda c: c.id)
def test_transformers_cpu(case: zoo.TransformersCase, mode: str) -> None:
    model, data = case.build()
    model.train()
    expected_total = case.expected_num_params(model)
    assert expected_total == zoo.count_params(model)
    data_before = {k: v.clone() for k, v in data.items()}
    before = snapshot(model)

    s = summary(model, input_data=data, mode=mode, verbose=0)  # train: dropout draws from the RNG

    assert_unchanged(before, model)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(data[k], v) for k, v in data_before.items())
    assert s.total_params == expected_total
    assert s.trainable_params + s.non_trainable_params == s.total_params
    assert_rows_reconcile(s)
    assert f"Total params: {expected_total:,}" in str(s)

    out = root(s).output_shapes
    assert isinstance(out, dict), out
    for key, shape in _expected_root_shapes(model, data).items():
        assert key in out, (key, list(out))
        assert out[key] == shape
    # every tensor field of the real output, with its shape (non-tensor fields may be extra)
    real = _real_output_shapes(model, data)
    assert {k: v for k, v in out.items() if isinstance(v, tuple)} == real


def test_gpt2_tied_embeddings_counted_once() -> None:
    (case,) = [c for c in TRANSFORMERS if c.id == "gpt2-tied"]
    model, data = case.build()
    wte = model.transformer.wte.weight
    untied = sum(p.numel() for m in model.modules() for p in m.parameters(recurse=False))  # counts wte twice
    assert untied == case.expected_num_params(model) + wte.numel()

    s = summary(model, input_data=data, verbose=0)

    assert s.total_params == case.expected_num_params(model)
    (lm_head,) = [r for r in s.leaf_layers if r.name == "lm_head"]
    assert lm_head.params == wte.numel()
    assert lm_head.shared_params == wte.numel()  # already shown in the wte row
    assert s.shared_params == wte.numel()


# ------------------------------------------------------------------ device="meta" on a CPU model


def _gpt2_case() -> zoo.TransformersCase:
    (case,) = [c for c in TRANSFORMERS if c.id == "gpt2-tied"]
    return case


def test_gpt2_cpu_model_summarized_on_meta() -> None:
    case = _gpt2_case()
    model, data = case.build()
    # An explicit attention_mask: without one, transformers' packed-sequence check
    # (masking_utils.find_packed_sequence_indices) calls .all() on a tensor, which no meta
    # forward can do (see test_gpt2_on_meta_without_attention_mask).
    data["attention_mask"] = torch.ones_like(data["input_ids"])
    before = snapshot(model)

    on_cpu = summary(model, input_data=data, verbose=0)
    assert_unchanged(before, model)
    on_meta = summary(model, input_data=data, device="meta", verbose=0)
    assert_unchanged(before, model)

    assert on_meta.device == "meta" and on_cpu.device == "cpu"
    assert all(t.device.type == "cpu" for t in model.state_dict().values())
    assert all(v.device.type == "cpu" for v in data.values())
    assert on_meta.total_params == on_cpu.total_params == case.expected_num_params(model)
    assert on_meta.trainable_params == on_cpu.trainable_params
    assert on_meta.param_bytes == on_cpu.param_bytes
    assert on_meta.shared_params == on_cpu.shared_params
    assert_rows_reconcile(on_meta)
    assert root(on_meta).output_shapes == root(on_cpu).output_shapes
    assert root(on_meta).output_shapes["logits"] == _expected_root_shapes(model, data)["logits"]
    assert [(r.name, r.output_shapes) for r in on_meta.layers] == [(r.name, r.output_shapes) for r in on_cpu.layers]


def test_gpt2_on_meta_without_attention_mask() -> None:
    """A data-dependent check in the model cannot run on meta: either it works, or a ForwardError
    says so; the CPU model is untouched in both cases."""
    case = _gpt2_case()
    model, data = case.build()
    before = snapshot(model)
    try:
        s = summary(model, input_data=data, device="meta", verbose=0)
    except ForwardError as err:
        assert "meta" in str(err)
        assert err.__cause__ is not None
        assert err.partial is not None and not err.partial.complete
    else:
        assert s.total_params == case.expected_num_params(model)
        assert root(s).output_shapes["logits"] == _expected_root_shapes(model, data)["logits"]
    assert_unchanged(before, model)
