"""Which axis of each recorded tensor is the batch, for tables that show it as ``-1``.

With ``input_size`` and ``batch_size=-1`` the forward runs on ``run_batch`` (2) generated samples.
A tensor's batch axis is plain when exactly its first axis has that size (``[2, 128, 32, 32]``)
or when no axis does (a positional table ``[10, 16]``). Anything else is ambiguous: an LSTM's
``h_n`` of shape ``[2, 2, 16]`` (two layers, batch 2), a binary classifier's ``[2, 2]``. When some
recorded tensor is ambiguous, the summary runs one more forward with ``run_batch + 1`` samples
(under the same guard, so the model is still left unchanged) and an axis is the batch exactly
when its size changed between the two runs. If that second run fails or takes another path, the
first axis whose size equals ``run_batch`` is used.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._structure import Described, batch_axis

Axes = tuple  # tuple[int | None, ...]: one entry per tensor leaf, in tree order


def _clear(shape: tuple[int, ...], run_batch: int) -> bool:
    n = shape.count(run_batch)
    return n == 0 or (n == 1 and shape[0] == run_batch)


def ambiguous(described: Sequence[Described | None], run_batch: int) -> bool:
    """Whether any tensor in these descriptions has an ambiguous batch axis."""
    return any(not _clear(shape, run_batch) for d in described if d is not None for shape in d.shapes)


def _heuristic(d: Described, run_batch: int) -> Axes:
    shapes = d.shapes
    if len(shapes) == 1:  # the common case, without a generator
        return (batch_axis(shapes[0], run_batch),)
    return tuple(batch_axis(shape, run_batch) for shape in shapes)


def _compared(d: Described, probe: Described | None, run_batch: int) -> Axes:
    if probe is None or len(probe.shapes) != len(d.shapes):
        return _heuristic(d, run_batch)
    axes = []
    for shape, other in zip(d.shapes, probe.shapes):
        if len(shape) != len(other):
            axes.append(batch_axis(shape, run_batch))
            continue
        changed = [k for k, (a, b) in enumerate(zip(shape, other)) if a == run_batch and a != b]
        axes.append(changed[0] if changed else None)
    return tuple(axes)


class BatchAxes:
    """Batch axes of every call's inputs and output.

    ``run_batch`` is ``None`` when the batch is not shown as ``-1`` (real ``input_data`` or an
    explicit ``batch_size``): then no axis is marked and bytes are as run. ``probe`` holds the
    ``(inputs, output)`` descriptions of the second run's calls, in call order, or ``None``.
    """

    def __init__(self, run_batch: int | None, modules: Sequence[object] = (), probe: list | None = None) -> None:
        self.run_batch = run_batch
        self._modules = modules
        self._probe = probe

    def _probe_of(self, index: int, module: object) -> tuple[Described | None, Described | None] | None:
        probe = self._probe
        if probe is None or index >= len(probe) or probe[index][0] is not module:
            return None
        return probe[index][1], probe[index][2]

    def of_call(self, index: int, module: object, inp: Described | None, out: Described | None) -> tuple[Axes, Axes]:
        """Axes of call ``index``'s inputs and output (``()`` when nothing is marked)."""
        rb = self.run_batch
        if rb is None:
            return (), ()
        probed = self._probe_of(index, module)
        p_in, p_out = probed if probed is not None else (None, None)
        return (
            () if inp is None else _compared(inp, p_in, rb) if probed else _heuristic(inp, rb),
            () if out is None else _compared(out, p_out, rb) if probed else _heuristic(out, rb),
        )

    def of_inputs(self, d: Described, n_generated: int) -> Axes:
        """The forward's inputs: the ``n_generated`` leading ones (generated, one tensor each)
        carry the batch on axis 0; tensors the caller passed as keywords carry none."""
        if self.run_batch is None:
            return ()
        return tuple(0 if j < n_generated else None for j in range(len(d.shapes)))


def per_shown_batch(d: Described, axes: Axes, run_batch: int | None) -> int:
    """Bytes of ``d`` for the batch as shown: tensors with a batch axis count one sample."""
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
