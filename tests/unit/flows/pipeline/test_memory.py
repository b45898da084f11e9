"""Returning freed memory to the OS: done on glibc, a clean no-op elsewhere."""

from __future__ import annotations

import platform

import numpy as np

from flows.pipeline.memory import release_free_memory


def test_release_free_memory_trims_on_glibc_and_is_a_no_op_elsewhere() -> None:
    blocks = [np.ones(1 << 20) for _ in range(8)]  # 64 MB, then freed
    del blocks
    released = release_free_memory()
    assert released is (platform.libc_ver()[0] == "glibc")
    assert release_free_memory() is released  # repeatable, nothing cached wrongly
