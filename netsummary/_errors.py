"""Errors raised by netsummary.

The hierarchy::

    NetsummaryError                      base of everything netsummary raises
    ├── InputSpecError(ValueError)       input_size / dtypes / batch_size / input_data / mode are invalid
    │   └── InputTypeError(TypeError)    ... because a value has the wrong Python type
    ├── DeviceError(ValueError)          unknown device, CUDA missing, model lives on another device
    └── ForwardError(RuntimeError)       the model's own forward raised; chained to the user's error

Every error is raised before the model's forward runs, except :class:`ForwardError`. Messages say
what was expected, what was received, and where; the offending object is kept on the exception.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._summary import Summary


class NetsummaryError(Exception):
    """Base class of every error netsummary raises."""


class InputSpecError(NetsummaryError, ValueError):
    """An input specification (``input_size``, ``dtypes``, ``batch_size``, ``input_data``, ``mode``,
    ...) is invalid. ``.value`` holds the offending object."""

    def __init__(self, message: str, value: Any = None) -> None:
        super().__init__(message)
        self.value = value


class InputTypeError(InputSpecError, TypeError):
    """An input specification has the wrong Python type (e.g. a string where a shape was expected)."""


class DeviceError(NetsummaryError, ValueError):
    """The requested device is unknown or unavailable, or the model lives on another device.
    ``.value`` holds the requested device."""

    def __init__(self, message: str, value: Any = None) -> None:
        super().__init__(message)
        self.value = value


class ForwardError(NetsummaryError, RuntimeError):
    """The model's forward raised. Chained (``__cause__``) to the user's own exception.

    Attributes:
        module_name: qualified name of the innermost module that was running (``""`` is the root).
        module_type: its class name.
        partial: a :class:`~netsummary.Summary` of the layers that completed before the failure.
    """

    def __init__(self, message: str, module_name: str, module_type: str, partial: Summary | None) -> None:
        super().__init__(message)
        self.module_name = module_name
        self.module_type = module_type
        self.partial = partial
