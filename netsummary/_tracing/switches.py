"""Process-global switches shared by overlapping summaries: held while any summary runs.

Some settings netsummary needs during a forward are process-global, not per thread: the fused
fast path of ``nn.TransformerEncoderLayer`` / ``nn.TransformerEncoder`` (which would skip the
submodule calls a summary exists to show; held off only for a model holding one, see
:func:`mha_fast_path_off`) and the cyclic garbage collector (paused while records are built). Two summaries in two
threads overlap in any order, so neither may restore "its" snapshot at its own end: the first to
enter saves the setting and changes it, the last to leave puts it back — and only if it still
holds the value netsummary set, so a change someone else made meanwhile stands.

While a summary of such a model runs, other threads see the switch changed too (a forward of another
``nn.MultiheadAttention`` then takes the unfused path: the same results, a little slower).

>>> import gc
>>> was = gc.isenabled()
>>> with GC_PAUSED.held():
...     with GC_PAUSED.held():      # nested or in another thread: still paused
...         pass
...     gc.isenabled()
False
>>> gc.isenabled() == was
True
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from .interrupts import uninterrupted


class SharedSwitch:
    """A process-global setting held at ``value`` while at least one holder is inside :meth:`held`.

    Args:
        get: reads the setting.
        put: writes the setting.
        value: what the setting is held at.
    """

    def __init__(self, get: Callable[[], Any], put: Callable[[Any], None], value: Any) -> None:
        self._get, self._put, self._value = get, put, value
        self._lock = threading.Lock()
        self._holders = 0
        self._saved: Any = None
        self._changed = False

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the setting for the ``with`` block; the last holder out restores it."""
        with self._lock:
            if self._holders == 0:
                self._saved = self._get()
                self._changed = self._saved != self._value
                if self._changed:
                    self._put(self._value)
            self._holders += 1
        released = [False]

        def release() -> None:
            if released[0]:  # idempotent: uninterrupted() may run it twice
                return
            with self._lock:
                if released[0]:
                    return
                released[0] = True
                self._holders -= 1
                if self._holders == 0 and self._changed and self._get() == self._value:
                    self._put(self._saved)

        try:
            yield
        finally:
            uninterrupted(release)


def _put_gc(enabled: bool) -> None:
    gc.enable() if enabled else gc.disable()


#: ``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer``'s fused fast path, off.
MHA_FASTPATH_OFF = SharedSwitch(torch.backends.mha.get_fastpath_enabled, torch.backends.mha.set_fastpath_enabled, False)


def mha_fast_path_off(modules: Iterable[Any]) -> contextlib.AbstractContextManager:
    """:data:`MHA_FASTPATH_OFF` held, for a model whose fused fast path would hide module calls;
    else nothing.

    ``nn.TransformerEncoderLayer``'s fast path runs one fused kernel in place of its ``self_attn``,
    ``linear1``, ``norm1``... calls (their rows would be missing), and ``nn.TransformerEncoder``'s
    turns a padded batch into a nested tensor. ``nn.MultiheadAttention``'s own fast path hides no
    call (its ``out_proj`` is a weight holder, never called, on either path) and its fused
    operator has a MAC formula equal to the unfused count (``_mha`` in
    :mod:`netsummary._analysis.flops`), so a model holding only that keeps the fast path: the
    summary runs the forward the user runs (ViT-B/16: 2.6x a bare forward with it off), and the
    process-global switch other threads see is left alone.
    """
    from torch import nn

    hiding = (nn.TransformerEncoderLayer, nn.TransformerEncoder)
    hides = any(issubclass(t, hiding) for t in {type(m) for m in modules})  # a few types, not every module
    return MHA_FASTPATH_OFF.held() if hides else contextlib.nullcontext()
#: The cyclic garbage collector, paused: a full collection over a process holding torch costs tens
#: of milliseconds and would otherwise run mid-summary.
GC_PAUSED = SharedSwitch(gc.isenabled, _put_gc, False)
