"""Score one partition of the input, and combine partitions into the run's outputs.

A partition (a file, or row groups of a large file) is read in record batches, validated,
scored and written batch by batch, in a three-stage pipeline: a background thread reads,
validates and encodes the next batches, the calling thread runs the model, and another
background thread turns the scores into output rows and writes them. Parquet, numpy and
torch release the GIL for their heavy work, so on a small network the reading and writing
(about twice the model's CPU work) overlap the model instead of adding to it. Only bounded
summaries are kept: the top rows and a uniform sample. The functions here take plain data
and know nothing of Prefect or MLflow, so the same code runs in the flow's process, in a
thread pool, or on a remote worker.

Determinism: the sample keys of a partition come from a generator seeded by the partition
index, and partition outputs are combined in partition order, so a run gives the same output
files whether its partitions ran one after another or concurrently.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flows.pipeline.input_checks import InputNotes
from flows.pipeline.memory import release_free_memory
from flows.pipeline.prefetch import WriteBehind, prefetch
from flows.pipeline.row_validation import REASON_COLUMN, split_valid_rows
from flows.pipeline.writers import ParquetBatchWriter, abandoned, frame_to_table, writer_tag
from vae_core import VAEAnomalyDetector
from vae_core.errors import VAEAnomalyError
from vae_core.features import EncodedData
from vae_core.io import Partition, iter_batches
from vae_core.scoring import UNFILTERED_COLUMNS, ScoreArrays, score_columns, to_frame

#: Scores kept for the histogram and the time plot: a uniform sample of the run.
SAMPLE_SIZE = 50_000
#: Cells (rows x features) per record batch, and the fewest rows a batch is cut to.
BATCH_CELLS = 2_000_000
MIN_BATCH_ROWS = 1024
#: Batches between returns of freed memory to the OS (``flows.pipeline.memory``).
TRIM_EVERY = 8
#: Staging directories of partition outputs start with this; a killed run's are removed.
STAGING_PREFIX = ".parts-"


class RowAccountingError(VAEAnomalyError, RuntimeError):
    """Rows read differ from rows scored plus rows quarantined: something was lost."""


@dataclass
class PartitionResult:
    """What scoring a partition (or a whole run, once merged) produced: counts and summaries."""

    rows_in: int = 0
    rows_scored: int = 0
    rows_quarantined: int = 0
    n_flagged: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    top: pd.DataFrame | None = None
    #: Rows that may be in the sample, pruned now and then (``sample`` reads it).
    _sample_parts: list[pd.DataFrame] = field(default_factory=list, repr=False)
    _sample_rows: int = 0
    #: No row of the sample has a larger key: rows above it need not be kept at all.
    _sample_bound: float = math.inf
    partitions: list[dict[str, object]] = field(default_factory=list)
    #: Ignored columns and key hashes: reported at the end of the run, never errors.
    notes: InputNotes | None = None

    def keep_top(self, scored: pd.DataFrame, top_n: int) -> None:
        if top_n <= 0 or scored.empty:
            return
        if len(scored) > top_n:
            # Preselect on the score array: sorting whole frames with text columns costs
            # more than scoring them. Ties at the cut are kept, so nlargest still decides.
            values = scored["score"].to_numpy()
            cut = np.partition(values, len(values) - top_n)[len(values) - top_n]
            scored = scored.loc[values >= cut]
        pool = scored if self.top is None else pd.concat([self.top, scored])
        self.top = pool.nlargest(top_n, "score")

    def keep_top_of(
        self, carried: pd.DataFrame, arrays: ScoreArrays, threshold: float, top_n: int
    ) -> None:
        """``keep_top`` of a batch's scores, building output rows only for the candidates."""
        if top_n <= 0 or not len(arrays):
            return
        score = arrays.score
        rows = np.arange(len(score))
        if self.top is not None and len(self.top) >= top_n:
            # Below the lowest kept score nothing can enter: usually no row of a batch.
            rows = np.flatnonzero(score >= self.top["score"].min())
            if not len(rows):
                return
        if len(rows) > top_n:  # ties at the cut are kept, as in keep_top
            cut = np.partition(score[rows], len(rows) - top_n)[len(rows) - top_n]
            rows = rows[score[rows] >= cut]
        candidates = carried.iloc[rows].reset_index(drop=True)
        self.keep_top(scored_frame(candidates, arrays.take(rows), threshold), top_n)

    def keep_sample_of(
        self, carried: pd.DataFrame, arrays: ScoreArrays, threshold: float, keys: np.ndarray
    ) -> None:
        """``keep_sample`` of a batch's scores with sample ``keys``, one per row.

        Once the sample is full, only rows with a key below its bound can enter it, and
        only those are turned into rows.
        """
        rows = np.flatnonzero(keys <= self._sample_bound)
        score = arrays.score[rows]
        frame = carried.iloc[rows].reset_index(drop=True)
        frame.insert(0, "score", score)
        frame.insert(1, "is_anomaly", score > threshold)
        self.keep_sample(frame.assign(_sample_key=keys[rows]))

    def keep_sample(self, keyed: pd.DataFrame) -> None:
        """Keep the SAMPLE_SIZE rows with the smallest ``_sample_key`` seen so far.

        Bottom-k sampling: with uniform random keys, the rows with the smallest keys are a
        uniform sample without replacement however the rows were batched or partitioned.
        Rows are pooled and the pool is cut back when it doubles, by selection rather than
        sorting: sorting the whole sample after every batch cost more than scoring it.
        """
        if len(keyed) or not self._sample_parts:  # an empty first frame still has columns
            self._sample_parts.append(keyed)
            self._sample_rows += len(keyed)
        if self._sample_rows > 2 * SAMPLE_SIZE:
            pool = pd.concat(self._sample_parts)
            keys = pool["_sample_key"].to_numpy()
            bound = np.partition(keys, SAMPLE_SIZE - 1)[SAMPLE_SIZE - 1]
            self._keep_pool(pool[keys <= bound], float(bound))  # ties stay; ``sample`` cuts

    @property
    def sample(self) -> pd.DataFrame | None:
        """The sample: the SAMPLE_SIZE rows of smallest key (by key), or all rows if fewer."""
        if not self._sample_parts:
            return None
        pool = (
            self._sample_parts[0] if len(self._sample_parts) == 1 else pd.concat(self._sample_parts)
        )
        bound = self._sample_bound
        if len(pool) > SAMPLE_SIZE:
            pool = pool.nsmallest(SAMPLE_SIZE, "_sample_key")
            bound = float(pool["_sample_key"].iloc[-1])
        self._keep_pool(pool, bound)  # read twice, cut and concatenated once
        return pool

    def _keep_pool(self, pool: pd.DataFrame, bound: float) -> None:
        self._sample_parts, self._sample_rows, self._sample_bound = [pool], len(pool), bound

    def count_quarantined(self, quarantined: pd.DataFrame) -> None:
        """Count a batch's quarantined rows and their reasons."""
        self.rows_quarantined += len(quarantined)
        counts = quarantined[REASON_COLUMN].value_counts()
        self.add_reasons({str(k): int(v) for k, v in counts.items()})

    def add_reasons(self, reasons: dict[str, int]) -> None:
        for reason, count in reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + count

    def merge(self, other: PartitionResult, top_n: int) -> None:
        """Fold ``other`` (the next partition in input order) into this result."""
        self.rows_in += other.rows_in
        self.rows_scored += other.rows_scored
        self.rows_quarantined += other.rows_quarantined
        self.n_flagged += other.n_flagged
        self.add_reasons(other.reasons)
        if other.top is not None:
            self.keep_top(other.top, top_n)
        if other.sample is not None:
            self.keep_sample(other.sample)
        self.partitions.extend(other.partitions)
        if other.notes is not None:
            if self.notes is None:
                self.notes = InputNotes(
                    other.notes.source, other.notes.expected, other.notes.key_columns
                )
            self.notes.merge(other.notes)

    def record_partition(
        self, index: int, file: str, row_groups: tuple[int, ...] | None, **extra: object
    ) -> None:
        """Add this result's row counts to ``partitions`` (for the manifest), with ``extra``."""
        self.partitions.append(
            {
                "index": index,
                "file": file,
                "row_groups": row_groups,
                "rows_in": self.rows_in,
                "rows_scored": self.rows_scored,
                "rows_quarantined": self.rows_quarantined,
                **extra,
            }
        )

    def check_accounting(self) -> None:
        if self.rows_in != self.rows_scored + self.rows_quarantined:
            raise RowAccountingError(
                f"rows read {self.rows_in} != rows scored {self.rows_scored} + rows "
                f"quarantined {self.rows_quarantined}; the outputs are incomplete."
            )


def batch_rows(batch_size: int, n_features: int) -> int:
    """Rows per record batch: ``batch_size``, fewer for wide data, so memory stays bounded.

    Scoring holds a few float64 copies of a batch (encoded inputs, per-feature terms,
    shares) for each batch in flight: 65,536 rows of 20 features take 10 MB per copy, of
    2,000 features a gigabyte. The cell budget keeps wide data near the narrow figure.
    """
    return max(1, min(batch_size, max(MIN_BATCH_ROWS, BATCH_CELLS // max(n_features, 1))))


def carried_columns(detector: VAEAnomalyDetector, columns: pd.Index) -> list[str]:
    """Columns copied into the scores: keys (to trace rows) and ignored ones (timestamps)."""
    schema = detector.schema_
    return [c for c in (*schema.key_columns, *schema.ignored_columns) if c in columns]


def time_columns(detector: VAEAnomalyDetector) -> list[str]:
    return list(detector.schema_.ignored_columns[:1])


@dataclass(frozen=True)
class _PreparedBatch:
    """A record batch after the reading stage: validated, split, encoded."""

    rows_in: int
    quarantined: pd.DataFrame
    carried: pd.DataFrame  # key and ignored columns of the valid rows, numbered from 0
    encoded: EncodedData


def _prepared(
    detector: VAEAnomalyDetector,
    batches: Iterable[pd.DataFrame],
    where: str,
    numeric_errors: Literal["quarantine", "fail"],
    notes: InputNotes,
) -> Iterator[_PreparedBatch]:
    """The reading stage: runs in the read-ahead thread, so ``notes`` is only read after it."""
    for batch in batches:
        notes.observe(batch)
        valid, quarantined = split_valid_rows(batch, detector.schema_, where, numeric_errors)
        carried = valid[carried_columns(detector, valid.columns)].reset_index(drop=True)
        yield _PreparedBatch(len(batch), quarantined, carried, detector.encode(valid, where))


def scored_frame(carried: pd.DataFrame, arrays: ScoreArrays, threshold: float) -> pd.DataFrame:
    """Output rows: the carried columns, then the score columns and the top features."""
    scores = to_frame(arrays, threshold, pd.RangeIndex(len(arrays)))
    return pd.concat([carried, scores], axis=1)


def scored_table(carried: pd.DataFrame, arrays: ScoreArrays, threshold: float) -> pa.Table:
    """``scored_frame`` built in Arrow, as it is written: no pandas frame of the scores."""
    table = frame_to_table(carried)
    for name, column in score_columns(arrays, threshold).items():
        table = table.append_column(name, pa.array(column))
    return table


def score_partition(
    detector: VAEAnomalyDetector,
    source: str,
    partition: Partition | None,
    scores_path: Path,
    quarantine_path: Path,
    *,
    batch_size: int,
    top_n: int,
    numeric_errors: Literal["quarantine", "fail"] = "quarantine",
    progress: Callable[[PartitionResult], None] | None = None,
) -> PartitionResult:
    """Validate, score and write every batch of ``partition`` (all of ``source`` if None).

    ``progress`` is called with the running counts after every batch.

    ``scores_path`` is written when the partition has rows (with 0 rows if every row was
    quarantined); ``quarantine_path`` only when rows were quarantined, and an older file
    there is removed otherwise, since it would describe another run. Both appear only when
    complete. Batches are read ahead and written behind in background threads.
    """
    result = PartitionResult(notes=InputNotes.for_model(detector.schema_, source))
    seed = 0 if partition is None else partition.index
    rng = np.random.default_rng([seed, 0x5CA1E])
    where = source if partition is None else partition.file
    scores_out = ParquetBatchWriter(scores_path, without_statistics=UNFILTERED_COLUMNS)
    quarantine_out = ParquetBatchWriter(quarantine_path)
    rows_per_batch = batch_rows(batch_size, len(detector.schema_.columns))
    threshold = detector.threshold_.value
    batches = prefetch(
        _prepared(
            detector,
            iter_batches(source, batch_size=rows_per_batch, partition=partition),
            where,
            numeric_errors,
            result.notes,
        )
    )

    def write_scores(item: tuple[pd.DataFrame, ScoreArrays]) -> None:
        scores_out.write_arrow(scored_table(*item, threshold))

    scores_behind = WriteBehind(write_scores)
    batches_done = 0
    try:
        for batch in batches:
            result.rows_in += batch.rows_in
            if len(batch.quarantined):
                quarantine_out.write(batch.quarantined)
                result.count_quarantined(batch.quarantined)
            # Scored and written even when empty: the first batch fixes the output's
            # columns, so a partition whose rows are all quarantined still writes a
            # (0-row) scores file.
            arrays = detector.score_arrays(batch.encoded)
            scores_behind.submit((batch.carried, arrays))
            result.rows_scored += len(arrays)
            result.n_flagged += int(np.count_nonzero(arrays.score > threshold))
            result.keep_top_of(batch.carried, arrays, threshold, top_n)
            sample_columns = [c for c in time_columns(detector) if c in batch.carried]
            result.keep_sample_of(
                batch.carried[sample_columns], arrays, threshold, rng.random(len(arrays))
            )
            batches_done += 1
            if batches_done % TRIM_EVERY == 0:
                release_free_memory()
            if progress is not None:
                progress(result)
        scores_behind.flush()
        result.check_accounting()
        if scores_out.rows_written != result.rows_scored:
            raise RowAccountingError(
                f"{scores_path}: {scores_out.rows_written} rows written, "
                f"{result.rows_scored} scored; the output is incomplete."
            )
    except BaseException:
        abandon(batches, scores_behind, scores_out, quarantine_out)
        raise
    if result.rows_in:
        scores_out.close()
    else:
        scores_out.abort()  # an empty file of a dataset: nothing to write, nothing lost
    finish_quarantine(quarantine_out, quarantine_path, result.rows_quarantined)
    result.record_partition(seed, where, None if partition is None else partition.row_groups)
    return result


def abandon(
    batches: Generator[object, None, None], behind: WriteBehind, *outputs: ParquetBatchWriter
) -> None:
    """After a failure: stop reading, let the writer thread finish, remove partial outputs.

    An error of the writer thread is dropped here: the first error is the one raised.
    """
    batches.close()
    try:
        behind.flush()
    except BaseException:  # noqa: BLE001 - the first error is the one raised
        pass
    for output in outputs:
        output.abort()


def finish_quarantine(writer: ParquetBatchWriter, path: Path, rows_quarantined: int) -> None:
    """Put the quarantine file in place if rows went there; otherwise write nothing and
    remove an older file at ``path``, since it would describe another run."""
    if rows_quarantined:
        writer.close()
    else:
        writer.abort()
        path.unlink(missing_ok=True)


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
