"""Run clean-up code to its end even when Ctrl-C arrives: SIGINT is deferred, then re-delivered.

A restore cut short by ``KeyboardInterrupt`` (a second Ctrl-C while the first one unwinds the
summary) would leave the model half-restored. :func:`uninterrupted` runs an idempotent clean-up
with SIGINT deferred: a SIGINT arriving meanwhile is held, and once the clean-up has finished it
is delivered again to the handler that was installed before, so the user's handler (Python's
default raises ``KeyboardInterrupt``) runs exactly as it would have, only later.

Python runs signal handlers in the main thread only, so only there is anything deferred; in other
threads no ``KeyboardInterrupt`` can arrive asynchronously and the clean-up simply runs. The
handler netsummary installs is replaced by the previous one before the signal is delivered again:
nothing of netsummary's stays installed.

>>> calls = []
>>> uninterrupted(lambda: calls.append("restored"))
>>> calls
['restored']
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any


def uninterrupted(cleanup: Callable[[], None]) -> None:
    """Run ``cleanup()`` to completion with SIGINT deferred, then re-deliver a deferred SIGINT.

    ``cleanup`` must be idempotent: a ``KeyboardInterrupt`` raised in the few bytecodes before
    the deferring handler is installed makes it run again from the start.

    Raises:
        KeyboardInterrupt: (through the previous SIGINT handler) when a SIGINT arrived during the
            clean-up, after the clean-up finished. Exceptions of ``cleanup`` itself propagate.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        cleanup()  # no Python-level SIGINT handler to defer (another thread, or one set from C)
        return
    pending: list[Any] = []
    interrupted = False
    while True:
        try:
            previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
            try:
                cleanup()
            finally:
                signal.signal(signal.SIGINT, previous)
            break
        except KeyboardInterrupt:  # arrived before the handler was in place: run it all again
            interrupted = True
    if interrupted:  # the user's handler already ran and raised: raise it again, once done
        raise KeyboardInterrupt
    if pending:
        signal.raise_signal(signal.SIGINT)  # to the user's handler, as it would have gone
