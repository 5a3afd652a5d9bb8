"""Describe nested inputs and outputs as plain data: shapes, dtypes and bytes, no tensors kept.

A *shape tree* mirrors a real value with only built-in types:

- a tensor becomes a ``tuple`` of ints (its shape; ``()`` for a 0-dim tensor);
- a list / tuple becomes a ``list`` of shape trees (so a container is never confused with a shape);
- a dict, ``OrderedDict``, ``transformers`` ``ModelOutput``, dataclass, namedtuple (``PackedSequence``
  included) or ``torch.distributions.Distribution`` becomes a ``dict`` of its fields;
- a type registered with ``torch.utils._pytree`` becomes a ``list`` of its children;
- a nested (ragged) tensor becomes the ``list`` of its components' shapes;
- a NumPy array becomes a ``tuple`` like a tensor (its dtype named as NumPy names it, ``float64``;
  its bytes are ``arr.nbytes``); numpy is never imported here, only recognised once imported;
- any other object with tensors (or arrays) among its attributes (``vars(obj)``: a DETR
  ``NestedTensor`` with ``.tensors`` and ``.mask``, a user's class) becomes a ``dict`` of those
  attributes, in attribute order; attributes holding no tensor are left out, and objects among
  the attributes are not looked into (one level: an object may reference a whole model, a
  tokenizer, a config);
- anything else (``None``, ``str``, ``int``, an object without tensors, a module, a
  ``transformers`` cache, ...) becomes its type name, e.g. ``"NoneType"``.

>>> import torch
>>> out = torch.zeros(2, 7, 10), (torch.zeros(1, 2, 10), torch.zeros(1, 2, 10))
>>> d = describe(out)
>>> d.tree
[(2, 7, 10), [(1, 2, 10), (1, 2, 10)]]
>>> d.nbytes            # (140 + 20 + 20) elements * 4 bytes
720
"""

from __future__ import annotations

import dataclasses
import sys
import types
from collections.abc import Container
from typing import Any, NamedTuple

import torch
from torch.distributions import Distribution
from torch.utils import _pytree as pytree

ShapeTree = Any  # tuple[int, ...] | list[ShapeTree] | dict[str, ShapeTree] | str

_Tensor = torch.Tensor


class Described(NamedTuple):
    """One value described: its shape tree, the leaves' dtypes in order, and per-leaf sizes."""

    tree: ShapeTree
    dtypes: tuple[torch.dtype | str, ...]  # a NumPy array's dtype as its name, "float64"
    shapes: tuple[tuple[int, ...], ...]  # every tensor leaf's shape, in tree order
    itemsizes: tuple[int, ...]  # bytes per element of each leaf
    # positions of leaves that are the very tensor of an earlier leaf (``attn(x, x, x)``): one
    # tensor, not three; and of leaves that are one of the model's parameters or buffers (see
    # netsummary._tracing.batch.ambiguous)
    repeats: frozenset[int] = frozenset()
    constants: frozenset[int] = frozenset()

    @property
    def nbytes(self) -> int:
        """Bytes of every tensor in the value: sum of ``numel * element_size``."""
        return sum(_numel(s) * i for s, i in zip(self.shapes, self.itemsizes))


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def describe(value: Any, constants: Container[int] = ()) -> Described:
    """Describe ``value`` (any nesting of tensors and Python objects) as a :class:`Described`.

    ``constants``: ids of tensors known not to carry the batch (the model's parameters and
    buffers); the positions of such leaves are marked. A lone tensor is never looked up.

    Bounded on hostile structures: a container that contains itself is described as
    ``"<list: cycle>"`` where it recurs, nesting deeper than 32 levels as the inner value's type
    name, and past 100,000 values the rest as type names.

    >>> out = [torch.zeros(1)]; out.append(out)
    >>> describe(out).tree
    [(1,), '<list: cycle>']
    """
    if isinstance(value, _Tensor) and not value.is_nested:  # fast path: most outputs are one tensor
        shape = tuple(value.shape)
        return Described(shape, (value.dtype,), (shape,), (value.element_size(),))
    walk = _Walk(constants)
    tree = walk.walk(value, 0)
    return Described(tree, tuple(walk.dtypes), tuple(walk.shapes), tuple(walk.sizes), frozenset(walk.repeats),
                     frozenset(walk.constant))


_MAX_DEPTH = 32  # nesting deeper than this is described by the inner value's type name
_MAX_VALUES = 100_000  # a value shared at every level would otherwise be walked 2**depth times


class _Walk:
    """One :func:`describe` walk: the tensor leaves found so far, the containers on the current
    path (for cycles) and the number of values visited (a bound on shared sub-structures)."""

    __slots__ = ("dtypes", "shapes", "sizes", "path", "visited", "in_object", "tensors", "repeats", "constants",
                 "constant")

    def __init__(self, constants: Container[int] = ()) -> None:
        self.dtypes: list[torch.dtype] = []
        self.shapes: list[tuple[int, ...]] = []
        self.sizes: list[int] = []
        self.path: set[int] = set()
        self.visited = 0
        self.in_object = False  # walking a plain object's attributes
        self.tensors: set[int] = set()  # ids of the tensor leaves found (alive while walked)
        self.repeats: list[int] = []  # positions of leaves that repeat an earlier leaf's tensor
        self.constants = constants
        self.constant: list[int] = []  # positions of leaves that are one of ``constants``

    def walk(self, value: Any, depth: int) -> ShapeTree:
        if isinstance(value, _Tensor) and not value.is_nested:
            shape = tuple(value.shape)
            if id(value) in self.tensors:
                self.repeats.append(len(self.shapes))
            else:
                self.tensors.add(id(value))
            if id(value) in self.constants:
                self.constant.append(len(self.shapes))
            self.dtypes.append(value.dtype)
            self.shapes.append(shape)
            self.sizes.append(value.element_size())
            return shape
        self.visited += 1
        if depth > _MAX_DEPTH or self.visited > _MAX_VALUES or type(value) in _ATOMS:
            return type(value).__name__  # an atom holds nothing: its name without the checks below
        if id(value) in self.path:
            return f"<{type(value).__name__}: cycle>"
        self.path.add(id(value))
        try:
            return self._children(value, depth + 1)
        finally:
            self.path.discard(id(value))

    def _children(self, value: Any, depth: int) -> ShapeTree:
        rec = self.walk
        if isinstance(value, _Tensor):  # nested (ragged): the list of its components
            try:
                parts = value.unbind()
            except (RuntimeError, NotImplementedError):
                return "NestedTensor"
            return [rec(p, depth) for p in parts]
        if isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple, PackedSequence
            return {f: rec(getattr(value, f), depth) for f in value._fields}
        if isinstance(value, (list, tuple)):
            return [rec(v, depth) for v in value]
        if isinstance(value, dict):  # dict, OrderedDict, transformers ModelOutput
            return {str(k): rec(v, depth) for k, v in value.items()}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: rec(getattr(value, f.name), depth) for f in dataclasses.fields(value)}
        if isinstance(value, Distribution):
            names = [n for n in value.arg_constraints if n in vars(value)]
            return {n: rec(getattr(value, n), depth) for n in names}
        node = pytree.SUPPORTED_NODES.get(type(value))
        if node is not None:  # its direct children, through the type's own flatten function
            children, _ = node.flatten_fn(value)
            return [rec(c, depth) for c in children]
        np = sys.modules.get("numpy")  # only if someone imported it: never imported here
        if np is not None and isinstance(value, np.ndarray):
            shape = tuple(int(n) for n in value.shape)
            self.dtypes.append(str(value.dtype))
            self.shapes.append(shape)
            self.sizes.append(int(value.itemsize))
            return shape
        if self.in_object or isinstance(value, _OPAQUE) or _is_cache(value):
            return type(value).__name__
        try:
            fields = list(vars(value).items())
        except Exception:  # no __dict__ (None, int, __slots__ classes), or a hostile one
            return type(value).__name__
        kept = {}
        self.in_object = True  # one level: objects among its attributes stay type names
        try:
            for k, v in fields:  # an attribute is kept when its walk found a tensor (or an array)
                before = len(self.shapes)
                tree = rec(v, depth)
                if len(self.shapes) > before:
                    kept[str(k)] = tree
        finally:
            self.in_object = False
        return kept or type(value).__name__


def _is_cache(value: Any) -> bool:
    """A ``transformers`` key/value cache: state every layer fills in as it runs (described after
    the call, each decoder layer would show another one), not a value; shown by its class name."""
    cache_utils = sys.modules.get("transformers.cache_utils")  # never imported here
    cache = getattr(cache_utils, "Cache", None)
    return isinstance(cache, type) and isinstance(value, cache)


# values that hold no tensor and have no fields: named at once (exact types only; a subclass of
# int or str may carry attributes, and goes through the checks)
_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes, type(...), torch.dtype, torch.device,
                    torch.layout, torch.memory_format})

# never looked into: their attributes are machinery (a module's parameters are not an output)
_OPAQUE = (type, types.ModuleType, types.FunctionType, types.MethodType, types.BuiltinFunctionType, torch.nn.Module)


def batch_axis(shape: tuple[int, ...], run_batch: int) -> int | None:
    """The axis shown as the batch (``-1``): the first axis whose size equals the run batch.

    Used only when the caller asked for ``batch_size=-1`` with ``input_size``: the forward then runs
    with a batch of ``run_batch`` samples and a tensor that carries that batch shows it as ``-1``
    (an LSTM's ``h_n`` of shape ``(layers, batch, hidden)`` shows ``[1, -1, 10]``). A tensor with no
    axis of that size (positional embeddings, a model constant) is shown as it is.

    >>> batch_axis((1, 2, 10), 2), batch_axis((10, 16), 2)
    (1, None)
    """
    for i, d in enumerate(shape):
        if d == run_batch:
            return i
    return None


def map_shapes(tree: ShapeTree, fn) -> ShapeTree:
    """Apply ``fn`` to every tensor shape (tuple) in a shape tree, keeping its structure."""
    if isinstance(tree, tuple):
        return fn(tree)
    if isinstance(tree, list):
        return [map_shapes(t, fn) for t in tree]
    if isinstance(tree, dict):
        return {k: map_shapes(v, fn) for k, v in tree.items()}
    return tree
