"""Parquet in: readers that name the file at fault, and the Arrow form of every output.

Readers accept one file, a directory (hive partitions such as ``day=2024-01-01/`` become
columns) or a glob, located by ``vae_core.parquet_files``. Every failure is an
``InputError`` that names the path. Data is read one file (fragment) at a time, so the file
that breaks is always known; ``iter_batches`` also reads a single part listed by
``vae_core.partitions.list_partitions``. ``frame_to_table`` converts a frame to Arrow the
way every output is written. (The jobs' atomic writers are ``flows.pipeline.writers``.)

Pure library: no Prefect, no MLflow.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from vae_core.errors import EmptyInputError, InputError, SchemaError
from vae_core.parquet_files import (
    ARROW_ERRORS,
    DataFileError,
    DataPathError,
    PathLike,
    file_error,
    sorted_fragments,
)
from vae_core.parquet_stream import fragment_batches
from vae_core.partitions import check_fragment_keys, open_checked_dataset, partition_fragment

if TYPE_CHECKING:  # the type only: partitions are imported from vae_core.partitions
    from vae_core.partitions import Partition

# The readers' errors and path type are part of their API: callers catch them from here.
__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DataFileError",
    "DataPathError",
    "PathLike",
    "frame_to_table",
    "iter_batches",
    "read_table",
]

#: Rows per record batch when streaming; large enough to amortise per-batch overhead.
DEFAULT_BATCH_SIZE = 65_536
_TZ_VALUES_WARNING = "Series.values returning an ndarray that drops timezone"
#: Columns pandas adds for a stored unnamed index; one file having it is not a disagreement.
_PANDAS_INDEX_PREFIX = "__index_level_"


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
    try:
        frame = data.to_pandas(split_blocks=True)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, TypeError, ValueError):
        # The file's pandas metadata names a dtype its data no longer fits (a struct
        # where a string column was): the Arrow types alone say what the values are, and
        # the caller's checks can then name the column.
        frame = data.to_pandas(split_blocks=True, ignore_metadata=True)
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
    dataset = open_checked_dataset(path)
    _check_columns(dataset, columns, path)
    tables = [
        _read_fragment(fragment, dataset.schema, columns) for fragment in sorted_fragments(dataset)
    ]
    table = pa.concat_tables(tables) if tables else dataset.schema.empty_table()
    if table.num_rows == 0:
        raise EmptyInputError(_no_rows_message(path))
    return _to_frame(table)


def _no_rows_message(path: PathLike) -> str:
    return (
        f"{os.fspath(path)}: the data has 0 rows. Check that the export that writes it "
        "finished, or point at data that has rows."
    )


def _read_fragment(
    fragment: ds.Fragment, schema: pa.Schema, columns: Sequence[str] | None
) -> pa.Table:
    _check_fragment_columns(fragment, schema, columns)
    try:
        return fragment.to_table(schema=schema, columns=_column_list(columns))
    except ARROW_ERRORS as exc:
        raise file_error(fragment.path, exc) from exc


def _check_fragment_columns(
    fragment: ds.Fragment, schema: pa.Schema, columns: Sequence[str] | None
) -> None:
    """Refuse a file that lacks a column the others have.

    pyarrow would fill the column with nulls for that file, and the model would then read
    a broken export as thousands of rows with a missing value.
    """
    try:
        present = set(fragment.physical_schema.names)
    except ARROW_ERRORS as exc:
        raise file_error(fragment.path, exc) from exc
    check_fragment_keys(fragment)  # a folder value must not replace the file's own column
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
    dataset = open_checked_dataset(path)
    _check_columns(dataset, columns, path)
    fragments = sorted_fragments(dataset)
    if partition is not None:
        fragments = [partition_fragment(fragments, partition, path)]
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
    wanted = schema.names if columns is None else list(columns)
    try:
        yield from fragment_batches(fragment, schema, wanted, batch_size)
    except ARROW_ERRORS as exc:
        raise file_error(fragment.path, exc) from exc


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
