"""The retraining flow: load -> validate -> split -> fit -> evaluate -> log -> register -> promote.

Tasks are thin: each calls ``vae_core`` or ``flows.mlops.tracking`` and returns plain values. The
MLflow run id is passed explicitly from task to task (the active run is thread-local and
Prefect runs tasks in worker threads). Any failure marks the MLflow run FAILED and leaves
the registry's aliases untouched: the champion only moves in the last task, after the new
version has been registered and compared on the same holdout data.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from flows.config import Settings, TrainSettings, load_settings
from flows.detectors import build_detector
from flows.mlops import promotion, tracking
from flows.pipeline.input_checks import training_notes
from flows.pipeline.row_validation import split_training_rows
from flows.pipeline.sampling import PartitionSample, SampleInfo, merge_samples, sample_partition
from flows.reporting import report
from flows.task_runners import make_task_runner
from vae_core.errors import EmptyInputError, SchemaError, TooFewRowsError
from vae_core.io import Partition, list_partitions, read_table
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


# -- data ---------------------------------------------------------------------------------
def data_fingerprint(frame: pd.DataFrame) -> str:
    """Content hash of the training frame (row order included), for lineage tags."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    digest = hashlib.sha256(hashed.tobytes())
    digest.update(",".join(map(str, frame.columns)).encode())
    return digest.hexdigest()[:16]


def _needed_columns(cfg: TrainSettings) -> list[str] | None:
    if cfg.columns is None:
        return None
    extra = [*cfg.key_columns, *([cfg.timestamp_column] if cfg.timestamp_column else [])]
    return list(dict.fromkeys([*cfg.columns, *extra]))


@task(cache_policy=NO_CACHE, task_run_name="sample-{partition.name}")
def sample_partition_task(cfg: TrainSettings, partition: Partition, seed: int) -> PartitionSample:
    return sample_partition(
        cfg.data_path,
        partition,
        cfg.max_train_rows or 0,
        seed,
        _needed_columns(cfg),
        _window_filter(cfg),
    )


def sample_training_rows(cfg: TrainSettings) -> tuple[pd.DataFrame, SampleInfo]:
    """Sample every partition as a task (threads or Dask workers), then merge the samples.

    Only the per-partition samples reach this process, so a history spread over many files
    never passes through it in full; the result equals a one-process ``sample_rows``.
    """
    assert cfg.max_train_rows is not None
    seed = cfg.detector.random_state if cfg.detector.random_state is not None else 0
    partitions = list_partitions(cfg.data_path)
    with make_task_runner(cfg.task_runner, cfg.concurrency, cfg.dask_address) as runner:
        futures = [
            runner.submit(
                sample_partition_task, parameters={"cfg": cfg, "partition": part, "seed": seed}
            )
            for part in partitions
        ]
        samples = [future.result() for future in futures]
    frame, seen = merge_samples(samples, cfg.max_train_rows)
    return frame, SampleInfo(rows_seen=seen, rows_sampled=len(frame), seed=seed)


def load_training_data(cfg: TrainSettings) -> tuple[pd.DataFrame, SampleInfo]:
    """The training rows inside the time window; a uniform sample if ``max_train_rows``."""
    columns = _needed_columns(cfg)
    in_window = _window_filter(cfg)
    if cfg.max_train_rows is not None:
        frame, info = sample_training_rows(cfg)
    else:
        frame = read_table(cfg.data_path, columns=columns)
        if in_window is not None:
            frame = frame.loc[in_window(frame)].reset_index(drop=True)
        info = SampleInfo(rows_seen=len(frame), rows_sampled=len(frame), seed=0)
    if frame.empty and in_window is not None:
        raise EmptyInputError(
            f"{cfg.data_path}: no rows between time_window_start={cfg.time_window_start} "
            f"and time_window_end={cfg.time_window_end}; widen the window."
        )
    if frame.empty:
        raise EmptyInputError(f"{cfg.data_path}: the data has 0 rows.")
    logger = get_run_logger()
    logger.info("loaded %d rows x %d columns from %s", *frame.shape, cfg.data_path)
    if info.sampled:
        logger.info(
            "trained on a uniform sample: %d of %d rows (max_train_rows=%d, seed %d)",
            info.rows_sampled,
            info.rows_seen,
            cfg.max_train_rows,
            info.seed,
        )
    return frame, info


def _window_filter(cfg: TrainSettings) -> Callable[[pd.DataFrame], np.ndarray] | None:
    """Rows inside [time_window_start, time_window_end), or None when there is no window."""
    column = cfg.timestamp_column
    if not column or not (cfg.time_window_start or cfg.time_window_end):
        return None

    def in_window(frame: pd.DataFrame) -> np.ndarray:
        stamps = _timestamps(frame, column, cfg.data_path)
        keep = pd.Series(True, index=frame.index)
        if cfg.time_window_start:
            keep &= stamps >= _as_utc(cfg.time_window_start)
        if cfg.time_window_end:
            keep &= stamps < _as_utc(cfg.time_window_end)
        return keep.to_numpy()

    return in_window


def _as_utc(moment: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _timestamps(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    if column not in frame.columns:
        raise SchemaError(f"{source}: timestamp column '{column}' is missing.")
    stamps = pd.to_datetime(frame[column], errors="coerce", utc=True)
    bad = stamps.isna() & frame[column].notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise SchemaError(
            f"{source}: timestamp column '{column}' row {row} holds "
            f"{frame[column].iloc[row]!r}, which is not a timestamp."
        )
    return stamps


@task(cache_policy=NO_CACHE)
def quarantine_training_rows(frame: pd.DataFrame, cfg: TrainSettings, run_id: str) -> pd.DataFrame:
    """Leave out rows with text in a column of numbers (or fail); report what was left out.

    The quarantined rows are logged with the run (``quarantine/train_rows.csv``), so that
    nothing is lost without a trace.
    """
    carried = (*cfg.key_columns, *([cfg.timestamp_column] if cfg.timestamp_column else []))
    kept, quarantined = split_training_rows(frame, carried, cfg.data_path, cfg.numeric_errors)
    logger = get_run_logger()
    for note in training_notes(kept, quarantined, cfg.key_columns, cfg.data_path):
        logger.warning(note)
    tracking.log_metrics(run_id, {"n_quarantined": len(quarantined)})
    if len(quarantined):
        tracking.log_text(run_id, quarantined.to_csv(index=False), "quarantine/train_rows.csv")
    return kept


@task(cache_policy=NO_CACHE)
def validate_training_data(frame: pd.DataFrame, cfg: TrainSettings) -> dict[str, Any]:
    """Fail on what makes training meaningless; report what is merely worth knowing."""
    source = cfg.data_path
    if len(frame) < cfg.min_rows:
        raise TooFewRowsError(
            f"{source}: {len(frame)} rows, fewer than train.min_rows={cfg.min_rows}; "
            "train on a longer history or lower min_rows."
        )
    absent = [c for c in cfg.key_columns if c not in frame.columns]
    if absent:
        raise SchemaError(f"{source}: key column(s) {absent} are missing.")
    if cfg.timestamp_column:
        _timestamps(frame, cfg.timestamp_column, source)
    duplicated = int(frame.duplicated(subset=cfg.key_columns).sum()) if cfg.key_columns else 0
    null_share = {c: float(v) for c, v in frame.isna().mean().items() if v > 0}
    summary = {
        "rows": len(frame),
        "columns": len(frame.columns),
        "duplicate_keys": duplicated,
        "null_share": null_share,
    }
    get_run_logger().info("validation: %s", json.dumps(summary)[:500])
    return summary


@task(cache_policy=NO_CACHE)
def split_holdout(frame: pd.DataFrame, cfg: TrainSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Holdout = the latest rows by time when there is a timestamp, else a seeded sample."""
    n_holdout = max(1, int(round(cfg.holdout_fraction * len(frame))))
    if cfg.timestamp_column:
        stamps = _timestamps(frame, cfg.timestamp_column, cfg.data_path)
        order = np.argsort(stamps.to_numpy(), kind="stable")
    else:
        seed = cfg.detector.random_state or 0
        order = np.random.default_rng(seed).permutation(len(frame))
    holdout = frame.iloc[np.sort(order[-n_holdout:])].reset_index(drop=True)
    train = frame.iloc[np.sort(order[:-n_holdout])].reset_index(drop=True)
    return train, holdout


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


def holdout_metrics(detector: Detector, holdout: pd.DataFrame) -> dict[str, float]:
    """Label-free figures on the shared holdout; the promotion gate compares these."""
    scores = finite_scores(detector.decision_function(holdout))
    threshold = detector.threshold_
    metrics = {
        "threshold": threshold.value,
        "expected_alert_rate": threshold.expected_alert_rate,
        "val_alert_rate": float(np.mean(scores > threshold.value)),
        "val_score_median": float(np.median(scores)),
    }
    for level in (0.5, 0.9, 0.99):
        metrics[f"val_score_q{int(level * 100)}"] = float(np.quantile(scores, level))
    return metrics


def finite_scores(scores: np.ndarray) -> np.ndarray:
    """Scores of rows that have one: a sensor model leaves rows without a full window NaN."""
    return scores[np.isfinite(scores)]


def labelled_metrics(detector: Detector, cfg: TrainSettings) -> dict[str, float]:
    evaluation = cfg.evaluation
    if evaluation is None:
        return {}
    frame = read_table(evaluation.path)
    if evaluation.label_column not in frame.columns:
        raise SchemaError(
            f"{evaluation.path}: label column '{evaluation.label_column}' is missing."
        )
    labels = (frame.pop(evaluation.label_column) == evaluation.positive_label).to_numpy()
    if labels.all() or not labels.any():
        raise SchemaError(
            f"{evaluation.path}: column '{evaluation.label_column}' needs both anomalies "
            f"(== {evaluation.positive_label!r}) and normal rows to compute ROC AUC."
        )
    scores = detector.decision_function(frame)
    windowed = np.isfinite(scores)
    labels, scores = labels[windowed], scores[windowed]
    return {
        "eval_roc_auc": float(roc_auc_score(labels, scores)),
        "eval_average_precision": float(average_precision_score(labels, scores)),
        "eval_f1": float(f1_score(labels, scores > detector.threshold_.value)),
    }


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
