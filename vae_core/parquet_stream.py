"""Record batches of one Parquet file, decoded a page at a time where the file allows.

pyarrow's dataset scanner decodes a whole row group before it hands out the first batch
of it: a row group of 262,144 rows by 200 float64 columns is 420 MB, and the scanner held
two. ``ParquetFile.iter_batches`` on a small read buffer decodes only the pages the next
batch needs, so memory follows the batch size, not the writer's row-group size. It reads
the file as stored, though: it neither adds hive folder values as columns nor converts a
column to the dataset's type, so the dataset scanner stays the reader for files that need
either.

Pure library: no Prefect, no MLflow.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

#: Bytes read from the file at a time per column: without a buffer, a whole column
#: chunk (2 MB per column of that row group) is read before its first page is decoded.
READ_BUFFER_BYTES = 65_536
_SCAN_OPTIONS = ds.ParquetFragmentScanOptions(pre_buffer=False)


def fragment_batches(
    fragment: ds.Fragment, schema: pa.Schema, columns: Sequence[str], batch_size: int
) -> Iterator[pa.RecordBatch]:
    """``fragment``'s ``columns`` in batches of at most ``batch_size`` rows, as ``schema``.

    Raises pyarrow's errors as they are: the caller names the file.
    """
    target = pa.schema([schema.field(name) for name in columns], metadata=schema.metadata)
    reader = _page_reader(fragment, target)
    if reader is None:
        yield from _scanned(fragment, schema, columns, batch_size)
        return
    row_groups = [group.id for group in fragment.row_groups]
    # One thread: the caller's read-ahead thread already overlaps decoding with scoring.
    with reader:
        for batch in reader.iter_batches(
            batch_size=batch_size, row_groups=row_groups, columns=list(columns), use_threads=False
        ):
            # By name: the file's column order need not be the order asked for.
            yield pa.RecordBatch.from_arrays([batch.column(n) for n in columns], schema=target)


def _page_reader(fragment: ds.Fragment, target: pa.Schema) -> pq.ParquetFile | None:
    """The file's page-wise reader, or None when its batches would not be ``target``'s."""
    if not isinstance(fragment, ds.ParquetFileFragment):
        return None
    if ds.get_partition_keys(fragment.partition_expression):
        return None  # folder values become columns: the scanner adds them
    reader = pq.ParquetFile(
        fragment.path,
        metadata=fragment.metadata,  # the footer the dataset has read already
        filesystem=fragment.filesystem,
        buffer_size=READ_BUFFER_BYTES,
        pre_buffer=False,
    )
    stored = reader.schema_arrow
    for field in target:
        index = stored.get_field_index(field.name)
        if index < 0 or not stored.field(index).type.equals(field.type):
            reader.close()
            return None  # a column to add or convert: the scanner does that
    return reader


def _scanned(
    fragment: ds.Fragment, schema: pa.Schema, columns: Sequence[str], batch_size: int
) -> Iterator[pa.RecordBatch]:
    # Bounded memory: with pre-buffering, pyarrow keeps every column chunk it has read
    # until the whole file is done (a 3M-row file grew the process by 500 MB), and its
    # default read-ahead of 16 batches holds far more than a single consumer needs.
    yield from fragment.to_batches(
        schema=schema,
        columns=list(columns),
        batch_size=batch_size,
        batch_readahead=2,
        fragment_readahead=1,
        fragment_scan_options=_SCAN_OPTIONS,
    )
