"""Which device a summary runs on: the model's own (it is never moved), or one asked for that
matches it, ``"meta"``, or an available accelerator for a model without tensors.

Every mismatch raises :class:`~netsummary.DeviceError` saying what was asked for and where the
model's parameters and buffers are.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._errors import DeviceError


def resolve_device(named: list[tuple[str, nn.Module]], device: Any) -> torch.device:
    """The device inputs are created on. The model is never moved.

    ``None`` follows the model's first parameter or buffer (CPU for a model without any). An
    explicit device must be where the model lives (``"cuda"`` matches a model on ``cuda:1``), or
    ``"meta"``, which runs the forward on shape-only copies of the model's tensors.

    Raises:
        DeviceError: unknown device string, CUDA (or the index) not available, the device is
            not available for a model without tensors (see :func:`check_available`), or the
            model's tensors live on another device than the one asked for.
    """
    seen: dict[torch.device, None] = {}  # in order of first appearance
    for _, m in named:
        for tensors in (m._parameters, m._buffers):
            for t in tensors.values():
                if t is not None:
                    seen[t.device] = None
    model_devices = list(seen)
    if device is None:
        return model_devices[0] if model_devices else torch.device("cpu")
    if not isinstance(device, (str, torch.device)):
        raise DeviceError(
            f"device: expected a string such as 'cpu', 'cuda:1', 'meta' or a torch.device, got "
            f"{type(device).__name__} {device!r}",
            device,
        )
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise DeviceError(f"device: unknown device {device!r}; expected e.g. 'cpu', 'cuda', 'cuda:1', 'meta'", device) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device={device!r} was requested but CUDA is not available on this machine", device)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device={device!r} was requested but only {torch.cuda.device_count()} CUDA device(s) exist", device
            )
    if dev.type == "meta":
        return dev
    if not model_devices:  # nothing to match against: the device itself must be usable
        check_available(dev)
        return dev
    for md in model_devices:
        if md.type == dev.type and (dev.index is None or dev.index == md.index or md.index is None):
            return md
    where = ", ".join(str(d) for d in model_devices)
    raise DeviceError(
        f"device={str(dev)!r} was requested but the model's parameters and buffers are on {where}; "
        f"netsummary never moves your model: call model.to({str(dev)!r}) first, or pass device={where.split(',')[0]!r}",
        device,
    )


def check_meta_form(named: list[tuple[str, nn.Module]]) -> None:
    """Before a forward on ``"meta"``: every parameter and buffer has a meta stand-in.

    Raises:
        DeviceError: a quantized tensor (``torch.quantize_per_tensor``, ``quint8`` / ``qint8``
            / ``qint32``): torch has no meta (or fake) form of it, so the forward cannot run there.
    """
    for prefix, m in named:
        for tensors in (m._parameters, m._buffers):
            for key, t in tensors.items():
                if t is not None and t.is_quantized:
                    name = f"{prefix}.{key}" if prefix else key
                    dtype = str(t.dtype).removeprefix("torch.")
                    raise DeviceError(
                        f"device='meta': {name!r} is a quantized tensor ({dtype}), which has no meta form; "
                        f"summarize the model on its own device ({t.device}) instead", "meta")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else ""
    return f"{type(err).__name__}: {line[:160]}" if line else type(err).__name__


def _backend_status(kind: str) -> tuple[bool, int | None, str]:
    """``(available, device count or None, how that was found out)`` for a device type, from
    torch's own availability API when it has one: ``torch.backends.mps``, ``torch.<type>``
    (``torch.xpu``, ``torch.mtia``, a renamed privateuse1 backend such as ``torch.npu``), then
    ``torch.accelerator``. Without one, a zero-element tensor is created there: torch's only
    other answer (``"xla"``, ``"hpu"``, ``"privateuseone"`` without their plug-ins raise)."""
    if kind == "mps":
        mps = torch.backends.mps
        if mps.is_available():
            return True, None, "torch.backends.mps.is_available()"
        why = "torch.backends.mps.is_available() is False"
        return False, None, why if mps.is_built() else why + "; this PyTorch build has no MPS support (macOS only)"
    module = getattr(torch, kind, None)
    is_available = getattr(module, "is_available", None)
    if callable(is_available):
        if not is_available():
            return False, None, f"torch.{kind}.is_available() is False"
        count = getattr(module, "device_count", None)
        return True, count() if callable(count) else None, f"torch.{kind}.is_available()"
    acc = getattr(torch, "accelerator", None)
    if acc is not None:
        current = acc.current_accelerator() if acc.is_available() else None
        if current is not None and current.type == kind:
            return True, acc.device_count(), "torch.accelerator"
    try:
        torch.empty(0, device=kind)
    except Exception as err:  # AssertionError, ModuleNotFoundError, NotImplementedError, ...
        return False, None, f"creating a tensor there raised {_first_line(err)}"
    return True, None, "a tensor could be created there"


def check_available(dev: torch.device) -> None:
    """Raise :class:`DeviceError` unless tensors can be created on ``dev``.

    Used for a model without parameters or buffers (a model with tensors is checked by matching
    their devices). CPU and meta are always available; CUDA is checked by the caller.

    >>> check_available(torch.device("cpu"))
    >>> try:
    ...     check_available(torch.device("privateuseone"))
    ... except DeviceError as err:
    ...     print(str(err).split(" (")[0])
    device='privateuseone' was requested but it is not available on this machine
    """
    if dev.type in ("cpu", "meta", "cuda"):
        return
    name = str(dev)
    try:
        available, count, how = _backend_status(dev.type)
    except Exception as err:  # a broken plug-in or driver: torch's own check raised
        raise DeviceError(
            f"device={name!r} was requested but checking whether it is available raised {_first_line(err)}", dev
        ) from None
    if not available:
        raise DeviceError(f"device={name!r} was requested but it is not available on this machine ({how})", dev)
    if dev.index is not None and count is not None and dev.index >= count:
        raise DeviceError(
            f"device={name!r} was requested but only {count} {dev.type} device(s) exist ({how})", dev
        )
