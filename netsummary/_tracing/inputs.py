"""Turn the caller's input description into the exact ``(args, kwargs)`` of one forward call.

Everything here is validated before any forward runs: a bad ``input_size``, ``dtypes``,
``batch_size``, ``mode`` or device raises :class:`~netsummary.InputSpecError` /
:class:`~netsummary.DeviceError` saying what was expected and what was received.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.distributions import Distribution
from torch.utils import _pytree as pytree

from .._errors import DeviceError, InputSpecError, InputTypeError

MODES = ("eval", "train", "same")

# When batch_size=-1 the forward runs on this many samples and shows the batch as -1. Two, not
# one, so that BatchNorm in train mode has more than one value per channel (as torchsummary does).
DEFAULT_RUN_BATCH = 2
_MAX_DIM = 2**63  # torch sizes are int64


@dataclass(frozen=True, slots=True)
class ForwardInputs:
    """The inputs of the summary's single forward call.

    ``batch_size`` is what tables show (``-1`` = "any batch"); ``run_batch`` is the batch the
    forward really ran with (``None`` when the caller gave real ``input_data``).
    """

    args: tuple
    kwargs: dict[str, Any]
    batch_size: int
    run_batch: int | None
    sizes: tuple[tuple[int, ...], ...] = ()  # of the generated inputs, one sample each
    dtypes: tuple[torch.dtype, ...] = ()


def _dims(shape: Any, where: str) -> tuple[int, ...]:
    """Validate one sample shape (a tuple of positive ints)."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence):
        raise InputTypeError(
            f"{where}: expected a shape such as (3, 64, 64), got {type(shape).__name__} {shape!r}", shape
        )
    dims = []
    for d in shape:
        if isinstance(d, bool) or isinstance(d, float):
            raise InputTypeError(f"{where}: dimensions must be integers, got {d!r} in {shape!r}", shape)
        try:
            d = operator.index(d)
        except TypeError:
            raise InputTypeError(
                f"{where}: dimensions must be integers, got {type(d).__name__} {d!r} in {shape!r}", shape
            ) from None
        if d <= 0:
            raise InputSpecError(f"{where}: dimensions must be positive, got {d} in {tuple(shape)!r}", shape)
        if d >= _MAX_DIM:
            raise InputSpecError(f"{where}: dimension {d} is larger than a tensor can have (2**63 - 1)", shape)
        dims.append(d)
    return tuple(dims)


def normalize_input_size(input_size: Any) -> list[tuple[int, ...]]:
    """torchsummary's convention: one sample's shape (tuple) or a list of them, one per input.

    >>> normalize_input_size((3, 64, 64))
    [(3, 64, 64)]
    >>> normalize_input_size([(3, 8, 8), (5,)])
    [(3, 8, 8), (5,)]
    """
    if isinstance(input_size, tuple) and input_size and all(isinstance(x, (tuple, list, torch.Size)) for x in input_size):
        input_size = list(input_size)  # a tuple of shapes: several inputs, as a list would say
    elif isinstance(input_size, (tuple, torch.Size)):
        return [_dims(input_size, "input_size")]
    if isinstance(input_size, list):
        if not input_size:
            raise InputSpecError("input_size: expected a shape or a list of shapes, got an empty list", input_size)
        if all(isinstance(d, int) and not isinstance(d, bool) for d in input_size):
            raise InputSpecError(
                f"input_size: got the list {input_size!r}, which would mean {len(input_size)} inputs of one "
                f"dimension each; for one input pass a tuple {tuple(input_size)!r}, for several inputs a list "
                "of tuples such as [(3, 64, 64), (10,)]",
                input_size,
            )
        return [_dims(s, f"input_size[{i}]") for i, s in enumerate(input_size)]
    raise InputTypeError(
        "input_size: expected a tuple such as (3, 64, 64) or a list of tuples for several inputs, "
        f"got {type(input_size).__name__} {input_size!r}",
        input_size,
    )


def normalize_dtypes(dtypes: Any, n_inputs: int, default: torch.dtype) -> list[torch.dtype]:
    """One dtype per input; ``None`` means ``default`` for all, a single dtype applies to all."""
    if dtypes is None:
        return [default] * n_inputs
    if isinstance(dtypes, torch.dtype):
        return [dtypes] * n_inputs
    if not isinstance(dtypes, (list, tuple)) or not all(isinstance(d, torch.dtype) for d in dtypes):
        raise InputTypeError(f"dtypes: expected a list of torch.dtype such as [torch.long], got {dtypes!r}", dtypes)
    if len(dtypes) != n_inputs:
        raise InputSpecError(
            f"dtypes: expected one dtype per input ({n_inputs} input{'s' * (n_inputs != 1)}), "
            f"got {len(dtypes)}: {list(dtypes)!r}",
            dtypes,
        )
    return list(dtypes)


def check_batch_size(batch_size: Any) -> int:
    try:
        if isinstance(batch_size, (bool, float)):
            raise TypeError
        batch_size = operator.index(batch_size)
    except TypeError:
        raise InputTypeError(f"batch_size: expected -1 or a positive int, got {batch_size!r}", batch_size) from None
    if batch_size != -1 and not 1 <= batch_size < _MAX_DIM:
        raise InputSpecError(f"batch_size: expected -1 (any batch) or a positive int below 2**63, got {batch_size}", batch_size)
    return batch_size


def check_mode(mode: Any) -> str:
    if mode not in MODES:
        raise InputSpecError(f"mode: expected one of {', '.join(map(repr, MODES))}, got {mode!r}", mode)
    return mode


def default_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of generated inputs when ``dtypes`` is not given: the model's first floating
    parameter's dtype (so a half model gets half inputs), float32 for a model without any."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _index_high(model: nn.Module) -> int:
    """An exclusive upper bound valid for every embedding table in the model (at least 1)."""
    highs = [m.num_embeddings for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))]
    return max(1, min(highs)) if highs else 2


def make_inputs(
    model: nn.Module,
    sizes: list[tuple[int, ...]],
    dtypes: list[torch.dtype],
    batch_size: int,
    device: torch.device,
) -> tuple[tuple, int]:
    """Dummy inputs of shape ``(run_batch, *size)``; returns ``(args, run_batch)``.

    Floating inputs are uniform in [0, 1); integer inputs are valid token ids for every
    ``nn.Embedding`` in the model; bool inputs are random masks. Values come from a private
    generator (seed 0), so the caller's global RNG state is untouched.
    """
    run_batch = DEFAULT_RUN_BATCH if batch_size == -1 else batch_size
    gen = torch.Generator().manual_seed(0)
    args = []
    for i, (size, dtype) in enumerate(zip(sizes, dtypes)):
        shape = (run_batch, *size)
        try:
            args.append(_dummy(model, shape, dtype, device, gen))
        except (RuntimeError, NotImplementedError, MemoryError, OverflowError) as err:
            raise InputSpecError(
                f"input {i}: cannot create a {str(dtype).removeprefix('torch.')} tensor of shape {shape} on {device}: {err}",
                size,
            ) from None
    return tuple(args), run_batch


def _dummy(model: nn.Module, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, gen: torch.Generator) -> torch.Tensor:
    """One generated input (see :func:`make_inputs`)."""
    if device.type == "meta":
        return torch.empty(shape, dtype=dtype, device="meta")
    if dtype.is_floating_point:
        x = torch.rand(shape, generator=gen).to(dtype)
    elif dtype.is_complex:
        x = torch.randn(shape, generator=gen, dtype=dtype)
    elif dtype == torch.bool:
        x = torch.randint(0, 2, shape, generator=gen).bool()
    else:
        x = torch.randint(0, _index_high(model), shape, generator=gen).to(dtype)
    return x.to(device)


# Limits of a nested input_data / keyword-argument structure, checked before anything walks it
# (torch.utils._pytree and netsummary's own describe() recurse once per level, so deeper nesting
# would end in a bare RecursionError, a cycle never ends, and a structure that repeats a shared
# container at every level grows exponentially):
MAX_INPUT_DEPTH = 100  # containers inside containers; real inputs nest a handful of levels
MAX_INPUT_VALUES = 1_000_000  # values visited, a shared container counted each time it appears


_ATOMS = frozenset({int, float, bool, str, bytes, complex, type(None), torch.Tensor, nn.Parameter, torch.dtype, torch.device})


def _children(value: Any) -> list[tuple[Any, Any]] | None:
    """``[(key, child), ...]`` of a container that pytree or describe() walks into, else ``None``.
    A key is an ``int`` (sequence index), a ``("attr", name)`` pair (field) or a mapping key."""
    if isinstance(value, torch.Tensor):
        return None
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple, PackedSequence
        return [(("attr", f), getattr(value, f, None)) for f in value._fields]
    if isinstance(value, (list, tuple)):
        return list(enumerate(value))
    if isinstance(value, dict):  # dict, OrderedDict, defaultdict, transformers ModelOutput
        return list(value.items())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [(("attr", f.name), getattr(value, f.name, None)) for f in dataclasses.fields(value)]
    if isinstance(value, Distribution):
        return [(("attr", n), getattr(value, n)) for n in value.arg_constraints if n in vars(value)]
    if type(value) in pytree.SUPPORTED_NODES:  # deque, immutable_list, types registered by libraries
        root = [True]

        def one_level(x: Any) -> bool:  # the value itself is a node, every child a leaf
            first, root[0] = root[0], False
            return not first

        try:
            leaves, _ = pytree.tree_flatten(value, is_leaf=one_level)
        except Exception:  # pytree will say what is wrong with it when it walks it
            return None
        return list(enumerate(leaves))
    return None


def _path_text(path: tuple | str) -> str:
    """``input_data[0]['mask'].h``; a long path keeps its first and last steps."""
    steps: list[str] = []
    while isinstance(path, tuple):  # (parent, key) ... down to the root's name
        path, key = path
        if isinstance(key, tuple) and len(key) == 2 and key[0] == "attr":
            steps.append(f".{key[1]}")
        elif isinstance(key, int) and not isinstance(key, bool):
            steps.append(f"[{key}]")
        else:
            text = repr(key)
            steps.append(f"[{text if len(text) <= 40 else text[:37] + '...'}]")
    steps.reverse()
    if len(steps) > 12:
        steps[6:-4] = [f"...({len(steps) - 10} more)..."]
    return str(path) + "".join(steps)


def check_structure(value: Any, root: str) -> None:
    """Reject an input structure that cannot be walked: one that contains itself, nests more than
    :data:`MAX_INPUT_DEPTH` containers deep or holds more than :data:`MAX_INPUT_VALUES` values.

    The walk is iterative and follows what torch.utils._pytree and describe() follow (lists,
    tuples, dicts, namedtuples, dataclasses, distributions, registered pytree nodes); a cycle is a
    container met again on the path that leads to it (shared, acyclic containers are fine).

    >>> check_structure([torch.zeros(1), {"a": (1, None)}], "input_data")
    >>> loop = [torch.zeros(1)]
    >>> loop.append(loop)
    >>> check_structure(loop, "input_data")
    Traceback (most recent call last):
    ...
    netsummary._errors.InputSpecError: input_data[1]: expected nested containers without cycles, got a list that contains itself (input_data[1] is input_data)
    """
    on_path: dict[int, tuple | str] = {}
    stack: list = [(value, root, 0)]
    exit_mark = object()
    visited = 1
    while stack:
        item = stack.pop()
        v = item[0]
        if v is exit_mark:
            del on_path[item[1]]
            continue
        kids = _children(v)
        if kids is None:
            continue
        _, path, depth = item
        key = id(v)
        if key in on_path:
            raise InputSpecError(
                f"{_path_text(path)}: expected nested containers without cycles, got a "
                f"{type(v).__name__} that contains itself ({_path_text(path)} is {_path_text(on_path[key])})",
                value,
            )
        if depth >= MAX_INPUT_DEPTH:
            raise InputSpecError(
                f"{_path_text(path)}: expected at most {MAX_INPUT_DEPTH} levels of nested containers, got a "
                f"{type(v).__name__} at level {depth + 1}",
                value,
            )
        visited += len(kids)
        if visited > MAX_INPUT_VALUES:
            raise InputSpecError(
                f"{root}: expected at most {MAX_INPUT_VALUES:,} values in a nested structure, got more "
                f"(a shared container counts each time it appears; the limit was passed in {_path_text(path)})",
                value,
            )
        on_path[key] = path
        stack.append((exit_mark, key))
        for k, child in reversed(kids):
            if type(child) not in _ATOMS:
                stack.append((child, (path, k), depth + 1))


def _to_device(value: Any, device: torch.device, what: str) -> Any:
    """Copies of the tensors in ``value`` on ``device`` (the caller's tensors are not touched)."""

    def move(t: torch.Tensor) -> torch.Tensor:
        if t.device == device:
            return t
        try:
            return t.to(device)
        except (RuntimeError, NotImplementedError) as err:
            raise DeviceError(
                f"{what}: a tensor on {t.device} cannot be moved to {device}, where the model is ({err})", device
            ) from None

    return pytree.tree_map_only(torch.Tensor, move, value)


def build_inputs(
    model: nn.Module,
    device: torch.device,
    input_size: Any,
    input_data: Any,
    dtypes: Any,
    batch_size: Any,
    forward_kwargs: Mapping[str, Any],
) -> ForwardInputs:
    """Validate the caller's description and build the forward call's inputs on ``device``."""
    batch_size = check_batch_size(batch_size)
    if input_size is None and input_data is None:
        extra = f" (keyword arguments {sorted(forward_kwargs)} go to forward as they are)" if forward_kwargs else ""
        raise InputSpecError(
            f"expected input_size (e.g. (3, 64, 64)) or input_data (example tensors, or a dict of keyword "
            f"inputs), got neither{extra}"
        )
    if input_size is not None and input_data is not None:
        raise InputSpecError("expected input_size or input_data, got both; pass only one")
    check_structure(dict(forward_kwargs), "kwargs")
    if input_data is not None:
        check_structure(input_data, "input_data")
    kwargs = _to_device(dict(forward_kwargs), device, "keyword arguments")
    if input_data is not None:
        if dtypes is not None:
            raise InputSpecError("dtypes applies to input_size only; input_data tensors already have dtypes", dtypes)
        if batch_size != -1:
            raise InputSpecError("batch_size applies to input_size only; input_data already has its batch", batch_size)
        data = _to_device(input_data, device, "input_data")
        if isinstance(data, Mapping):
            bad = [k for k in data if not isinstance(k, str)]
            if bad:
                raise InputSpecError(f"input_data: a dict is passed as keyword arguments, so its keys must be "
                                     f"strings; got {bad[0]!r}", input_data)
            overlap = set(data) & set(kwargs)
            if overlap:
                raise InputSpecError(f"keyword argument(s) {sorted(overlap)} given both in input_data and as **kwargs")
            return ForwardInputs((), {**data, **kwargs}, batch_size, None)
        args = tuple(data) if isinstance(data, (list, tuple)) and not hasattr(data, "_fields") else (data,)
        return ForwardInputs(args, kwargs, batch_size, None)
    sizes = normalize_input_size(input_size)
    dts = normalize_dtypes(dtypes, len(sizes), default_dtype(model))
    args, run_batch = make_inputs(model, sizes, dts, batch_size, device)
    return ForwardInputs(args, kwargs, batch_size, run_batch, tuple(sizes), tuple(dts))
