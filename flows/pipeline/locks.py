"""An exclusive lock between processes: ``fcntl.flock`` on a lock file, waited for.

The kernel releases the lock when its holder dies, so a killed run never leaves it held;
the lock file itself stays (it holds nothing).
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

#: How often a waiting process tries the lock again.
POLL_S = 0.05


@contextlib.contextmanager
def exclusive_lock(path: Path, wait_s: float, timed_out: Callable[[], Exception]) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed); after ``wait_s`` seconds of
    waiting, raise ``timed_out()``, an error that says whose lock it is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:  # closing the file releases the lock
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise timed_out() from None
                time.sleep(POLL_S)
        yield
