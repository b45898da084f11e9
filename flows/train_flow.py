"""The retraining flow: load -> validate -> data gate -> split -> fit -> evaluate -> log ->
register -> promote.

Tasks are thin: each calls ``vae_core`` or ``flows.mlops.tracking`` and returns plain values. The
MLflow run id is passed explicitly from task to task (the active run is thread-local and
Prefect runs tasks in worker threads). Any failure marks the MLflow run FAILED and leaves
the registry's aliases untouched. The data gate (``flows.gates.data_gate``) refuses broken
training data against the champion's training profile before anything is fitted; the
champion only moves in the last task, after the new version has been registered and judged
with the champion on data the new data cannot change (the champion's stored holdout sample,
the new holdout and synthetic anomalies in both; ``flows.mlops.promotion``), and only if
the champion is still the version it was judged against (``flows.mlops.champion_lock``).
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import asdict, dataclass, replace
from typing import Any

import pandas as pd
import pyarrow as pa
import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.config import Settings, TrainSettings, load_settings
from flows.detectors import build_detector
from flows.evaluation import (
    finite_scores,
    gate_data,
    gate_metrics,
    holdout_metrics,
    labelled_metrics,
    reference_sample,
    training_report,
)
from flows.gates.data_gate import DataGateError, check_training_data, feature_columns
from flows.mlops import descriptions, promotion, tracking
from flows.mlops.champion_lock import set_champion_if
from flows.mlops.runs import load_frame, log_frame
from flows.pipeline.sampling import SampleInfo
from flows.reporting import report
from flows.training_data import (
    data_fingerprint,
    load_training_data,
    quarantine_training_rows,
    select_training_columns,
    split_holdout,
    validate_training_data,
)
from vae_core.errors import first_line
from vae_core.streaming import Detector

CHAMPION, CHALLENGER = "champion", "challenger"
#: The bounded holdout sample each training run stores: later challengers are judged on it.
REFERENCE_ARTIFACT = "reference/holdout.parquet"


@dataclass(frozen=True)
class TrainOutcome:
    run_id: str
    model_name: str
    version: str
    alias: str
    promoted: bool
    reason: str
    metrics: dict[str, float]


@dataclass(frozen=True)
class Champion:
    """The version the gates compare with: its detector and its stored reference rows."""

    version: str
    detector: Detector
    reference: pd.DataFrame | None  # None: trained before reference samples were stored


# -- gates ----------------------------------------------------------------------------------
@task(cache_policy=NO_CACHE)
def load_champion(name: str) -> Champion | None:
    version = tracking.get_alias_version(name, CHAMPION)
    if version is None:
        return None
    resolved = tracking.resolve_model(f"models:/{name}/{version}")
    detector = tracking.load_detector(resolved)
    reference = load_frame(resolved.run_id, REFERENCE_ARTIFACT) if resolved.run_id else None
    return Champion(version, detector, reference)


@task(cache_policy=NO_CACHE)
def check_training_frame(
    frame: pd.DataFrame, cfg: TrainSettings, champion: Champion | None, run_id: str
) -> None:
    """The data gate (``flows.gates.data_gate``): log its report; raise if it refuses."""
    if not cfg.data_gate.enabled:
        return
    profile = getattr(champion.detector, "training_profile_", None) if champion else None
    label = f"v{champion.version}" if champion else None
    report = check_training_data(frame, feature_columns(frame, cfg), profile, cfg.data_gate, label)
    tracking.log_text(
        run_id, json.dumps(report.to_dict(), indent=2, default=str), "data_gate/report.json"
    )
    tracking.log_text(run_id, report.to_markdown(), "data_gate/report.md")
    tracking.log_metrics(
        run_id,
        {"data_gate_passed": float(report.passed), "data_gate_findings": len(report.findings)},
    )
    tracking.set_run_tags(run_id, {"data_gate": "passed" if report.passed else "refused"})
    if not report.passed:
        raise DataGateError(report.summary_line())
    get_run_logger().info(report.summary_line())


# -- model ----------------------------------------------------------------------------------
@task(cache_policy=NO_CACHE)
def fit_detector(train: pd.DataFrame, cfg: TrainSettings, run_id: str) -> Detector:
    detector = build_detector(cfg)
    detector.fit(train, epoch_callback=tracking.epoch_logger(run_id, cfg.detector.n_models))
    result = detector.training_results_[0]
    get_run_logger().info(
        "trained %d epochs (best %d, val loss %.4f) on %s",
        len(result.history),
        result.best_epoch + 1,
        result.best_val_loss,
        detector.device_,
    )
    # Windowed models count the training rows by status: duplicates, gaps, warm-up rows.
    statuses = getattr(detector, "fit_status_counts_", {})
    if statuses:
        tracking.log_metrics(
            run_id, {f"train_rows_{status}": float(n) for status, n in statuses.items()}
        )
    return detector


@task(cache_policy=NO_CACHE)
def evaluate(detector: Detector, holdout: pd.DataFrame, cfg: TrainSettings) -> dict[str, float]:
    return {**holdout_metrics(detector, holdout), **labelled_metrics(detector, cfg)}


@task(cache_policy=NO_CACHE)
def log_training(
    run_id: str,
    settings: Settings,
    detector: Detector,
    holdout: pd.DataFrame,
    metrics: dict[str, float],
    validation: dict[str, Any],
) -> None:
    tracking.log_params(run_id, settings.train.model_dump(mode="json"))
    tracking.log_params(run_id, {"tracking": settings.tracking.model_dump(mode="json")})
    tracking.log_metrics(run_id, metrics)
    tracking.log_text(
        run_id,
        yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False),
        "config/resolved.yaml",
    )
    tracking.log_text(
        run_id, json.dumps(detector.schema_.to_dict(), indent=2), "model_info/schema.json"
    )
    scores = finite_scores(detector.decision_function(holdout))
    png = report.score_histogram_png(scores, detector.threshold_.value, "Holdout scores")
    tracking.log_figure_png(run_id, png, "plots/holdout_scores.png")
    tracking.log_text(run_id, training_report(detector, metrics, validation), "training_report.md")
    store_reference(run_id, holdout, settings.train, detector)


def store_reference(
    run_id: str, holdout: pd.DataFrame, cfg: TrainSettings, detector: Detector
) -> None:
    """The bounded holdout sample later challengers are judged on (``REFERENCE_ARTIFACT``).

    A column Parquet cannot hold (mixed Python types) leaves the run without one: the run
    says so, and a later gate falls back to its own new holdout.
    """
    gate = cfg.promotion_gate
    sample = reference_sample(
        holdout, gate.reference_rows, gate.seed, contiguous=detector.ordered_stream
    )
    try:
        log_frame(run_id, sample, REFERENCE_ARTIFACT)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        get_run_logger().warning("no reference sample stored: %s", first_line(exc))
        tracking.set_run_tags(run_id, {"reference_sample": "missing"})


@task(cache_policy=NO_CACHE)
def register(
    run_id: str, detector: Detector, holdout: pd.DataFrame, name: str
) -> tracking.RegisteredVersion:
    schema = detector.schema_
    features = [*schema.key_columns, *schema.ignored_columns, *schema.feature_names]
    example = holdout[[c for c in features if c in holdout.columns]].head(5)
    return tracking.log_detector_model(run_id, detector, name, example)


@task(cache_policy=NO_CACHE)
def promote(
    run_id: str,
    registered: tracking.RegisteredVersion,
    detector: Detector,
    holdout: pd.DataFrame,
    cfg: TrainSettings,
    champion: Champion | None,
) -> promotion.PromotionDecision:
    """Judge both models on the champion's reference rows and the new holdout (with
    synthetic anomalies), then move the alias only if the champion is still the one compared."""
    name = registered.name
    models = [detector, *([champion.detector] if champion else [])]
    data = gate_data(champion.reference if champion else None, holdout, models, cfg.promotion_gate)
    candidate = {**gate_metrics(detector, data), **labelled_metrics(detector, cfg)}
    champion_metrics = None
    if champion is not None:
        champion_metrics = {
            **gate_metrics(champion.detector, data),
            **labelled_metrics(champion.detector, cfg),
        }
    gate = cfg.promotion_gate
    limits = promotion.GateLimits(
        cfg.promotion_tolerance,
        gate.auc_tolerance,
        gate.recall_tolerance,
        gate.column_auc_tolerance,
    )
    decision = promotion.decide_on_reference(
        candidate, champion_metrics, labelled=cfg.evaluation is not None, limits=limits
    )
    compared = champion.version if champion else None
    outcome = set_champion_if(name, registered.version, compared, decision.promote)
    if outcome.note:
        reason = f"{decision.reason}; {outcome.note}"
        decision = replace(decision, promote=outcome.promoted, alias=outcome.alias, reason=reason)
    _log_decision(run_id, registered, decision, compared, data.describe())
    get_run_logger().info(
        "version %s -> %s (compared with champion %s): %s",
        registered.version,
        decision.alias,
        compared,
        decision.reason,
    )
    return decision


def _log_decision(
    run_id: str,
    registered: tracking.RegisteredVersion,
    decision: promotion.PromotionDecision,
    compared: str | None,
    sizes: dict[str, int],
) -> None:
    """Every figure of the decision as metrics, the decision as JSON, and version tags."""
    name, version = registered.name, registered.version
    tracking.set_version_tag(name, version, "promotion", decision.reason[:500])
    tracking.set_version_tag(name, version, "promotion.compared_with", compared or "none")
    figures = _numbers(decision.candidate)
    tracking.log_metrics(run_id, {"promoted": float(decision.promote), **figures, **sizes})
    if decision.champion:
        champion = _numbers(decision.champion)
        tracking.log_metrics(run_id, {f"champion_{k}": v for k, v in champion.items()})
    record = {**asdict(decision), "compared_with": compared, "version": version, **sizes}
    tracking.log_text(run_id, json.dumps(record, indent=2, default=str), "promotion/decision.json")


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric figures, per-column ones as ``gate_column_auc.<column>``."""
    out = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
    for column, value in (metrics.get("gate_column_auc") or {}).items():
        out[f"gate_column_auc.{re.sub(r'[^A-Za-z0-9_./ -]', '_', column)}"] = float(value)
    return out


@task(cache_policy=NO_CACHE)
def describe(
    registered: tracking.RegisteredVersion,
    detector: Detector,
    decision: promotion.PromotionDecision,
    data: dict[str, Any],
    champion: Champion | None,
) -> None:
    """Descriptions of the version (always) and of the registered model (when promoted)."""
    compared = champion.version if champion else None
    text = descriptions.version_description(
        detector, data, f"{decision.alias}: {decision.reason}", compared
    )
    descriptions.describe_version(registered.name, registered.version, text)
    if decision.promote:
        descriptions.describe_model(
            registered.name,
            descriptions.model_description(registered.name, detector, registered.version),
        )


def tag_training_data(run_id: str, frame: pd.DataFrame, sample: SampleInfo) -> dict[str, Any]:
    """Tag the run with the training rows' lineage; return it for the descriptions."""
    fingerprint = data_fingerprint(frame)
    tracking.set_run_tags(
        run_id,
        {
            "row_count": str(len(frame)),
            "data_fingerprint": fingerprint,
            "rows_seen": str(sample.rows_seen),
            "sampled": str(sample.sampled).lower(),
        },
    )
    return {"fingerprint": fingerprint, "rows": len(frame)}


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@flow(name="vae-train", log_prints=True)
def train_flow(
    settings: Settings | None = None, overrides: dict[str, Any] | None = None
) -> TrainOutcome:
    """Train on the configured data and register the model; promote it if it is better.

    Without ``settings`` (a scheduled deployment), the config layers in ``configs/`` of the
    working directory are read, then environment variables, then ``overrides`` (a nested
    mapping of only the keys to change, e.g. ``{"score": {"input_path": "..."}}``).
    """
    if settings is None:
        settings = load_settings(job="train", overrides=overrides)
    cfg, track = settings.train, settings.tracking
    tracking.configure_tracking(track.tracking_uri, track.registry_uri)
    tags = {"data_path": cfg.data_path, "job": "train"}
    commit = git_commit()
    if commit:
        tags["git_commit"] = commit
    with tracking.tracked_run(track.experiment, "train", tags) as run_id:
        frame, sample = load_training_data(cfg)
        frame = select_training_columns(frame, cfg, run_id)
        frame = quarantine_training_rows(frame, cfg, run_id)
        validation = validate_training_data(frame, cfg)
        lineage = tag_training_data(run_id, frame, sample)
        champion = load_champion(track.registered_model)
        check_training_frame(frame, cfg, champion, run_id)
        train, holdout = split_holdout(frame, cfg)
        detector = fit_detector(train, cfg, run_id)
        metrics = evaluate(detector, holdout, cfg)
        log_training(run_id, settings, detector, holdout, metrics, validation)
        registered = register(run_id, detector, holdout, track.registered_model)
        decision = promote(run_id, registered, detector, holdout, cfg, champion)
        describe(registered, detector, decision, lineage, champion)
    create_markdown_artifact(
        key="training-summary",
        markdown=f"# Model {registered.name} v{registered.version}: {decision.alias}\n\n"
        f"{decision.reason}\n\n" + "\n".join(f"- {k}: {v:.6g}" for k, v in sorted(metrics.items())),
        description="Training run summary",
    )
    return TrainOutcome(
        run_id,
        registered.name,
        registered.version,
        decision.alias,
        decision.promote,
        decision.reason,
        metrics,
    )
