"""The batch scoring flow: resolve the model -> stream, validate, score -> write -> report.

Memory stays bounded: the input is read in record batches, each batch is validated and
scored and written before the next is read, and only small summaries (the top rows, a
uniform sample of scores for the histogram) are kept. Rows that fail validation go to a
quarantine file with a reason; the flow checks that rows read = rows scored + rows
quarantined before it reports success. The partitions are scored by the tasks of
``flows.score_tasks``.

Each run is dated (``score.run_date``, else the flow run's scheduled time, else today) and
published as one set (``flows.publishing.run_set``): it writes into a hidden staging folder
under ``<output_dir>/runs/``, which is renamed to ``runs/<run_id>/`` once the report and
the manifest are written; then ``latest.json`` and the run index are updated under the
output root's lock. A run that fails or is killed publishes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from flows.config import ScoreSettings, Settings, check_applies, load_settings
from flows.mlops import tracking
from flows.pipeline.summary import SAMPLE_SIZE, PartitionResult, RowAccountingError
from flows.publishing import run_set
from flows.publishing.locations import check_output_outside_input
from flows.publishing.run_dates import dated_score, new_run_id, run_date
from flows.publishing.run_index import read_index
from flows.publishing.run_record import RunIdentity, index_row, manifest_content
from flows.publishing.run_set import MANIFEST_FILE, QUARANTINE_FILE, REPORT_FILE, SCORES_FILE
from flows.reporting import report
from flows.reporting.from_summary import report_data
from flows.score_tasks import score_stream
from flows.task_runners import ModelRef, model_ref
from vae_core.streaming import Detector

__all__ = ["MANIFEST_FILE", "SAMPLE_SIZE", "RowAccountingError", "score_flow"]


@task(cache_policy=NO_CACHE)
def resolve_champion(model_uri: str) -> tuple[tracking.ResolvedModel, Detector]:
    resolved = tracking.resolve_model(model_uri)
    detector = tracking.load_detector(resolved)
    get_run_logger().info("scoring with %s (version %s)", resolved.name, resolved.version)
    return resolved, detector


def write_manifest(
    summary: PartitionResult, run: RunIdentity, cfg: ScoreSettings, staging: Path
) -> Path:
    """Record what produced the outputs (model version, input, partitions, row counts) and
    every file of the run with its size and sha256; written last, into ``staging``."""
    outputs = {
        "scores": SCORES_FILE,
        "quarantine": QUARANTINE_FILE if summary.rows_quarantined else None,
        "report": REPORT_FILE,
    }
    return run_set.write_manifest(staging, manifest_content(run, summary, cfg.input_path, outputs))


@task(cache_policy=NO_CACHE)
def publish_report(data: report.ReportData, output_dir: Path, run_id: str) -> Path:
    path = report.write_report(data, output_dir / REPORT_FILE)
    create_markdown_artifact(
        key="anomaly-report",
        markdown=report.render_markdown(data),
        description=f"{data.title}: {data.model_name} v{data.model_version}",
    )
    create_table_artifact(
        key="top-anomalies",
        table=report.top_anomalies_table(data),
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
        **report.run_metrics(data),  # drift against training, this run among the last ones
    }
    tracking.log_metrics(run_id, metrics)
    if data.links is not None:  # the MLflow run points back at the report and the flow run
        tracking.set_run_tags(run_id, report.mlflow_tags(data.links))
        if data.links.mlflow_run_url:  # and the flow run at the MLflow run, when it has a page
            create_link_artifact(key="mlflow-run", link=data.links.mlflow_run_url, link_text=run_id)
    tracking.log_artifact(run_id, str(path), "report")
    tracking.log_text(
        run_id, json.dumps(data.quarantine_reasons, indent=2), "report/quarantine_reasons.json"
    )
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
    notes: tuple[str, ...] = ()  # what was worth a warning: ignored columns, duplicate keys
    run_dir: Path | None = None  # <output_dir>/runs/<run_id>: the published set
    run_date: date | None = None
    is_latest: bool = True  # False for a backfill of a date older than latest.json's


@flow(name="vae-score", log_prints=True)
def score_flow(
    settings: Settings | None = None, overrides: dict[str, Any] | None = None
) -> ScoreOutcome:
    """Score the configured input with the configured model version (default: champion).

    Without ``settings`` (a scheduled deployment), the config layers in ``configs/`` of the
    working directory are read, then environment variables, then ``overrides`` (a nested
    mapping of only the keys to change, e.g. ``{"score": {"input_path": "..."}}``).
    The run is published as ``<output_dir>/runs/<run_id>/`` (see the module's docstring).
    """
    if settings is None:
        settings = load_settings(job="score", overrides=overrides)
    output_run_id = new_run_id()
    day = run_date(settings.score.run_date, flow_run.scheduled_start_time)
    cfg, track = dated_score(settings.score, day, output_run_id), settings.tracking
    check_output_outside_input(cfg.input_path, cfg.output_dir)
    run_set.check_output_root(cfg.output_dir)  # before MLflow: a file or a device is refused
    tracking.configure_tracking(track.tracking_uri, track.registry_uri)
    resolved, detector = resolve_champion(cfg.model_uri)
    check_applies(cfg, detector)  # e.g. score.concurrency set for a sensor model
    tags = {
        "job": "score",
        "input_path": cfg.input_path,
        "model_name": resolved.name,
        "model_version": str(resolved.version),
        "model_uri": resolved.uri,
        "run_date": day.isoformat(),
        "output_run_id": output_run_id,
    }
    with tracking.tracked_run(track.experiment, "score", tags) as run_id:
        root = Path(cfg.output_dir)
        staging = run_set.begin_run(root, output_run_id)
        try:
            final = run_set.runs_dir(root) / output_run_id
            ref = model_ref(resolved, track.tracking_uri, track.registry_uri)
            summary, data = _score_into(staging, final, detector, resolved, cfg, run_id, ref)
            run = RunIdentity(
                output_run_id,
                day,
                datetime.now(UTC),
                resolved.name,
                str(resolved.version),
                resolved.uri,
                run_id,
            )
            write_manifest(summary, run, cfg, staging)
            row = index_row(run, summary, data.score_quantiles, data.threshold)
            published = run_set.publish_run(root, staging, output_run_id, day, row, cfg.keep_runs)
        except BaseException:
            run_set.discard_run(staging)  # nothing of a failed run is published
            raise
    return _outcome(run_id, resolved, summary, published, day)


def _score_into(
    staging: Path,
    final: Path,
    detector: Detector,
    resolved: tracking.ResolvedModel,
    cfg: ScoreSettings,
    run_id: str,
    ref: ModelRef,
) -> tuple[PartitionResult, report.ReportData]:
    """Score the input and write the report into the run's staging folder.

    The report side writes its files (``report.html``, ``flagged.parquet``) into
    ``staging``; the paths it shows are those of the published run folder, ``final``.
    """
    summary = score_stream(detector, cfg, staging, ref)
    duplicates = summary.notes.duplicate_keys if summary.notes else 0
    tracking.log_metrics(run_id, {"n_duplicate_keys": duplicates})
    model = (resolved.name, str(resolved.version))
    paths = (cfg.input_path, str(final / SCORES_FILE))
    data = report_data(summary, detector, model, cfg.report_title, paths, run_id)
    links = _run_links(cfg, final, run_id, resolved, ref.tracking_uri)
    history = read_index(cfg.output_dir)  # the earlier runs of this output root
    data = report.complete_report(data, detector, staging, links, history)
    publish_report(data, staging, run_id)
    return summary, data


def _run_links(
    cfg: ScoreSettings,
    final: Path,
    run_id: str,
    resolved: tracking.ResolvedModel,
    tracking_uri: str,
) -> report.RunLinks:
    """Where the report links to: the MLflow run and model version, the Prefect flow run,
    the run's folder as it will be once published."""
    return report.RunLinks(
        run_date=str(cfg.run_date) if cfg.run_date else None,
        index_run_id=final.name,
        mlflow_run_id=run_id,
        tracking_uri=tracking_uri,
        model_name=resolved.name,
        model_version=str(resolved.version),
        model_uri=resolved.uri,
        prefect_flow_run_id=flow_run.id,
        prefect_flow_run_url=flow_run.ui_url,
        input_path=report.absolute_path(cfg.input_path),
        output_dir=str(final.absolute()),
        report_path=str((final / REPORT_FILE).absolute()),
    )


def _outcome(
    run_id: str,
    resolved: tracking.ResolvedModel,
    summary: PartitionResult,
    published: run_set.Published,
    day: date,
) -> ScoreOutcome:
    run_dir = published.run_dir
    print(
        f"model {resolved.name} v{resolved.version}: {summary.rows_in} rows in, "
        f"{summary.rows_scored} scored, {summary.rows_quarantined} quarantined, "
        f"{summary.n_flagged} flagged; report {run_dir / REPORT_FILE}"
    )
    return ScoreOutcome(
        run_id,
        str(resolved.version),
        summary.rows_in,
        summary.rows_scored,
        summary.rows_quarantined,
        summary.n_flagged,
        run_dir / SCORES_FILE,
        run_dir / QUARANTINE_FILE if summary.rows_quarantined else None,
        run_dir / REPORT_FILE,
        tuple(summary.notes.messages()) if summary.notes else (),
        run_dir,
        day,
        published.is_latest,
    )
