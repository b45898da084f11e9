"""The retraining flow: load -> validate -> split -> fit -> evaluate -> log -> register -> promote.

Tasks are thin: each calls ``vae_core`` or ``flows.mlops.tracking`` and returns plain values. The
MLflow run id is passed explicitly from task to task (the active run is thread-local and
Prefect runs tasks in worker threads). Any failure marks the MLflow run FAILED and leaves
the registry's aliases untouched: the champion only moves in the last task, after the new
version has been registered and compared on the same holdout data.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.config import Settings, TrainSettings, load_settings
from flows.detectors import build_detector
from flows.evaluation import finite_scores, holdout_metrics, labelled_metrics
from flows.mlops import promotion, tracking
from flows.reporting import report
from flows.training_data import (
    data_fingerprint,
    load_training_data,
    quarantine_training_rows,
    split_holdout,
    validate_training_data,
)
from vae_core.streaming import Detector

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass(frozen=True)
class TrainOutcome:
    run_id: str
    model_name: str
    version: str
    alias: str
    promoted: bool
    reason: str
    metrics: dict[str, float]


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


def training_report(
    detector: Detector, metrics: dict[str, float], validation: dict[str, Any]
) -> str:
    lines = [
        "# Training report",
        "",
        "## Data",
        "",
        f"- rows: {validation['rows']}",
        f"- duplicate keys: {validation['duplicate_keys']}",
        f"- columns with missing values: {len(validation['null_share'])}",
        "",
        "## Training",
        "",
    ]
    for result in detector.training_results_:
        lines.append(
            f"- member {result.history[0].member if result.history else 0}: "
            f"{len(result.history)} epochs, best {result.best_epoch + 1}, "
            f"validation loss {result.best_val_loss:.4f}"
            + (" (stopped early)" if result.stopped_early else "")
        )
    threshold = detector.threshold_
    lines += [
        "",
        "## Threshold",
        "",
        f"- method: {threshold.method} {threshold.params}",
        f"- value: {threshold.value:.6g}",
        f"- expected alert rate: {threshold.expected_alert_rate:.4%}",
        "",
        "## Holdout metrics",
        "",
    ]
    lines += [f"- {k}: {v:.6g}" for k, v in sorted(metrics.items())]
    return "\n".join(lines) + "\n"


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
    candidate_metrics: dict[str, float],
    holdout: pd.DataFrame,
    cfg: TrainSettings,
) -> promotion.PromotionDecision:
    """Score the same holdout (and labelled set) with the champion, then move the alias."""
    logger = get_run_logger()
    name = registered.name
    champion_version = tracking.get_alias_version(name, CHAMPION)
    champion_metrics = None
    if champion_version is not None:
        resolved = tracking.resolve_model(f"models:/{name}/{champion_version}")
        champion = tracking.load_detector(resolved)
        champion_metrics = {**holdout_metrics(champion, holdout), **labelled_metrics(champion, cfg)}
    decision = promotion.decide(
        candidate_metrics,
        champion_metrics,
        labelled=cfg.evaluation is not None,
        tolerance=cfg.promotion_tolerance,
    )
    tracking.set_alias(name, decision.alias, registered.version)
    tracking.set_version_tag(name, registered.version, "promotion", decision.reason[:500])
    tracking.log_metrics(run_id, {"promoted": float(decision.promote)})
    tracking.log_text(
        run_id, json.dumps(asdict(decision), indent=2, default=str), "promotion/decision.json"
    )
    if champion_metrics:
        tracking.log_metrics(run_id, {f"champion_{k}": v for k, v in champion_metrics.items()})
    logger.info(
        "version %s -> %s (previous champion: %s): %s",
        registered.version,
        decision.alias,
        champion_version,
        decision.reason,
    )
    return decision


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
        frame = quarantine_training_rows(frame, cfg, run_id)
        validation = validate_training_data(frame, cfg)
        tracking.set_run_tags(
            run_id,
            {
                "row_count": str(len(frame)),
                "data_fingerprint": data_fingerprint(frame),
                "rows_seen": str(sample.rows_seen),
                "sampled": str(sample.sampled).lower(),
            },
        )
        train, holdout = split_holdout(frame, cfg)
        detector = fit_detector(train, cfg, run_id)
        metrics = evaluate(detector, holdout, cfg)
        log_training(run_id, settings, detector, holdout, metrics, validation)
        registered = register(run_id, detector, holdout, track.registered_model)
        decision = promote(run_id, registered, metrics, holdout, cfg)
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
