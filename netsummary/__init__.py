"""netsummary: what is inside a PyTorch model, exactly.

>>> from torch import nn
>>> from netsummary import summary
>>> s = summary(nn.Linear(6, 3), (6,), verbose=0)
>>> s.total_params, s.layers[0].output_shapes   # 6*3 + 3 = 21
(21, (2, 3))
"""

from ._api import summary
from ._budget import Violation, assert_within_budget, check_budget
from ._errors import BudgetExceeded, DeviceError, ForwardError, InputSpecError, InputTypeError, NetsummaryError
from ._summary import LayerRecord, ParamGroup, Summary

__version__ = "0.1.0"

__all__ = [
    "BudgetExceeded",
    "DeviceError",
    "ForwardError",
    "InputSpecError",
    "InputTypeError",
    "LayerRecord",
    "NetsummaryError",
    "ParamGroup",
    "Summary",
    "Violation",
    "__version__",
    "assert_within_budget",
    "check_budget",
    "summary",
]
