"""The file lock behind compare-and-set on a sqlite registry: one holder at a time, across
threads and processes, and a clear error when it cannot be had in time."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flows.mlops.champion_lock import PromotionLockError, file_lock


def test_threads_take_the_lock_one_at_a_time(tmp_path: Path) -> None:
    lock = tmp_path / "registry.db.promotion.lock"
    inside: list[tuple[float, float]] = []

    def hold() -> None:
        with file_lock(lock, wait_s=10):
            start = time.monotonic()
            time.sleep(0.2)
            inside.append((start, time.monotonic()))

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    spans = sorted(inside)
    assert len(spans) == 3
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))


def test_a_lock_held_by_another_process_times_out_with_its_path(tmp_path: Path) -> None:
    lock = tmp_path / "registry.db.promotion.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from flows.mlops.champion_lock import file_lock\n"
            "with file_lock(Path(sys.argv[1])):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(30)\n",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(PromotionLockError, match="promotion lock .* still held"):
            with file_lock(lock, wait_s=0.3):
                pass
    finally:
        holder.kill()
        holder.wait(timeout=10)
    with file_lock(lock, wait_s=5):  # released by the system when its holder died
        pass
