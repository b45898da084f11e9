"""Outputs that are never half-written: atomic files, a batch-by-batch Parquet writer.

Every writer goes through a temporary file beside the target, flushed and fsynced before an
atomic ``os.replace``: a crash, a full disk or an exception in the middle of a job leaves
either the previous output or the new one, never a truncated file a downstream reader would
choke on. Targets are checked first (``vae_core.output_targets``): a device, a pipe or a
folder is never replaced.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Collection
from pathlib import Path
from types import TracebackType
from typing import IO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from vae_core.errors import EmptyInputError, InputError, first_line
from vae_core.io import frame_to_table
from vae_core.output_targets import check_file_target, fsync_directory, writing_to

PathLike = str | os.PathLike[str]
#: pyarrow's own errors for unreadable or mismatched files, plus plain I/O failures.
_ARROW_ERRORS = (pa.ArrowException, OSError)


# -- writing ---------------------------------------------------------------------------
#: A temporary file not written to for this long is abandoned, whoever wrote it.
STALE_TEMPORARY_S = 6 * 3600
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def _temporary_sibling(target: Path) -> Path:
    """A fresh hidden name beside ``target``: same filesystem, so the final rename is atomic.

    The name records the host and process writing it, so that a later run can tell an
    abandoned temporary file (its writer was killed) from one still being written.
    """
    remove_stale_temporaries(target)
    return target.with_name(f".{target.name}.{_HOST}.{os.getpid()}.{secrets.token_hex(6)}.tmp")


def writer_tag() -> str:
    """``<host>.<pid>`` of this process, for names of temporary outputs."""
    return f"{_HOST}.{os.getpid()}"


def abandoned(tag: str, path: Path, stale_after_s: float = STALE_TEMPORARY_S) -> bool:
    """Whether a temporary ``path`` named with ``writer_tag()`` ``tag`` is abandoned.

    True when its writer (on this host) is gone or it was not modified for
    ``stale_after_s`` seconds; a malformed tag only counts by age.
    """
    host, _, pid = tag.rpartition(".")
    try:
        idle = time.time() - path.stat().st_mtime
    except OSError:
        return False
    return idle > stale_after_s or (pid.isdigit() and writer_is_gone(host, int(pid)))


def writer_is_gone(host: str, pid: int) -> bool:
    """Whether the writer ``pid`` on ``host`` (a ``writer_tag``'s parts) has ended; a
    process of another machine cannot be checked from here and counts as alive."""
    if host != _HOST:
        return False  # another machine's process cannot be checked from here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists but belongs to another user
    return False


def remove_stale_temporaries(
    target: PathLike, stale_after_s: float = STALE_TEMPORARY_S
) -> list[Path]:
    """Delete temporary files left beside ``target`` by writers that died; return them.

    A run killed between creating its temporary file and renaming it (SIGKILL, power loss)
    cannot clean up after itself. The next write of the same target removes such files:
    those whose writing process (on this host) no longer exists, and any not modified for
    ``stale_after_s`` seconds. A temporary file of a live writer is left alone.
    """
    target = Path(target)
    pattern = re.compile(
        rf"^\.{re.escape(target.name)}\.(?:(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.)?"
        r"[0-9a-f]{12}\.tmp$"
    )
    removed: list[Path] = []
    try:
        siblings = list(target.parent.iterdir())
    except OSError:
        return removed
    now = time.time()
    for path in siblings:
        match = pattern.match(path.name)
        if match is None:
            continue
        try:
            idle = now - path.stat().st_mtime
        except OSError:
            continue
        dead = match["pid"] is not None and writer_is_gone(match["host"], int(match["pid"]))
        if dead or idle > stale_after_s:
            try:
                path.unlink()
            except OSError:
                continue
            removed.append(path)
    return removed


def _sync_and_close(handle: IO[bytes]) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def column_encodings(
    schema: pa.Schema, without_statistics: Collection[str] = ()
) -> dict[str, object]:
    """``ParquetWriter`` options per column: dictionaries for text, no compression for floats.

    Scores, shares, keys and timestamps are (nearly) all distinct. Dictionary encoding
    hashed every value of every batch into a dictionary no smaller than the values, and
    Snappy saved 6% of the bytes of random floats: writing scores took 2.5x as long for a
    file 6% smaller. Text (feature names, categories) repeats and keeps both.

    Columns in ``without_statistics`` get no min/max statistics: they let a reader skip
    row groups when it filters on a column, and cost a pass over its values when writing
    (for text, comparing every string: the most costly part of the scores' statistics).
    """

    def is_text(field: pa.Field) -> bool:
        kind = field.type
        return (
            pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or pa.types.is_dictionary(kind)
        )

    options: dict[str, object] = {
        "use_dictionary": [f.name for f in schema if is_text(f)],
        "compression": {
            f.name: "none" if pa.types.is_floating(f.type) else "snappy" for f in schema
        },
    }
    if without_statistics:
        options["write_statistics"] = [f.name for f in schema if f.name not in without_statistics]
    return options


def _write_atomic(path: PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Run ``write`` on a temporary file beside ``path``, fsync it, then rename it into place.

    Readers see the old file or the whole new one. The parent directory is created if
    needed; if anything fails the temporary file is removed and ``path`` is left as it was.
    """
    target = check_file_target(path)
    with writing_to(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = _temporary_sibling(target)
        try:
            with open(staging, "xb") as handle:
                write(handle)
                _sync_and_close(handle)
            os.chmod(staging, 0o644)  # outputs are for people and other jobs to read
            os.replace(staging, target)
        except BaseException:
            _remove_quietly(staging)
            raise
    fsync_directory(target.parent)
    return target


def write_parquet_atomic(frame: pd.DataFrame, path: PathLike) -> Path:
    """Write ``frame`` to ``path`` atomically (temp file beside it, fsync, rename)."""
    table = frame_to_table(frame)
    return _write_atomic(path, lambda handle: pq.write_table(table, handle))


def write_bytes_atomic(payload: bytes, path: PathLike) -> Path:
    """Write ``payload`` to ``path`` atomically (temp file beside it, fsync, rename)."""
    return _write_atomic(path, lambda handle: handle.write(payload))


class ParquetBatchWriter:
    """Write a Parquet file batch by batch; it appears at ``path`` only on success.

    Use as a context manager::

        with ParquetBatchWriter("scores.parquet") as writer:
            for frame in frames:
                writer.write(frame)

    The schema is taken from ``schema`` or the first batch; later batches are cast to it.
    Columns named in ``without_statistics`` are written without min/max statistics (see
    ``column_encodings``). If the block raises, the temporary file is removed and any
    previous file at ``path`` is left as it was. Outside a ``with`` block, call ``close()``
    or ``abort()``.
    """

    def __init__(
        self,
        path: PathLike,
        schema: pa.Schema | None = None,
        without_statistics: Collection[str] = (),
    ):
        self.path = Path(path)
        self.schema = schema
        self.without_statistics = frozenset(without_statistics)
        self.rows_written = 0
        self._staging: Path | None = None
        self._handle: IO[bytes] | None = None
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> ParquetBatchWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, frame: pd.DataFrame) -> None:
        """Append the rows of ``frame``; its columns must match the first batch's."""
        table = self._table_for(frame)
        if self._writer is None:
            self._open(table.schema)
        assert self._writer is not None
        self._writer.write_table(table)
        self.rows_written += table.num_rows

    def write_arrow(self, data: pa.Table | pa.RecordBatch) -> None:
        """Append Arrow data as it is, cast to the file's schema once it has one."""
        table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
        if self.schema is not None:
            try:
                table = table.select(self.schema.names).cast(self.schema)
            except (pa.ArrowException, KeyError) as exc:
                raise InputError(
                    f"{self.path}: data starting at row {self.rows_written} does not match "
                    f"the schema of the first batch ({first_line(exc)})."
                ) from exc
        if self._writer is None:
            self._open(table.schema)
        assert self._writer is not None
        self._writer.write_table(table)
        self.rows_written += table.num_rows

    def _table_for(self, frame: pd.DataFrame) -> pa.Table:
        try:
            return frame_to_table(frame, self.schema)
        except (pa.ArrowException, ValueError, KeyError) as exc:
            raise InputError(
                f"{self.path}: batch starting at row {self.rows_written} does not match "
                f"the schema of the first batch ({first_line(exc)})."
            ) from exc

    def _open(self, schema: pa.Schema) -> None:
        self.schema = schema
        check_file_target(self.path)
        with writing_to(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._staging = _temporary_sibling(self.path)
            self._handle = open(self._staging, "xb")
        self._writer = pq.ParquetWriter(
            self._handle, schema, **column_encodings(schema, self.without_statistics)
        )

    def close(self) -> Path:
        """Finish the file and move it into place. With no batch, writes ``schema`` only."""
        if self._writer is None:
            if self.schema is None:
                raise EmptyInputError(
                    f"{self.path}: nothing was written and no schema was given, so there "
                    "is no Parquet file to create."
                )
            self._open(self.schema)
        assert self._writer is not None and self._handle is not None
        assert self._staging is not None
        try:
            self._writer.close()
            _sync_and_close(self._handle)
            with writing_to(self.path):
                # The target may have become a device or a folder while the file was written.
                check_file_target(self.path)
                os.replace(self._staging, self.path)
        except BaseException:
            self.abort()
            raise
        self._writer = self._handle = self._staging = None
        fsync_directory(self.path.parent)
        return self.path

    def abort(self) -> None:
        """Drop everything written so far; the target path is not touched."""
        if self._writer is not None:
            try:
                self._writer.close()
            except _ARROW_ERRORS:
                pass  # closing a half-written file can fail; it is deleted next anyway
        if self._handle is not None:
            self._handle.close()
        if self._staging is not None:
            _remove_quietly(self._staging)
        self._writer = self._handle = self._staging = None
