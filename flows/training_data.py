"""The training data of a retraining run: read or sampled, windowed in time, validated.

Tasks of the training flow (``flows.train_flow``): read the configured data (one pass with
a bounded sample when ``train.max_train_rows`` is set, partitions in parallel), keep the
rows of the configured time window, quarantine rows with bad values (logged to the MLflow
run), check that enough rows are left, and split off the holdout the promotion gate
compares champion and challenger on.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from flows.config import TrainSettings
from flows.mlops import tracking
from flows.pipeline.input_checks import training_notes
from flows.pipeline.row_validation import split_training_rows
from flows.pipeline.sampling import PartitionSample, SampleInfo, merge_samples, sample_partition
from flows.publishing.run_dates import dated_train, run_date
from flows.task_runners import make_task_runner
from vae_core.errors import EmptyInputError, SchemaError, TooFewRowsError
from vae_core.io import read_table
from vae_core.partitions import Partition, list_partitions


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


def dated_training_settings(cfg: TrainSettings) -> TrainSettings:
    """``cfg`` for this run: path placeholders filled in and ``lookback`` turned into the
    absolute window ending at the run date (``train.run_date``, else the flow run's
    scheduled time, else today, UTC). Apply it once: the result has no placeholders left."""
    day = run_date(cfg.run_date, flow_run.scheduled_start_time)
    dated = dated_train(cfg, day)
    if cfg.lookback:
        get_run_logger().info(
            "run date %s, lookback %s: rows from %s to before %s",
            day,
            cfg.lookback,
            dated.time_window_start,
            dated.time_window_end,
        )
    return dated


def load_training_data(cfg: TrainSettings) -> tuple[pd.DataFrame, SampleInfo]:
    """The training rows inside the time window; a uniform sample if ``max_train_rows``.

    Paths with placeholders and ``lookback`` are resolved for the run's date first
    (``dated_training_settings``).
    """
    cfg = dated_training_settings(cfg)
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
        rolling = f" (train.lookback={cfg.lookback} before {cfg.run_date})" if cfg.lookback else ""
        raise EmptyInputError(
            f"{cfg.data_path}: no rows between time_window_start={cfg.time_window_start} "
            f"and time_window_end={cfg.time_window_end}{rolling}; widen the window."
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


#: Column names that usually hold the answer, not a feature (compared in lower case).
LABEL_NAMES = frozenset(
    "label labels is_anomaly anomaly is_anomalous anomalous is_outlier outlier target y "
    "class is_fraud fraud ground_truth truth".split()
)
#: Parts of a name that make a two-valued column look like a label (``fraud_flag``).
LABEL_WORDS = frozenset({"label", "anomaly", "anomalous", "outlier", "fraud", "target", "class"})


def likely_label_columns(frame: pd.DataFrame, carried: tuple[str, ...] = ()) -> list[str]:
    """Columns that look like a label: named like one, or two-valued and named with a
    label word (``is_fraud_case``, ``outlier_flag``). Carried (key) columns are not."""
    found = []
    for name in frame.columns:
        if name in carried:
            continue
        text = str(name).strip().lower()
        words = set(re.split(r"[^a-z0-9]+", text))
        if text in LABEL_NAMES or (words & LABEL_WORDS and _two_valued(frame[name])):
            found.append(str(name))
    return found


def _two_valued(series: pd.Series) -> bool:
    return int(series.dropna().nunique()) <= 2


@task(cache_policy=NO_CACHE)
def select_training_columns(frame: pd.DataFrame, cfg: TrainSettings, run_id: str) -> pd.DataFrame:
    """Drop ``train.exclude_columns``; warn (log and run tag) about a likely label column."""
    logger = get_run_logger()
    dropped = [c for c in cfg.exclude_columns if c in frame.columns]
    absent = [c for c in cfg.exclude_columns if c not in frame.columns]
    if absent:
        logger.warning("train.exclude_columns names columns the data does not have: %s", absent)
    if dropped:
        frame = frame.drop(columns=dropped)
        tracking.set_run_tags(run_id, {"excluded_columns": ",".join(dropped)})
    carried = (*cfg.key_columns, *([cfg.timestamp_column] if cfg.timestamp_column else []))
    labels = likely_label_columns(frame, carried)
    if labels:
        logger.warning(
            "column(s) %s look like a label (the answer, not a feature) and will be trained "
            "on as features; if they are labels, drop them with train.exclude_columns: %s",
            labels,
            json.dumps(labels),
        )
        tracking.set_run_tags(run_id, {"label_column_warning": ",".join(labels)})
    return frame


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
