"""Scoring an input in partitions, and combining the partitions into the run's outputs.

A partition (a file, or row groups of a large file) is scored by the one pipeline
(``flows.pipeline.stream``) into its own part files. The functions here take plain data and
know nothing of Prefect or MLflow, so the same code runs in the flow's process, in a thread
pool, or on a remote worker.

Determinism: the sample keys of a partition come from a generator seeded by the partition
index, and partition outputs are combined in partition order, so a run gives the same output
files whether its partitions ran one after another or concurrently.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from flows.pipeline.input_checks import TypeDrift
from flows.pipeline.stream import NumericErrors, StreamOptions, StreamOutputs, run_stream
from flows.pipeline.summary import PartitionResult
from flows.pipeline.writers import ParquetBatchWriter, abandoned, writer_tag
from vae_core.io import iter_batches
from vae_core.partitions import Partition
from vae_core.streaming import Detector

#: Cells (rows x features) per record batch, and the fewest rows a batch is cut to.
BATCH_CELLS = 2_000_000
MIN_BATCH_ROWS = 1024
#: Staging directories of partition outputs start with this; a killed run's are removed.
STAGING_PREFIX = ".parts-"


def batch_rows(batch_size: int, n_features: int) -> int:
    """Rows per record batch: ``batch_size``, fewer for wide data, so memory stays bounded.

    Scoring holds a few float64 copies of a batch (encoded inputs, per-feature terms,
    shares) for each batch in flight: 65,536 rows of 20 features take 10 MB per copy, of
    2,000 features a gigabyte. The cell budget keeps wide data near the narrow figure.
    """
    return max(1, min(batch_size, max(MIN_BATCH_ROWS, BATCH_CELLS // max(n_features, 1))))


def read_batches(
    detector: Detector, source: str, batch_size: int, partition: Partition | None = None
) -> Iterator[pd.DataFrame]:
    """The record batches of ``partition`` (all of ``source`` if None), sized for the model."""
    rows = batch_rows(batch_size, len(detector.schema_.columns))
    return iter_batches(source, batch_size=rows, partition=partition)


def score_partition(
    detector: Detector,
    source: str,
    partition: Partition | None,
    scores_path: Path,
    quarantine_path: Path,
    *,
    batch_size: int,
    top_n: int,
    numeric_errors: NumericErrors = "quarantine",
    type_drift: TypeDrift = "warn",
    progress: Callable[[PartitionResult], None] | None = None,
) -> PartitionResult:
    """Validate, score and write every batch of ``partition`` (all of ``source`` if None).

    ``progress`` is called with the running counts after every batch. Both outputs
    appear only when complete (see ``run_stream``).
    """
    index = 0 if partition is None else partition.index
    where = source if partition is None else partition.file
    options = StreamOptions(
        numeric_errors, top_n, sample_seed=index, progress=progress, type_drift=type_drift
    )
    batches = read_batches(detector, source, batch_size, partition)
    result = run_stream(
        detector, batches, where, StreamOutputs(scores_path, quarantine_path), options
    )
    extra = {"window_status": dict(result.status_counts)} if result.status_counts else {}
    result.record_partition(
        index, where, None if partition is None else partition.row_groups, **extra
    )
    return result


def concatenate_parts(
    parts: Sequence[Path], target: Path, without_statistics: Collection[str] = ()
) -> int:
    """Stream the Parquet ``parts`` in order into ``target`` (atomically); return rows written.

    Nothing is written when ``parts`` is empty; an older ``target`` is then removed, since
    it would describe another run. ``without_statistics``: as for ``ParquetBatchWriter``.
    """
    existing = [p for p in parts if p.exists()]
    if not existing:
        target.unlink(missing_ok=True)
        return 0
    # The first part with rows fixes the schema: an empty part may carry null-typed columns.
    ordered = sorted(existing, key=lambda p: pq.ParquetFile(p).metadata.num_rows == 0)
    schema = pq.read_schema(ordered[0])
    with ParquetBatchWriter(target, schema, without_statistics) as writer:
        for part in existing:
            for batch in pq.ParquetFile(part).iter_batches():
                writer.write_arrow(batch)
        return writer.rows_written


def staging_directory(output_dir: Path, token: str) -> Path:
    """A fresh directory for this run's partition outputs.

    Named ``.parts-<host>.<pid>.<token>``: staging directories of killed runs (their
    process is gone, or they were untouched for hours) are removed; those of runs still
    writing into the same output directory are left alone.
    """
    for other in output_dir.glob(f"{STAGING_PREFIX}*"):
        tag = other.name.removeprefix(STAGING_PREFIX).rpartition(".")[0]
        if abandoned(tag, other):
            shutil.rmtree(other, ignore_errors=True)
    staging = output_dir / f"{STAGING_PREFIX}{writer_tag()}.{token}"
    staging.mkdir(parents=True)
    return staging
