"""Hints for a failed forward of a quantized model: what is wrong and what to do.

Three failures come with torch's or bitsandbytes' own words only, which say nothing useful to a
user of netsummary:

* a bitsandbytes layer (``Linear4bit``, ``Linear8bitLt``, ``Embedding4bit``, ...) summarized on
  ``device="meta"``: its forward reads the ``QuantState`` tensors (``absmax``, code book) and
  rewraps its weight as a ``Params4bit``, which fake stand-ins cannot do;
* a ``torch.ao`` quantized layer (``quantize_dynamic``) on ``device="meta"``: the
  ``quantized::*`` kernels have no meta implementation (torch's error names an internal
  dispatcher);
* a ``Linear4bit`` whose weight was never quantized (bitsandbytes quantizes when the layer is
  moved to a device: ``.to("cpu")``, ``.cuda()``): its forward fails an empty ``assert``.

Libraries are looked at only when ``sys.modules`` already holds them.
"""

from __future__ import annotations

import sys
from typing import Any

from torch import nn

__all__ = ["quantized_hint"]


def _bnb_modules(named: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Module]]:
    bnb = sys.modules.get("bitsandbytes")
    if bnb is None:
        return []
    out = []
    for name, m in named:
        if type(m).__module__.startswith("bitsandbytes."):
            out.append((name, m))
    return out


def _unquantized_4bit(m: nn.Module) -> bool:
    w = getattr(m, "weight", None)
    return type(w).__name__ == "Params4bit" and not getattr(w, "bnb_quantized", True)


def _is_ao_quantized(m: nn.Module) -> bool:
    mod = type(m).__module__
    return mod.startswith(("torch.ao.nn.quantized", "torch.nn.quantized", "torch.ao.nn.intrinsic.quantized"))


def quantized_hint(err: BaseException, failed_module: Any, named: list[tuple[str, nn.Module]],
                   device_type: str) -> str | None:
    """The hint for a forward that failed in (or because of) a quantized layer, else ``None``.

    ``failed_module``: the module whose call raised (``None`` when unknown); ``named``: the
    model's ``(qualified name, module)`` pairs; ``device_type``: the summary's device type.
    """
    bnb = _bnb_modules(named)
    fresh = [(name, m) for name, m in bnb if _unquantized_4bit(m)]
    if fresh:
        name, m = fresh[0]
        return (f"bitsandbytes layer {name or '(root)'!r} ({type(m).__name__}) "
                "is not quantized yet: bitsandbytes quantizes a 4-bit weight when the layer is moved to a "
                "device; call model.to(\"cpu\") (or .cuda()) before summary()")
    if device_type == "meta":
        if bnb:
            name, m = bnb[0]
            return (f"bitsandbytes layers need real tensors ({name or '(root)'!r} is a {type(m).__name__}: its "
                    "forward reads the quantization state, which meta stand-ins do not have); "
                    "summarize on device=\"cpu\" (or the device the weights are on)")
        ao = [(name, m) for name, m in named if _is_ao_quantized(m)]
        if ao:
            name, m = ao[0]
            return (f"torch.ao quantized kernels have no meta implementation ({name or '(root)'!r} is a "
                    f"{type(m).__module__}.{type(m).__name__}); summarize on device=\"cpu\"")
    return None
