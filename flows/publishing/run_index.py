"""The run index: one row per completed scoring run, ``<root>/run_index.parquet``.

Each published run appends its summary (run date, id, model, row counts, alert rate, score
quantiles, threshold). The file is rewritten whole, atomically, by the publishing run while
it holds the output root's lock, so concurrent runs never lose each other's rows and a
reader sees the old table or the new one. Rows outlive retention: the index is the history.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flows.pipeline.writers import ParquetBatchWriter
from vae_core.errors import InputError, first_line

INDEX_FILE = "run_index.parquet"

SCHEMA = pa.schema(
    [
        ("run_date", pa.date32()),
        ("run_id", pa.string()),
        ("finished_at", pa.timestamp("us", tz="UTC")),
        ("model_name", pa.string()),
        ("model_version", pa.string()),
        ("rows_in", pa.int64()),
        ("rows_scored", pa.int64()),
        ("rows_quarantined", pa.int64()),
        ("rows_flagged", pa.int64()),
        ("alert_rate", pa.float64()),
        ("score_p50", pa.float64()),
        ("score_p90", pa.float64()),
        ("score_p99", pa.float64()),
        ("threshold", pa.float64()),
    ]
)
COLUMNS: tuple[str, ...] = tuple(SCHEMA.names)


class RunIndexError(InputError):
    """The run index cannot be read, or a row does not fit its columns."""


def index_path(root: Path | str) -> Path:
    return Path(root) / INDEX_FILE


def _row_table(row: Mapping[str, Any]) -> pa.Table:
    missing = [name for name in COLUMNS if name not in row]
    extra = [name for name in row if name not in COLUMNS]
    if missing or extra:
        raise RunIndexError(f"run index row: missing {missing}, unknown {extra}")
    values = dict(row)
    if isinstance(values["run_date"], datetime):
        values["run_date"] = values["run_date"].date()
    if not isinstance(values["run_date"], date):
        values["run_date"] = date.fromisoformat(str(values["run_date"]))
    return pa.Table.from_pylist([values], schema=SCHEMA)


def _read_table(path: Path) -> pa.Table:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise RunIndexError(
            f"{path}: the run index cannot be read ({first_line(exc)}); move it aside to "
            "start a new one"
        ) from exc
    try:
        return table.select(list(COLUMNS)).cast(SCHEMA)
    except (pa.ArrowException, KeyError) as exc:
        raise RunIndexError(
            f"{path}: the run index does not have the expected columns ({first_line(exc)})"
        ) from exc


def append_row(root: Path | str, row: Mapping[str, Any]) -> Path:
    """Append ``row`` (a value for every column of ``COLUMNS``) to the index of ``root``.

    The caller holds the root's lock (``flows.publishing.run_set.root_lock``): the read,
    the append and the atomic rewrite are one step for every other publisher.
    """
    path = index_path(root)
    new = _row_table(row)
    table = pa.concat_tables([_read_table(path), new]) if path.exists() else new
    with ParquetBatchWriter(path, SCHEMA) as writer:
        writer.write_arrow(table)
    return path


def read_index(root: Path | str) -> pd.DataFrame:
    """The run index of the output root ``root``, oldest row first.

    An empty frame with the index's columns when no run has completed yet.
    """
    path = index_path(root)
    table = _read_table(path) if path.exists() else SCHEMA.empty_table()
    return table.to_pandas()
