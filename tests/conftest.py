"""Shared test helpers: a full snapshot of a model's state, and the --update-golden option."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.modules import module as module_globals
from torch.nn.parameter import is_lazy

GOLDEN = Path(__file__).parent / "golden"

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_GLOBAL_HOOK_DICTS = (
    "_global_forward_hooks",
    "_global_forward_hooks_with_kwargs",
    "_global_forward_hooks_always_called",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/golden/* from the current output")


@pytest.fixture
def golden(request: pytest.FixtureRequest):
    """``golden("name.txt", text)``: compare text with tests/golden/name.txt (or rewrite it on request)."""
    update = request.config.getoption("--update-golden")

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if update:
            path.write_text(text)
        assert path.exists(), f"missing golden file {path}; run pytest --update-golden to create it"
        assert text == path.read_text(), f"output differs from {path} (pytest --update-golden rewrites it)"

    return check


def snapshot(model: nn.Module) -> dict:
    """Everything a summary must leave bit-identical: values, flags, hooks, RNG, grad mode."""
    state = {}
    for name, t in model.state_dict(keep_vars=True).items():
        if is_lazy(t):
            state[name] = (id(t), type(t), t.dtype, t.device, None)
            continue
        data = None if t.device.type == "meta" else t.detach().clone()
        state[name] = (id(t), t.shape, t.dtype, t.device, data)
    return {
        "state": state,
        "training": [(n, m.training) for n, m in model.named_modules()],
        "requires_grad": [(n, p.requires_grad) for n, p in model.named_parameters()],
        "grad": [(n, id(p.grad)) for n, p in model.named_parameters()],
        # hook handle ids, per module and per dict: the same count and the very same hooks
        "hooks": [(n, [tuple(getattr(m, h)) for h in _HOOK_DICTS]) for n, m in model.named_modules()],
        "global_hooks": [tuple(getattr(module_globals, h)) for h in _GLOBAL_HOOK_DICTS],
        "rng": torch.get_rng_state(),
        "py_rng": random.getstate(),
        "grad_enabled": torch.is_grad_enabled(),
    }


def assert_unchanged(before: dict, model: nn.Module) -> None:
    after = snapshot(model)
    for key in ("training", "requires_grad", "grad", "hooks", "global_hooks", "py_rng", "grad_enabled"):
        assert after[key] == before[key], f"model {key} changed"
    assert torch.equal(after["rng"], before["rng"]), "global RNG state changed"
    assert after["state"].keys() == before["state"].keys(), "state_dict keys changed"
    for name, (ident, shape, dtype, device, data) in before["state"].items():
        a_ident, a_shape, a_dtype, a_device, a_data = after["state"][name]
        assert (a_ident, a_shape, a_dtype, a_device) == (ident, shape, dtype, device), f"{name} replaced or moved"
        if data is not None:
            assert torch.equal(a_data, data), f"{name} values changed"


@pytest.fixture
def unchanged():
    """``with unchanged(model): ...`` asserts the block leaves ``model`` bit-identical."""
    import contextlib

    @contextlib.contextmanager
    def guard(model: nn.Module):
        before = snapshot(model)
        yield
        assert_unchanged(before, model)

    return guard
