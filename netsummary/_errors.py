"""Errors raised by netsummary.

The hierarchy::

    NetsummaryError                      base of everything netsummary raises
    ├── InputSpecError(ValueError)       input_size / dtypes / batch_size / input_data / mode are invalid
    │   └── InputTypeError(TypeError)    ... because a value has the wrong Python type
    ├── DeviceError(ValueError)          unknown device, CUDA missing, model lives on another device
    ├── ForwardError(RuntimeError)       the model's own forward raised; chained to the user's error
    ├── MemoryEstimateError(RuntimeError) the measured step of ``estimate=`` failed (forward, backward
    │                                    or optimizer step); chained to the error, partial figures kept
    ├── RankError(RuntimeError)          ``all_ranks=True``: another rank failed, or the collective did
    ├── CheckpointError(ValueError)      a checkpoint file is missing, not a checkpoint, or not weights-only
    ├── MissingDependencyError(ImportError)  an optional package (safetensors) is needed and missing
    ├── TargetError(ValueError)          a command-line target ``file.py:NAME`` / ``pkg.mod:NAME`` cannot
    │                                    be loaded or built into an nn.Module
    ├── ConfigError(ValueError)          an invalid ``[tool.netsummary]`` table; the message names the key
    └── BudgetExceeded(AssertionError)   ``assert_within_budget``: one line per violated budget

Every error of ``summary()`` is raised before the model's forward runs, except :class:`ForwardError`
and :class:`RankError` (``all_ranks=True``: raised after the collective).
Messages say what was expected, what was received, and where; the offending object is kept on the
exception.
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


class MemoryEstimateError(NetsummaryError, RuntimeError):
    """The step run to measure memory (``summary(..., estimate=...)``) failed. Chained
    (``__cause__``) to the error raised inside it.

    Attributes:
        phase: ``"forward"``, ``"backward"`` or ``"optimizer"``.
        module_name: qualified name of the module running when it failed (forward: the innermost
            call; backward: the module whose backward ran last), ``""`` for the root or none.
        op: the last operator dispatched (``"aten.nonzero"``), ``""`` if none.
        partial: a :class:`~netsummary._memory.estimate.MemoryEstimate` (``complete=False``) of
            what was measured before the failure: the forward's figures for a failed backward.
    """

    def __init__(self, message: str, phase: str, module_name: str, op: str, partial: Any = None) -> None:
        super().__init__(message)
        self.phase = phase
        self.module_name = module_name
        self.op = op
        self.partial = partial


class RankError(NetsummaryError, RuntimeError):
    """``summary(..., all_ranks=True)`` could not gather every rank's figures: another rank of the
    job failed (its own error is raised there), or the collective itself failed (a rank exited,
    the process group's timeout passed). Chained to the collective's error in the second case.

    Attributes:
        failed: ``{rank: "ErrorType: message"}`` of the ranks that failed (empty when the
            collective itself failed).
        collective: the collective, ``"torch.distributed.all_gather_object"``.
        partial: this rank's own :class:`~netsummary.Summary`, complete, its ``ranks`` holding the
            ranks that succeeded (``()`` when the collective failed); ``None`` if not built.
    """

    def __init__(self, message: str, failed: dict[int, str] | None = None, collective: str = "",
                 partial: Summary | None = None) -> None:
        super().__init__(message)
        self.failed = dict(failed or {})
        self.collective = collective
        self.partial = partial


class CheckpointError(NetsummaryError, ValueError):
    """A checkpoint file is missing, unreadable, not a checkpoint, or not weights-only.
    ``.path`` holds the path."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class MissingDependencyError(NetsummaryError, ImportError):
    """An optional dependency (``safetensors``) is needed for this file and is not installed."""


class TargetError(NetsummaryError, ValueError):
    """A command-line target (``path/to/file.py:NAME`` or ``package.module:NAME``) cannot be loaded:
    the file or module is missing or fails to import, NAME is missing or is not an ``nn.Module``
    class, factory or instance, or building the model raised (chained to that error).
    ``.target`` holds the target text."""

    def __init__(self, message: str, target: str | None = None) -> None:
        super().__init__(message)
        self.target = target


class ConfigError(NetsummaryError, ValueError):
    """The ``[tool.netsummary]`` table of a ``pyproject.toml`` is invalid, or cannot be read.
    The message starts with the file and the full key (``tool.netsummary.models.gan.max-params``);
    ``.key`` holds that key (``None`` for a file-level problem)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class BudgetExceeded(NetsummaryError, AssertionError):
    """Raised by :func:`~netsummary.assert_within_budget`: the message has one line per violated
    budget, e.g. ``discriminator: total params 11,038,081 > budget 10,000,000 (+10.4%)``;
    ``.violations`` holds the :class:`~netsummary._commandline.budget.Violation` records."""

    def __init__(self, message: str, violations: tuple = ()) -> None:
        super().__init__(message)
        self.violations = tuple(violations)
