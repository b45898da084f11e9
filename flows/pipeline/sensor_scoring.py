"""Training and scoring of sensor models (``vae_core.SensorVAEDetector``) inside the flows.

The tabular scoring path scores partitions concurrently; a sensor model cannot, because a
row's window reaches back into the previous file. Here the input is read once, in path
order and record batches, through one ``SensorStream``, so each entity's tail is carried
from batch to batch and from file to file: the scores equal those of scoring the whole
input in one piece, provided each entity's rows come in time order across files (rows
within a file may come in any order; an older row in a later file is marked ``late``).

Kept besides the counts: the top rows, a uniform sample of scored rows for the charts, and
every flagged span (consecutive flagged rows of one entity), exactly, up to
``MAX_SPANS``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.config import ScoreSettings, TrainSettings
from flows.pipeline.partitions import PartitionResult, finish_quarantine
from flows.pipeline.prefetch import prefetch
from flows.pipeline.row_validation import split_valid_rows
from flows.pipeline.writers import ParquetBatchWriter
from flows.reporting.report import ReportData
from vae_core.io import iter_batches
from vae_core.scoring import UNFILTERED_COLUMNS
from vae_core.sensor import SensorVAEDetector
from vae_core.windows import STATUS_OK

#: Flagged spans kept for the report; more are counted, not drawn.
MAX_SPANS = 2_000
#: Column that names the series in the report when there are several entity columns.
ENTITY_LABEL = "entity"


def build_sensor_detector(cfg: TrainSettings) -> SensorVAEDetector:
    """The windowed detector the training settings describe (``cfg.sensor`` must be set)."""
    sensor = cfg.sensor
    assert sensor is not None
    params = cfg.detector.estimator_params([])
    params.pop("key_columns")
    params["iqr_factor"] = sensor.iqr_factor
    params["numeric_dof"] = sensor.numeric_dof
    return SensorVAEDetector(
        timestamp_column=sensor.timestamp_column,
        entity_columns=sensor.entity_columns,
        channels=sensor.channels,
        window_length=sensor.window_length,
        train_stride=sensor.window_stride,
        differences=sensor.differences,
        gap_tolerance=sensor.gap_tolerance,
        resample=sensor.resample,
        alarm_k=sensor.alarm_k,
        alarm_n=sensor.alarm_n,
        detector_params=params,
    )


def entity_label(frame: pd.DataFrame, entity_columns: tuple[str, ...]) -> pd.Series | None:
    """One printable series name per row: the entity value, or ``a=1, b=2`` for several."""
    if not entity_columns:
        return None
    if len(entity_columns) == 1:
        return frame[entity_columns[0]].astype(object)
    parts = [c + "=" + frame[c].astype(str) for c in entity_columns]
    label = parts[0]
    for part in parts[1:]:
        label = label + ", " + part
    return label


@dataclass
class SensorResult(PartitionResult):
    """Counts and summaries of a sensor scoring run, plus row statuses and flagged spans."""

    status_counts: dict[str, int] = field(default_factory=dict)
    spans: list[dict[str, Any]] = field(default_factory=list)
    n_spans: int = 0
    _open: dict[Any, dict[str, Any]] = field(default_factory=dict, repr=False)

    def count_statuses(self, statuses: pd.Series) -> None:
        for status, count in statuses.value_counts().items():
            self.status_counts[str(status)] = self.status_counts.get(str(status), 0) + int(count)

    def track_spans(self, scored: pd.DataFrame, timestamp: str, label: pd.Series | None) -> None:
        """Extend or close each entity's open span with this batch's scored rows, in time order."""
        rows = scored.loc[scored["window_status"] == STATUS_OK, [timestamp, "is_anomaly"]]
        rows = rows.assign(_entity=None if label is None else label.loc[rows.index])
        rows = (
            rows.sort_values(["_entity", timestamp], kind="stable")
            if label is not None
            else (rows.sort_values(timestamp, kind="stable"))
        )
        for entity, stamp, flagged in zip(
            rows["_entity"], rows[timestamp], rows["is_anomaly"], strict=True
        ):
            current = self._open.get(entity)
            if flagged:
                if current is None:
                    self._open[entity] = {"entity": entity, "start": stamp, "end": stamp}
                else:
                    current["end"] = stamp
            elif current is not None:
                self._close(entity)

    def _close(self, entity: Any) -> None:
        span = self._open.pop(entity)
        self.n_spans += 1
        if len(self.spans) < MAX_SPANS:
            self.spans.append(span)

    def close_spans(self) -> None:
        for entity in list(self._open):
            self._close(entity)


def score_sensor_input(
    detector: SensorVAEDetector,
    source: str,
    scores_path: Path,
    quarantine_path: Path,
    *,
    batch_size: int,
    top_n: int,
    numeric_errors: str = "quarantine",
) -> SensorResult:
    """Validate, window, score and write every batch of ``source`` in order, one stream."""
    spec = detector.spec_
    result = SensorResult()
    rng = np.random.default_rng([0, 0x5E45])
    stream = detector.stream()
    schema = detector.schema_
    scores_out = ParquetBatchWriter(scores_path, without_statistics=UNFILTERED_COLUMNS)
    quarantine_out = ParquetBatchWriter(quarantine_path)
    batches = prefetch(iter_batches(source, batch_size=batch_size))
    try:
        for batch in batches:
            valid, quarantined = split_valid_rows(batch, schema, source, numeric_errors)
            result.rows_in += len(batch)
            if len(quarantined):
                quarantine_out.write(quarantined)
                result.count_quarantined(quarantined)
            scored = stream.score(valid, source=source).reset_index(drop=True)
            scores_out.write(scored)
            result.rows_scored += len(scored)
            result.n_flagged += int(scored["is_anomaly"].sum())
            result.count_statuses(scored["window_status"])
            label = entity_label(scored, spec.entity_columns)
            result.track_spans(scored, spec.timestamp_column, label)
            windowed = scored.loc[scored["window_status"] == STATUS_OK]
            result.keep_top(windowed, top_n)
            kept = windowed[[spec.timestamp_column, "score", "is_anomaly"]]
            if label is not None:
                kept = kept.assign(**{ENTITY_LABEL: label.loc[kept.index]})
            result.keep_sample(kept.assign(_sample_key=rng.random(len(kept))))
        result.close_spans()
        result.check_accounting()
    except BaseException:
        batches.close()
        scores_out.abort()
        quarantine_out.abort()
        raise
    scores_out.close()
    finish_quarantine(quarantine_out, quarantine_path, result.rows_quarantined)
    result.record_partition(0, source, None, window_status=dict(result.status_counts))
    return result


@task(cache_policy=NO_CACHE)
def score_sensor_task(
    detector: SensorVAEDetector, cfg: ScoreSettings, scores_path: Path, quarantine_path: Path
) -> SensorResult:
    result = score_sensor_input(
        detector,
        cfg.input_path,
        scores_path,
        quarantine_path,
        batch_size=cfg.batch_size,
        top_n=cfg.top_n,
        numeric_errors=cfg.numeric_errors,
    )
    get_run_logger().info(
        "%d rows, %d quarantined, %d flagged in %d spans; window status %s",
        result.rows_in,
        result.rows_quarantined,
        result.n_flagged,
        result.n_spans,
        result.status_counts,
    )
    return result


def with_sensor_series(
    data: ReportData, result: SensorResult, detector: SensorVAEDetector
) -> ReportData:
    """The report's time section for a sensor run: one panel per entity, flagged spans."""
    spec = detector.spec_
    sample = result.sample
    series = None
    if sample is not None and len(sample):
        columns = [spec.timestamp_column, "score", "is_anomaly"]
        if ENTITY_LABEL in sample.columns:
            columns.append(ENTITY_LABEL)
        series = sample[columns].rename(columns={spec.timestamp_column: "timestamp"})
        series = series.sort_values("timestamp", kind="stable")
    spans = pd.DataFrame(result.spans, columns=["entity", "start", "end"])
    return dataclasses.replace(
        data,
        timestamp_column=spec.timestamp_column,
        time_series=series,
        entity_column=ENTITY_LABEL if spec.entity_columns else None,
        flagged_spans=spans,
        n_flagged_spans=result.n_spans,
        window_status_counts=dict(result.status_counts),
    )
