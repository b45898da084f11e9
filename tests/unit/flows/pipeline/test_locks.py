"""The lock between processes: exclusive while held, released when its holder is killed."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.pipeline.locks import exclusive_lock

HOLD = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from flows.pipeline.locks import exclusive_lock\n"
    "with exclusive_lock(Path(sys.argv[1]), 5, lambda: TimeoutError('x')):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(60)\n"
)


def test_a_held_lock_times_out_with_the_callers_error_and_frees_when_its_holder_dies(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locks" / "root.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        started = time.monotonic()
        with pytest.raises(LookupError, match="still held"):
            with exclusive_lock(path, 0.3, lambda: LookupError("still held")):
                pass
        assert time.monotonic() - started >= 0.3
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        with exclusive_lock(path, 5, lambda: LookupError("still held")):
            assert path.is_file()
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_the_lock_is_free_again_after_the_block(tmp_path: Path) -> None:
    path = tmp_path / "root.lock"
    for _ in range(2):
        with exclusive_lock(path, 0.1, lambda: LookupError("still held")):
            pass
