"""Undo what a bitsandbytes layer's own forward does to its quantized weight and state.

bitsandbytes' layers change themselves on a forward, outside anything the write watch sees
(they rebind attributes of plain Python objects, and ``.data`` of tensor subclasses):

* ``Linear4bit.forward`` on CPU in eval / no-grad mode (``bitsandbytes/nn/modules.py``, with
  ``support_avx512bf16_for_cpu``) repacks the weight for its CPU kernel:
  ``self.weight.data, quant_state = _convert_weight_packed_for_cpu(...)``
  (``bitsandbytes/functional.py``) rebinds ``weight.data`` (a ``(n·k/2, 1)`` ``uint8`` column
  becomes ``(n, k/2)``) and rewrites the shared ``QuantState`` in place: ``absmax`` becomes a
  dequantized ``bfloat16`` matrix, ``nested`` turns ``False``, ``state2`` is deleted, and
  ``packing_format_for_cpu`` / ``original_*`` attributes appear. A train-mode forward after
  that computes different numbers. The first forward also sets ``compute_dtype`` /
  ``compute_type_is_set`` from the input's dtype (``set_compute_type``).
* ``Linear8bitLt.forward`` moves ``weight.CB`` / ``weight.SCB`` into its ``MatmulLtState``
  (``init_8bit_state``) and rebinds ``weight.data``.

:class:`BnbState` snapshots, for the bitsandbytes parameters (``Params4bit``, ``Int8Params``)
and layers present in the model only, each parameter's ``.data`` alias and attribute dict, the
attribute dicts of the bitsandbytes objects they hold (``QuantState`` and its nested
``state2``, ``MatmulLtState``), and the layers' own ``quant_state`` / ``compute_dtype`` /
``compute_type_is_set`` / ``state`` attributes; :meth:`BnbState.restore` puts them back. The
tensors themselves are not copied: bitsandbytes rebinds attributes to new tensors, it does not
write into the old ones (their in-place writes, if any, are the write watch's business for plain
tensors). Nothing global is touched; bitsandbytes is looked at only when ``sys.modules`` holds it.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn

_MODULE_ATTRS = ("quant_state", "compute_dtype", "compute_type_is_set", "state")
_MISSING = object()


def _is_bnb_object(v: Any) -> bool:
    return type(v).__module__.startswith("bitsandbytes") and hasattr(v, "__dict__") and not isinstance(
        v, (torch.Tensor, nn.Module))


def _objects(v: Any, out: dict[int, tuple[Any, dict]], depth: int = 0) -> None:
    """Snapshot ``v``'s attribute dict if it is a bitsandbytes object, and those of the bitsandbytes
    objects it holds (a QuantState's ``state2``), at most 4 levels deep."""
    if depth > 4 or not _is_bnb_object(v) or id(v) in out:
        return
    d = dict(vars(v))
    out[id(v)] = (v, d)
    for inner in d.values():
        _objects(inner, out, depth + 1)


class BnbState:
    """The bitsandbytes state of ``modules`` (see the module docstring); empty, and free, for a
    model without bitsandbytes layers."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self._params: list[tuple[torch.Tensor, torch.Tensor, dict]] = []
        self._modules: list[tuple[nn.Module, dict[str, Any]]] = []
        self._objects: dict[int, tuple[Any, dict]] = {}
        bnb = sys.modules.get("bitsandbytes")
        if bnb is None:
            return
        kinds = tuple(c for c in (getattr(getattr(bnb, "nn", None), n, None) for n in ("Params4bit", "Int8Params"))
                      if isinstance(c, type))
        seen: set[int] = set()
        for m in modules:
            if type(m).__module__.startswith("bitsandbytes."):
                attrs = {n: m.__dict__.get(n, _MISSING) for n in _MODULE_ATTRS}
                self._modules.append((m, attrs))
                for v in attrs.values():
                    _objects(v, self._objects)
            for p in m._parameters.values():
                if kinds and isinstance(p, kinds) and id(p) not in seen:
                    seen.add(id(p))
                    d = dict(vars(p))
                    self._params.append((p, p.data, d))
                    for v in d.values():
                        _objects(v, self._objects)

    def __bool__(self) -> bool:
        return bool(self._params or self._modules)

    def restore(self) -> None:
        """Put every snapshotted attribute back (idempotent)."""
        for obj, d in self._objects.values():
            now = vars(obj)
            if now.keys() != d.keys() or any(now[k] is not v for k, v in d.items()):
                now.clear()
                now.update(d)
        for m, attrs in self._modules:
            for name, v in attrs.items():
                if v is _MISSING:
                    m.__dict__.pop(name, None)
                elif m.__dict__.get(name, _MISSING) is not v:
                    m.__dict__[name] = v
        with torch.no_grad():
            for p, alias, d in self._params:
                now = vars(p)
                for k in [k for k in now if k not in d]:
                    del now[k]
                for k, v in d.items():
                    if now.get(k, _MISSING) is not v:
                        now[k] = v
                if not _same(p.data, alias):
                    p.data = alias


def _same(t: torch.Tensor, alias: torch.Tensor) -> bool:
    return (t.device == alias.device and t.dtype == alias.dtype and t.shape == alias.shape
            and t.stride() == alias.stride()
            and (t.device.type == "meta" or t.data_ptr() == alias.data_ptr()))
