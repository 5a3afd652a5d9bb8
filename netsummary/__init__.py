"""netsummary: what is inside a PyTorch model, exactly.

>>> from torch import nn
>>> from netsummary import summary
>>> s = summary(nn.Linear(6, 3), (6,), verbose=0)
>>> s.total_params, s.layers[0].output_shapes   # 6*3 + 3 = 21
(21, (2, 3))

The public names are imported on first use (PEP 562), so that ``import netsummary`` does not
import torch: ``netsummary inspect model.safetensors`` reads a header without it.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from ._api import summary
    from ._commandline.budget import Violation, assert_within_budget, check_budget
    from ._errors import (BudgetExceeded, DeviceError, ForwardError, InputSpecError, InputTypeError,
                          MemoryEstimateError, NetsummaryError, RankError)
    from ._memory.estimate import LayerMemory, MemoryEstimate, MemoryItem
    from ._summary import LayerRecord, ParamGroup, ParamShard, RankShare, Summary

__version__ = "0.1.0"

__all__ = [
    "BudgetExceeded",
    "DeviceError",
    "ForwardError",
    "InputSpecError",
    "InputTypeError",
    "LayerMemory",
    "LayerRecord",
    "MemoryEstimate",
    "MemoryEstimateError",
    "MemoryItem",
    "NetsummaryError",
    "ParamGroup",
    "ParamShard",
    "RankError",
    "RankShare",
    "Summary",
    "Violation",
    "__version__",
    "assert_within_budget",
    "check_budget",
    "summary",
]

# public name -> the submodule that defines it
_LAZY = {
    "summary": "_api",
    "Violation": "_commandline.budget", "assert_within_budget": "_commandline.budget",
    "check_budget": "_commandline.budget",
    "BudgetExceeded": "_errors", "DeviceError": "_errors", "ForwardError": "_errors",
    "InputSpecError": "_errors", "InputTypeError": "_errors", "NetsummaryError": "_errors",
    "MemoryEstimateError": "_errors", "RankError": "_errors",
    "LayerMemory": "_memory.estimate", "MemoryEstimate": "_memory.estimate", "MemoryItem": "_memory.estimate",
    "LayerRecord": "_summary", "ParamGroup": "_summary", "Summary": "_summary",
    "ParamShard": "_summary", "RankShare": "_summary",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups find it without this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
