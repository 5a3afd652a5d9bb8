"""Will it fit? A measured peak held to a memory size or a CUDA device, with the largest batch and context.

``fits=`` takes a size (``"24GiB"``, ``"80GB"``, an int of bytes; parsed by
:func:`netsummary._units.parse_bytes`: ``GiB`` = 2**30 bytes, ``GB`` = 10**9 bytes) or a CUDA device
(``"cuda"``, ``"cuda:0"``, a ``torch.device``), whose free memory is read with
``torch.cuda.mem_get_info``. ``"cpu"`` is refused: a host has no fixed budget netsummary can read
reliably (other processes, swap, overcommit); give its size instead (``fits="64GiB"``).

The verdict holds the estimate's peak, plus the overheads the measurement cannot see, each named
with its stated size, to the capacity:

* **allocator rounding and fragmentation**: a stated margin, :data:`FRAGMENTATION` (10%) of the
  peak. PyTorch's CUDA caching allocator rounds every block up to a multiple of 512 bytes and
  carves small blocks from 2 MiB segments and medium ones from 20 MiB segments; memory reserved
  but not allocated is typically a few percent to tens of percent of the allocated peak.
* **kernel workspaces**: on a CUDA device, the cuBLAS workspace of one stream
  (``torch.backends.cuda.cublas_workspace_size()``; 32 MiB on Hopper, 4 MiB on large Ampere
  cards by default). cuDNN convolution workspaces depend on the algorithm chosen at run time and
  are not bounded here (the output says so). For a plain size, 0: the size is taken as memory for
  the step's tensors.
* **CUDA context**: on a CUDA device, already out of the free memory (read while this process's
  context is live); for a plain size, not counted — a CUDA process's context (driver, kernels;
  typically 0.3–1 GiB) lies outside torch's allocator, so give the device to have it read.

Largest batch: the step is measured at two batch sizes, and every moment of it (the live bytes
after each allocation) is fitted as ``live(b) = fixed + per_sample × b`` (fixed: parameters,
gradients, optimizer state; per sample: activations, inputs). The peak at batch ``b`` is the
largest of these lines, so the moment that holds the peak may change with the batch (at a small
batch the optimizer step's temporaries, at a large one the backward's activations); this is
exact for a model whose every tensor grows affinely with the batch, and it is solved for the
largest ``b`` whose peak plus overheads fits. Largest context (``transformers`` decoders): the per-sample
part is taken to grow linearly with tokens (true for SDPA and flash attention; eager attention's
``tokens × tokens`` scores grow with the square, so the figure is then an upper bound), the KV
cache by its exact formula (:mod:`.kvcache`).

>>> fit = fit_verdict(peak=3 * 2**30, capacity=parse_fits("8GiB"),
...                   batches=((32, 3 * 2**30), (16, 2 * 2**30)))   # 1 GiB + 64 MiB × batch
>>> fit.fits, fit.margin_bytes        # 8 GiB − 3 GiB − ⌈10% × 3 GiB⌉ = 5,046,586,572 bytes
(True, 5046586572)
>>> fit.largest_batch          # (8 GiB / 1.1 − 1 GiB) / 64 MiB = 100.36
100

Raises :class:`~netsummary._errors.InputSpecError` for a ``fits`` that is neither a size nor a
device (:class:`~netsummary._errors.InputTypeError` for a wrong type) and
:class:`~netsummary._errors.DeviceError` for a CUDA device that is not there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .._errors import DeviceError, InputSpecError, InputTypeError
from .._units import format_bytes, parse_bytes

__all__ = ["Capacity", "FRAGMENTATION", "FitVerdict", "Overhead", "fit_verdict", "parse_fits"]

#: The stated margin for allocator rounding and fragmentation, a fraction of the peak.
FRAGMENTATION = 0.10

_EXPECTED = ("expected a size with a unit such as '24GiB' or '80GB' (GiB = 2**30 bytes, GB = 10**9 bytes), "
             "an int of bytes, or a CUDA device such as 'cuda:0'")


@dataclass(frozen=True, slots=True)
class Capacity:
    """What a step must fit in: ``bytes`` available, and where the figure comes from.

    ``device`` is ``"cuda:0"`` for a device read with ``torch.cuda.mem_get_info`` (then
    ``total_bytes`` is the device's memory and ``bytes`` its free memory, ``workspace_bytes`` the
    cuBLAS workspace), ``None`` for a given size.
    """

    bytes: int
    device: str | None = None
    total_bytes: int | None = None
    workspace_bytes: int = 0

    @property
    def label(self) -> str:
        """``"24.00 GiB"`` or ``"cuda:0 (79.10 GiB free of 79.65 GiB)"``."""
        if self.device is None:
            return format_bytes(self.bytes)
        return f"{self.device} ({format_bytes(self.bytes)} free of {format_bytes(self.total_bytes or 0)})"


@dataclass(frozen=True, slots=True)
class Overhead:
    """Memory the estimate cannot see: its ``name``, the ``bytes`` the verdict adds for it (0
    when it is already out of the capacity or not counted) and how that size was stated."""

    name: str
    bytes: int
    note: str


@dataclass(frozen=True, slots=True)
class FitVerdict:
    """Whether the peak plus the named overheads fits the capacity. All sizes in bytes.

    Attributes:
        peak_bytes: the estimate's peak (per rank for a sharded estimate).
        capacity: what it must fit in.
        overheads: what is added to the peak, by name (see the module docstring).
        batch_size: the batch the peak is for.
        fixed_bytes / per_sample_bytes: the two-point fit ``live(b) = fixed + per_sample × b``
            of the moment that sets the largest batch (``None`` without a second measurement).
        batches: the measured ``(batch, peak)`` pairs the fit comes from.
        largest_batch: the largest batch whose peak plus overheads fits (0: not even one
            sample; ``None``: not derivable, i.e. one measurement or a peak not growing with the batch).
        context / largest_context / context_limit: for decoders, the tokens per sample the
            peak is for, the largest that fits at this batch (``None``: not a decoder, or no
            context known), and the model's ``max_position_embeddings`` (``None`` if unset).
        context_note: how the context figure was derived.
        limit_phase: the phase (``"forward"``, ``"backward"``, ``"optimizer"``) of the moment
            that sets the largest batch (``""`` when fitted through the two peaks only).
        fit_note: how the batch fit was made (every moment of the step, or the two peaks).
        peak_note: how ``peak_bytes`` was derived when it is not a measured peak (``"derived at
            2,048 tokens from the measured 16"``).
        lines_context: the tokens per sample ``fixed_bytes`` / ``per_sample_bytes`` and the
            largest batch are for when that is not the measured length (``None``: as measured).
        context_floor_bytes: when not even 1 token fits, what the step needs at 0 tokens (the
            largest tokens-free moment plus its overheads), the reason; else ``None``.
    """

    peak_bytes: int
    capacity: Capacity
    overheads: tuple[Overhead, ...]
    batch_size: int
    fixed_bytes: int | None = None
    per_sample_bytes: int | None = None
    batches: tuple[tuple[int, int], ...] = ()
    largest_batch: int | None = None
    context: int | None = None
    largest_context: int | None = None
    context_limit: int | None = None
    context_note: str = ""
    limit_phase: str = ""
    fit_note: str = ""
    peak_note: str = ""
    lines_context: int | None = None
    context_floor_bytes: int | None = None

    @property
    def overhead_bytes(self) -> int:
        """Σ of the overheads' bytes."""
        return sum(o.bytes for o in self.overheads)

    @property
    def need_bytes(self) -> int:
        """The peak plus the overheads."""
        return self.peak_bytes + self.overhead_bytes

    @property
    def margin_bytes(self) -> int:
        """Capacity minus need: the headroom when positive, minus the shortfall when negative."""
        return self.capacity.bytes - self.need_bytes

    @property
    def fits(self) -> bool:
        """``need_bytes <= capacity.bytes``."""
        return self.margin_bytes >= 0

    def __str__(self) -> str:
        from .._reporting.fit import render_fit

        return render_fit(self)


def parse_fits(fits: Any) -> Capacity:
    """Read ``fits=``: a size (``"24GiB"``, ``"80GB"``, an int of bytes) or a CUDA device.

    >>> parse_fits("24GiB").bytes, parse_fits("80GB").bytes, parse_fits(2**30).label
    (25769803776, 80000000000, '1.00 GiB')

    A CUDA device (``"cuda"``, ``"cuda:1"``, ``torch.device("cuda", 0)``) is read with
    ``torch.cuda.mem_get_info(device)``: its free bytes are the capacity.

    Raises:
        InputSpecError: neither a size nor a device (``"24G"`` is ambiguous, ``"big"`` is
            nothing), a zero size, or ``"cpu"`` / ``"meta"`` (no fixed budget to read: give a size).
        InputTypeError: not a str, int or ``torch.device``.
        DeviceError: a CUDA device while CUDA is not available, or one that is not there.
    """
    import torch

    if isinstance(fits, torch.device) or (isinstance(fits, str) and _looks_like_device(fits)):
        return _device_capacity(fits)
    if isinstance(fits, bool) or not isinstance(fits, (str, int)):
        raise InputTypeError(f"fits: {_EXPECTED}; got {fits!r} ({type(fits).__name__})", fits)
    try:
        size = parse_bytes(fits)
    except InputSpecError as err:
        why = str(err).split(": ", 1)[-1]
        if why.startswith("expected a size with a unit, "):  # said once already by _EXPECTED
            why = "not a size: " + why[len("expected a size with a unit, "):]
        raise InputSpecError(f"fits: {_EXPECTED}; got {fits!r} ({why})", fits) from None
    if size == 0:
        raise InputSpecError(f"fits: {_EXPECTED}; got {fits!r}, a size of 0 bytes", fits)
    return Capacity(size)


def _looks_like_device(text: str) -> bool:
    head = text.strip().lower().split(":")[0]
    return head in ("cpu", "cuda", "meta", "mps", "xpu")


def _device_capacity(fits: Any) -> Capacity:
    import torch

    try:
        dev = torch.device(fits.strip() if isinstance(fits, str) else fits)
    except RuntimeError:
        raise InputSpecError(f"fits: {_EXPECTED}; got {fits!r}, not a device torch knows", fits) from None
    if dev.type == "meta":
        raise InputSpecError(f"fits: got {fits!r}; meta tensors hold no memory, so the meta device has no "
                             "budget: give the size of the memory the step must fit in, e.g. fits='80GB', or a "
                             "CUDA device such as 'cuda:0'", fits)
    if dev.type != "cuda":
        raise InputSpecError(f"fits: got {fits!r}; {dev.type} memory has no fixed budget netsummary can read "
                             "reliably (other processes, swap, overcommit): give its size instead, e.g. "
                             "fits='64GiB', or a CUDA device such as 'cuda:0'", fits)
    if not torch.cuda.is_available():
        raise DeviceError(f"fits: got {fits!r}, but CUDA is not available here; give a size instead, e.g. "
                          "fits='24GiB'", fits)
    index = torch.cuda.current_device() if dev.index is None else dev.index
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(f"fits: got {fits!r}, but there {'is' if count == 1 else 'are'} only {count} CUDA "
                          f"device{'s' * (count != 1)} (cuda:0 to cuda:{count - 1})", fits)
    free, total = torch.cuda.mem_get_info(index)
    try:
        with torch.cuda.device(index):
            workspace = int(torch.backends.cuda.cublas_workspace_size())
    except (AttributeError, RuntimeError):  # an older torch: the documented default for this card
        major = torch.cuda.get_device_capability(index)[0]
        workspace = 32 * 2**20 if major >= 9 else 4 * 2**20
    return Capacity(int(free), f"cuda:{index}", int(total), workspace)


def overheads(capacity: Capacity, peak: int, fragmentation: float = FRAGMENTATION) -> tuple[Overhead, ...]:
    """The named overheads for ``peak`` bytes held to ``capacity`` (see the module docstring)."""
    frag = Overhead("allocator rounding, fragmentation", math.ceil(peak * fragmentation),
                    f"{fragmentation:.0%} of the peak, a stated margin (512 B blocks, 2/20 MiB segments)")
    if capacity.device is not None:
        work = Overhead("kernel workspaces", capacity.workspace_bytes,
                        "cuBLAS per stream (torch.backends.cuda.cublas_workspace_size()); cuDNN's vary")
        ctx = Overhead("CUDA context", 0, "already out of the free memory read by torch.cuda.mem_get_info")
    else:
        work = Overhead("kernel workspaces", 0, "not counted for a size; on CUDA cuBLAS takes 32 MiB/stream (Hopper)")
        ctx = Overhead("CUDA context", 0, "not counted for a size; typically 0.3-1 GiB: fits='cuda:N' reads it")
    return frag, work, ctx


def lines_from(batches: tuple[tuple[int, int], ...], curves: tuple[tuple, tuple] | None = None
               ) -> tuple[list[tuple[float, float, str]], str]:
    """The fit ``live(b) = fixed + per_sample × b`` of every moment of the step, from two measured
    batches: ``(fixed, per_sample, phase)`` per allocation when the two runs' ``curves`` (the
    estimates' ``live_curve``, or the per-rank curves) line up one to one, else one line through
    the two peaks; and a note saying which. The peak at batch ``b`` is the largest line at ``b``.
    """
    (b1, p1), (b2, p2) = batches[0], batches[1]
    if curves is not None and curves[0] and len(curves[0]) == len(curves[1]):
        lines = []
        for (l1, _, phase), (l2, _, _) in zip(*curves):
            slope = (l1 - l2) / (b1 - b2)
            lines.append((l1 - slope * b1, slope, phase))
        return lines, "every moment of the step fitted"
    slope = (p1 - p2) / (b1 - b2)
    note = "the two runs allocated differently: fitted through the two peaks" if curves is not None else ""
    return [(p1 - slope * b1, slope, "")], note


def fit_verdict(
    peak: int,
    capacity: Capacity,
    batches: tuple[tuple[int, int], ...] = (),
    batch_size: int | None = None,
    fragmentation: float = FRAGMENTATION,
    curves: tuple[tuple, tuple] | None = None,
    context: int | None = None,
    context_bytes: Any = None,
    context_limit: int | None = None,
    context_note: str = "",
    peak_note: str = "",
    lines: list[tuple[float, float, str]] | None = None,
    lines_context: int | None = None,
) -> FitVerdict:
    """Hold ``peak`` (bytes) to ``capacity``; derive the largest batch from two measured
    ``(batch, peak)`` pairs in ``batches`` (and their allocation ``curves``, see
    :func:`lines_from`) and, when ``context_bytes`` is given, the largest context:
    ``context_bytes(tokens, batch) -> peak`` at the verdict's batch.

    ``batch_size`` defaults to the first measured batch. The largest batch is the largest ``b``
    with ``max over moments (fixed + per_sample × b) × (1 + fragmentation) + other overheads <=
    capacity``; ``fixed_bytes`` / ``per_sample_bytes`` are those of the moment that sets it.
    ``lines`` (with ``lines_context``, the tokens per sample they are for) replaces the lines fitted
    from ``batches``: the caller's lines at the context the verdict is for, so that the largest
    batch and the yes/no line answer the same question. Every batch and context is held to the
    capacity with the verdict's own arithmetic (the peak in whole bytes plus :func:`overheads`),
    so a verdict "no" at batch ``b`` always comes with a largest batch below ``b``.
    """
    if batch_size is None:
        batch_size = batches[0][0] if batches else 1
    extra = overheads(capacity, peak, fragmentation)
    fixed = slope = largest = None
    phase = how = ""
    def holds(value: float) -> bool:  # the verdict's test: whole-byte peak + its overheads <= capacity
        whole = _whole(value)
        return whole + sum(o.bytes for o in overheads(capacity, whole, fragmentation)) <= capacity.bytes

    if len(batches) >= 2 and batches[0][0] != batches[1][0]:
        fitted, how = lines_from(batches, curves)
        largest, (fixed_f, slope_f, phase) = _largest_batch(fitted if lines is None else lines, holds)
        fixed, slope = round(fixed_f), round(slope_f)
    largest_context = floor_need = None
    if context_bytes is not None:
        largest_context = _largest_context(context_bytes, batch_size, holds)
        if largest_context == 0:  # say why: what the step needs with no tokens at all
            floor = _whole(context_bytes(0, batch_size))
            floor_need = floor + sum(o.bytes for o in overheads(capacity, floor, fragmentation))
    return FitVerdict(peak, capacity, extra, batch_size, fixed, slope, tuple(batches), largest, context,
                      largest_context, context_limit, context_note, phase, how, peak_note,
                      lines_context if lines is not None else None,
                      floor_need)


def _whole(value: float) -> int:
    """Bytes as the verdict counts them: a fitted value rounded up to a whole byte (a value
    within a thousandth of a byte of an integer is that integer: float error of the fit)."""
    near = round(value)
    return near if abs(value - near) < 1e-3 else math.ceil(value)


def _largest_batch(lines: list[tuple[float, float, str]], holds: Any) -> tuple[int | None, tuple[float, float, str]]:
    """The largest ``b >= 0`` whose highest line ``fixed + per_sample × b`` ``holds`` (``None``: no
    line grows, no limit), and the line that sets it (the highest one at ``b + 1``)."""

    def top(b: int) -> tuple[float, float, str]:
        return max(lines, key=lambda ln: ln[0] + ln[1] * b)

    def ok(b: int) -> bool:
        f, s, _ = top(b)
        return holds(f + s * b)

    if all(s <= 0 for _, s, _ in lines):
        return None, top(1)
    if not ok(1):
        return 0, top(1)
    lo, hi = 1, 2
    while ok(hi):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo, top(lo + 1)


def _largest_context(peak_at: Any, batch: int, holds: Any) -> int:
    """The largest token count ``t >= 0`` whose ``peak_at(t, batch)`` ``holds`` (``peak_at`` grows
    with ``t``), by doubling then bisection; capped at 2**40 tokens."""

    def ok(t: int) -> bool:
        return holds(peak_at(t, batch))

    if not ok(1):
        return 0
    hi = 1
    while ok(hi * 2) and hi < 2**40:
        hi *= 2
    lo, hi = hi, hi * 2  # ok(lo), not ok(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo
