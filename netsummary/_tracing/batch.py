"""Which axis of each recorded tensor is the batch, for tables that show it as ``-1``.

With ``input_size`` and ``batch_size=-1`` the forward runs on ``run_batch`` (2) generated samples.
Without a second run, a tensor's batch axis is its first axis when that is the only axis of size
``run_batch`` (``[2, 128, 32, 32]``), and it has none when no axis has that size (a positional
table ``[10, 16]``). That reading is trusted only where it cannot be fooled (see
:func:`ambiguous`): a single tensor in, a single tensor out, batch first. Everything else is
ambiguous: an LSTM's ``h_n`` of shape ``[2, 2, 16]`` (two layers, batch 2), a binary
classifier's ``[2, 2]``, a ``(B, B)`` similarity, a constant table of 2 rows ``[2, 8]`` returned
beside the real output or made by a call that received no batch. When some recorded tensor is
ambiguous, the summary runs one more forward with ``run_batch + 1`` samples (under the same guard,
so the model is still left unchanged) and compares every tensor between the two runs:

- exactly one axis changed, from ``run_batch`` to ``run_batch + 1``: that axis is the batch
  (shown ``-1``) and the tensor's bytes count one sample (divided by ``run_batch``);
- nothing changed: the tensor is batch-free (the ``[2, 8]`` table is shown ``[2, 8]``) and its
  bytes are as run;
- anything else, such as a ``(B, B)`` similarity whose two axes both grow (its bytes grow with
  the batch squared), does not grow linearly with the batch: it is shown as run (``[2, 2]``) and
  its bytes are as run, never divided.

If that second run fails or takes another path, the first axis whose size equals ``run_batch`` is
used.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .structure import Described, batch_axis

_RECURRENT = frozenset({nn.RNN, nn.LSTM, nn.GRU})
_LSTM, _MHA = nn.LSTM, nn.MultiheadAttention

Axes = tuple  # tuple[int | None, ...]: one entry per tensor leaf, in tree order


def _clear(shape: tuple[int, ...], run_batch: int) -> bool:
    n = shape.count(run_batch)
    return n == 0 or (n == 1 and shape[0] == run_batch)


def ambiguous(described: Sequence[Described | None], run_batch: int) -> bool:
    """Whether the batch axes of these descriptions need a second run to be known.

    ``described`` holds every call's inputs then its output, in call order (``None`` where a
    call has none recorded). Ambiguous: a tensor with an axis of size ``run_batch`` other than
    its first alone; a call's inputs, or its output, holding more than one tensor with such an
    axis (one of them may be a constant that merely has ``run_batch`` rows; the same tensor
    passed twice, as ``attn(x, x, x)`` is, counts once); one of the model's parameters or buffers
    with such an axis, among several values (``Described.constants``; it never carries the
    batch); an output with such a tensor from a call whose inputs hold none (the size cannot have
    come from the batch). A lone tensor that is a model constant, or a tensor made in the forward
    that merely has ``run_batch`` rows, passed alone (or twice), is not recognized: its first axis
    is read as the batch.

    >>> from netsummary._tracing.structure import describe
    >>> import torch
    >>> x, y = describe(torch.zeros(2, 4)), describe(torch.zeros(2, 3))
    >>> ambiguous([x, y], 2), ambiguous([x, describe((torch.zeros(2, 3), torch.zeros(2, 8)))], 2)
    (False, True)
    >>> ambiguous([describe([]), describe(torch.zeros(2, 8))], 2)  # made from no batch at all
    True
    >>> q = torch.zeros(2, 5, 8)
    >>> ambiguous([describe([q, q, q]), x], 2), ambiguous([describe([q, q + 0]), x], 2)
    (False, True)
    """
    carried = True  # whether the current call's inputs hold a tensor with an axis of size run_batch
    for j, d in enumerate(described):
        n = 0
        if d is not None and len(d.shapes) == 1 and not d.constants:  # one tensor: the common case
            shape = d.shapes[0]
            if run_batch in shape:
                if not _clear(shape, run_batch) or (j % 2 and not carried):
                    return True
                n = 1
        elif d is not None:
            repeats, constants = d.repeats, d.constants
            for k, shape in enumerate(d.shapes):
                if run_batch in shape:
                    if k in constants:  # a parameter or buffer: its size run_batch is no batch
                        return True
                    if k in repeats:  # attn(x, x, x) receives one tensor
                        continue
                    if not _clear(shape, run_batch):
                        return True
                    n += 1
            if n > 1 or (n and j % 2 and not carried):
                return True
        carried = n > 0 or d is None
    return False


def _axes_if(shapes: Sequence[tuple[int, ...]], wanted: Sequence[int | None], ranks: Sequence[int],
             run_batch: int) -> Axes | None:
    """``wanted`` when every shape has the rank expected and ``run_batch`` on its wanted axis."""
    if len(shapes) != len(wanted):
        return None
    for shape, axis, rank in zip(shapes, wanted, ranks):
        if len(shape) != rank or (axis is not None and shape[axis] != run_batch):
            return None
    return tuple(wanted)


def stock_axes(module: object, inp: Described | None, out: Described | None, run_batch: int) -> tuple[Axes, Axes] | None:
    """The batch axes of a call of one of torch's own layers whose outputs put the batch on a
    documented axis that is not the first: ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (``h_n`` and
    ``c_n`` are ``[layers * directions, batch, hidden]``; input and output ``[batch, T, F]``
    with ``batch_first``, else ``[T, batch, F]``) and ``nn.MultiheadAttention`` called with
    ``query, key, value`` only (output as the query, ``[L, batch, E]`` unless ``batch_first``;
    its weights ``[batch, ...]``). Such a call needs no probe forward: the axes are the layer's
    own, checked against the recorded shapes (each must hold ``run_batch`` there, and no
    tensor may be a model parameter or buffer); ``None`` for any other call or shape (an
    unbatched or packed input, masks, other arguments): then the general rules apply."""
    if inp is None or out is None or inp.constants or out.constants:
        return None
    cls = type(module)
    if cls in _RECURRENT:
        b = 0 if getattr(module, "batch_first", False) else 1
        states = 2 if cls is _LSTM else 1  # (h_n, c_n) or h_n
        n_in = len(inp.shapes)
        if n_in not in (1, 1 + states):
            return None
        in_axes = _axes_if(inp.shapes, (b, *(1,) * (n_in - 1)), (3,) * n_in, run_batch)
        out_axes = _axes_if(out.shapes, (b, *(1,) * states), (3,) * (1 + states), run_batch)
    elif cls is _MHA:
        if len(inp.shapes) != 3:  # query, key, value: masks and flags are other arguments
            return None
        b = 0 if getattr(module, "batch_first", False) else 1
        in_axes = _axes_if(inp.shapes, (b, b, b), (3, 3, 3), run_batch)
        n_out = len(out.shapes)  # the weights are None (no leaf) with need_weights=False
        if n_out not in (1, 2):
            return None
        out_axes = _axes_if(out.shapes, (b, 0)[:n_out], (3, len(out.shapes[-1]))[:n_out], run_batch)
    else:
        return None
    return None if in_axes is None or out_axes is None else (in_axes, out_axes)


def _heuristic(d: Described, run_batch: int) -> Axes:
    shapes = d.shapes
    if len(shapes) == 1:  # the common case, without a generator
        return (batch_axis(shapes[0], run_batch),)
    return tuple(batch_axis(shape, run_batch) for shape in shapes)


def _compared(d: Described, probe: Described | None, run_batch: int, probe_batch: int) -> Axes:
    if probe is None or len(probe.shapes) != len(d.shapes):
        return _heuristic(d, run_batch)
    axes: list[int | None] = []
    for shape, other in zip(d.shapes, probe.shapes):
        if len(shape) != len(other):
            axes.append(batch_axis(shape, run_batch))
            continue
        changed = [k for k, (a, b) in enumerate(zip(shape, other)) if a != b]
        # the batch only where the tensor grows linearly with it, along one axis; a (B, B)
        # similarity (two axes grow) or a batch-free tensor (none) is shown and counted as run
        linear = len(changed) == 1 and shape[changed[0]] == run_batch and other[changed[0]] == probe_batch
        axes.append(changed[0] if linear else None)
    return tuple(axes)


class BatchAxes:
    """Batch axes of every call's inputs and output.

    ``run_batch`` is ``None`` when the batch is not shown as ``-1`` (real ``input_data`` or an
    explicit ``batch_size``): then no axis is marked and bytes are as run. ``probe`` holds the
    ``(module, inputs, output)`` of the second run's calls, in call order, or ``None``; that run
    had ``probe_batch`` samples (default ``run_batch + 1``).
    """

    def __init__(
        self, run_batch: int | None, modules: Sequence[object] = (), probe: list | None = None,
        probe_batch: int | None = None, known: dict[int, tuple[Axes, Axes]] | None = None,
    ) -> None:
        self.run_batch = run_batch
        self._modules = modules
        self._probe = probe
        #: call index -> (input axes, output axes) from the layer's own semantics (stock_axes)
        self.known: dict[int, tuple[Axes, Axes]] = known or {}
        self._probe_batch = probe_batch if probe_batch is not None else (run_batch or 0) + 1

    def _probe_of(self, index: int, module: object) -> tuple[Described | None, Described | None] | None:
        probe = self._probe
        if probe is None or index >= len(probe) or probe[index][0] is not module:
            return None
        return probe[index][1], probe[index][2]

    def of_call(self, index: int, module: object, inp: Described | None, out: Described | None) -> tuple[Axes, Axes]:
        """Axes of call ``index``'s inputs and output (``()`` when nothing is marked)."""
        probed = self.probed(index, module)
        if probed is not None:
            return self.compared(inp, out, probed)
        if index in self.known:
            return self.known[index]
        return (() if inp is None else self.heuristic(inp)), (() if out is None else self.heuristic(out))

    def probed(self, index: int, module: object) -> tuple[Described | None, Described | None] | None:
        """The probe run's ``(inputs, output)`` of call ``index`` when it ran the same module
        there, else ``None`` (the axes then follow from the shapes alone: :meth:`heuristic`)."""
        if self.run_batch is None:
            return None
        return self._probe_of(index, module)

    def heuristic(self, d: Described) -> Axes:
        """Axes of a value read from its shapes alone: the first axis of size ``run_batch``."""
        rb = self.run_batch
        return () if rb is None else _heuristic(d, rb)

    def compared(self, inp: Described | None, out: Described | None,
                 probed: tuple[Described | None, Described | None]) -> tuple[Axes, Axes]:
        """Axes of a call's inputs and output against the probe run's (see :meth:`probed`)."""
        rb, pb = self.run_batch, self._probe_batch
        p_in, p_out = probed
        return (() if inp is None else _compared(inp, p_in, rb, pb)), (() if out is None else _compared(out, p_out, rb, pb))

    def of_inputs(self, d: Described, n_generated: int) -> Axes:
        """The forward's inputs: the ``n_generated`` leading ones (generated, one tensor each)
        carry the batch on axis 0; tensors the caller passed as keywords carry none."""
        if self.run_batch is None:
            return ()
        return tuple(0 if j < n_generated else None for j in range(len(d.shapes)))


def per_shown_batch(d: Described, axes: Axes, run_batch: int | None) -> int:
    """Bytes of ``d`` for the batch as shown: tensors with a batch axis count one sample; the
    others (batch-free, or not growing linearly with the batch: ``axes`` has ``None`` for them)
    count as run, never divided."""
    if run_batch is None or not axes:
        return d.nbytes
    if len(axes) == 1:  # one tensor
        n = d.itemsizes[0]
        for x in d.shapes[0]:
            n *= x
        return n // run_batch if axes[0] is not None else n
    total = 0
    for shape, itemsize, axis in zip(d.shapes, d.itemsizes, axes):
        n = itemsize
        for x in shape:
            n *= x
        total += n // run_batch if axis is not None else n
    return total
