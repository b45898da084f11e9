"""The report's record built from what a scoring run summarised (``PartitionResult``)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from flows.pipeline.summary import PartitionResult
from flows.reporting.data import ReportData
from vae_core.streaming import Detector

__all__ = ["report_data"]

#: The score quantiles the report and the run index show.
QUANTILE_LEVELS = (0.5, 0.9, 0.99, 0.999)


def report_data(
    summary: PartitionResult,
    detector: Detector,
    model: tuple[str, str],
    title: str,
    paths: tuple[str, str],
    run_id: str | None,
) -> ReportData:
    """The report's record of one run: ``model`` is (name, version), ``paths`` is (input,
    scores file as published)."""
    sample = summary.sample
    if sample is None:
        sample = pd.DataFrame({"score": [], "is_anomaly": []})
    scores = sample["score"].to_numpy(dtype=float)
    has_time = summary.time_column is not None and summary.time_column in sample.columns
    spans = summary.spans
    return ReportData(
        title=title,
        model_name=model[0],
        model_version=model[1],
        threshold=detector.threshold_.value,
        threshold_method=detector.threshold_.method,
        expected_alert_rate=detector.threshold_.expected_alert_rate,
        rows_in=summary.rows_in,
        rows_scored=summary.rows_scored,
        rows_quarantined=summary.rows_quarantined,
        quarantine_reasons=dict(summary.reasons),
        quarantine_examples={k: tuple(v) for k, v in summary.reason_examples.items()},
        input_notes=tuple(summary.notes.messages()) if summary.notes else (),
        score_sample=scores,
        n_flagged=summary.n_flagged,
        score_quantiles=score_quantiles(scores),
        top_anomalies=summary.top if summary.top is not None else pd.DataFrame(),
        timestamp_column=summary.time_column if has_time else None,
        time_series=time_series(summary, sample),
        entity_column=summary.series_column,
        input_path=paths[0],
        output_path=paths[1],
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        run_id=run_id,
        flagged_spans=None
        if spans is None
        else pd.DataFrame(spans.kept, columns=["entity", "start", "end"]),
        n_flagged_spans=0 if spans is None else spans.count,
        window_status_counts=dict(summary.status_counts) if summary.status_counts else None,
    )


def time_series(summary: PartitionResult, sample: pd.DataFrame) -> pd.DataFrame | None:
    """The sample in time order for the report's chart, when the data has a timestamp."""
    time_column = summary.time_column
    if time_column is None or time_column not in sample.columns or not len(sample):
        return None
    columns = [time_column, "score", "is_anomaly"]
    if summary.series_column in sample.columns:
        columns.append(summary.series_column)
    series = sample[columns].rename(columns={time_column: "timestamp"})
    return series.sort_values("timestamp", kind="stable")


def score_quantiles(scores: np.ndarray) -> dict[str, float]:
    """The median and upper quantiles of a score sample (none for an empty one)."""
    if not len(scores):
        return {}
    return {f"q{level:g}": float(np.quantile(scores, level)) for level in QUANTILE_LEVELS}
