"""Parquet in and out: readers that name the file at fault, writers that never leave half a file.

Readers accept one file, a directory (hive partitions such as ``day=2024-01-01/`` become
columns) or a glob. Every failure is an ``InputError`` that names the path, because "Parquet
magic bytes not found" is useless when a job reads four hundred files. Data is read one
file (fragment) at a time, so the file that breaks is always known.

Writers go through a temporary file beside the target, flushed and fsynced before an atomic
``os.replace``: a crash, a full disk or an exception in the middle of a job leaves either
the previous output or the new one, never a truncated file a downstream reader would choke
on.

Pure library: no Prefect, no MLflow.
"""

from __future__ import annotations

import glob
import os
import re
import secrets
import socket
import time
import warnings
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from vae_core.errors import EmptyInputError, InputError, SchemaError
from vae_core.output_targets import check_file_target, writing_to

PathLike = str | os.PathLike[str]

#: Rows per record batch when streaming; large enough to amortise per-batch overhead.
DEFAULT_BATCH_SIZE = 65_536
_GLOB_CHARACTERS = frozenset("*?[")
#: pyarrow's own errors for unreadable or mismatched files, plus plain I/O failures.
_ARROW_ERRORS = (pa.ArrowException, OSError)
_STREAMING_SCAN = ds.ParquetFragmentScanOptions(pre_buffer=False)
_TZ_VALUES_WARNING = "Series.values returning an ndarray that drops timezone"
#: Columns pandas adds for a stored unnamed index; one file having it is not a disagreement.
_PANDAS_INDEX_PREFIX = "__index_level_"


class DataPathError(InputError, FileNotFoundError):
    """The data path does not exist, or a directory or glob holds no Parquet file."""


class DataFileError(InputError):
    """A file cannot be read as Parquet (not Parquet, truncated, or a schema that clashes)."""

    def __init__(self, message: str, path: str):
        super().__init__(message)
        self.path = path


# -- locating files ----------------------------------------------------------------------
def _is_glob(text: str) -> bool:
    return any(ch in text for ch in _GLOB_CHARACTERS)


def _expand_glob(pattern: str) -> list[str]:
    """Files matched by ``pattern`` (``**`` recurses), sorted so reads are reproducible."""
    matches = sorted(glob.glob(pattern, recursive=True))
    files = [m for m in matches if os.path.isfile(m)]
    if not files and matches:
        raise DataPathError(
            f"{pattern}: the pattern matches only directories; point at their parent "
            "directory (hive partitions become columns) or end the pattern in '*.parquet'."
        )
    if not files:
        raise DataPathError(
            f"{pattern}: the pattern matches no files. Check the path and the wildcard."
        )
    return files


def _open_dataset(path: PathLike) -> ds.Dataset:
    """A pyarrow dataset over a file, a directory (hive partitions) or a glob."""
    text = os.fspath(path)
    if os.path.isdir(text):
        dataset = _dataset_or_file_error(text, partitioning="hive")
        if not dataset.files:
            raise DataPathError(
                f"{text}: the directory holds no Parquet files (files starting with '.' "
                "or '_' are skipped). Point at the directory the data was written to."
            )
        return dataset
    if os.path.isfile(text):
        return _dataset_or_file_error(text)
    if _is_glob(text):
        return _dataset_or_file_error(_expand_glob(text))
    raise DataPathError(
        f"{text}: no such file or directory. Check the path (and the working directory "
        "it is relative to)."
    )


def _dataset_or_file_error(source: str | list[str], partitioning: str | None = None) -> ds.Dataset:
    """Build the dataset; if pyarrow refuses, find and name the file it choked on."""
    try:
        return ds.dataset(source, format="parquet", partitioning=partitioning)
    except _ARROW_ERRORS as exc:
        culprit = _first_unreadable(source)
        if culprit is None:
            raise _file_error(str(source), exc) from exc
        raise _file_error(*culprit) from exc


def _first_unreadable(source: str | list[str]) -> tuple[str, BaseException] | None:
    """The first file whose Parquet footer cannot be read, and why; None if all can."""
    if isinstance(source, list):
        files = source
    elif os.path.isdir(source):
        files = sorted(str(p) for p in Path(source).rglob("*") if _is_data_file(p, source))
    else:
        files = [source]
    for file in files:
        try:
            pq.read_schema(file)
        except _ARROW_ERRORS as exc:
            return file, exc
    return None


def _is_data_file(path: Path, root: str) -> bool:
    """What pyarrow reads from a directory: files with no part starting with '.' or '_'."""
    parts = path.relative_to(root).parts
    return path.is_file() and not any(part.startswith((".", "_")) for part in parts)


def _file_error(path: str, exc: BaseException) -> DataFileError:
    return DataFileError(
        f"{path}: cannot be read as Parquet ({_first_line(exc)}). Check that the file is "
        "Parquet, was written completely, and has the same columns as the others.",
        path,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _check_columns(dataset: ds.Dataset, columns: Sequence[str] | None, path: PathLike) -> None:
    if columns is None:
        return
    absent = [c for c in columns if c not in dataset.schema.names]
    if absent:
        raise SchemaError(
            f"{os.fspath(path)}: column(s) {absent} are not in the data "
            f"(columns: {dataset.schema.names[:20]})."
        )


# -- reading ---------------------------------------------------------------------------
def _to_frame(data: pa.Table | pa.RecordBatch) -> pd.DataFrame:
    """Convert to pandas with a clean RangeIndex; a named stored index becomes columns.

    Concatenated files would otherwise repeat each file's 0..n index, and an index written
    by pandas (an id, say) is data a caller needs as a column.
    """
    # One block per column: pandas' consolidation into one 2-D block per dtype is a copy
    # of the whole batch (10x the cost of the conversion) that nothing here needs.
    frame = data.to_pandas(split_blocks=True)
    if isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0:
        return frame
    named = any(name is not None for name in frame.index.names)
    return frame.reset_index(drop=not named)


def read_table(path: PathLike, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a Parquet file, directory or glob into one DataFrame.

    Raises ``DataPathError`` when nothing is there, ``DataFileError`` naming a file that is
    not readable Parquet, ``SchemaError`` for a requested column that does not exist and
    ``EmptyInputError`` when the data has no rows: all are ``InputError``.
    """
    dataset = _open_dataset(path)
    _check_columns(dataset, columns, path)
    tables = [_read_fragment(fragment, dataset.schema, columns) for fragment in _fragments(dataset)]
    table = pa.concat_tables(tables) if tables else dataset.schema.empty_table()
    if table.num_rows == 0:
        raise EmptyInputError(_no_rows_message(path))
    return _to_frame(table)


def _no_rows_message(path: PathLike) -> str:
    return (
        f"{os.fspath(path)}: the data has 0 rows. Check that the export that writes it "
        "finished, or point at data that has rows."
    )


def _fragments(dataset: ds.Dataset) -> list[ds.Fragment]:
    # Sorted by path so directory reads come back in a stable order on every filesystem.
    return sorted(dataset.get_fragments(), key=lambda fragment: fragment.path)


def _read_fragment(
    fragment: ds.Fragment, schema: pa.Schema, columns: Sequence[str] | None
) -> pa.Table:
    _check_fragment_columns(fragment, schema, columns)
    try:
        return fragment.to_table(schema=schema, columns=_column_list(columns))
    except _ARROW_ERRORS as exc:
        raise _file_error(fragment.path, exc) from exc


def _check_fragment_columns(
    fragment: ds.Fragment, schema: pa.Schema, columns: Sequence[str] | None
) -> None:
    """Refuse a file that lacks a column the others have.

    pyarrow would fill the column with nulls for that file, and the model would then read
    a broken export as thousands of rows with a missing value.
    """
    try:
        present = set(fragment.physical_schema.names)
    except _ARROW_ERRORS as exc:
        raise _file_error(fragment.path, exc) from exc
    present |= set(ds.get_partition_keys(fragment.partition_expression))
    wanted = schema.names if columns is None else columns
    absent = [name for name in wanted if name not in present]
    if absent:
        raise DataFileError(
            f"{fragment.path}: column(s) {absent} are missing from this file but present "
            "in the others. Re-export the file, or read only the columns every file has.",
            fragment.path,
        )
    # The dataset's schema is the first file's: a column only later files have would be
    # dropped without a word, so files that disagree are an error whichever way round.
    surplus = [
        name for name in fragment.physical_schema.names
        if name not in schema.names and not name.startswith(_PANDAS_INDEX_PREFIX)
    ]
    if surplus and columns is None:
        raise DataFileError(
            f"{fragment.path}: column(s) {surplus} are in this file but not in the first "
            "file of the data; the files of one dataset must have the same columns. "
            "Re-export the files, or read only the columns every file has.",
            fragment.path,
        )
    physical = fragment.physical_schema
    for name in wanted:
        if name not in physical.names:
            continue  # a partition key
        here, first = physical.field(name).type, schema.field(name).type
        if not _same_kind(here, first):
            raise DataFileError(
                f"{fragment.path}: column '{name}' holds {_kind(here)} ({here}) in this file "
                f"but {_kind(first)} ({first}) in the first file of the data; the files of "
                "one dataset must agree on column "
                "types. Re-export the file with the same types.",
                fragment.path,
            )


def _kind(data_type: pa.DataType) -> str:
    """Coarse type family: numbers of any width convert safely, text to numbers does not."""
    if pa.types.is_dictionary(data_type):
        return _kind(data_type.value_type)
    checks = (
        ("null", pa.types.is_null),
        ("number", lambda t: pa.types.is_integer(t) or pa.types.is_floating(t)
         or pa.types.is_decimal(t)),
        ("text", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)
         or getattr(pa.types, "is_string_view", lambda _: False)(t)),
        ("bool", pa.types.is_boolean),
        ("timestamp", pa.types.is_timestamp),
        ("date", pa.types.is_date),
    )
    for name, check in checks:
        if check(data_type):
            return name
    return str(data_type)


def _same_kind(a: pa.DataType, b: pa.DataType) -> bool:
    """Types pyarrow may convert between without changing what a value means.

    A column that is all null in one file has the null type there: it agrees with anything.
    """
    kind_a, kind_b = _kind(a), _kind(b)
    return kind_a == kind_b or "null" in (kind_a, kind_b)


def _column_list(columns: Sequence[str] | None) -> list[str] | None:
    return None if columns is None else list(columns)


def iter_batches(
    path: PathLike,
    batch_size: int = DEFAULT_BATCH_SIZE,
    columns: Sequence[str] | None = None,
    partition: Partition | None = None,
) -> Iterator[pd.DataFrame]:
    """Yield the data as DataFrames of at most ``batch_size`` rows, one file at a time.

    Only one record batch is held in memory, so files larger than memory can be scored.
    Empty batches are skipped; data with no rows at all raises ``EmptyInputError`` (after
    the last file), so a job never reports success on nothing. With ``partition`` (from
    ``list_partitions(path)``) only that part of the data is read, and an empty part is
    not an error: emptiness is a property of the whole dataset.
    """
    if batch_size < 1:
        raise InputError(f"batch_size={batch_size!r} must be at least 1.")
    dataset = _open_dataset(path)
    _check_columns(dataset, columns, path)
    fragments = _fragments(dataset)
    if partition is not None:
        fragments = [_partition_fragment(fragments, partition, path)]
    n_rows = 0
    for fragment in fragments:
        for batch in _fragment_batches(fragment, dataset.schema, columns, batch_size):
            if batch.num_rows:
                n_rows += batch.num_rows
                yield _to_frame(batch)
    if n_rows == 0 and partition is None:
        raise EmptyInputError(_no_rows_message(path))


def _fragment_batches(
    fragment: ds.Fragment, schema: pa.Schema, columns: Sequence[str] | None, batch_size: int
) -> Iterator[pa.RecordBatch]:
    _check_fragment_columns(fragment, schema, columns)
    try:
        # Bounded memory: with pre-buffering, pyarrow keeps every column chunk it has read
        # until the whole file is done (a 3M-row file grew the process by 500 MB), and its
        # default read-ahead of 16 batches holds far more than a single consumer needs.
        yield from fragment.to_batches(
            schema=schema, columns=_column_list(columns), batch_size=batch_size,
            batch_readahead=2, fragment_readahead=1,
            fragment_scan_options=_STREAMING_SCAN,
        )
    except _ARROW_ERRORS as exc:
        raise _file_error(fragment.path, exc) from exc


# -- partitions ------------------------------------------------------------------------
@dataclass(frozen=True)
class Partition:
    """A unit of parallel work: one file, or a range of row groups of a large file.

    Plain data (picklable), so it can be sent to another process or machine, which reads
    it with ``iter_batches(source, partition=partition)``.
    """

    index: int
    file: str
    row_groups: tuple[int, ...] | None  # None: the whole file
    n_rows: int

    @property
    def name(self) -> str:
        """A stable name for the partition's outputs, sortable in input order."""
        return f"part-{self.index:05d}"


def list_partitions(path: PathLike, max_rows: int | None = None) -> list[Partition]:
    """Split the data at ``path`` into partitions, in the order ``iter_batches`` reads it.

    Each file is one partition; with ``max_rows``, a file with more rows is split at
    row-group boundaries into partitions of about ``max_rows`` rows (a row group is the
    smallest unit Parquet can read on its own, so a single larger group stays whole).
    """
    if max_rows is not None and max_rows < 1:
        raise InputError(f"max_rows={max_rows!r} must be at least 1.")
    dataset = _open_dataset(path)
    partitions: list[Partition] = []
    for fragment in _fragments(dataset):
        try:
            sizes = [group.num_rows for group in fragment.row_groups]
        except _ARROW_ERRORS as exc:
            raise _file_error(fragment.path, exc) from exc
        for groups in _group_ranges(sizes, max_rows):
            partitions.append(Partition(
                index=len(partitions),
                file=fragment.path,
                row_groups=None if len(groups) == len(sizes) else tuple(groups),
                n_rows=sum(sizes[g] for g in groups),
            ))
    return partitions


def _group_ranges(sizes: Sequence[int], max_rows: int | None) -> list[list[int]]:
    """Consecutive row groups packed into ranges of at most ``max_rows`` rows (or one group)."""
    if max_rows is None or sum(sizes) <= max_rows:
        return [list(range(len(sizes)))]
    ranges: list[list[int]] = [[]]
    rows = 0
    for group, size in enumerate(sizes):
        if ranges[-1] and rows + size > max_rows:
            ranges.append([])
            rows = 0
        ranges[-1].append(group)
        rows += size
    return ranges


def _partition_fragment(
    fragments: Sequence[ds.Fragment], partition: Partition, path: PathLike
) -> ds.Fragment:
    for fragment in fragments:
        if fragment.path == partition.file:
            if partition.row_groups is None:
                return fragment
            return fragment.subset(row_group_ids=list(partition.row_groups))
    raise DataPathError(
        f"{partition.file}: this file of {os.fspath(path)} has gone since the partitions "
        "were listed; rerun the job on the current data."
    )


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
    return idle > stale_after_s or (pid.isdigit() and _writer_is_gone(host, int(pid)))


def _writer_is_gone(host: str, pid: int) -> bool:
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
        dead = match["pid"] is not None and _writer_is_gone(match["host"], int(match["pid"]))
        if dead or idle > stale_after_s:
            try:
                path.unlink()
            except OSError:
                continue
            removed.append(path)
    return removed


def _fsync_directory(directory: Path) -> None:
    """Persist a rename; some platforms cannot open directories, where rename suffices."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
        return (pa.types.is_string(kind) or pa.types.is_large_string(kind)
                or pa.types.is_dictionary(kind))

    options: dict[str, object] = {
        "use_dictionary": [f.name for f in schema if is_text(f)],
        "compression": {
            f.name: "none" if pa.types.is_floating(f.type) else "snappy" for f in schema
        },
    }
    if without_statistics:
        options["write_statistics"] = [f.name for f in schema if f.name not in without_statistics]
    return options


def frame_to_table(frame: pd.DataFrame, schema: pa.Schema | None = None) -> pa.Table:
    """``frame`` as Arrow, cast to ``schema`` when given."""
    # A RangeIndex is row numbering, not data (and per-batch numbering would be wrong for
    # the whole file); any other index (ids, timestamps) is kept as columns.
    keep_index = not isinstance(frame.index, pd.RangeIndex)
    with warnings.catch_warnings():
        # pyarrow reads timezone-aware columns through Series.values, which pandas >= 3.1
        # deprecates; the values and the timezone are still converted correctly.
        warnings.filterwarnings("ignore", message=_TZ_VALUES_WARNING)
        return pa.Table.from_pandas(frame, schema=schema, preserve_index=keep_index)


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
    _fsync_directory(target.parent)
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
                    f"the schema of the first batch ({_first_line(exc)})."
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
                f"the schema of the first batch ({_first_line(exc)})."
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
        _fsync_directory(self.path.parent)
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
