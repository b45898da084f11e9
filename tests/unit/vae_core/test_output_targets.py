"""Every writer refuses a target that is not of the kind it writes, on real special files.

A rename over a device replaces it for the whole machine, so these tests make their own
device, pipe and socket inside ``tmp_path`` and check that each writer leaves them alone.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch

from flows.pipeline.writers import ParquetBatchWriter, write_bytes_atomic, write_parquet_atomic
from vae_core import OutputPathError
from vae_core.output_targets import check_file_target
from vae_core.persistence import save_model

FRAME = pd.DataFrame({"a": [1.0, 2.0]})


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _socket(path: Path) -> Path:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()  # the socket file stays behind
    return path


def _null_device(path: Path) -> Path:
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs root")
    return path


def _directory(path: Path) -> Path:
    path.mkdir()
    (path / "kept.txt").write_text("still here")
    return path


SPECIAL = {"fifo": _fifo, "socket": _socket, "device": _null_device, "directory": _directory}


def _write_batches(path: Path) -> None:
    with ParquetBatchWriter(path) as writer:
        writer.write(FRAME)


FILE_WRITERS: dict[str, Callable[[Path], object]] = {
    "parquet": lambda path: write_parquet_atomic(FRAME, path),
    "bytes": lambda path: write_bytes_atomic(b"payload", path),
    "batches": _write_batches,
}


def _snapshot(path: Path) -> tuple[int, int, list[str]]:
    info = os.lstat(path)
    listing = sorted(os.listdir(path)) if stat.S_ISDIR(info.st_mode) else []
    return info.st_mode, info.st_rdev, listing


@pytest.mark.parametrize("writer", FILE_WRITERS)
@pytest.mark.parametrize("kind", SPECIAL)
def test_file_writers_refuse_special_targets_and_leave_them(
    tmp_path: Path, kind: str, writer: str
) -> None:
    target = SPECIAL[kind](tmp_path / "out")
    before = _snapshot(target)
    with pytest.raises(OutputPathError, match=str(target)):
        FILE_WRITERS[writer](target)
    assert _snapshot(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary left


def test_a_link_to_a_device_is_refused_too(tmp_path: Path) -> None:
    device = _null_device(tmp_path / "null")
    link = tmp_path / "out.parquet"
    link.symlink_to(device)
    with pytest.raises(OutputPathError, match="character device"):
        write_parquet_atomic(FRAME, link)
    assert stat.S_ISCHR(os.stat(link).st_mode)


def test_a_regular_file_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    write_bytes_atomic(b"new", target)
    assert target.read_bytes() == b"new"


def test_a_file_in_the_way_of_the_parent_is_named(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file")
    target = tmp_path / "blocker" / "deeper" / "out.parquet"
    with pytest.raises(OutputPathError, match="blocker is a file, not a directory"):
        check_file_target(target)
    with pytest.raises(OutputPathError, match="blocker is a file"):
        write_parquet_atomic(FRAME, target)


@pytest.mark.parametrize("kind", ["fifo", "socket", "device"])
def test_a_model_is_never_saved_over_a_special_file(tmp_path: Path, kind: str) -> None:
    target = SPECIAL[kind](tmp_path / "model")
    before = _snapshot(target)
    member = {"w": torch.zeros(2)}
    with pytest.raises(OutputPathError, match="an output folder can only replace a folder"):
        save_model(target, {}, [member], overwrite=True)
    assert _snapshot(target) == before
