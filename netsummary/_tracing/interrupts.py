"""Ctrl-C interrupts the model's forward, never netsummary's restore of the model.

A restore cut short by ``KeyboardInterrupt`` (a second Ctrl-C while the first one unwinds the
summary) would leave the model half-restored and netsummary's hooks registered. So a summary runs
inside :func:`deferred_interrupts`: a SIGINT handler that *holds* the signal while netsummary's
own code runs and lets it through only inside :func:`interruptible`, around the model's forward.
When the region ends, netsummary's handler is replaced by the one that was there before and a
held signal is delivered to it, so the user's handler (Python's default raises
``KeyboardInterrupt``) runs exactly as it would have, only once the model is whole.
:func:`uninterrupted` runs one idempotent clean-up the same way, for the context managers used
on their own.

Python runs signal handlers in the main thread only, so only there is anything held; in other
threads no ``KeyboardInterrupt`` arrives asynchronously and the code simply runs. Nothing of
netsummary's stays installed: the handler is removed when the region ends, unless someone else
has installed another one meanwhile, which then stays.

>>> calls = []
>>> with deferred_interrupts():
...     uninterrupted(lambda: calls.append("restored"))
>>> calls
['restored']
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


class _Region:
    """The SIGINT state of one :func:`deferred_interrupts` region (main thread only)."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous
        self.allowed = False  # inside interruptible(): a SIGINT goes through at once
        self.pending: tuple[int, Any] | None = None
        self.before: dict[int, Callable[[], None]] = {}  # see on_interrupt

    def handler(self, signum: int, frame: Any) -> None:
        if self.allowed:
            self.allowed = False  # one interrupt per window: the unwinding that follows is held
            for callback in list(self.before.values()):
                callback()
            _deliver(self.previous, signum, frame)
        elif self.pending is None:
            self.pending = (signum, frame)


_active: _Region | None = None  # only the main thread ever sets it


def _deliver(previous: Any, signum: int, frame: Any) -> None:
    """Hand a SIGINT to ``previous`` as the interpreter would have."""
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:  # the default action: terminate
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.raise_signal(signum)
    # SIG_IGN: ignored, as it would have been


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT inside the block, except within :func:`interruptible`; deliver it after.

    Raises:
        KeyboardInterrupt: (through the previous SIGINT handler) at the end of the block, when a
            SIGINT arrived while it was held.
    """
    global _active
    if threading.current_thread() is not threading.main_thread() or _active is not None:
        yield  # not the main thread, or already inside a region
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:  # a handler installed from C: not ours to replace
        yield
        return
    region = _Region(previous)
    signal.signal(signal.SIGINT, region.handler)
    _active = region
    try:
        yield
    finally:
        _active = None
        if signal.getsignal(signal.SIGINT) == region.handler:
            signal.signal(signal.SIGINT, previous)
        if region.pending is not None:
            _deliver(previous, *region.pending)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Let SIGINT through inside the block (the model's own forward), within a held region."""
    region = _active if threading.current_thread() is threading.main_thread() else None
    if region is None:
        yield
        return
    region.allowed = True
    try:
        yield
    finally:
        region.allowed = False


def on_interrupt(callback: Callable[[], None]) -> Callable[[], None]:
    """Run ``callback()`` (quick, never raising) right before a SIGINT is let through into the
    model's forward by the current region; returns the function that cancels it. Outside a region
    (another thread, no summary running) nothing is registered."""
    region = _active if threading.current_thread() is threading.main_thread() else None
    if region is None:
        return lambda: None
    key = id(callback)
    region.before[key] = callback
    return lambda: region.before.pop(key, None)


def uninterrupted(cleanup: Callable[[], None]) -> None:
    """Run ``cleanup()`` to completion with SIGINT held, then deliver a held SIGINT.

    ``cleanup`` must be idempotent: a ``KeyboardInterrupt`` raised in the few bytecodes before
    the holding handler is installed makes it run again from the start.

    Raises:
        KeyboardInterrupt: after the clean-up finished, when a SIGINT arrived meanwhile.
            Exceptions of ``cleanup`` itself propagate.
    """
    interrupted = False
    while True:
        try:
            with deferred_interrupts():
                cleanup()
            break
        except KeyboardInterrupt:
            # arrived before the handler was in place, or held and delivered at the end: make
            # sure the clean-up ran to its end (it is idempotent), then raise it
            if interrupted:
                raise
            interrupted = True
    if interrupted:
        raise KeyboardInterrupt
