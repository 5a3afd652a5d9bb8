"""The tensor entries every checkpoint reader returns, and their names: a :class:`TensorEntry` per
tensor, normalization buffers told apart by name, natural name order, bounded names for messages.

:mod:`netsummary._checkpoints.safetensors_header` and :mod:`netsummary._checkpoints.pytorch_file`
read files into entries; :mod:`netsummary._checkpoints.inspect` turns the entries into a
:class:`~netsummary._checkpoints.summary.CheckpointSummary`.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from typing import Any

from .._safeio import shown

# The buffers of torch.nn's normalization layers: tensors with these last name components are
# counted apart from parameters (see the module docstring).

BUFFER_NAMES = ("running_mean", "running_var", "num_batches_tracked")


def is_buffer_name(name: str) -> bool:
    """``bn1.running_mean`` -> True: a normalization layer's buffer, not a parameter."""
    return name.rpartition(".")[2] in BUFFER_NAMES


@dataclass(frozen=True, slots=True)
class TensorEntry:
    """One tensor of a checkpoint, e.g. ``fc.weight`` of shape (8, 16) float32: 128 elements, 512 bytes."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # torch's name without the prefix: "float32", "bfloat16"
    numel: int  # elements
    nbytes: int  # bytes: numel x itemsize
    tied_to: str | None = None  # name of an earlier tensor with the same storage; counted once

    @property
    def is_buffer(self) -> bool:
        """A normalization buffer (``running_mean``, ``running_var``, ``num_batches_tracked``)."""
        return is_buffer_name(self.name)


_KEY_REPR = reprlib.Repr()
_KEY_REPR.maxlevel, _KEY_REPR.maxtuple, _KEY_REPR.maxstring, _KEY_REPR.maxother = 4, 8, 60, 60


def _key_text(key: Any) -> str:
    """A container key as a name part: strings as they are, ints in decimal, anything else
    (tuples, huge ints) as a bounded repr, so a hostile key cannot make a huge name."""
    if isinstance(key, str):
        return key
    if isinstance(key, int) and key.bit_length() <= 128:
        return str(key)
    if isinstance(key, int):
        return f"<int of {key.bit_length():,} bits>"
    try:
        return _KEY_REPR.repr(key)
    except Exception:  # a repr that fails on a hostile value
        return f"<{type(key).__name__}>"


def _short(text: str) -> str:
    """A name for an error message: quoted, escaped, at most 200 characters."""
    return repr(shown(text, 200)) if isinstance(text, str) else _KEY_REPR.repr(text)


def natural_key(name: str) -> list[tuple[int, int, str]]:
    """Sort ``layer.2`` before ``layer.10``: numeric name parts compare as numbers (by their
    digits, so a part of thousands of digits costs no int conversion).

    >>> sorted(["layer.10", "layer.2", "layer.02.b", "head"], key=natural_key)
    ['head', 'layer.2', 'layer.02.b', 'layer.10']
    """
    key = []
    for part in name.split("."):
        if part.isascii() and part.isdigit():
            digits = part.lstrip("0")
            key.append((0, len(digits), digits))
        else:
            key.append((1, 0, part))
    return key
