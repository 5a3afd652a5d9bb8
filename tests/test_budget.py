"""Budgets: check_budget / assert_within_budget and the one-line messages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from torch import nn

from netsummary import BudgetExceeded, InputSpecError, InputTypeError, Summary, assert_within_budget, check_budget, summary
from netsummary._commandline.budget import Check, Violation, evaluate, evaluate_checkpoint, parse_limits
from netsummary._checkpoints.inspect import inspect_checkpoint

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def gan() -> Summary:
    """The seed discriminator as saved: 11,038,081 params, 44,152,324 param bytes, 408,961,024 MACs."""
    return Summary.from_json((GOLDEN / "discriminator.json.json").read_text())


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))  # 136 + 18 = 154 params


def test_over_budget_message_is_one_line_with_the_excess(gan: Summary) -> None:
    [v] = check_budget(gan, max_params="10M", name="discriminator")
    # 11,038,081 / 10,000,000 - 1 = 10.38% -> +10.4%
    assert v.message == "discriminator: total params 11,038,081 > budget 10,000,000 (+10.4%)"
    assert isinstance(v, Violation) and (v.quantity, v.value, v.limit) == ("total params", 11_038_081, 10_000_000)


def test_within_budget_reports_headroom(gan: Summary) -> None:
    [c] = evaluate(gan, parse_limits(max_params="12M"), "discriminator")
    # 1 - 11,038,081 / 12,000,000 = 8.02% headroom
    assert c.ok and not isinstance(c, Violation)
    assert c.message == "discriminator: total params 11,038,081 <= budget 12,000,000 (8.0% headroom)"
    assert check_budget(gan, max_params="12M") == []


def test_every_quantity_reads_its_summary_field(gan: Summary) -> None:
    limits = parse_limits(max_params=1, max_trainable_params=1, max_macs=1, max_param_bytes=1, max_total_bytes=1)
    checks = evaluate(gan, limits, "d")
    # estimated total = input 49,152 + 2 * outputs 2,424,840 + params 44,152,324 = 49,051,156
    assert [(c.quantity, c.value) for c in checks] == [
        ("total params", 11_038_081), ("trainable params", 11_038_081), ("MACs", 408_961_024),
        ("param bytes", 44_152_324), ("total bytes", 49_051_156)]


def test_byte_budgets_show_exact_bytes_and_binary_units(gan: Summary) -> None:
    # 40MB = 40,000,000 bytes = 38.15 MiB; 44,152,324 / 40,000,000 - 1 = 10.38%
    [v] = check_budget(gan, max_param_bytes="40MB", name="d")
    assert v.message == "d: param bytes 44,152,324 (42.11 MiB) > budget 40,000,000 (38.15 MiB) (+10.4%)"
    # 50MiB = 52,428,800 bytes: 1 - 44,152,324 / 52,428,800 = 15.8% headroom
    [c] = evaluate(gan, parse_limits(max_param_bytes="50MiB"), "d")
    assert c.message == "d: param bytes 44,152,324 (42.11 MiB) <= budget 52,428,800 (50.00 MiB) (15.8% headroom)"


@pytest.mark.parametrize(
    ("value", "limit", "text"),
    [(10_000_001, 10_000_000, "total params 10,000,001 > budget 10,000,000 (+<0.1%)"),
     (1, 0, "total params 1 > budget 0 (budget is 0)"),
     (0, 0, "total params 0 <= budget 0 (0.0% headroom)"),
     (100, 100, "total params 100 <= budget 100 (0.0% headroom)")],
    ids=["barely-over", "zero-budget", "zero-of-zero", "exactly-at"],
)
def test_message_edge_cases(value: int, limit: int, text: str) -> None:
    cls = Check if value <= limit else Violation
    assert cls("total params", value, limit).message == text


def test_a_model_is_summarized_with_the_summary_arguments() -> None:
    # 154 / 100 - 1 = 54%; the name defaults to the model's class
    [v] = check_budget(mlp(), input_size=(16,), max_params=100)
    assert v.message == "Sequential: total params 154 > budget 100 (+54.0%)"


def test_a_macs_budget_counts_macs_for_a_model() -> None:
    # Linear MACs per sample = in * out: 16*8 + 8*2 = 144; 144 / 100 - 1 = 44%
    [v] = check_budget(mlp(), input_size=(16,), max_macs="100", name="mlp")
    assert v.message == "mlp: MACs 144 > budget 100 (+44.0%)"


def test_macs_budget_on_a_summary_without_macs_is_an_error() -> None:
    s = summary(mlp(), (16,), verbose=0)
    with pytest.raises(InputSpecError, match=r"max_macs: this summary has no MACs \(total_macs is None\)"):
        check_budget(s, max_macs="1M")


def test_unknown_ops_make_macs_a_lower_bound(gan: Summary) -> None:
    s = dataclasses.replace(gan, unknown_ops=("aten.foo.default",))
    [c] = evaluate(s, parse_limits(max_macs="500M"), "d")
    # 1 - 408,961,024 / 500,000,000 = 18.2% headroom, of a lower bound: it passes, and says so
    assert c.ok
    assert c.message == ("d: MACs 408,961,024 <= budget 500,000,000 (18.2% headroom; lower bound: no formula "
                         "for aten.foo.default)")
    [v] = check_budget(s, max_macs="400M", name="d")  # a lower bound already over: a violation
    assert v.message.endswith("(+2.2%; lower bound: no formula for aten.foo.default)")


def test_assert_within_budget_raises_an_assertion_error_with_one_line_per_violation(gan: Summary) -> None:
    with pytest.raises(BudgetExceeded) as info:
        assert_within_budget(gan, max_params="10M", max_param_bytes="40MB", max_macs="1G", name="discriminator")
    assert isinstance(info.value, AssertionError)
    assert str(info.value) == (
        "discriminator: total params 11,038,081 > budget 10,000,000 (+10.4%)\n"
        "discriminator: param bytes 44,152,324 (42.11 MiB) > budget 40,000,000 (38.15 MiB) (+10.4%)")
    assert [v.quantity for v in info.value.violations] == ["total params", "param bytes"]
    assert_within_budget(gan, max_params="12M")  # within: returns quietly


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [({}, InputSpecError, r"no budget given; pass at least one of max_params=, max_trainable_params="),
     ({"max_params": "12X"}, InputSpecError, r"max_params: invalid count '12X'"),
     ({"max_param_bytes": "12M"}, InputSpecError, r"max_param_bytes: invalid size '12M': 'M' is ambiguous"),
     ({"max_params": 1.5}, InputSpecError, r"max_params: invalid count 1.5"),
     ({"max_params": [1]}, InputTypeError, r"max_params: invalid count \[1\]: must be a str or int"),
     ({"max_params": 1, "input_size": (16,)}, InputSpecError, r"input_size: summary arguments apply when a model")],
    ids=["none", "bad-count", "ambiguous-bytes", "fractional", "wrong-type", "kwargs-with-summary"],
)
def test_invalid_budgets(gan: Summary, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        check_budget(gan, **kwargs)


def test_checkpoint_budgets_apply_to_elements_and_bytes(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "w.pt"
    torch.save(nn.Linear(16, 8).state_dict(), path)  # 128 + 8 = 136 elements, 544 bytes
    ckpt = inspect_checkpoint(path)
    checks = evaluate_checkpoint(ckpt, parse_limits(max_params=100, max_param_bytes="1KiB"), "w.pt")
    # 136 / 100 - 1 = 36%; 1 - 544 / 1,024 = 46.9% headroom
    assert [c.message for c in checks] == ["w.pt: total params 136 > budget 100 (+36.0%)",
                                           "w.pt: param bytes 544 B <= budget 1,024 (1.00 KiB) (46.9% headroom)"]
    with pytest.raises(InputSpecError, match=r"max_macs: a checkpoint holds only tensors"):
        evaluate_checkpoint(ckpt, parse_limits(max_macs=1))


def test_checkpoint_budgets_leave_out_normalization_buffers(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "bn.pt"
    torch.save(nn.BatchNorm1d(4).state_dict(), path)  # weight 4 + bias 4 = 8 params, 32 bytes
    ckpt = inspect_checkpoint(path)  # running_mean 4 + running_var 4 + num_batches_tracked 1 = 9 buffer elements
    assert (ckpt.total_params, ckpt.param_bytes, ckpt.buffer_elements, ckpt.buffer_bytes) == (8, 32, 9, 40)  # 32 + 8
    checks = evaluate_checkpoint(ckpt, parse_limits(max_params=8, max_param_bytes=32), "bn.pt")
    assert [c.message for c in checks] == ["bn.pt: total params 8 <= budget 8 (0.0% headroom)",
                                           "bn.pt: param bytes 32 B <= budget 32 B (0.0% headroom)"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_maccs": 5}, r"^unknown budget 'max_maccs'; did you mean max_macs\? valid budgets are max_params, "
                        r"max_trainable_params, max_macs, max_param_bytes, max_total_bytes, max_train_memory, "
                        r"max_inference_memory$"),
     ({"max_flops": "1G"}, r"^unknown budget 'max_flops'; there is no FLOPs budget; max_macs holds "
                           r"multiply-accumulates \(FLOPs = 2 x MACs\); valid budgets are max_params, "),
     ({"max_param": 5}, r"^unknown budget 'max_param'; did you mean max_params\? ")],
    ids=["typo", "flops", "singular"],
)
def test_an_unknown_budget_keyword_is_an_error_not_a_forward_argument(kwargs: dict, match: str) -> None:
    calls = []

    class Spy(nn.Linear):
        def forward(self, x, **extra):
            calls.append(extra)
            return super().forward(x)

    for check in (check_budget, assert_within_budget):
        with pytest.raises(InputTypeError, match=match):
            check(Spy(16, 8), input_size=(16,), max_params="1K", **kwargs)
    assert calls == []  # refused before any forward


def test_other_max_keywords_still_reach_the_forward() -> None:
    class Generator(nn.Linear):
        def forward(self, x, max_length=1):
            return super().forward(x) * max_length

    s = summary(Generator(16, 8), (16,), verbose=0)  # 16*8 + 8 = 136 params
    assert check_budget(Generator(16, 8), input_size=(16,), max_length=3, max_params=136) == []
    assert s.total_params == 136
