"""Overlap reading with computing: run an iterator ahead in a background thread.

Parquet decoding and the Arrow-to-pandas conversion release the GIL, so while the model
scores batch ``n`` the next batches can already be read. The queue is bounded, so at most
``depth`` batches wait in memory whatever the size of the input.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield ``items`` in order, produced up to ``depth`` ahead by a background thread.

    An exception raised by the producer is re-raised in the consumer at the point it
    happened. If the consumer stops early (``break``, an exception, ``close()``), the
    producer is told to stop and does not keep reading.
    """
    if depth < 1:
        raise ValueError(f"depth={depth!r} must be at least 1.")
    buffer: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        # Wake up regularly to see whether the consumer has gone away.
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as error:  # handed to the consumer, not lost in the thread
            put(_Failure(error))
            return
        put(_DONE)

    worker = threading.Thread(target=produce, name="prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        worker.join()
