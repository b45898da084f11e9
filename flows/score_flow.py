"""The batch scoring flow: resolve the model -> stream, validate, score -> write -> report.

Memory stays bounded: the input is read in record batches, each batch is validated and
scored and written before the next is read, and only small summaries (the top rows, a
uniform sample of scores for the histogram) are kept. Every output is written under a
temporary name and renamed into place when complete, so a killed run leaves either the
previous output or none. Rows that fail validation go to a quarantine file with a reason;
the flow checks that rows read = rows scored + rows quarantined before it reports success.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows import report, tracking
from flows.config import ScoreSettings, Settings, load_settings
from flows.row_validation import split_valid_rows
from vae_core import VAEAnomalyDetector
from vae_core.errors import VAEAnomalyError
from vae_core.io import ParquetBatchWriter, iter_batches

SCORES_FILE, QUARANTINE_FILE, REPORT_FILE = "scores.parquet", "quarantine.parquet", "report.html"
#: Scores kept for the histogram and the time plot: a uniform reservoir of the run.
SAMPLE_SIZE = 50_000


class RowAccountingError(VAEAnomalyError, RuntimeError):
    """Rows read differ from rows scored plus rows quarantined: something was lost."""


@dataclass
class RunSummary:
    """What the streaming loop keeps: counts, the top rows and a bounded sample."""

    rows_in: int = 0
    rows_scored: int = 0
    rows_quarantined: int = 0
    n_flagged: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    top: pd.DataFrame | None = None
    sample: pd.DataFrame | None = None

    def keep_top(self, scored: pd.DataFrame, top_n: int) -> None:
        if top_n <= 0 or scored.empty:
            return
        pool = scored if self.top is None else pd.concat([self.top, scored])
        self.top = pool.nlargest(top_n, "score")

    def keep_sample(self, scored: pd.DataFrame, rng: np.random.Generator) -> None:
        """Keep a uniform sample of at most SAMPLE_SIZE scored rows of the whole run.

        Bottom-k sampling: every row draws a random key and the rows with the smallest keys
        are kept, which is a uniform sample without replacement however the run is batched.
        """
        keyed = scored.assign(_sample_key=rng.random(len(scored)))
        pool = keyed if self.sample is None else pd.concat([self.sample, keyed])
        if len(pool) > SAMPLE_SIZE:
            pool = pool.nsmallest(SAMPLE_SIZE, "_sample_key")
        self.sample = pool


@task(cache_policy=NO_CACHE)
def resolve_champion(model_uri: str) -> tuple[tracking.ResolvedModel, VAEAnomalyDetector]:
    resolved = tracking.resolve_model(model_uri)
    detector = tracking.load_detector(resolved)
    get_run_logger().info("scoring with %s (version %s)", resolved.name, resolved.version)
    return resolved, detector


def carried_columns(detector: VAEAnomalyDetector, columns: pd.Index) -> list[str]:
    schema = detector.schema_
    return [c for c in (*schema.key_columns, *schema.ignored_columns) if c in columns]


@task(cache_policy=NO_CACHE)
def score_stream(
    detector: VAEAnomalyDetector, cfg: ScoreSettings, output_dir: Path
) -> RunSummary:
    """Validate, score and write every record batch; return counts and summaries."""
    logger = get_run_logger()
    summary = RunSummary()
    rng = np.random.default_rng(0)
    scores_out = ParquetBatchWriter(output_dir / SCORES_FILE)
    quarantine_out = ParquetBatchWriter(output_dir / QUARANTINE_FILE)
    try:
        for number, batch in enumerate(iter_batches(cfg.input_path, batch_size=cfg.batch_size)):
            valid, quarantined = split_valid_rows(
                batch, detector.schema_, cfg.input_path, cfg.numeric_errors
            )
            summary.rows_in += len(batch)
            if len(quarantined):
                quarantine_out.write(quarantined)
                summary.rows_quarantined += len(quarantined)
                for reason, count in quarantined["reason"].value_counts().items():
                    summary.reasons[str(reason)] = summary.reasons.get(str(reason), 0) + int(count)
            # Scored even when empty: the first batch fixes the output's columns, so a run
            # whose rows are all quarantined still writes a (0-row) scores file.
            scores = detector.score_frame(valid, source=cfg.input_path)
            scored = pd.concat(
                [valid[carried_columns(detector, valid.columns)], scores], axis=1
            ).reset_index(drop=True)
            scores_out.write(scored)
            summary.rows_scored += len(scored)
            summary.n_flagged += int(scored["is_anomaly"].sum())
            summary.keep_top(scored, cfg.top_n)
            summary.keep_sample(scored[["score", "is_anomaly", *_time_columns(detector)]], rng)
            logger.info(
                "batch %d: %d rows, %d scored so far, %d quarantined",
                number, len(batch), summary.rows_scored, summary.rows_quarantined,
            )
        check_accounting(summary)
    except BaseException:
        scores_out.abort()
        quarantine_out.abort()
        raise
    scores_out.close()
    if summary.rows_quarantined:
        quarantine_out.close()
    else:
        quarantine_out.abort()
        # A quarantine file left by an earlier run of this input would now be a lie.
        (output_dir / QUARANTINE_FILE).unlink(missing_ok=True)
    return summary


def _time_columns(detector: VAEAnomalyDetector) -> list[str]:
    return list(detector.schema_.ignored_columns[:1])


def check_accounting(summary: RunSummary) -> None:
    if summary.rows_in != summary.rows_scored + summary.rows_quarantined:
        raise RowAccountingError(
            f"rows read {summary.rows_in} != rows scored {summary.rows_scored} + rows "
            f"quarantined {summary.rows_quarantined}; the outputs are incomplete."
        )


def build_report_data(
    summary: RunSummary,
    detector: VAEAnomalyDetector,
    resolved: tracking.ResolvedModel,
    cfg: ScoreSettings,
    output_dir: Path,
    run_id: str | None,
) -> report.ReportData:
    sample = summary.sample if summary.sample is not None else pd.DataFrame(
        {"score": [], "is_anomaly": []}
    )
    scores = sample["score"].to_numpy(dtype=float)
    time_column = next((c for c in _time_columns(detector) if c in sample.columns), None)
    series = None
    if time_column is not None and len(sample):
        series = sample[[time_column, "score", "is_anomaly"]].rename(
            columns={time_column: "timestamp"}
        ).sort_values("timestamp")
    levels = (0.5, 0.9, 0.99, 0.999)
    quantiles = {f"q{level:g}": float(np.quantile(scores, level)) for level in levels} if len(
        scores
    ) else {}
    return report.ReportData(
        title=cfg.report_title,
        model_name=resolved.name,
        model_version=str(resolved.version),
        threshold=detector.threshold_.value,
        threshold_method=detector.threshold_.method,
        expected_alert_rate=detector.threshold_.expected_alert_rate,
        rows_in=summary.rows_in,
        rows_scored=summary.rows_scored,
        rows_quarantined=summary.rows_quarantined,
        quarantine_reasons=dict(summary.reasons),
        score_sample=scores,
        n_flagged=summary.n_flagged,
        score_quantiles=quantiles,
        top_anomalies=summary.top if summary.top is not None else pd.DataFrame(),
        timestamp_column=time_column,
        time_series=series,
        entity_column=None,
        input_path=cfg.input_path,
        output_path=str(output_dir / SCORES_FILE),
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        run_id=run_id,
    )


@task(cache_policy=NO_CACHE)
def publish_report(data: report.ReportData, output_dir: Path, run_id: str) -> Path:
    path = report.write_report(data, output_dir / REPORT_FILE)
    create_markdown_artifact(
        key="anomaly-report", markdown=report.render_markdown(data),
        description=f"{data.title}: {data.model_name} v{data.model_version}",
    )
    create_table_artifact(
        key="top-anomalies", table=report.top_anomalies_table(data),
        description="Highest-scoring rows and their contributing features",
    )
    metrics = {
        "n_rows": data.rows_in,
        "n_scored": data.rows_scored,
        "n_quarantined": data.rows_quarantined,
        "n_flagged": data.n_flagged,
        "alert_rate": data.alert_rate,
        "expected_alert_rate": data.expected_alert_rate,
        "model_version": float(data.model_version) if data.model_version.isdigit() else 0.0,
        **{f"score_{k}": v for k, v in data.score_quantiles.items()},
    }
    tracking.log_metrics(run_id, metrics)
    tracking.log_artifact(run_id, str(path), "report")
    tracking.log_text(run_id, json.dumps(data.quarantine_reasons, indent=2),
                      "report/quarantine_reasons.json")
    return path


@dataclass(frozen=True)
class ScoreOutcome:
    run_id: str
    model_version: str
    rows_in: int
    rows_scored: int
    rows_quarantined: int
    n_flagged: int
    scores_path: Path
    quarantine_path: Path | None
    report_path: Path


@flow(name="vae-score", log_prints=True)
def score_flow(
    settings: Settings | None = None, overrides: dict[str, Any] | None = None
) -> ScoreOutcome:
    """Score the configured input with the configured model version (default: champion).

    Without ``settings`` (a scheduled deployment), the config layers in ``configs/`` of the
    working directory are read, then environment variables, then ``overrides`` (a nested
    mapping of only the keys to change, e.g. ``{"score": {"input_path": "..."}}``).
    """
    if settings is None:
        settings = load_settings(job="score", overrides=overrides)
    cfg, track = settings.score, settings.tracking
    tracking.configure_tracking(track.tracking_uri, track.registry_uri)
    resolved, detector = resolve_champion(cfg.model_uri)
    tags = {"job": "score", "input_path": cfg.input_path, "model_name": resolved.name,
            "model_version": str(resolved.version), "model_uri": resolved.uri}
    with tracking.tracked_run(track.experiment, "score", tags) as run_id:
        output_dir = Path(cfg.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        summary = score_stream(detector, cfg, output_dir)
        data = build_report_data(summary, detector, resolved, cfg, output_dir, run_id)
        report_path = publish_report(data, output_dir, run_id)
    quarantine = output_dir / QUARANTINE_FILE
    print(
        f"model {resolved.name} v{resolved.version}: {summary.rows_in} rows in, "
        f"{summary.rows_scored} scored, {summary.rows_quarantined} quarantined, "
        f"{summary.n_flagged} flagged; report {report_path}"
    )
    return ScoreOutcome(
        run_id, str(resolved.version), summary.rows_in, summary.rows_scored,
        summary.rows_quarantined, summary.n_flagged, output_dir / SCORES_FILE,
        quarantine if summary.rows_quarantined else None, report_path,
    )
