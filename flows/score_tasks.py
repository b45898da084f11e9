"""The scoring flow's tasks over the input's partitions: each partition streamed through
the pipeline (``flows.pipeline.partitions``), in parallel where the runner allows, and
the parts joined in input order into the run's scores and quarantine files."""

from __future__ import annotations

import secrets
import shutil
import time
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.config import ScoreSettings
from flows.pipeline.partitions import concatenate_parts, score_partition, staging_directory
from flows.pipeline.summary import PartitionResult
from flows.publishing.run_set import QUARANTINE_FILE, SCORES_FILE
from flows.task_runners import ModelRef, make_task_runner, threads_per_task, worker_detector
from vae_core.errors import EmptyInputError
from vae_core.partitions import Partition, list_partitions
from vae_core.scoring import UNFILTERED_COLUMNS
from vae_core.streaming import Detector

__all__ = ["score_stream"]

#: Seconds between progress lines of a partition being scored.
PROGRESS_EVERY_S = 15.0


@task(cache_policy=NO_CACHE, task_run_name="score-{label}")
def score_partition_task(
    model: Detector | ModelRef,
    cfg: ScoreSettings,
    partition: Partition | None,
    scores_path: Path,
    quarantine_path: Path,
    label: str,
) -> PartitionResult:
    """Score one partition; a ``ModelRef`` (other processes) is loaded once per process."""
    detector = worker_detector(model) if isinstance(model, ModelRef) else model
    logger = get_run_logger()
    last_report = [time.monotonic()]

    def report_progress(running: PartitionResult) -> None:
        # Long partitions say how far they got, at most every PROGRESS_EVERY_S seconds.
        if time.monotonic() - last_report[0] >= PROGRESS_EVERY_S:
            last_report[0] = time.monotonic()
            logger.info(
                "%s: %d rows so far, %d quarantined",
                label,
                running.rows_in,
                running.rows_quarantined,
            )

    result = score_partition(
        detector,
        cfg.input_path,
        partition,
        scores_path,
        quarantine_path,
        batch_size=cfg.batch_size,
        top_n=cfg.top_n,
        numeric_errors=cfg.numeric_errors,
        type_drift=cfg.type_drift,
        progress=report_progress,
    )
    logger.info(
        "%s: %d rows, %d scored, %d quarantined, %d flagged",
        label,
        result.rows_in,
        result.rows_scored,
        result.rows_quarantined,
        result.n_flagged,
    )
    if result.spans is not None:
        logger.info(
            "%s: %d flagged spans; row status %s", label, result.spans.count, result.status_counts
        )
    return result


def score_stream(
    detector: Detector,
    cfg: ScoreSettings,
    output_dir: Path,
    ref: ModelRef | None = None,
) -> PartitionResult:
    """Score every partition of the input into ``output_dir``; return counts and summaries.

    One partition (with the local runner) is written straight to the outputs. Otherwise
    partitions are scored ``concurrency`` at a time (threads, or Dask workers loading the
    model from ``ref``) into a staging directory, each into its own part, then
    concatenated in input order into the outputs: the files are the same whatever the
    runner or the concurrency, and a run killed before the end leaves the previous outputs
    in place. A partition re-run after a lost worker rewrites its own part, atomically, so
    retries never duplicate rows. A model whose scores depend on earlier rows
    (``ordered_stream``: sensor windows) scores the whole input as one stream, in order.
    """
    partitions = list_partitions(cfg.input_path, cfg.partition_rows)
    if detector.ordered_stream or (len(partitions) == 1 and cfg.task_runner == "local"):
        label = Path(partitions[0].file if len(partitions) == 1 else cfg.input_path).name
        outputs = (output_dir / SCORES_FILE, output_dir / QUARANTINE_FILE)
        return report_notes(score_partition_task(detector, cfg, None, *outputs, label=label))
    staging = staging_directory(output_dir, secrets.token_hex(6))
    try:
        model = detector if cfg.task_runner == "local" or ref is None else ref
        total = _score_partitions(model, cfg, partitions, staging)
        _publish_parts(partitions, staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report_notes(total)


def _score_partitions(
    model: Detector | ModelRef, cfg: ScoreSettings, partitions: list[Partition], staging: Path
) -> PartitionResult:
    """Score each partition into its own parts under ``staging``; merge in input order."""
    runner = make_task_runner(cfg.task_runner, cfg.concurrency, cfg.dask_address)
    sharing = threads_per_task(cfg.concurrency if cfg.task_runner == "local" else 1)
    with sharing, runner:
        futures = [
            runner.submit(
                score_partition_task,
                parameters={
                    "model": model,
                    "cfg": cfg,
                    "partition": part,
                    "scores_path": staging / f"{part.name}.scores.parquet",
                    "quarantine_path": staging / f"{part.name}.quarantine.parquet",
                    "label": f"{part.name} ({Path(part.file).name})",
                },
            )
            for part in partitions
        ]
        results = [future.result() for future in futures]
    total = PartitionResult()
    for result in results:
        total.merge(result, cfg.top_n)
    if total.rows_in == 0:
        raise EmptyInputError(
            f"{cfg.input_path}: the data has 0 rows. Check that the export that writes "
            "it finished, or point at data that has rows."
        )
    total.check_accounting()
    return total


def _publish_parts(partitions: list[Partition], staging: Path, output_dir: Path) -> None:
    """Concatenate the parts in input order into the run's scores and quarantine files."""
    concatenate_parts(
        [staging / f"{p.name}.scores.parquet" for p in partitions],
        output_dir / SCORES_FILE,
        UNFILTERED_COLUMNS,
    )
    concatenate_parts(
        [staging / f"{p.name}.quarantine.parquet" for p in partitions],
        output_dir / QUARANTINE_FILE,
    )


def report_notes(summary: PartitionResult) -> PartitionResult:
    """Log what the input held that is worth a warning (ignored columns, duplicate keys)."""
    if summary.notes is not None:
        for note in summary.notes.messages():
            get_run_logger().warning(note)
    return summary
