"""What the forward runs on: compiled, scripted and lazy models; keyword checks; odd tensors."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import assert_unchanged, snapshot
from torch import nn
from torch.nn.modules import module as module_globals

from netsummary import InputSpecError, summary


def test_lazy_model_is_summarized_through_a_copy_and_stays_lazy():
    model = nn.Sequential(nn.LazyConv2d(4, 3), nn.LazyBatchNorm2d(), nn.Flatten(), nn.LazyLinear(5))
    before = snapshot(model)
    s = summary(model, (3, 8, 8), verbose=0)
    assert_unchanged(before, model)
    assert [type(m).__name__ for m in model] == ["LazyConv2d", "LazyBatchNorm2d", "Flatten", "LazyLinear"]
    # materialized in the copy: conv 4*3*9 + 4 = 112; bn 4 + 4 = 8; linear 4*6*6 = 144 in -> 144*5 + 5 = 725
    assert s.total_params == 112 + 8 + 725
    assert [r.type for r in s.leaf_layers] == ["Conv2d", "BatchNorm2d", "Flatten", "Linear"]
    assert s.device == "meta" and not s.uninitialized


def test_compiled_model_is_summarized_through_its_eager_module():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    s = summary(torch.compile(model), (4,), verbose=0)
    assert s.total_params == 40 and [r.name for r in s.layers] == ["", "0", "1"]  # 4*8 + 8


@pytest.mark.parametrize("make", ["script", "trace"])
def test_torchscript_models_are_summarized_as_far_as_hooks_see(make):
    eager = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = torch.jit.script(eager) if make == "script" else torch.jit.trace(eager, torch.zeros(2, 4))
    model.train()
    before = snapshot(model)
    s = summary(model, (4,), mode="eval", verbose=0)
    assert_unchanged(before, model)
    assert s.total_params == 4 * 8 + 8 + 2 * 8
    assert s.layers[0].output_shapes == (2, 8)


def test_keyword_that_forward_does_not_take_is_rejected_before_the_forward():
    with pytest.raises(InputSpecError, match=r"Linear.forward\(\) takes no argument named 'verbos'; it takes input"):
        summary(nn.Linear(2, 2), (2,), verbos=0)
    with pytest.raises(InputSpecError, match=r"input_data: Linear.forward\(\) takes no argument named 'x'"):
        summary(nn.Linear(2, 2), input_data={"x": torch.zeros(1, 2)}, verbose=0)


def test_embedding_max_norm_weight_is_restored():
    model = nn.Embedding(10, 4, max_norm=1.0)
    with torch.no_grad():
        model.weight.mul_(10)  # every row longer than max_norm: the forward would renormalize
    before = snapshot(model)
    summary(model, (6,), dtypes=[torch.long], verbose=0)
    assert_unchanged(before, model)


def test_no_hook_bookkeeping_left_behind():
    sizes = (len(module_globals._global_forward_hooks_with_kwargs), len(module_globals._global_forward_hooks_always_called))
    for _ in range(3):
        summary(nn.Linear(2, 2), (2,), verbose=0)
    assert (len(module_globals._global_forward_hooks_with_kwargs),
            len(module_globals._global_forward_hooks_always_called)) == sizes


def test_nested_tensor_inputs_and_outputs():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        nt = torch.nested.nested_tensor([torch.zeros(2, 3), torch.zeros(4, 3)])
        s = summary(nn.Sequential(nn.Linear(3, 2)), input_data=nt, verbose=0)
    assert s.input_shapes == [[(2, 3), (4, 3)]]
    assert s.layers[1].output_shapes == [(2, 2), (4, 2)]
    assert s.input_bytes == (6 + 12) * 4


def test_embedding_failure_hints_at_integer_dtypes():
    from netsummary import ForwardError

    with pytest.raises(ForwardError, match=r"hint: embeddings take integer ids; pass dtypes=\[torch.long\]"):
        summary(nn.Sequential(nn.Embedding(5, 2)), (3,), verbose=0)
