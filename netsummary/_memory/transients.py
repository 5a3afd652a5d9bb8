"""Memory that a kernel allocates and frees inside itself, below dispatch, modelled by rule.

A ``TorchDispatchMode`` sees the operators the dispatcher runs, not the tensors a CPU kernel makes
inside itself; the allocator (and ``torch.profiler``) sees both. Where such a copy follows a
known rule it is counted as a named transient of the operator: allocated before its outputs,
freed when it returns (what the profiler shows).

Rules (each found with ``torch.profiler(profile_memory=True, record_shapes=True)``, torch 2.14, CPU):

* ``aten.convolution_backward`` on CPU with oneDNN (``torch.backends.mkldnn``) and the input's
  gradient asked for (``output_mask[0]``): the kernel runs ``aten::contiguous`` → ``aten::clone``
  of the *input* (shape ``[N, C_in, H, W]``, its bytes) inside itself and frees it on return —
  ``ConvolutionBackward0`` of ``Conv2d(128, 256, 4, 2, 1)`` on ``[8, 128, 16, 16]`` allocates
  1,048,576 B (the clone) + 1,048,576 B (grad input) + 2,097,152 B (grad weight) + 1,024 B (grad
  bias) and keeps 3,146,752 B. No copy is made when only the weight's gradient is needed (the
  first convolution of a network, whose input is data). The DCGAN discriminator's measured peak
  (batch 64, AdamW) is at such a moment: conv2's backward clones conv1's 32 MiB activation.
  Not exact: oneDNN chooses its layout by shape, and for some shapes makes no copy (none for
  ``Conv2d(512, 1024, 4, 2, 1)`` or ``Conv2d(64, 64, 3, 1, 1)`` on 8×8 inputs; one for
  ``Conv2d(512, 64, 4, 2, 1)`` and ``Conv2d(128, 256, 4, 2, 1)`` on 8×8): the rule counts the copy
  always, and the estimate's notes say so.

>>> transient_bytes("aten.convolution_backward", (torch.empty(1), torch.empty(2, 3, 4, 4), torch.empty(1),
...                 None, [1], [0], [1], False, [0], 1, [True, True, True]))
384
"""

from __future__ import annotations

from typing import Any

import torch

#: op name -> the rule's one-line description (named in the estimate's notes)
RULES = {
    "aten.convolution_backward": "the CPU (oneDNN) kernel's copy of the input inside "
                                 "aten.convolution_backward (its bytes, freed on return)",
}


def transient_bytes(op: str, args: tuple) -> int:
    """Bytes ``op`` allocates and frees inside itself for ``args`` (0: no rule applies)."""
    if op != "aten.convolution_backward" or len(args) < 11:
        return 0
    grad_output, inp, mask = args[0], args[1], args[10]
    if not isinstance(inp, torch.Tensor) or not mask or not mask[0]:
        return 0
    if inp.device.type != "cpu" or inp.dim() not in (4, 5) or not torch.backends.mkldnn.is_available():
        return 0
    if not torch.backends.mkldnn.enabled or not inp.is_floating_point():
        return 0
    del grad_output
    return inp.numel() * inp.element_size()
