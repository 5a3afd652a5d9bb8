"""Keep torch's fake-tensor tracebacks off stderr while netsummary runs a forward on fake tensors.

When a meta kernel raises inside ``FakeTensorMode`` (a shape mismatch, an operator that needs
real values), torch logs the whole traceback on the ``torch._subclasses.fake_tensor`` logger
(``log.exception("failed while attempting to run meta for %s", func)``, about 18 lines on
stderr) and then raises the very same exception, which netsummary reports as a
:class:`~netsummary.ForwardError` chained to it. :func:`quiet_fake_tensor_logs` drops those
records, and only those: records with an exception attached or at ERROR and above, from the
listed loggers, on the thread that entered it, while it is active. It adds one
:class:`logging.Filter` object per logger and removes exactly that object on exit: no logger
level, handler, propagation flag or global logging setting is touched, nothing is
monkeypatched, and other threads (and records of other loggers) are unaffected.

>>> import logging
>>> log = logging.getLogger("torch._subclasses.fake_tensor")
>>> before = list(log.filters)
>>> with quiet_fake_tensor_logs():
...     log.exception("failed while attempting to run meta for %s", "aten.mm.default")   # dropped
>>> log.filters == before
True
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

# The loggers whose error records repeat an exception netsummary re-raises as a ForwardError.
# torch/_subclasses/fake_tensor.py: "failed while attempting to run meta for ..." and
# "fake tensor raised TypeError" (both log.exception, then re-raise).
FAKE_TENSOR_LOGGERS = ("torch._subclasses.fake_tensor",)


class _ThreadErrorFilter(logging.Filter):
    """Drop error records (exception attached, or ERROR and above) logged on one thread."""

    def __init__(self, thread_id: int) -> None:
        super().__init__()
        self.thread_id = thread_id
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        # a logger's filters run on the thread that logs (record.thread is None without logThreads)
        if threading.get_ident() != self.thread_id:
            return True
        if record.exc_info or record.levelno >= logging.ERROR:
            self.dropped += 1
            return False
        return True


@contextlib.contextmanager
def quiet_fake_tensor_logs(names: tuple[str, ...] = FAKE_TENSOR_LOGGERS) -> Iterator[_ThreadErrorFilter]:
    """Suppress the fake-tensor loggers' error records on this thread while active.

    Yields the filter (``.dropped`` counts the records it dropped). Nesting and concurrent use
    from several threads are fine: each use adds and removes its own filter object.
    """
    flt = _ThreadErrorFilter(threading.get_ident())
    loggers = [logging.getLogger(name) for name in names]
    added: list[logging.Logger] = []
    try:
        for log in loggers:
            log.addFilter(flt)
            added.append(log)
        yield flt
    finally:
        for log in added:
            log.removeFilter(flt)
