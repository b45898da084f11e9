"""Overlap I/O with computing: read ahead and write behind in background threads.

Parquet decoding, encoding and the Arrow conversions release the GIL, so while the model
scores batch ``n`` the next batches can already be read and the previous one written.
Queues are bounded, so at most ``depth`` batches wait in memory whatever the input size.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterable
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class _Producer:
    """The background thread of ``prefetch``: puts items into a bounded queue until told
    to stop, then a failure or the end marker."""

    def __init__(self, items: Iterable[object], depth: int):
        self.items = items
        self.buffer: queue.Queue[object] = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._produce, name="prefetch", daemon=True)

    def _put(self, item: object) -> bool:
        # Wake up regularly to see whether the consumer has gone away.
        while not self.stop.is_set():
            try:
                self.buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self.items:
                if not self._put(item):
                    return
        except BaseException as error:  # handed to the consumer, not lost in the thread
            self._put(_Failure(error))
            return
        self._put(_DONE)


def prefetch(items: Iterable[T], depth: int = 2) -> Generator[T, None, None]:
    """Yield ``items`` in order, produced up to ``depth`` ahead by a background thread.

    An exception raised by the producer is re-raised in the consumer at the point it
    happened. If the consumer stops early (``break``, an exception, ``close()``), the
    producer is told to stop and does not keep reading.
    """
    if depth < 1:
        raise ValueError(f"depth={depth!r} must be at least 1.")
    producer = _Producer(items, depth)
    producer.thread.start()
    try:
        while True:
            item = producer.buffer.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        producer.stop.set()
        producer.thread.join()


class WriteBehind:
    """Hand frames to ``write`` in a background thread, at most ``depth`` waiting.

    Parquet encoding and compression release the GIL, so the next batch is scored while
    the previous one is written. ``flush()`` waits for every write and re-raises the first
    error of the writer thread; after an error further ``submit`` calls raise it too.
    """

    def __init__(self, write: Callable[[T], None], depth: int = 2):
        if depth < 1:
            raise ValueError(f"depth={depth!r} must be at least 1.")
        self._write = write
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="write-behind", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if self._error is None:  # after a failure, drain without writing
                try:
                    self._write(item)  # type: ignore[arg-type]
                except BaseException as error:  # re-raised in the submitting thread
                    self._error = error

    def submit(self, item: T) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def flush(self) -> None:
        """Wait for every submitted write; raise the writer thread's error, if any."""
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()
        if self._error is not None:
            raise self._error
