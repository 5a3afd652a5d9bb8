"""summary(estimate=...): exact figures derived by hand, the summary API, rendering, JSON, bad input,
and the model, its .grads, a passed optimizer and the RNG left as they were."""

from __future__ import annotations

import json
import random

import pytest
import torch
from torch import nn

from netsummary import InputSpecError, InputTypeError, MemoryEstimateError, Summary, summary
from netsummary._memory.step import estimate_memory


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 10))


# 256*512 + 512 + 512*10 + 10 = 136,714 float32 parameters * 4 bytes
PARAM_BYTES = 546_856


def test_categories_by_hand() -> None:
    est = estimate_memory(mlp(), (256,), batch_size=8, optimizer="adamw")
    assert est.kind == "train" and est.optimizer == "AdamW" and est.batch_size == 8 and est.dtype == "float32"
    assert est.parameters.bytes == PARAM_BYTES and est.parameters.method == "counted"
    assert est.buffers.bytes == 0
    assert est.inputs.bytes == 8 * 256 * 4
    assert est.gradients.bytes == PARAM_BYTES and est.gradients.method == "measured on real tensors"
    # AdamW: exp_avg and exp_avg_sq per parameter, plus a float32 "step" scalar for each of the 4 tensors
    assert est.optimizer_state.bytes == 2 * PARAM_BYTES + 4 * 4
    # saved for the backward: ReLU's output (8 * 512 * 4), which the second Linear saves too (one
    # storage); the first Linear saves the input (an input, not an activation) and its weight
    assert est.saved_activations.bytes == 8 * 512 * 4
    assert est.layer("1").saved_bytes == 8 * 512 * 4 and est.layer("0").saved_bytes == 0
    assert sum(n for _, n in est.peak_parts) == est.peak.bytes
    assert est.peak.bytes >= PARAM_BYTES * 4  # parameters + gradients + 2 × state at the optimizer step
    assert est.trainable_params == 136_714


def test_inference_peak_by_hand() -> None:
    est = estimate_memory(mlp(), (256,), batch_size=8, kind="inference")
    # parameters + the input (8*256*4 = 8,192) + the first Linear's output and ReLU's (not in place),
    # both alive while ReLU runs: 2 * 8*512*4 = 32,768
    assert est.peak.bytes == PARAM_BYTES + 8192 + 32768
    assert est.peak_phase == "forward" and est.peak_module == "1" and est.peak_op == "aten.relu"
    assert est.gradients.bytes == est.optimizer_state.bytes == est.saved_activations.bytes == 0
    assert est.optimizer is None and est.backward_macs is None


@pytest.mark.parametrize("name, state_per_param", [("sgd", 0), ("sgd-momentum", 1), ("adam", 2), ("adagrad", 1),
                                                   ("rmsprop", 1)], ids=lambda v: str(v))
def test_optimizer_state_sizes(name: str, state_per_param: int) -> None:
    model = mlp()
    est = estimate_memory(model, (256,), batch_size=2, optimizer=name)
    # "step" scalars: Adam and Adagrad and RMSprop keep one float32 per parameter tensor (4 tensors)
    steps = 4 * 4 if name in ("adam", "adagrad", "rmsprop") else 0
    assert est.optimizer_state.bytes == state_per_param * PARAM_BYTES + steps
    # the independent check: a real optimizer after a real step
    opt = {"sgd": lambda p: torch.optim.SGD(p, lr=0.1), "sgd-momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
           "adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad, "rmsprop": torch.optim.RMSprop}[name](model.parameters())
    model(torch.rand(2, 256)).sum().backward()
    opt.step()
    real = sum(v.numel() * v.element_size() for st in opt.state.values() for v in st.values()
               if isinstance(v, torch.Tensor))
    assert est.optimizer_state.bytes == real


def test_frozen_layers_have_no_gradient_or_state() -> None:
    model = mlp()
    model[0].requires_grad_(False)
    est = estimate_memory(model, (256,), batch_size=2, optimizer="sgd-momentum")
    trainable = (512 * 10 + 10) * 4
    assert est.gradients.bytes == trainable and est.optimizer_state.bytes == trainable


def test_passed_optimizer_instance_is_read_not_touched() -> None:
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=0.5, foreach=True)
    model(torch.rand(2, 256)).sum().backward()
    opt.step()
    before = {k: v.clone() for k, v in opt.state[model[0].weight].items()}
    grads = [p.grad.clone() for p in model.parameters()]
    est = estimate_memory(model, (256,), batch_size=2, optimizer=opt)
    assert est.optimizer == "Adam" and est.optimizer_state.bytes == 2 * PARAM_BYTES + 16
    after = opt.state[model[0].weight]
    assert all(torch.equal(before[k], after[k]) for k in before) and len(opt.state) == 4
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters()))


def test_macs_forward_and_backward_by_hand() -> None:
    est = estimate_memory(mlp(), (256,), batch_size=8, optimizer="sgd")
    # forward: 8*256*512 + 8*512*10 = 1,089,536
    assert est.forward_macs == 1_089_536
    # backward: first Linear: weight grad only (the input needs none) 8*256*512; second: input grad
    # 8*10*512 and weight grad 8*10*512 -> 1,048,576 + 81,920 (not 2 × forward)
    assert est.backward_macs == 1_130_496


def test_fake_run_on_meta_matches_real() -> None:
    real = estimate_memory(mlp(), (256,), batch_size=8)
    with torch.device("meta"):
        meta_model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 10))
    fake = estimate_memory(meta_model, (256,), batch_size=8)
    assert fake.method == "measured on fake tensors" and fake.device == "meta"
    assert (fake.peak.bytes, fake.saved_activations.bytes, fake.optimizer_state.bytes) == (
        real.peak.bytes, real.saved_activations.bytes, real.optimizer_state.bytes)


def test_summary_estimate_none_changes_nothing() -> None:
    lines: list[str] = []
    s = summary(mlp(), (256,), print_fn=lines.append)
    assert s.memory is None and "memory" not in s.to_dict() and "Memory" not in lines[0]


def test_summary_estimate_train_prints_and_stores_the_section() -> None:
    lines: list[str] = []
    s = summary(mlp(), (256,), batch_size=8, estimate="train", optimizer="sgd-momentum", print_fn=lines.append)
    assert s.memory is not None and s.memory.batch_size == 8
    text = lines[0]
    assert text.startswith(summary(mlp(), (256,), batch_size=8, verbose=0).render())  # the table as without
    section = s.render("memory")
    assert section == str(s.memory) and text.endswith("\n\n" + section)
    assert section.splitlines()[0] == ("Memory, one training step (batch 8, float32, SGD (momentum 0.9)), "
                                       "measured on real tensors on cpu")
    assert "Gradients" in section and "measured on real tensors" in section and "Note: not included" in section


def test_batch_minus_one_measures_one_sample_and_says_so() -> None:
    s = summary(mlp(), (256,), estimate="inference", verbose=0)
    assert s.memory.batch_size == 1 and "batch_size=-1" in s.memory.notes[0]


def test_activations_column_and_json_round_trip() -> None:
    s = summary(mlp(), (256,), batch_size=8, estimate="train", verbose=0)
    table = s.render("tree", columns=["params", "activations"])
    assert "Saved activations (bytes)" in table
    root = next(line for line in table.splitlines() if line.startswith("(root)"))
    assert root.split()[-1] == f"{8 * 512 * 4:,}"
    data = json.loads(s.to_json())
    assert data["memory"]["peak"] == {"bytes": s.memory.peak.bytes, "method": "measured on real tensors", "note": ""}
    assert Summary.from_json(s.to_json()) == s


@pytest.mark.parametrize("field, value, message", [
    ("peak", {"bytes": -1, "method": "counted", "note": ""}, r"memory\.peak\.bytes is -1 \(int\), expected an int >= 0"),
    ("kind", "training", r"memory\.kind is 'training' \(str\), expected 'train' or 'inference'"),
    ("gradients", {"bytes": 1, "method": "guessed", "note": ""}, r"memory\.gradients\.method is 'guessed'"),
    ("layers", [{"name": "0", "type": "Linear", "call_index": 0, "saved_bytes": 1}], r"memory\.layers\[0\]\.call_index"),
], ids=["negative-bytes", "kind", "method", "call-index"])
def test_from_dict_is_strict_about_memory(field: str, value: object, message: str) -> None:
    data = summary(mlp(), (256,), batch_size=2, estimate="train", verbose=0).to_dict()
    data["memory"][field] = value
    with pytest.raises(InputSpecError, match=message):
        Summary.from_dict(data)
    data = summary(mlp(), (256,), batch_size=2, estimate="train", verbose=0).to_dict()
    del data["memory"]["peak"]
    with pytest.raises(InputSpecError, match=r"memory\.peak is missing"):
        Summary.from_dict(data)


# -- bad input -------------------------------------------------------------------------------------

def test_unknown_optimizer_name() -> None:
    with pytest.raises(InputSpecError, match=r"optimizer: unknown optimizer 'adamx'; expected one of 'sgd', "):
        summary(mlp(), (256,), estimate="train", optimizer="adamx", verbose=0)
    with pytest.raises(InputTypeError, match=r"optimizer: expected a name .* got int 3"):
        summary(mlp(), (256,), estimate="train", optimizer=3, verbose=0)


@pytest.mark.parametrize("value", ["training", True, 1], ids=["str", "bool", "int"])
def test_estimate_value(value: object) -> None:
    with pytest.raises(InputSpecError, match=r"estimate: expected 'train', 'inference' or None, got "):
        summary(mlp(), (256,), estimate=value, verbose=0)


def test_autocast_value_and_format_without_estimate() -> None:
    with pytest.raises(InputTypeError, match=r"autocast: expected None or a floating torch.dtype"):
        summary(mlp(), (256,), estimate="train", autocast="bf16", verbose=0)
    with pytest.raises(InputSpecError, match=r"format='memory' shows the memory estimate"):
        summary(mlp(), (256,), format="memory", verbose=0)
    with pytest.raises(InputSpecError, match=r"'activations' needs a measured step"):
        summary(mlp(), (256,), columns=["activations"], verbose=0)
    with pytest.raises(InputSpecError, match=r"this summary has no memory estimate"):
        summary(mlp(), (256,), verbose=0).render("memory")


def test_train_without_trainable_parameters_is_a_note() -> None:
    model = mlp().requires_grad_(False)
    est = summary(model, (256,), batch_size=4, estimate="train", verbose=0).memory
    assert est.gradients.bytes == 0 and est.optimizer_state.bytes == 0 and est.optimizer is None
    assert "no trainable parameters" in est.notes[0]
    assert "Memory, one training step (batch 4, float32), measured" in str(est)


class FailingBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("no backward for you")


class BadBackward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(8, 8)
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        return self.head(FailingBackward.apply(self.inner(x)))


def test_failing_backward_reports_the_forward_and_the_module(unchanged) -> None:
    model = BadBackward()
    with unchanged(model), pytest.raises(MemoryEstimateError, match=(
            r"the measured backward failed in module 'head' \(the module whose backward ran last; last operator "
            r"aten\.\w+\): RuntimeError: no backward for you; "
            r"the forward's figures are in err.partial")) as info:
        summary(model, (8,), batch_size=4, estimate="train", verbose=0)
    err = info.value
    assert err.phase == "backward" and err.module_name == "head"
    assert not err.partial.complete and err.partial.parameters.bytes == (8 * 8 + 8 + 8 + 1) * 4
    assert err.partial.saved_activations.bytes > 0 and err.partial.gradients.bytes == 0
    assert isinstance(err.__cause__, RuntimeError)


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x):
        y = self.lin(x)
        return y[y > 0].sum()  # the output's shape depends on the values


def test_data_dependent_code_on_fake_tensors(unchanged) -> None:
    with torch.device("meta"):
        model = DataDependent()
    with unchanged(model), pytest.raises(MemoryEstimateError, match=(r"the forward reads tensor values \(data-dependent code in module "
                                                  r"'' \(DataDependent\), operator aten.index\).*device='cpu'")) as info:
        estimate_memory(model, (8,), batch_size=4)
    assert info.value.phase == "forward"
    # on real tensors it runs
    assert estimate_memory(DataDependent(), (8,), batch_size=4).peak.bytes > 0


class Dropper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(16, 16)
        self.bn = nn.BatchNorm1d(16)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.bn(self.lin(x)))


def test_model_grads_and_rng_unchanged_on_success(unchanged) -> None:
    model = Dropper().eval()
    model.lin.weight.grad = torch.ones_like(model.lin.weight)
    torch.manual_seed(1)
    random.seed(1)
    rng = torch.get_rng_state()
    with unchanged(model):
        s = summary(model, (16,), batch_size=4, estimate="train", verbose=0)
    assert s.memory.complete and torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(model.lin.weight.grad, torch.ones_like(model.lin.weight))
    assert int(model.bn.num_batches_tracked) == 0 and not model.training


class Exploding(torch.optim.SGD):
    def step(self, closure=None):
        raise ValueError("lr schedule exploded")


def test_failing_optimizer_step_leaves_grads_and_a_passed_optimizer_alone(unchanged) -> None:
    model = mlp()
    model[0].weight.grad = torch.full_like(model[0].weight, 3.0)
    opt = Exploding(model.parameters(), lr=0.1, momentum=0.9)
    with unchanged(model), pytest.raises(MemoryEstimateError, match=(
            r"the measured optimizer step failed in Exploding\.step\(\) at operator \(none\): ValueError: lr schedule "
            r"exploded; the forward's and backward's figures are in err.partial")) as info:
        summary(model, (256,), batch_size=2, estimate="train", optimizer=opt, verbose=0)
    assert info.value.phase == "optimizer" and info.value.partial.gradients.bytes == PARAM_BYTES
    assert torch.equal(model[0].weight.grad, torch.full_like(model[0].weight, 3.0)) and not opt.state


def test_device_meta_measures_a_real_model_on_fake_tensors(unchanged) -> None:
    model = mlp()
    real = summary(model, (256,), batch_size=8, estimate="train", verbose=0).memory
    with unchanged(model):
        fake = summary(model, (256,), batch_size=8, estimate="train", device="meta", verbose=0).memory
    assert fake.method == "measured on fake tensors" and fake.peak.bytes == real.peak.bytes


class OutOfMemory(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_suggests_a_fake_run() -> None:
    with pytest.raises(MemoryEstimateError, match=r"out of memory.*pass device='meta' to measure it on fake tensors"):
        estimate_memory(OutOfMemory(), (4,), batch_size=2)


def test_estimate_needs_a_forward() -> None:
    with pytest.raises(InputSpecError, match=r"estimate='train' measures one forward of the model, but no input was given"):
        summary(mlp(), estimate="train", verbose=0)
    with pytest.raises(InputSpecError, match=r"but ModuleList defines no forward"):
        summary(nn.ModuleList([nn.Linear(2, 2)]), (2,), estimate="inference", verbose=0)
