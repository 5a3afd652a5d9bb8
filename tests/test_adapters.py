"""PEFT adapters (netsummary._analysis.adapters): trainable share and parameters by adapter name,
checked against peft's own get_nb_trainable_parameters() on several peft configs."""

from __future__ import annotations

import warnings

import pytest
import torch

from netsummary import InputSpecError, Summary, summary

pytestmark = pytest.mark.zoo


def _tiny_llama():
    tf = pytest.importorskip("transformers")
    warnings.filterwarnings("ignore")
    cfg = tf.LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(0)
    return tf.LlamaForCausalLM(cfg)


def _check_against_peft(pm, s: Summary) -> None:
    trainable, total = pm.get_nb_trainable_parameters()  # peft's own count: the independent source
    assert (s.trainable_params, s.total_params) == (trainable, total)
    assert f"trainable: {100 * trainable / total:.2f}% ({trainable:,} of {total:,} params)" in str(s)


def test_lora_on_attention() -> None:
    peft = pytest.importorskip("peft")
    pm = peft.get_peft_model(_tiny_llama(), peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    s = summary(pm, (8,), dtypes=[torch.long], verbose=0)
    _check_against_peft(pm, s)
    # r = 4 on q (32 -> 32) and v (32 -> 16) of 2 layers: 2 * (4*32 + 32*4 + 4*32 + 16*4) = 896
    (a,) = s.adapters
    assert (a.name, a.params, a.trainable_params, a.active, a.peft_type) == ("default", 896, 896, True, "LORA")
    assert s.trainable_params == 896 and "Base model: 24,992 params, frozen" in str(s)
    assert "Adapter 'default' (LORA, active)" in s.render("tree", depth=0)
    assert Summary.from_json(s.to_json()) == s


def test_lora_with_modules_to_save() -> None:
    peft = pytest.importorskip("peft")
    pm = peft.get_peft_model(_tiny_llama(), peft.LoraConfig(r=2, target_modules=["q_proj"],
                                                            modules_to_save=["lm_head"]))
    s = summary(pm, (8,), dtypes=[torch.long], verbose=0)
    _check_against_peft(pm, s)
    # q_proj LoRA 2 * (2*32 + 32*2) = 256, plus the trainable copy of lm_head 32*100 = 3,200
    assert [(a.name, a.params, a.trainable_params) for a in s.adapters] == [("default", 3456, 3456)]
    assert s.trainable_params == 3456


def test_prefix_tuning() -> None:
    peft = pytest.importorskip("peft")
    pm = peft.get_peft_model(_tiny_llama(), peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5))
    try:
        s = summary(pm, (8,), dtypes=[torch.long], verbose=0)
    except Exception as e:  # pragma: no cover - depends on peft / transformers versions
        pytest.skip(f"prefix tuning's forward does not run here: {e}")
    _check_against_peft(pm, s)
    # the prompt encoder's embedding: 5 virtual tokens * (2 layers * 2 (key, value) * 2 kv heads * 8) = 320
    assert [(a.name, a.params, a.peft_type) for a in s.adapters] == [("default", 320, "PREFIX_TUNING")]


def test_two_named_adapters() -> None:
    peft = pytest.importorskip("peft")
    pm = peft.get_peft_model(_tiny_llama(), peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    pm.add_adapter("second", peft.LoraConfig(r=2, target_modules=["q_proj"]))
    s = summary(pm, (8,), dtypes=[torch.long], verbose=0)
    _check_against_peft(pm, s)
    by_name = {n: sum(p.numel() for k, p in pm.named_parameters() if f".{n}." in k or k.endswith(f".{n}"))
               for n in ("default", "second")}  # independent: parameter names peft gives
    assert {a.name: a.params for a in s.adapters} == by_name == {"default": 896, "second": 256}
    assert {a.name: a.active for a in s.adapters} == {"default": True, "second": False}


def test_peft_model_without_adapters_is_refused_unchanged() -> None:
    peft = pytest.importorskip("peft")
    pm = peft.get_peft_model(_tiny_llama(), peft.LoraConfig(r=4, target_modules=["q_proj"]))
    pm.delete_adapter("default")
    before = {k: v.clone() for k, v in pm.state_dict().items()}
    with pytest.raises(InputSpecError, match=r"PeftModel is a PEFT model without adapters.*"
                                             r"summary\(model.unload\(\), \.\.\.\)"):
        summary(pm, (8,), dtypes=[torch.long], verbose=0)
    after = pm.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    # the way out the message names: the base model without the adapter layers, 24,992 params
    base = summary(pm.unload(), (8,), dtypes=[torch.long], verbose=0)
    assert (base.adapters, base.total_params) == ((), 24_992)


def test_disabled_adapter_is_shown_disabled() -> None:
    peft = pytest.importorskip("peft")
    pm = peft.get_peft_model(_tiny_llama(), peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with pm.disable_adapter():  # peft switches every LoRA layer off: the forward runs the base model
        s = summary(pm, (8,), dtypes=[torch.long], verbose=0)
        _check_against_peft(pm, s)
    # the same 896 LoRA elements as test_lora_on_attention, none run
    (a,) = s.adapters
    assert (a.name, a.params, a.active, a.disabled) == ("default", 896, False, True)
    assert f"Adapter 'default' (LORA, disabled): 896 params, {a.trainable_params:,} trainable" in str(s)
    assert "Adapter 'default' (LORA, disabled)" in s.render("tree", depth=0)
    assert s.to_dict()["adapters"][0]["disabled"] is True and Summary.from_json(s.to_json()) == s
    # out of the context peft enables it again, and so does the summary
    (a,) = summary(pm, (8,), dtypes=[torch.long], verbose=0).adapters
    assert (a.active, a.disabled) == (True, False)
    assert "disabled" not in summary(pm, verbose=0).to_dict()["adapters"][0]  # written only when true
    # the tuner's own switch, without the context manager
    pm.base_model.disable_adapter_layers()
    assert [(a.active, a.disabled) for a in summary(pm, verbose=0).adapters] == [(False, True)]
    pm.base_model.enable_adapter_layers()


def test_disabled_prompt_learning_adapter() -> None:
    peft = pytest.importorskip("peft")
    pm = peft.get_peft_model(_tiny_llama(), peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5))
    with pm.disable_adapter():  # prompt learning: peft sets the PeftModel's _adapters_disabled
        s = summary(pm, verbose=0)
    assert [(a.name, a.params, a.active, a.disabled) for a in s.adapters] == [("default", 320, False, True)]
    assert [(a.active, a.disabled) for a in summary(pm, verbose=0).adapters] == [(True, False)]
