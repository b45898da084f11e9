"""Every flagged row of a run in its own file beside the report: ``flagged.parquet`` (and,
optionally, ``flagged.csv`` for a spreadsheet).

Read from the run's scores batch by batch and written under a temporary name, renamed when
complete, so memory does not grow with the input and a reader never sees half a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

__all__ = ["FLAGGED_CSV", "FLAGGED_FILE", "FlaggedFiles", "write_flagged"]

FLAGGED_FILE = "flagged.parquet"
FLAGGED_CSV = "flagged.csv"
#: Rows read from the scores at a time.
READ_BATCH_ROWS = 65_536


@dataclass(frozen=True)
class FlaggedFiles:
    parquet: Path
    csv: Path | None
    rows: int


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _csv_safe(batch: pa.RecordBatch) -> pa.RecordBatch:
    """CSV holds flat values only: nested or binary columns are written as text."""
    arrays = []
    for column in batch.columns:
        kind = column.type
        if pa.types.is_nested(kind) or pa.types.is_binary(kind) or pa.types.is_dictionary(kind):
            column = pa.array([None if v is None else str(v) for v in column.to_pylist()])
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def write_flagged(scores: Path, folder: Path, csv: bool = False) -> FlaggedFiles:
    """Write the rows of ``scores`` with ``is_anomaly`` set into ``folder``."""
    target = folder / FLAGGED_FILE
    csv_target = folder / FLAGGED_CSV if csv else None
    source = pq.ParquetFile(scores)
    schema = source.schema_arrow
    temporary, csv_temporary = _temporary(target), csv_target and _temporary(csv_target)
    rows = 0
    csv_writer = None
    try:
        with pq.ParquetWriter(temporary, schema) as writer:
            for batch in source.iter_batches(batch_size=READ_BATCH_ROWS):
                if "is_anomaly" not in schema.names:
                    break
                flagged = batch.filter(pc.fill_null(batch.column("is_anomaly"), False))
                if not flagged.num_rows:
                    continue
                writer.write_batch(flagged)
                rows += flagged.num_rows
                if csv_temporary is not None:
                    flat = _csv_safe(flagged)
                    csv_writer = csv_writer or pa_csv.CSVWriter(csv_temporary, flat.schema)
                    csv_writer.write_batch(flat)
        if csv_temporary is not None:
            if csv_writer is None:  # no flagged row: the header alone
                empty = pa.RecordBatch.from_pylist([], schema=schema)
                pa_csv.write_csv(_csv_safe(empty), csv_temporary)
            else:
                csv_writer.close()
                csv_writer = None
            os.replace(csv_temporary, csv_target)  # type: ignore[arg-type]
        os.replace(temporary, target)
    finally:
        if csv_writer is not None:
            csv_writer.close()
        for leftover in (temporary, csv_temporary):
            if leftover is not None and Path(leftover).exists():
                Path(leftover).unlink()
    return FlaggedFiles(target, csv_target, rows)
