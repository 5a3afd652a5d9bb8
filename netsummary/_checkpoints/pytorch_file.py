"""Read a PyTorch checkpoint file into tensor entries, without model code and without executing pickles.

- PyTorch files: ``torch.load(weights_only=True, mmap=True)`` (zip format; legacy files without
  mmap); a pickle that is not weights-only is refused, never executed;
- wrapped training checkpoints (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped and
  nested dicts flattened with dotted names; tensors sharing storage (tied weights saved twice)
  are marked, so they count once.

The work is bounded by the file: unwrapping and flattening visit each container once (linear in
the loaded object), containers nested more than :data:`MAX_NESTING` deep and flattened names
of more than :data:`MAX_NAME_CHARS` characters in all are a :class:`CheckpointError`, and a zip
archive's compressed pickle must not expand past the file's size and :data:`MAX_PICKLE_BYTES`.

Only PyTorch files import torch (in :func:`read_pytorch` and the functions it calls): importing
this module does not.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._errors import CheckpointError
from .._safeio import shown
from .entries import TensorEntry, _key_text, _short

if TYPE_CHECKING:
    import torch

MAX_NESTING = 100  # containers (dicts, lists, tuples) inside one another in a PyTorch checkpoint
MAX_NAME_CHARS = 2**26  # characters of all the dotted names that flattening a checkpoint builds
MAX_PICKLE_BYTES = 64 * 2**20  # a zip archive's compressed pickle may expand to this, or to the file's size
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "weights")


def read_pytorch(path: str, head: bytes) -> tuple[list[TensorEntry], str | None, tuple[str, ...]]:
    import torch  # only PyTorch files need it (several seconds to import)

    try:
        is_zip = zipfile.is_zipfile(path)
    except (zipfile.BadZipFile, ValueError):  # an end record that claims several disks, ...: damaged
        is_zip = False
    if is_zip:
        _check_pickle_sizes(path)
    try:  # only the zip format can be memory-mapped; the legacy format is read into memory
        with warnings.catch_warnings():  # a plain pickle makes torch warn about its protocol, then refuse it
            warnings.filterwarnings("ignore", message=r"Detected pickle protocol", category=UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as err:  # torch's weights-only unpickler refused the file
        reason = (str(err.__context__ or err).strip().splitlines() or ["no reason given"])[-1]
        culprit = re.search(r"GLOBAL ([\w.]+)", f"{err.__context__} {err}")
        if culprit:
            raise CheckpointError(
                f"refusing to load checkpoint {path!r}: it is not a weights-only checkpoint; loading it "
                f"would import and run the Python object {shown(culprit[1], 200)!r}, and netsummary never "
                "executes pickled code. Re-save the weights with torch.save(model.state_dict(), ...) or as "
                "safetensors", path) from err
        raise CheckpointError(
            f"cannot inspect checkpoint {path!r}: not a valid weights-only PyTorch checkpoint "
            f"({shown(reason, 300)}); netsummary never executes pickled code", path) from err
    except Exception as err:  # RuntimeError, EOFError, KeyError, ... for files that are not checkpoints
        detail = (str(err).strip().splitlines() or [""])[0]
        what = ("a zip archive torch.load cannot read" if is_zip else "a damaged or truncated zip archive"
                if head[:2] == b"PK" else "a damaged pickle" if head[:1] == b"\x80"
                else "neither a torch.save zip archive nor a pickle")
        raise CheckpointError(f"cannot inspect checkpoint {path!r}: not a valid PyTorch checkpoint ({what}; "
                              f"{type(err).__name__}: {shown(detail, 300)})", path) from err
    return tensor_entries(obj, path)


def _check_pickle_sizes(path: str) -> None:
    """torch.load decompresses an archive's pickle into memory (torch.save stores it uncompressed):
    refuse a compressed pickle that would expand past the archive's own size and 64 MiB, a zip
    bomb, before torch reads it. A damaged archive is left for torch.load to report."""
    try:
        size = os.path.getsize(path)
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except Exception:  # BadZipFile, EOFError, OSError, ... : torch.load says what is wrong
        return
    for info in infos:
        if info.filename.endswith(".pkl") and info.file_size > max(size, MAX_PICKLE_BYTES):
            raise CheckpointError(
                f"cannot inspect checkpoint {path!r}: its entry {_short(info.filename)} is a pickle compressed from "
                f"{info.file_size:,} to {info.compress_size:,} bytes; loading it would take more memory than the "
                f"file's {size:,} bytes and the limit of {MAX_PICKLE_BYTES:,} (torch.save never compresses)", path)


def tensor_entries(obj: Any, path: str) -> tuple[list[TensorEntry], str | None, tuple[str, ...]]:
    """The tensors of a loaded checkpoint object (unwrapped, flattened, shared storage marked);
    the dotted path of the state dict it was found under; the entries ignored beside it.

    Each container is visited a bounded number of times: the work is linear in the object.

    Raises:
        CheckpointError: containers nested more than :data:`MAX_NESTING` deep, or flattened
            names longer than :data:`MAX_NAME_CHARS` characters in all.
    """
    obj, key, ignored = _unwrap(obj, path)
    seen: dict[tuple[Any, ...], str] = {}
    entries = []
    for name, tensor in _flatten(obj, path):
        identity = _storage_identity(tensor)
        tied_to = seen.setdefault(identity, name) if identity is not None else name
        numel = tensor.numel()
        entries.append(TensorEntry(name, tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."),
                                   numel, numel * tensor.dtype.itemsize, None if tied_to == name else tied_to))
    return entries, key, ignored


def _children(item: Any) -> list[tuple[Any, Any]] | None:
    """A container's ``(key, value)`` pairs; ``None`` for anything else (a tensor, a number)."""
    import torch

    if isinstance(item, Mapping):
        return list(item.items())
    if isinstance(item, (list, tuple)) and not isinstance(item, torch.Size):
        return list(enumerate(item))
    return None


def _too_deep(path: str) -> CheckpointError:
    return CheckpointError(
        f"cannot inspect checkpoint {path!r}: its dicts and lists are nested more than {MAX_NESTING} levels "
        "deep; a state dict maps names to tensors, a training checkpoint wraps it a few levels deep", path)


def _holding_tensors(root: Any, path: str) -> set[int]:
    """The ids of the containers under ``root`` that hold a tensor at any depth: one post-order
    walk, each container expanded once (a container inside its own subtree, a cycle, counts as
    holding nothing through that edge)."""
    import torch

    holding: set[int] = set()
    expanded: set[int] = set()
    stack: list[tuple[Any, list[tuple[Any, Any]] | None, int]] = [(root, None, 0)]
    while stack:  # iterative: a hostile file cannot exhaust the recursion limit
        item, children, level = stack.pop()
        if children is not None:  # every child is done: does any of them hold a tensor?
            if any(isinstance(v, torch.Tensor) or id(v) in holding for _, v in children):
                holding.add(id(item))
            continue
        if id(item) in expanded:
            continue
        children = _children(item)
        if children is None:
            continue
        if level >= MAX_NESTING:
            raise _too_deep(path)
        expanded.add(id(item))
        stack.append((item, children, level))
        stack.extend((v, None, level + 1) for _, v in children if not isinstance(v, torch.Tensor))
    return holding


def _unwrap(obj: Any, path: str = "") -> tuple[Any, str | None, tuple[str, ...]]:
    """Descend through wrapper keys (``state_dict``, ``model``, ...) of a training checkpoint; also
    return the dotted path taken and the entries left beside it (``optimizer``, ``epoch``)."""
    import torch

    holding = _holding_tensors(obj, path)
    keys: list[str] = []
    ignored: list[str] = []
    visited = {id(obj)}
    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        key = next((k for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping) and id(obj[k]) in holding), None)
        if key is None or id(obj[key]) in visited:  # nothing to descend into, or a cycle
            break
        where = ".".join(keys)
        ignored += [f"{where}.{_key_text(k)}" if where else _key_text(k) for k in obj if k != key]
        keys.append(key)
        obj = obj[key]
        visited.add(id(obj))
    return obj, ".".join(keys) or None, tuple(ignored)


def _flatten(obj: Any, path: str = "") -> list[tuple[str, torch.Tensor]]:
    """Tensors in nested dicts/lists/tuples, in order, with dotted names; other leaves are ignored.

    Each container is expanded once (a pickle can hold cycles, ``d["self"] = d``, and share one
    container many times); the names built are bounded by :data:`MAX_NAME_CHARS` in all.
    """
    import torch

    found: list[tuple[str, torch.Tensor]] = []
    stack: list[tuple[str, Any, int]] = [("", obj, 0)]
    visited: set[int] = set()
    chars = 0
    while stack:  # iterative: a hostile file cannot exhaust the recursion limit
        prefix, item, level = stack.pop()
        if isinstance(item, torch.Tensor):
            found.append((prefix or "tensor", item))
            continue
        if id(item) in visited:
            continue
        visited.add(id(item))
        children = _children(item)
        if children is None:
            continue
        if level >= MAX_NESTING:
            raise _too_deep(path)
        named = [(f"{prefix}.{_key_text(k)}" if prefix else _key_text(k), v) for k, v in children]
        chars += sum(len(name) for name, _ in named)
        if chars > MAX_NAME_CHARS:
            raise CheckpointError(
                f"cannot inspect checkpoint {path!r}: its tensor names, nested keys joined with dots, come to "
                f"more than {MAX_NAME_CHARS:,} characters in all; a state dict's names are short", path)
        stack.extend((name, v, level + 1) for name, v in reversed(named))
    return found


def _storage_identity(tensor: torch.Tensor) -> tuple[Any, ...] | None:
    """What makes two loaded tensors the same bytes; ``None`` when it cannot be told (or is empty)."""
    import torch

    if tensor.numel() == 0 or tensor.layout != torch.strided or tensor.device.type != "cpu":
        return None
    pointer = tensor.untyped_storage().data_ptr()
    if not pointer:
        return None
    return (pointer, tensor.storage_offset(), tuple(tensor.shape), tensor.stride(), tensor.dtype)
