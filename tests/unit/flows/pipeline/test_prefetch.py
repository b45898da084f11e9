"""Read-ahead in a background thread: order, errors and early stops."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from flows.pipeline.prefetch import WriteBehind, prefetch


def test_items_arrive_in_order() -> None:
    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))


def test_a_producer_error_reaches_the_consumer_after_the_good_items() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("file 3 is corrupt")

    seen = []
    with pytest.raises(ValueError, match="file 3 is corrupt"):
        for item in prefetch(items()):
            seen.append(item)
    assert seen == [1, 2]


def test_stopping_early_stops_the_producer() -> None:
    produced = []

    def items() -> Iterator[int]:
        for i in range(1_000_000):
            produced.append(i)
            yield i

    stream = prefetch(items(), depth=2)
    assert next(stream) == 0
    stream.close()
    # the producer ran at most a few items ahead and its thread is gone
    assert len(produced) <= 5
    assert not any(t.name == "prefetch" for t in threading.enumerate())


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="depth"):
        next(prefetch(iter([1]), depth=0))


def test_write_behind_writes_everything_in_order() -> None:
    written = []
    behind = WriteBehind(written.append, depth=2)
    for item in range(50):
        behind.submit(item)
    behind.flush()
    assert written == list(range(50))


def test_a_write_error_is_raised_by_flush_and_later_submits() -> None:
    def write(item: int) -> None:
        if item == 3:
            raise OSError("disk full")

    behind = WriteBehind(write, depth=1)
    with pytest.raises(OSError, match="disk full"):
        for item in range(100):
            behind.submit(item)
        behind.flush()
    with pytest.raises(OSError, match="disk full"):
        behind.flush()
