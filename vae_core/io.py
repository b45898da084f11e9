"""Parquet in: readers that name the file at fault, and the partitions of a dataset.

Readers accept one file, a directory (hive partitions such as ``day=2024-01-01/`` become
columns) or a glob. Every failure is an ``InputError`` that names the path, because "Parquet
magic bytes not found" is useless when a job reads four hundred files. Data is read one
file (fragment) at a time, so the file that breaks is always known. ``list_partitions``
splits a dataset into files or row-group ranges that can be read on their own.
``frame_to_table`` converts a frame to Arrow the way every output is written. (The jobs'
atomic writers are ``flows.pipeline.writers``.)

Pure library: no Prefect, no MLflow.
"""

from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from vae_core.errors import EmptyInputError, InputError, SchemaError

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
        name
        for name in fragment.physical_schema.names
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
        (
            "number",
            lambda t: pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t),
        ),
        (
            "text",
            lambda t: (
                pa.types.is_string(t)
                or pa.types.is_large_string(t)
                or getattr(pa.types, "is_string_view", lambda _: False)(t)
            ),
        ),
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
            schema=schema,
            columns=_column_list(columns),
            batch_size=batch_size,
            batch_readahead=2,
            fragment_readahead=1,
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
            partitions.append(
                Partition(
                    index=len(partitions),
                    file=fragment.path,
                    row_groups=None if len(groups) == len(sizes) else tuple(groups),
                    n_rows=sum(sizes[g] for g in groups),
                )
            )
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
