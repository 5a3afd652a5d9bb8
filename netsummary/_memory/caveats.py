"""What a measured step cannot see, said in words: kernels' own workspaces, overheads outside
the tensors, and code that needs tensor values (which fake tensors do not have).

>>> unseen_overheads(torch.device("cpu"))[0][:44]
"not included: the allocator's own overhead a"
"""

from __future__ import annotations

import torch

#: Fused recurrent kernels: they allocate workspace memory inside themselves, which dispatch never
#: sees (and whose size their fake kernels do not reproduce either): a step that runs one gives a
#: lower bound.
WORKSPACE_OPS = frozenset({"aten.mkldnn_rnn_layer", "aten.mkldnn_rnn_layer_backward", "aten._cudnn_rnn",
                           "aten._cudnn_rnn_backward", "aten.miopen_rnn", "aten.miopen_rnn_backward"})

_DATA_DEPENDENT = ("DataDependentOutputException", "DynamicOutputShapeException", "GuardOnDataDependentSymNode",
                   "UnsupportedOperatorException", "DataDependentOutputError")


def reads_values(err: BaseException) -> bool:
    """Whether ``err`` (or an exception it was raised from) says that code needed tensor values:
    fake tensors' data-dependent output errors, ``.item()``, a data-dependent shape."""
    return any(type(e).__name__ in _DATA_DEPENDENT for e in _chain(err))


def _chain(err: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    while err is not None and len(out) < 20:
        out.append(err)
        err = err.__cause__ or err.__context__
    return out


def unseen_overheads(dev: torch.device) -> list[str]:
    """The overheads the estimate cannot see, named with their size where torch states one."""
    if dev.type == "cuda":
        return ["not included: the CUDA context and loaded kernels (typically 300-1,000 MiB per process, outside "
                "torch.cuda.memory_allocated), the caching allocator's rounding (blocks of 512 bytes, segments of "
                "2 MiB / 20 MiB) and fragmentation (see torch.cuda.memory_reserved()), cuBLAS/cuDNN workspaces"]
    return ["not included: the allocator's own overhead and fragmentation (malloc arenas), and workspaces kernels "
            "allocate and free inside themselves (oneDNN, cuDNN)"]
