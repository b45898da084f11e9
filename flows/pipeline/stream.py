"""The one scoring pipeline: read, validate and quarantine, score, write.

Every scoring path runs through ``run_stream``: ``score-file``, each partition of the
scoring flow (in threads or on Dask workers), and sensor inputs, which are one ordered
stream. It works with any detector through its batch scorer (``detector.stream()``, see
``vae_core.streaming``) and knows nothing of Prefect or MLflow.

Three stages overlap: a read-ahead thread reads the next batches, validates them (rows
that fail go to quarantine with a reason) and prepares them for the model; the calling
thread runs the model; a write-behind thread turns the scores into output rows and writes
them. Parquet, numpy and torch release the GIL for their heavy work, so on a small network
the reading and writing (about twice the model's CPU work) overlap the model instead of
adding to it. Rows are accounted for (in = scored + quarantined) before anything is
published, and on any failure every output is abandoned: the previous files stay.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from flows.pipeline.column_types import refuse_nested
from flows.pipeline.input_checks import InputNotes, TypeDrift
from flows.pipeline.memory import release_free_memory
from flows.pipeline.prefetch import WriteBehind, prefetch
from flows.pipeline.row_validation import refuse_unreadable_values, split_valid_rows
from flows.pipeline.summary import PartitionResult, RowAccountingError
from flows.pipeline.writers import ParquetBatchWriter
from vae_core.scoring import UNFILTERED_COLUMNS
from vae_core.streaming import BatchScorer, Detector, ScoredBatch

#: Batches between returns of freed memory to the OS (``flows.pipeline.memory``).
TRIM_EVERY = 8
#: Mixed into a part's sample seed so that its keys differ from other uses of its index.
SAMPLE_SALT = 0x5CA1E

NumericErrors = Literal["quarantine", "fail"]


@dataclass(frozen=True)
class StreamOptions:
    """How a stream is validated and summarised."""

    #: Rows with a bad value: quarantined or an error; None: no validation stage, the
    #: detector's own checks stop the run at the first bad value (``score-file``).
    numeric_errors: NumericErrors | None = "quarantine"
    top_n: int = 10
    #: Seeds the sample keys: the partition's index, so a run's sample is the same however
    #: its partitions were scheduled.
    sample_seed: int = 0
    #: Give the top rows their position in the output (a ``row`` column).
    number_rows: bool = False
    #: Called with the running counts after every batch.
    progress: Callable[[PartitionResult], None] | None = None
    #: A feature column of another type than in training: a note, or an error.
    type_drift: TypeDrift = "warn"


@dataclass(frozen=True)
class StreamOutputs:
    """Where a stream's rows go; each file appears only when the stream completed."""

    scores: Path
    #: None: no quarantine file (with ``numeric_errors=None`` nothing is quarantined).
    quarantine: Path | None = None


@dataclass(frozen=True)
class _Prepared:
    """A batch after the reading stage: split into quarantined and prepared rows."""

    rows_in: int
    quarantined: pd.DataFrame | None
    prepared: Any


def row_key_columns(detector: Detector) -> tuple[str, ...]:
    """Columns whose repeats are worth a warning: the keys that identify a row.

    An ordered (windowed) stream's keys name a series, which all its rows share.
    """
    return () if detector.ordered_stream else tuple(detector.schema_.key_columns)


def new_notes(detector: Detector, source: str, options: StreamOptions | None = None) -> InputNotes:
    """Notes on the columns the model ignores, on repeated or null row keys and on columns
    whose type differs from training."""
    options = StreamOptions() if options is None else options
    notes = InputNotes.for_model(
        detector.schema_, source, row_key_columns(detector), options.type_drift
    )
    notes.null_keys_scored = options.numeric_errors is None  # else quarantined, with a reason
    if detector.ordered_stream:
        # The series' own clock: rows whose timestamp cannot be read are quarantined (or
        # stop score-file), which says more than a note.
        notes.timestamp_columns = ()
    return notes


def _model_columns(detector: Detector) -> tuple[str, ...]:
    schema = detector.schema_
    return (*schema.key_columns, *schema.feature_names, *schema.ignored_columns)


def _read_stage(
    scorer: BatchScorer,
    detector: Detector,
    batches: Iterable[pd.DataFrame],
    where: str,
    options: StreamOptions,
    notes: InputNotes,
) -> Iterator[_Prepared]:
    """Runs in the read-ahead thread, so ``notes`` is only read after it finished."""
    columns, keys = _model_columns(detector), detector.schema_.key_columns
    time_column = scorer.time_column if detector.ordered_stream else None
    for batch in batches:
        refuse_nested(batch, columns, keys, where)  # before anything hashes or casts them
        notes.observe(batch)
        quarantined = None
        valid = batch
        if options.numeric_errors is not None:
            valid, quarantined = split_valid_rows(
                batch, detector.schema_, where, options.numeric_errors, time_column
            )
        else:
            refuse_unreadable_values(batch, detector.schema_, where, time_column)
        yield _Prepared(len(batch), quarantined, scorer.prepare(valid, where))


class _Run:
    """One stream's writers, write-behind thread and running summary."""

    def __init__(self, detector: Detector, outputs: StreamOutputs, options: StreamOptions):
        self.options = options
        self.scores = ParquetBatchWriter(outputs.scores, without_statistics=UNFILTERED_COLUMNS)
        self.quarantine = (
            None if outputs.quarantine is None else ParquetBatchWriter(outputs.quarantine)
        )
        self.behind = WriteBehind(self._write)
        self.rng = np.random.default_rng([options.sample_seed, SAMPLE_SALT])
        self.result = PartitionResult()

    def _write(self, batch: ScoredBatch) -> None:
        self.scores.write_arrow(batch.to_table())

    def add(self, item: _Prepared, scored: ScoredBatch) -> None:
        result = self.result
        result.rows_in += item.rows_in
        if item.quarantined is not None and len(item.quarantined):
            assert self.quarantine is not None
            self.quarantine.write(item.quarantined)
            result.count_quarantined(item.quarantined)
        # Written even when empty: the first batch fixes the output's columns, so a
        # partition whose rows are all quarantined still writes a (0-row) scores file.
        self.behind.submit(scored)
        offset = result.rows_scored if self.options.number_rows else None
        n_keys = len(scored) if scored.scored is None else len(scored.scored)
        result.add_batch(scored, self.options.top_n, self.rng.random(n_keys), offset)

    def finish(self, outputs: StreamOutputs) -> None:
        """Check the accounting, then put the files in place."""
        self.behind.flush()
        self.result.check_accounting()
        if self.scores.rows_written != self.result.rows_scored:
            raise RowAccountingError(
                f"{outputs.scores}: {self.scores.rows_written} rows written, "
                f"{self.result.rows_scored} scored; the output is incomplete."
            )
        if self.result.spans is not None:
            self.result.spans.close()
        if self.result.rows_in:
            self.scores.close()
        else:
            self.scores.abort()  # an empty file of a dataset: nothing to write, nothing lost
        if self.quarantine is not None and outputs.quarantine is not None:
            finish_quarantine(self.quarantine, outputs.quarantine, self.result.rows_quarantined)

    def abandon(self, batches: Generator[object, None, None]) -> None:
        writers = [self.scores] if self.quarantine is None else [self.scores, self.quarantine]
        abandon(batches, self.behind, *writers)


def run_stream(
    detector: Detector,
    batches: Iterable[pd.DataFrame],
    where: str,
    outputs: StreamOutputs,
    options: StreamOptions,
) -> PartitionResult:
    """Validate, score and write every batch of ``batches`` (read from ``where``).

    The scores file is written when the input has rows (with 0 rows if every row was
    quarantined); the quarantine file only when rows were quarantined, and an older file
    there is removed otherwise, since it would describe another run.
    """
    scorer = detector.stream()
    notes = new_notes(detector, where, options)
    run = _Run(detector, outputs, options)
    run.result.notes = notes
    run.result.time_column, run.result.series_column = scorer.time_column, scorer.series_column
    prepared = prefetch(_read_stage(scorer, detector, batches, where, options, notes))
    try:
        for done, item in enumerate(prepared, start=1):
            run.add(item, scorer.score_prepared(item.prepared))
            if done % TRIM_EVERY == 0:  # three threads: see flows.pipeline.memory
                release_free_memory()
            if options.progress is not None:
                options.progress(run.result)
        run.finish(outputs)
    except BaseException:
        run.abandon(prepared)
        raise
    return run.result


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


__all__ = [
    "StreamOptions",
    "StreamOutputs",
    "abandon",
    "finish_quarantine",
    "run_stream",
]
